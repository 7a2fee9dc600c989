package gateway

// A create that names one of its caller's own GPUAllocations (made with kubectl, source
// Manual) by the label gpuwarden.io/allocation gets exactly that allocation's devices.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/moby/moby/api/types/container"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/labels"
)

// allocationLocks serialise the creates that name one allocation, from its check to the
// engine's answer, so that two creates raced onto it cannot both see it unused. Striped by
// name: a caller cannot grow them by naming many allocations.
var allocationLocks [64]sync.Mutex

func lockAllocation(name string) func() {
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	m := &allocationLocks[h.Sum32()%uint32(len(allocationLocks))]
	m.Lock()
	return m.Unlock
}

// useAllocation binds a create to the allocation its label names, after checking that it is
// the owner's own, Bound on this node and used by no other container (Allocator.Use), and
// that no container on the engine names it yet. It returns, locked, what must be unlocked
// once the engine has answered the create. The create's own GPU request, if any, must be
// one the allocation meets: all of its GPUs, or their number.
func (s *Server) useAllocation(ctx context.Context, c Caller, rt route, req *container.CreateRequest, gpus GPURequest, name, ctName string) (func(), error) {
	if s.GPUs == nil {
		return nil, refused("this gateway gives out no GPUs")
	}
	if gpus.MIGProfile != "" || len(gpus.Devices) > 0 {
		return nil, badGPUs("the GPUs of a container made for GPU allocation %s are the allocation's: leave out --gpus (or use --gpus all) instead of naming devices", shortName(name))
	}
	owner := c.Name
	if c.Admin { // an admin may make a container for a user, on that user's allocation
		owner = req.Config.Labels[gpuwardenv1alpha1.LabelUser]
	}
	use := func() ([]string, error) {
		uuids, err := s.GPUs.Use(ctx, owner, name, ctName)
		var ae *AllocationError
		if errors.As(err, &ae) {
			return nil, &refusal{status: ae.Status, msg: ae.Message, absent: ae.Absent, decision: !ae.Absent}
		}
		return uuids, err
	}
	// Waited for outside the lock (a Pending one may take minutes), then checked again
	// inside it: meanwhile another container may have taken it, or its GPUs gone back.
	if _, err := use(); err != nil {
		return nil, err
	}
	unlock := lockAllocation(name)
	uuids, err := use()
	if err == nil {
		err = s.unusedOnEngine(ctx, rt.version, owner, name)
	}
	if err == nil && gpus.Count > 0 && gpus.Count != len(uuids) {
		err = badGPUs("GPU allocation %s holds %d GPU(s) and the create asks for %d: leave out --gpus, or ask for --gpus %d", name, len(uuids), gpus.Count, len(uuids))
	}
	if err != nil {
		unlock()
		return nil, err
	}
	bindGPUs(req.Config, req.HostConfig, uuids)
	req.Config.Labels[gpuwardenv1alpha1.LabelAllocation] = name
	return unlock, nil
}

// unusedOnEngine refuses an allocation a container on the engine already names (one just
// made for it, that the container controller has not attached yet).
func (s *Server) unusedOnEngine(ctx context.Context, version, owner, name string) error {
	filters, err := json.Marshal(map[string][]string{"label": {gpuwardenv1alpha1.LabelAllocation + "=" + name}})
	if err != nil {
		return err
	}
	resp, err := s.up.get(ctx, version+"/containers/json?all=1&filters="+url.QueryEscape(string(filters)))
	if err != nil {
		return fmt.Errorf("the Docker engine behind the gateway is unreachable: %w", err)
	}
	var list []struct {
		ID     string `json:"Id"`
		Names  []string
		Labels map[string]string
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&list)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil {
		return fmt.Errorf("listing containers to see whether GPU allocation %s is used: engine answered %s", name, resp.Status)
	}
	for _, ct := range list {
		if ct.Labels[gpuwardenv1alpha1.LabelAllocation] != name {
			continue // an engine that ignored the filter
		}
		which := "another container"
		if o, _ := labels.Owner(ct.Labels); o == owner && len(ct.Names) > 0 {
			which = "container " + strings.TrimPrefix(ct.Names[0], "/")
		}
		return &refusal{status: http.StatusForbidden, decision: true, msg: fmt.Sprintf(
			"GPU allocation %s is used by %s already: an allocation is for one container; remove that one first, or create another allocation", name, which)}
	}
	return nil
}

// shortName bounds a name a caller sent, for a message.
func shortName(name string) string {
	if len(name) > 64 {
		return fmt.Sprintf("%.64q…", name)
	}
	return name
}

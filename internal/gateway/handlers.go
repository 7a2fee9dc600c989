package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/volume"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/labels"
)

// passIfNotOK asks the engine for what the caller asked and returns the answer when it is
// a 200 to filter; any other answer goes to the caller as it is (and nil is returned).
func (s *Server) passIfNotOK(w http.ResponseWriter, r *http.Request) (*http.Response, error) {
	resp, err := s.up.get(r.Context(), r.URL.Path+"?"+r.URL.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("the Docker engine behind the gateway is unreachable: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		copyResponse(w, resp)
		return nil, nil
	}
	return resp, nil
}

// listContainers lists only the caller's containers: the engine's answer, filtered by owner.
func (s *Server) listContainers(w http.ResponseWriter, r *http.Request, c Caller, _ route) error {
	return s.filterList(w, r, "container", func(l map[string]string) bool {
		owner, _ := labels.Owner(l)
		return owner == c.Name
	})
}

// filterList answers a list the engine gives as a JSON array with the items keep accepts
// by their labels.
func (s *Server) filterList(w http.ResponseWriter, r *http.Request, what string, keep func(map[string]string) bool) error {
	resp, err := s.passIfNotOK(w, r)
	if resp == nil || err != nil {
		return err
	}
	defer resp.Body.Close()
	var list []json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return fmt.Errorf("reading the engine's %s list: %w", what, err)
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(keepItems(list, keep))
}

// createExec checks an exec's body (no privileged exec, the caller's own user) and forwards it re-encoded.
func (s *Server) createExec(w http.ResponseWriter, r *http.Request, c Caller, p string) error {
	b, err := readJSONBody(r)
	if err != nil {
		return err
	}
	var req container.ExecCreateRequest
	if err := decodeJSON(b, &req); err != nil {
		return err
	}
	if req.Privileged {
		return refused("a privileged exec is refused")
	}
	// Empty is the caller's own too: a container created before the gateway forced its user
	// may still run as root.
	if req.User, err = s.checkUser(r.Context(), c, req.User, "an exec"); err != nil {
		return err
	}
	return s.forwardJSON(w, r, p, req)
}

// forwardJSON forwards v, re-encoded: what was checked is what the engine gets.
func (s *Server) forwardJSON(w http.ResponseWriter, r *http.Request, p string, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	r.Header.Set("Content-Type", "application/json")
	s.up.forward(w, r, p, r.URL.RawQuery, bytes.NewReader(body), int64(len(body)))
	return nil
}

// checkedUpdate refuses an update that would add devices or take the container over its
// policy's CPU or memory maxima.
func (s *Server) checkedUpdate(w http.ResponseWriter, r *http.Request, c Caller, p string, lbl map[string]string) error {
	if strings.HasSuffix(p, "/rename") {
		s.up.forward(w, r, p, r.URL.RawQuery, nil, 0)
		return nil
	}
	b, err := readJSONBody(r)
	if err != nil {
		return err
	}
	var req container.UpdateConfig
	if err := decodeJSON(b, &req); err != nil {
		return err
	}
	if len(req.Devices) > 0 || len(req.DeviceRequests) > 0 || len(req.DeviceCgroupRules) > 0 || req.CgroupParent != "" {
		return refused("an update may not add devices, device rules or a cgroup parent")
	}
	if err := checkResources(c, &req.Resources); err != nil {
		return err
	}
	if req.PidsLimit != nil && *req.PidsLimit <= 0 {
		return refused("an update to no process limit (%d) is refused: give a limit", *req.PidsLimit)
	}
	if err := s.checkUpdate(r.Context(), lbl, req.Resources); err != nil {
		return err
	}
	return s.forwardJSON(w, r, p, req)
}

// onExec serves an exec of one of the caller's containers.
func (s *Server) onExec(w http.ResponseWriter, r *http.Request, c Caller, rt route) error {
	resp, err := s.up.get(r.Context(), rt.version+"/exec/"+url.PathEscape(rt.id)+"/json")
	if err != nil {
		return fmt.Errorf("the Docker engine behind the gateway is unreachable: %w", err)
	}
	var ex struct{ ContainerID string }
	decodeErr := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ex)
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound || decodeErr != nil || ex.ContainerID == "" {
		return &refusal{status: http.StatusNotFound, msg: "No such exec instance: " + rt.id}
	}
	if _, err := s.owned(r.Context(), c, route{version: rt.version, id: ex.ContainerID}, ex.ContainerID); err != nil {
		return err
	}
	if rt.kind == startExec {
		b, err := readJSONBody(r)
		if err != nil {
			return err
		}
		var req container.ExecStartRequest
		if err := decodeJSON(b, &req); err != nil {
			return err
		}
		body, _ := json.Marshal(req)
		s.up.hijack(w, r, r.URL.Path, r.URL.RawQuery, body)
		return nil
	}
	s.up.forward(w, r, r.URL.Path, r.URL.RawQuery, nil, 0)
	return nil
}

// events streams only the caller's containers' events (and image events).
func (s *Server) events(w http.ResponseWriter, r *http.Request, c Caller, _ route) error {
	resp, err := s.passIfNotOK(w, r)
	if resp == nil || err != nil {
		return err
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	f, _ := w.(http.Flusher)
	if f != nil {
		f.Flush()
	}
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil
		}
		var ev struct {
			Type  string
			Actor struct{ Attributes map[string]string }
		}
		if json.Unmarshal(raw, &ev) != nil {
			continue
		}
		owner, _ := labels.Owner(ev.Actor.Attributes)
		if ev.Type != "image" && owner != c.Name {
			continue
		}
		if _, err := w.Write(append(raw, '\n')); err != nil {
			return nil
		}
		if f != nil {
			f.Flush()
		}
	}
}

// createOwned creates a network or volume labelled with its owner, decoded as the engine
// decodes it and forwarded re-encoded; what reaches past the caller's own (driver options, a
// volume bound onto a host path, other drivers, address ranges that could shadow the host's
// routes, swarm networks) is for admins.
func (s *Server) createOwned(w http.ResponseWriter, r *http.Request, c Caller, rt route) error {
	b, err := readJSONBody(r)
	if err != nil {
		return err
	}
	if rt.object == "volume" {
		var req volume.CreateRequest
		if err := decodeJSON(b, &req); err != nil {
			return err
		}
		if len(req.DriverOpts) > 0 || req.ClusterVolumeSpec != nil {
			return refused("volume options are for admins")
		}
		if req.Driver != "" && req.Driver != "local" {
			return refused("volume driver %q is for admins: the local driver is allowed", req.Driver)
		}
		if req.Name != "" {
			// The engine answers a create of an existing name with that volume: not another's.
			lbl, found, err := s.objectLabels(r.Context(), rt.version, "volume", req.Name)
			if err != nil {
				return err
			}
			if found && lbl[gpuwardenv1alpha1.LabelUser] != c.Name {
				return &refusal{status: http.StatusConflict, msg: fmt.Sprintf("volume %s exists and is not yours: choose another name", req.Name)}
			}
		}
		req.Labels = ownerLabels(req.Labels, c)
		if req.Name == "" || s.anyUser(r.Context(), c) {
			return s.forwardJSON(w, r, r.URL.Path, req)
		}
		// Made, given to the caller, then answered: their first container finds it theirs.
		if err := s.up.post(r.Context(), r.URL.Path, req); err != nil {
			return fmt.Errorf("creating volume %s: %w", req.Name, err)
		}
		s.giveVolume(r.Context(), c, rt.version, req.Name)
		resp, err := s.up.get(r.Context(), rt.version+"/volumes/"+url.PathEscape(req.Name))
		if err != nil {
			return fmt.Errorf("the Docker engine behind the gateway is unreachable: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			resp.StatusCode = http.StatusCreated
		}
		copyResponse(w, resp)
		return nil
	}
	var req network.CreateRequest
	if err := decodeJSON(b, &req); err != nil {
		return err
	}
	switch {
	case len(req.Options) > 0 || req.ConfigFrom != nil:
		return refused("network options are for admins")
	case req.Driver != "" && req.Driver != "bridge":
		return refused("network driver %q is for admins: bridge networks are allowed", req.Driver)
	case req.Ingress || req.ConfigOnly || req.Scope != "" && req.Scope != "local":
		return refused("swarm and config-only networks are for admins")
	case req.IPAM != nil && (req.IPAM.Driver != "" && req.IPAM.Driver != "default" || len(req.IPAM.Options) > 0 || len(req.IPAM.Config) > 0):
		return refused("network address settings (--subnet, --ip-range, --gateway, IPAM drivers) are for admins: a range of your choosing could shadow the host's own routes")
	}
	req.Labels = ownerLabels(req.Labels, c)
	return s.forwardJSON(w, r, r.URL.Path, req)
}

// ownerLabels are a new volume's or network's labels: the caller's own, with the owner set.
func ownerLabels(l map[string]string, c Caller) map[string]string {
	if l == nil {
		l = map[string]string{}
	}
	l[gpuwardenv1alpha1.LabelUser] = c.Name
	return l
}

// onOwned serves an operation on one of the caller's volumes or networks.
func (s *Server) onOwned(w http.ResponseWriter, r *http.Request, c Caller, rt route) error {
	obj, found, err := s.object(r.Context(), rt.version, rt.object, rt.id)
	if err != nil {
		return err
	}
	notFound := &refusal{status: http.StatusNotFound, msg: fmt.Sprintf("No such %s: %s", rt.object, rt.id), absent: true}
	if !found {
		return notFound
	}
	owner := obj.Labels[gpuwardenv1alpha1.LabelUser]
	if owner != "" && owner != c.Name && !obj.namedBy(rt.id) {
		// Another user's object behind an ID prefix: there for them no more than a missing
		// one (recorded all the same).
		notFound.absent, notFound.owner = false, owner
		return notFound
	}
	// The engine's own networks (bridge, host, none) and compose's have no owner: readable.
	if rt.object == "network" && owner == "" && !rt.write {
		s.up.forward(w, r, r.URL.Path, r.URL.RawQuery, nil, 0)
		return nil
	}
	if owner != c.Name {
		return &refusal{status: http.StatusForbidden, owner: owner, msg: fmt.Sprintf("%s %s does not belong to %s", rt.object, rt.id, c.Name)}
	}
	if strings.HasSuffix(rt.rest, "/connect") || strings.HasSuffix(rt.rest, "/disconnect") {
		return s.connect(w, r, c, rt)
	}
	s.up.forward(w, r, r.URL.Path, r.URL.RawQuery, nil, 0)
	return nil
}

// connect connects (or disconnects) one of the caller's containers to one of their networks.
func (s *Server) connect(w http.ResponseWriter, r *http.Request, c Caller, rt route) error {
	b, err := readJSONBody(r)
	if err != nil {
		return err
	}
	var req struct {
		Container      string
		EndpointConfig *network.EndpointSettings `json:",omitempty"`
		Force          bool                      `json:",omitempty"`
	}
	if err := decodeJSON(b, &req); err != nil {
		return err
	}
	ct, err := s.owned(r.Context(), c, route{version: rt.version}, req.Container)
	if err != nil {
		return err
	}
	req.Container = ct.ID
	return s.forwardJSON(w, r, r.URL.Path, req)
}

// listVolumes lists only the caller's volumes.
func (s *Server) listVolumes(w http.ResponseWriter, r *http.Request, c Caller, _ route) error {
	resp, err := s.passIfNotOK(w, r)
	if resp == nil || err != nil {
		return err
	}
	defer resp.Body.Close()
	var list struct {
		Volumes  []json.RawMessage
		Warnings []string
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return fmt.Errorf("reading the engine's volume list: %w", err)
	}
	list.Volumes = keepItems(list.Volumes, func(l map[string]string) bool { return l[gpuwardenv1alpha1.LabelUser] == c.Name })
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(list)
}

// listNetworks lists the caller's networks and the engine's own (no owner).
func (s *Server) listNetworks(w http.ResponseWriter, r *http.Request, c Caller, _ route) error {
	return s.filterList(w, r, "network", func(l map[string]string) bool {
		owner := l[gpuwardenv1alpha1.LabelUser]
		return owner == c.Name || owner == ""
	})
}

// keepItems keeps the items whose labels keep accepts.
func keepItems(list []json.RawMessage, keep func(map[string]string) bool) []json.RawMessage {
	out := make([]json.RawMessage, 0, len(list))
	for _, item := range list {
		var obj struct{ Labels map[string]string }
		if json.Unmarshal(item, &obj) == nil && keep(obj.Labels) {
			out = append(out, item)
		}
	}
	return out
}

// MaxKubeconfigDays bounds the validity of a kubeconfig the gateway hands out.
const MaxKubeconfigDays = 30

// kubeconfig hands the caller a kubeconfig of their own: who they are is the kernel's word.
func (s *Server) kubeconfig(w http.ResponseWriter, r *http.Request, c Caller) error {
	if s.Kubeconfigs == nil {
		return &refusal{status: http.StatusNotFound, msg: "this gpuwarden issues no kubeconfigs (only `gpuwarden server` holds a CA; ask your admin)"}
	}
	days := 7
	if v := r.URL.Query().Get("days"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxKubeconfigDays {
			return &refusal{status: http.StatusBadRequest, msg: fmt.Sprintf("days=%q: a kubeconfig lasts 1 to %d days", v, MaxKubeconfigDays)}
		}
		days = n
	}
	data, err := s.Kubeconfigs(c.Name, c.Admin, time.Duration(days)*24*time.Hour)
	if err != nil {
		return fmt.Errorf("issuing a kubeconfig for %s: %w", c.Name, err)
	}
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(data)
	return nil
}

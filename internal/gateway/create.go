package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/hostpath"
	"github.com/gpuwarden/gpuwarden/internal/labels"
	"github.com/gpuwarden/gpuwarden/internal/message"
)

// GPURequest is what a create asks for, in whichever form it asked.
type GPURequest struct {
	All     bool
	Count   int
	Devices []string
	// MIGProfile asks for one MIG instance of the profile.
	MIGProfile string
	// Wait is how long the create may wait for capacity (label gpuwarden.io/wait; 0: the
	// allocator's default), MaxWait the most its policy allows.
	Wait, MaxWait time.Duration
}

// Any reports whether GPUs are asked for.
func (g GPURequest) Any() bool {
	return g.All || g.Count > 0 || len(g.Devices) > 0 || g.MIGProfile != ""
}

// Allocator gets a create's GPUs: a GPUAllocation for the caller, bound before the
// container exists.
type Allocator interface {
	// Allocate returns the allocation's name and its bound device UUIDs, or an
	// *AllocationError saying why not.
	Allocate(ctx context.Context, user string, req GPURequest, containerName string, t gpuwardenv1alpha1.ContainerType) (name string, uuids []string, err error)
	// Release gives an allocation back (its container could not be created).
	Release(ctx context.Context, name string)
	// Reacquire holds a GPU container's devices for its owner again before it starts: its
	// allocation when that is still Bound to exactly those devices for that user, else a new
	// allocation for exactly those devices, attached to the container by its ID and waited
	// for like a create. It returns the allocation's name, or an *AllocationError saying
	// why not (the devices held by another allocation, a limit, no capacity in time).
	Reacquire(ctx context.Context, user string, c Starting) (name string, err error)
	// Use gives a create the devices of user's own allocation name (source Manual, made with
	// kubectl), which the create names by its gpuwarden.io/allocation label: Bound (waited
	// for like a create while Pending), on this node, and used by no container yet. It
	// returns the bound device UUIDs, or an *AllocationError saying why not; an allocation
	// that does not exist and another user's are answered alike (Absent).
	Use(ctx context.Context, user, name, containerName string) (uuids []string, err error)
}

// Starting is a GPU container about to start again, as its create left it.
type Starting struct {
	// ID and Name are the container's.
	ID, Name string
	// Allocation is the allocation its label names (from its create).
	Allocation string
	// Devices are the device UUIDs its create was bound to.
	Devices []string
	Type    gpuwardenv1alpha1.ContainerType
}

// AllocationError is a GPU request the allocator refused or gave up waiting on.
type AllocationError struct {
	Message string
	// Status is the HTTP status to answer with (403 refused, 503 no capacity in time).
	Status int
	// Absent: the named allocation is not there for the caller (none of that name, or
	// another user's): no access was denied that the caller may learn of.
	Absent bool
}

func (e *AllocationError) Error() string { return e.Message }

// checkpointLabels are the checkpoint hook's labels of a create, checked (a 400 naming
// the label when they cannot be used).
func checkpointLabels(l map[string]string) (map[string]string, error) {
	if err := labels.CheckpointProblem(l); err != nil {
		return nil, &refusal{status: http.StatusBadRequest, msg: err.Error()}
	}
	out := map[string]string{}
	for _, k := range []string{gpuwardenv1alpha1.LabelCheckpoint, gpuwardenv1alpha1.LabelCheckpointTimeout} {
		if v, ok := l[k]; ok {
			out[k] = v
		}
	}
	return out, nil
}

// spoofable are the labels that say who owns a container, what it is and whether it may be
// stopped: a caller's own values for them are dropped.
func spoofable(k string) bool {
	return strings.HasPrefix(k, "gpuwarden.io/") || strings.HasPrefix(k, "ds01.") || k == labels.AIMEUser || k == labels.JupyterUser
}

var (
	nvidiaDevice = regexp.MustCompile(`^/dev/nvidia([0-9]+)$`)
	nvidiaAux    = regexp.MustCompile(`^/dev/nvidia(ctl|-uvm|-uvm-tools|-modeset|-caps(/.*)?)$`)
	// deviceName is a device as an allocation names it (the API's own pattern).
	deviceName = regexp.MustCompile(`^(GPU-[0-9a-fA-F-]+|MIG-[0-9a-fA-F/-]+|[0-9]+(:[0-9]+)?)$`)
	// migProfile is a MIG profile name as NVIDIA writes them: slices, memory, an optional +me.
	migProfile = regexp.MustCompile(`^[1-9][0-9]?g\.[1-9][0-9]{0,3}gb(\+me)?$`)
)

// The most devices one create may name, and the longest name (the API's own bounds).
const (
	maxDevices    = 64
	maxDeviceName = 128
)

// createContainer checks a create, gives it its owner's labels and its GPUs, and forwards
// the checked request re-encoded.
func (s *Server) createContainer(w http.ResponseWriter, r *http.Request, c Caller, rt route) error {
	b, err := readJSONBody(r)
	if err != nil {
		return err
	}
	var req container.CreateRequest
	if err := decodeJSON(b, &req); err != nil {
		return err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return &refusal{status: http.StatusBadRequest, msg: "a container create needs a body (the container's configuration)"}
	}
	if req.Config == nil {
		req.Config = &container.Config{}
	}
	if req.HostConfig == nil {
		req.HostConfig = &container.HostConfig{}
	}
	if !c.Admin {
		if f := unknownHostField(b); f != "" {
			return refused("HostConfig.%s is refused: not a field the gateway knows, so not one it checked; ask an admin", f)
		}
		if err := s.checkHost(r.Context(), c, rt, req.HostConfig); err != nil {
			return err
		}
		if err := s.checkEndpoints(r.Context(), c, rt, req.NetworkingConfig); err != nil {
			return err
		}
		if err := checkEnv(req.Config); err != nil {
			return err
		}
		if err := s.forceUser(r.Context(), c, req.Config, req.HostConfig); err != nil {
			return err
		}
	}
	gpus, err := gpuRequest(req.Config, req.HostConfig)
	if err != nil {
		return err
	}
	// The allocation a create names and the wait it asks for are read before setLabels
	// drops the caller's gpuwarden.io/ labels; they are set again below once checked.
	named := req.Config.Labels[gpuwardenv1alpha1.LabelAllocation]
	if gpus.Wait, err = askedWait(req.Config.Labels); err != nil {
		return err
	}
	hook, err := checkpointLabels(req.Config.Labels)
	if err != nil {
		return err
	}
	ctype := s.setLabels(c, req.Config)
	maps.Copy(req.Config.Labels, hook) // checked: a command run in the container, as its user
	if c.Admin {
		// An image's labels (a user may have built it) do not give an admin's container a
		// hook gpuwarden would run in it: only the create's own labels do.
		for _, k := range []string{gpuwardenv1alpha1.LabelCheckpoint, gpuwardenv1alpha1.LabelCheckpointTimeout, gpuwardenv1alpha1.LabelManaged} {
			if _, set := req.Config.Labels[k]; !set {
				req.Config.Labels[k] = ""
			}
		}
	}
	if gpus.MIGProfile != "" {
		// Checked: what was asked for, on the container for `docker ps --filter label=…`.
		req.Config.Labels[gpuwardenv1alpha1.LabelMIGProfile] = gpus.MIGProfile
	}
	if !c.Admin {
		if err := s.checkImage(r.Context(), c, rt, req.Config); err != nil {
			return err
		}
	}
	if err := s.applyResources(r.Context(), c, req.Config.Labels, req.HostConfig); err != nil {
		return err
	}
	name := r.URL.Query().Get("name")
	var allocation string
	if named != "" {
		unlock, err := s.useAllocation(r.Context(), c, rt, &req, gpus, named, name)
		if err != nil {
			return err
		}
		defer unlock() // held until the engine has made the container: one container an allocation
	} else if gpus.Any() {
		if s.GPUs == nil {
			return refused("this gateway gives out no GPUs")
		}
		if gpus.MaxWait, err = s.boundWait(r.Context(), gpus.Wait, owner(req.Config.Labels), req.Config.Labels); err != nil {
			return err
		}
		if gpus.Wait > 0 {
			req.Config.Labels[gpuwardenv1alpha1.LabelWait] = message.Duration(gpus.Wait) // checked: what was granted
		}
		var uuids []string
		start := time.Now()
		allocation, uuids, err = s.GPUs.Allocate(r.Context(), c.Name, gpus, name, ctype)
		allocationWait.Observe(time.Since(start).Seconds())
		var ae *AllocationError
		if errors.As(err, &ae) {
			return &refusal{status: ae.Status, msg: ae.Message, decision: true}
		}
		if err != nil {
			return err
		}
		bindGPUs(req.Config, req.HostConfig, uuids)
		req.Config.Labels[gpuwardenv1alpha1.LabelAllocation] = allocation
	} else {
		for _, d := range req.HostConfig.Devices {
			if nvidiaAux.MatchString(d.PathOnHost) {
				return refused("device %s is refused for a container without GPUs: ask for GPUs with --gpus, and the driver's devices come with them", d.PathOnHost)
			}
		}
		// An image may ask the nvidia runtime for every GPU (CUDA images set
		// NVIDIA_VISIBLE_DEVICES=all): a container without an allocation gets none.
		setEnv(req.Config, "NVIDIA_VISIBLE_DEVICES", "void")
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	out, err := outgoing(r.Context(), r, r.URL.Path, r.URL.RawQuery, bytes.NewReader(body), int64(len(body)))
	if err != nil {
		return err
	}
	out.Header.Set("Content-Type", "application/json")
	resp, err := s.up.client.Do(out)
	if err != nil {
		if allocation != "" {
			s.GPUs.Release(context.Background(), allocation)
		}
		return fmt.Errorf("the Docker engine behind the gateway is unreachable: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && allocation != "" {
		s.GPUs.Release(context.Background(), allocation) // no container: its GPUs go back at once
	}
	copyResponse(w, resp)
	return nil
}

// checkImage refuses a create from another user's image (code they made would run as the
// caller, with the caller's files), and blanks the owner, type and protection labels the image
// carries, which the engine would otherwise give the container.
func (s *Server) checkImage(ctx context.Context, c Caller, rt route, cfg *container.Config) error {
	if cfg.Image == "" {
		return nil // the engine answers that a create needs an image
	}
	info, err := s.checkRead(ctx, c, rt.version, cfg.Image, "run")
	if err != nil {
		return err
	}
	for k := range info.Config.Labels {
		if _, set := cfg.Labels[k]; spoofable(k) && !set {
			cfg.Labels[k] = ""
		}
	}
	return nil
}

// setLabels drops the caller's owner, type and protection labels and sets the gateway's;
// it returns the container's type, from what well-known labels (devcontainer, compose) say.
// A type other than docker is the caller's claim (labels anyone can add to `docker run`):
// it is marked gpuwarden.io/type-claimed, so that policies see it as docker unless the
// admin grants claimed types more.
func (s *Server) setLabels(c Caller, cfg *container.Config) gpuwardenv1alpha1.ContainerType {
	if cfg.Labels == nil {
		cfg.Labels = map[string]string{}
	}
	if c.Admin { // an admin may label as they like; the owner is still who they are unless they say
		if cfg.Labels[gpuwardenv1alpha1.LabelUser] == "" {
			cfg.Labels[gpuwardenv1alpha1.LabelUser] = c.Name
		}
		return labels.ContainerType(cfg.Labels)
	}
	for k := range cfg.Labels {
		if spoofable(k) {
			delete(cfg.Labels, k)
		}
	}
	t := labels.ContainerType(cfg.Labels)
	cfg.Labels[gpuwardenv1alpha1.LabelUser] = c.Name
	cfg.Labels[gpuwardenv1alpha1.LabelManaged] = "true"
	cfg.Labels[gpuwardenv1alpha1.LabelContainerType] = string(t)
	if t != gpuwardenv1alpha1.ContainerTypeDocker {
		cfg.Labels[gpuwardenv1alpha1.LabelTypeClaimed] = "true"
	}
	return t
}

// mountable refuses a host path outside the caller's home and the allowed prefixes, after
// resolving symbolic links (a link in the home directory to /etc is /etc).
func (s *Server) mountable(c Caller, src string) error {
	p := hostpath.Resolve(filepath.Clean(src))
	allowed := slices.Clone(s.AllowMounts)
	if c.Home != "" && c.Home != "/" {
		allowed = append(allowed, hostpath.Resolve(filepath.Clean(c.Home)))
	}
	for _, a := range allowed {
		a = filepath.Clean(a)
		if p == a || strings.HasPrefix(p, strings.TrimSuffix(a, "/")+"/") {
			return nil
		}
	}
	return refused("bind mount of %s is refused: only your home directory (%s)%s may be mounted", src, c.Home, allowedNote(s.AllowMounts))
}

func allowedNote(extra []string) string {
	if len(extra) == 0 {
		return ""
	}
	return " and " + strings.Join(extra, ", ")
}

// checkEnv refuses the NVIDIA variables that reach past the container's own GPUs (MIG
// configuration and monitoring of the whole GPU); NVIDIA_VISIBLE_DEVICES is set from the
// allocation.
func checkEnv(cfg *container.Config) error {
	for _, k := range []string{"NVIDIA_MIG_CONFIG_DEVICES", "NVIDIA_MIG_MONITOR_DEVICES"} {
		if v, ok := env(cfg, k); ok && v != "" {
			return refused("%s is refused: MIG configuration and monitoring are for admins", k)
		}
	}
	return nil
}

// gpuRequest reads every form a create can ask for GPUs in: device requests (--gpus,
// compose), CDI names, the nvidia runtime's NVIDIA_VISIBLE_DEVICES, and /dev/nvidiaN.
func gpuRequest(cfg *container.Config, hc *container.HostConfig) (GPURequest, error) {
	var g GPURequest
	forms := 0
	for _, d := range hc.DeviceRequests {
		switch {
		case d.Driver == "cdi":
			forms++
			for _, id := range d.DeviceIDs {
				dev, ok := strings.CutPrefix(id, "nvidia.com/gpu=")
				if !ok {
					return g, refused("CDI device %s is refused: only nvidia.com/gpu devices, through an allocation", id)
				}
				if dev == "all" {
					g.All = true
				} else {
					g.Devices = append(g.Devices, dev)
				}
			}
		case d.Driver == "" || d.Driver == "nvidia":
			if !hasGPU(d.Capabilities) && d.Driver == "" {
				return g, refused("a device request for %v is refused: only GPUs", d.Capabilities)
			}
			forms++
			switch {
			case len(d.DeviceIDs) > 0:
				g.Devices = append(g.Devices, d.DeviceIDs...)
			case d.Count < 0 || d.Count == 0 && len(d.DeviceIDs) == 0:
				g.All = true // compose: neither count nor device_ids means all
			default:
				g.Count += d.Count
			}
		default:
			return g, refused("device driver %q is refused", d.Driver)
		}
	}
	if v, ok := env(cfg, "NVIDIA_VISIBLE_DEVICES"); ok && v != "" && v != "none" && v != "void" {
		forms++
		if v == "all" {
			g.All = true
		} else {
			g.Devices = append(g.Devices, strings.Split(v, ",")...)
		}
	}
	var devs []string
	for _, d := range hc.Devices {
		if m := nvidiaDevice.FindStringSubmatch(d.PathOnHost); m != nil {
			devs = append(devs, m[1])
		}
	}
	if len(devs) > 0 {
		forms++
		g.Devices = append(g.Devices, devs...)
	}
	if v, ok := cfg.Labels[gpuwardenv1alpha1.LabelMIGProfile]; ok {
		if err := checkProfileLabel(v); err != nil {
			return g, err
		}
		if forms > 0 {
			return g, badGPUs("label %s=%s asks for a MIG slice, and the create asks for GPUs another way too: ask in one (the label alone, or --gpus '\"device=%s\"' alone)",
				gpuwardenv1alpha1.LabelMIGProfile, v, v)
		}
		forms++
		g.Devices = append(g.Devices, v)
	}
	if forms > 1 {
		return g, refused("GPUs asked for in %d ways at once; ask in one (--gpus is the usual one)", forms)
	}
	if err := g.splitProfile(); err != nil {
		return g, err
	}
	if g.All {
		g.Count, g.Devices = 0, nil
	}
	return g, nil
}

// splitProfile checks every device named and takes a MIG profile named where a device
// would be (--gpus '"device=1g.10gb"') as a request for one free slice of that profile. A
// profile is asked for alone: not twice, not with other devices, not with all.
func (g *GPURequest) splitProfile() error {
	if len(g.Devices) > maxDevices {
		return badGPUs("%d devices asked for; at most %d", len(g.Devices), maxDevices)
	}
	var profiles []string
	for _, d := range g.Devices {
		switch {
		case len(d) > maxDeviceName:
			return badGPUs("device %.40q… is %d characters long; a GPU's name is at most %d", d, len(d), maxDeviceName)
		case migProfile.MatchString(d):
			profiles = append(profiles, d)
		case deviceName.MatchString(d):
		case strings.Contains(strings.ToLower(d), "gb") || strings.Contains(strings.ToLower(d), "g."):
			return badGPUs("device %q is not a MIG profile: a profile is written like 1g.10gb, 3g.40gb or 1g.10gb+me", d)
		default:
			return badGPUs("device %q is not a GPU: name a GPU index (0), a MIG instance (4:0), a UUID (GPU-…, MIG-…) or a MIG profile (1g.10gb)", d)
		}
	}
	switch {
	case len(profiles) == 0:
		return nil
	case len(profiles) > 1:
		return badGPUs("MIG profiles %s asked for at once: a container gets one MIG slice, so ask for one profile (--gpus '\"device=%s\"')",
			strings.Join(profiles, ", "), profiles[0])
	case len(g.Devices) > 1 || g.All || g.Count > 0:
		return badGPUs("MIG profile %s asked for with other GPUs: ask for the profile alone (--gpus '\"device=%s\"') or for GPUs without it",
			profiles[0], profiles[0])
	}
	g.MIGProfile, g.Devices = profiles[0], nil
	return nil
}

// checkProfileLabel refuses a gpuwarden.io/mig-profile label that names no MIG profile.
func checkProfileLabel(v string) error {
	switch {
	case len(v) > maxDeviceName:
		return badGPUs("label %s is %d characters long; a MIG profile is at most %d", gpuwardenv1alpha1.LabelMIGProfile, len(v), maxDeviceName)
	case !migProfile.MatchString(v):
		return badGPUs("label %s=%q is not a MIG profile: a profile is written like 1g.10gb, 3g.40gb or 1g.10gb+me (kubectl get gpus shows the slices of this server)",
			gpuwardenv1alpha1.LabelMIGProfile, v)
	}
	return nil
}

// badGPUs refuses a GPU request that is not well formed.
func badGPUs(format string, args ...any) *refusal {
	return &refusal{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

func hasGPU(caps [][]string) bool {
	for _, and := range caps {
		if slices.Contains(and, "gpu") {
			return true
		}
	}
	return false
}

func env(cfg *container.Config, key string) (string, bool) {
	for _, e := range cfg.Env {
		if k, v, ok := strings.Cut(e, "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}

func setEnv(cfg *container.Config, key, value string) {
	out := cfg.Env[:0]
	for _, e := range cfg.Env {
		if k, _, _ := strings.Cut(e, "="); k != key {
			out = append(out, e)
		}
	}
	cfg.Env = append(out, key+"="+value)
}

// bindGPUs rewrites every GPU form into exactly the bound devices.
func bindGPUs(cfg *container.Config, hc *container.HostConfig, uuids []string) {
	var keep []container.DeviceRequest
	for _, d := range hc.DeviceRequests {
		if d.Driver != "cdi" && d.Driver != "" && d.Driver != "nvidia" {
			keep = append(keep, d)
		}
	}
	hc.DeviceRequests = append(keep, container.DeviceRequest{Driver: "nvidia", DeviceIDs: uuids, Capabilities: [][]string{{"gpu"}}})
	var devs []container.DeviceMapping
	for _, d := range hc.Devices {
		if !nvidiaDevice.MatchString(d.PathOnHost) && !nvidiaAux.MatchString(d.PathOnHost) {
			devs = append(devs, d)
		}
	}
	hc.Devices = devs
	setEnv(cfg, "NVIDIA_VISIBLE_DEVICES", strings.Join(uuids, ","))
}

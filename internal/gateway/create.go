package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/labels"
)

// GPURequest is what a create asks for, in whichever form it asked.
type GPURequest struct {
	All     bool
	Count   int
	Devices []string
	// MIGProfile asks for one MIG instance of the profile.
	MIGProfile string
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
}

// AllocationError is a GPU request the allocator refused or gave up waiting on.
type AllocationError struct {
	Message string
	// Status is the HTTP status to answer with (403 refused, 503 no capacity in time).
	Status int
}

func (e *AllocationError) Error() string { return e.Message }

// spoofable are the labels that say who owns a container, what it is and whether it may be
// stopped: a caller's own values for them are dropped.
func spoofable(k string) bool {
	return strings.HasPrefix(k, "gpuwarden.io/") || strings.HasPrefix(k, "ds01.") || k == labels.AIMEUser || k == labels.JupyterUser
}

var (
	nvidiaDevice = regexp.MustCompile(`^/dev/nvidia([0-9]+)$`)
	nvidiaAux    = regexp.MustCompile(`^/dev/nvidia(ctl|-uvm|-uvm-tools|-modeset|-caps(/.*)?)$`)
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
		if err := s.checkHost(r.Context(), c, rt, req.HostConfig); err != nil {
			return err
		}
	}
	gpus, err := gpuRequest(req.Config, req.HostConfig)
	if err != nil {
		return err
	}
	ctype := s.setLabels(c, req.Config)
	if err := s.applyResources(r.Context(), c, req.Config.Labels, req.HostConfig); err != nil {
		return err
	}
	name := r.URL.Query().Get("name")
	var allocation string
	if gpus.Any() {
		if s.GPUs == nil {
			return refused("this gateway gives out no GPUs")
		}
		var uuids []string
		start := time.Now()
		allocation, uuids, err = s.GPUs.Allocate(r.Context(), c.Name, gpus, name, ctype)
		allocationWait.Observe(time.Since(start).Seconds())
		var ae *AllocationError
		if errors.As(err, &ae) {
			return &refusal{status: ae.Status, msg: ae.Message}
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

// setLabels drops the caller's owner, type and protection labels and sets the gateway's;
// it returns the container's type, from what well-known labels (devcontainer, compose) say.
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
	return t
}

// checkHost refuses what would reach the host or other users' containers.
func (s *Server) checkHost(ctx context.Context, c Caller, rt route, hc *container.HostConfig) error {
	if hc.Privileged {
		return refused("a privileged container is refused")
	}
	for _, ns := range []struct{ name, mode string }{
		{"PID", string(hc.PidMode)}, {"IPC", string(hc.IpcMode)}, {"network", string(hc.NetworkMode)}, {"UTS", string(hc.UTSMode)}, {"user", string(hc.UsernsMode)},
	} {
		if ns.mode == "host" {
			return refused("the host's %s namespace is refused", ns.name)
		}
		if other, ok := strings.CutPrefix(ns.mode, "container:"); ok {
			if _, err := s.owned(ctx, c, route{version: rt.version}, other); err != nil {
				return refused("joining the %s namespace of container %s: %s", ns.name, other, err.Error())
			}
		}
	}
	if len(hc.CapAdd) > 0 {
		return refused("added capabilities (%s) are refused", strings.Join(hc.CapAdd, ", "))
	}
	for _, d := range hc.Devices {
		if !nvidiaDevice.MatchString(d.PathOnHost) && !nvidiaAux.MatchString(d.PathOnHost) {
			return refused("device %s is refused: only GPUs, through an allocation", d.PathOnHost)
		}
	}
	if len(hc.DeviceCgroupRules) > 0 {
		return refused("device cgroup rules are refused")
	}
	for _, o := range hc.SecurityOpt {
		lo := strings.ToLower(o)
		if strings.Contains(lo, "unconfined") || strings.Contains(lo, "label=disable") || strings.Contains(lo, "label:disable") {
			return refused("security option %q is refused", o)
		}
	}
	if hc.CgroupParent != "" {
		return refused("a cgroup parent (%s) is refused", hc.CgroupParent)
	}
	if hc.Runtime != "" && hc.Runtime != "runc" && hc.Runtime != "nvidia" {
		return refused("runtime %q is refused", hc.Runtime)
	}
	if hc.VolumeDriver != "" {
		return refused("volume driver %q is refused", hc.VolumeDriver)
	}
	for _, v := range hc.VolumesFrom {
		other, _, _ := strings.Cut(v, ":")
		if _, err := s.owned(ctx, c, route{version: rt.version}, other); err != nil {
			return refused("volumes from container %s: %s", other, err.Error())
		}
	}
	for _, b := range hc.Binds {
		src, _, _ := strings.Cut(b, ":")
		if strings.HasPrefix(src, "/") {
			if err := s.mountable(c, src); err != nil {
				return err
			}
		}
	}
	for _, m := range hc.Mounts {
		switch m.Type {
		case mount.TypeBind:
			if err := s.mountable(c, m.Source); err != nil {
				return err
			}
		case mount.TypeVolume:
			if m.VolumeOptions != nil && m.VolumeOptions.DriverConfig != nil && (m.VolumeOptions.DriverConfig.Name != "" || len(m.VolumeOptions.DriverConfig.Options) > 0) {
				return refused("volume driver options on mount %s are refused", m.Target)
			}
		case mount.TypeTmpfs, "":
		default:
			return refused("a %s mount is refused", m.Type)
		}
	}
	return nil
}

// mountable refuses a host path outside the caller's home and the allowed prefixes, after
// resolving symbolic links (a link in the home directory to /etc is /etc).
func (s *Server) mountable(c Caller, src string) error {
	p := resolved(filepath.Clean(src))
	allowed := slices.Clone(s.AllowMounts)
	if c.Home != "" && c.Home != "/" {
		allowed = append(allowed, resolved(filepath.Clean(c.Home)))
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

// resolved resolves the symbolic links of the longest part of p that exists.
func resolved(p string) string {
	rest := ""
	for cur := p; ; {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			return filepath.Join(r, rest)
		}
		if _, err := os.Lstat(cur); err == nil {
			return filepath.Join(cur, rest) // a dangling link: as it stands
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return p
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
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
	if forms > 1 {
		return g, refused("GPUs asked for in %d ways at once; ask in one (--gpus is the usual one)", forms)
	}
	if g.All {
		g.Count, g.Devices = 0, nil
	}
	return g, nil
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

// bindSources are the host paths a container's bind mounts name (Binds with an absolute
// source, and Mounts of type bind).
func bindSources(hc *container.HostConfig) []string {
	var out []string
	for _, b := range hc.Binds {
		if src, _, _ := strings.Cut(b, ":"); strings.HasPrefix(src, "/") {
			out = append(out, src)
		}
	}
	for _, m := range hc.Mounts {
		if m.Type == mount.TypeBind {
			out = append(out, m.Source)
		}
	}
	return out
}

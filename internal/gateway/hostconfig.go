package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"

	"github.com/gpuwarden/gpuwarden/internal/hostpath"
)

// A non-admin's create is an allow-list: every HostConfig field is checked (and bounded, or
// set by the gateway) by checkHost below, and a field it does not name is refused, so a field
// a newer client sends is refused until someone decides what it reaches
// (../shared/reference/gateway-fields.md is the checklist).

// Bounds on what a create may ask of the machine beside its policy.
const (
	// maxCPUShares is the engine's default weight: a container may ask less, never more.
	maxCPUShares = 1024
	// maxBlkioWeight is the kernel's default weight.
	maxBlkioWeight = 500
	// maxLogFiles and maxLogSize bound a container's own log files.
	maxLogFiles = 10
	maxLogSize  = 1 << 30
)

// checkHost checks a non-admin's HostConfig field by field, rewriting what it checked into
// what the engine must use (resolved mount sources), and refuses any field it does not know.
func (s *Server) checkHost(ctx context.Context, c Caller, rt route, hc *container.HostConfig) error {
	rest := *hc // what no check below accounts for; each clears what it checked
	if err := s.checkMounts(ctx, c, rt, hc); err != nil {
		return err
	}
	rest.Binds, rest.Mounts, rest.VolumesFrom, rest.Tmpfs = nil, nil, nil, nil
	if hc.MaskedPaths != nil || hc.ReadonlyPaths != nil {
		return refused("MaskedPaths and ReadonlyPaths are refused (--security-opt systempaths=unconfined would unmask the host's /proc and /sys): the engine's defaults apply")
	}
	if hc.Privileged {
		return refused("a privileged container is refused")
	}
	rest.Privileged = false
	if len(hc.CapAdd) > 0 {
		return refused("added capabilities (%s) are refused", strings.Join(hc.CapAdd, ", "))
	}
	rest.CapDrop = nil
	for _, o := range hc.SecurityOpt {
		if o != noNewPrivileges && o != "no-new-privileges:true" && o != "no-new-privileges=true" {
			return refused("security option %q is refused: only no-new-privileges (which the gateway sets on every container)", o)
		}
	}
	rest.SecurityOpt = nil
	if err := s.checkNamespaces(ctx, c, rt, hc); err != nil {
		return err
	}
	rest.PidMode, rest.IpcMode, rest.UTSMode, rest.NetworkMode, rest.CgroupnsMode = "", "", "", "", ""
	for _, l := range hc.Links {
		name, _, _ := strings.Cut(l, ":")
		if _, err := s.owned(ctx, c, route{version: rt.version}, name); err != nil {
			return refused("a link to container %s is refused: %s", name, err.Error())
		}
	}
	rest.Links = nil
	// Devices and device requests are GPUs, which gpuRequest reads and bindGPUs rewrites.
	for _, d := range hc.Devices {
		if !nvidiaDevice.MatchString(d.PathOnHost) && !nvidiaAux.MatchString(d.PathOnHost) {
			return refused("device %s is refused: only GPUs, through an allocation", d.PathOnHost)
		}
	}
	rest.Devices, rest.DeviceRequests = nil, nil
	if hc.Runtime != "" && hc.Runtime != "runc" && hc.Runtime != "nvidia" {
		return refused("runtime %q is refused", hc.Runtime)
	}
	rest.Runtime = ""
	rest.GroupAdd = nil // ownGroups checks them
	if hc.OomScoreAdj < 0 || hc.OomScoreAdj > 1000 {
		return refused("an OOM score adjustment of %d is refused: 0 to 1000 (a negative one protects a container at others' expense)", hc.OomScoreAdj)
	}
	rest.OomScoreAdj = 0
	if err := checkResources(c, &hc.Resources); err != nil {
		return err
	}
	rest.Resources = container.Resources{}
	if err := checkSysctls(hc); err != nil {
		return err
	}
	rest.Sysctls = nil
	if err := checkPorts(hc.PortBindings); err != nil {
		return err
	}
	if hc.PublishAllPorts {
		return refused("publishing every exposed port (-P) is refused: it publishes on every address of the host; publish the ones you need with -p PORT:PORT (on 127.0.0.1 unless you give an address)")
	}
	rest.PortBindings, rest.PublishAllPorts = nil, false
	if err := checkLogConfig(hc.LogConfig); err != nil {
		return err
	}
	rest.LogConfig = container.LogConfig{}
	if hc.Isolation != "" && hc.Isolation != "default" {
		return refused("isolation %q is refused", hc.Isolation)
	}
	rest.Isolation = ""
	// The container alone: allowed as asked.
	rest.RestartPolicy, rest.AutoRemove, rest.ConsoleSize = container.RestartPolicy{}, false, [2]uint{}
	rest.DNS, rest.DNSOptions, rest.DNSSearch, rest.ExtraHosts = nil, nil, nil, nil
	rest.ReadonlyRootfs, rest.Init, rest.Umask, rest.ShmSize = false, nil, nil, 0
	if f := setField(reflect.ValueOf(rest), ""); f != "" {
		return refused("HostConfig.%s is refused: the gateway lets users set only the fields it checks (the user guide lists them); ask an admin", f)
	}
	return nil
}

// setField names the first field of v that is not its zero value, or "".
func setField(v reflect.Value, prefix string) string {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			if name := setField(v.Field(i), prefix); name != "" {
				return name
			}
			continue
		}
		if !v.Field(i).IsZero() {
			return prefix + f.Name
		}
	}
	return ""
}

// checkMounts checks every mount: bind sources inside what the caller may mount (rewritten to
// the path they resolve to now, which every start checks again), named volumes and volumes
// from containers the caller's, tmpfs as asked.
func (s *Server) checkMounts(ctx context.Context, c Caller, rt route, hc *container.HostConfig) error {
	if hc.VolumeDriver != "" {
		return refused("volume driver %q is refused", hc.VolumeDriver)
	}
	if hc.ContainerIDFile != "" {
		return refused("a container ID file on the host (%s) is refused: docker --cidfile writes it itself", hc.ContainerIDFile)
	}
	for _, v := range hc.VolumesFrom {
		other, _, _ := strings.Cut(v, ":")
		if _, err := s.owned(ctx, c, route{version: rt.version}, other); err != nil {
			return refused("volumes from container %s: %s", other, err.Error())
		}
	}
	for i, b := range hc.Binds {
		parts := strings.Split(b, ":")
		if len(parts) < 2 || len(parts) > 3 {
			return refused("volume %q is refused: want SOURCE:TARGET[:OPTIONS]", b)
		}
		if len(parts) == 3 {
			for _, o := range strings.Split(parts[2], ",") {
				if o != "ro" && o != "rw" && o != "nocopy" && o != "private" && o != "rprivate" {
					return refused("volume option %q of %s is refused: ro, rw and nocopy are allowed", o, b)
				}
			}
		}
		if strings.HasPrefix(parts[0], "/") {
			src, err := s.mountSource(c, parts[0])
			if err != nil {
				return err
			}
			parts[0] = src
			hc.Binds[i] = strings.Join(parts, ":")
			continue
		}
		if err := s.ownVolume(ctx, c, rt, parts[0]); err != nil {
			return err
		}
	}
	for i := range hc.Mounts {
		m := &hc.Mounts[i]
		if m.ImageOptions != nil || m.ClusterOptions != nil {
			return refused("mount options of %s are refused", m.Target)
		}
		switch m.Type {
		case mount.TypeBind:
			if m.VolumeOptions != nil || m.TmpfsOptions != nil {
				return refused("volume or tmpfs options on bind mount %s are refused", m.Target)
			}
			if o := m.BindOptions; o != nil {
				if o.CreateMountpoint {
					return refused("a bind mount that creates its source (%s) is refused: make the directory yourself", m.Source)
				}
				if o.Propagation != "" && o.Propagation != mount.PropagationPrivate && o.Propagation != mount.PropagationRPrivate {
					return refused("bind propagation %q on %s is refused", o.Propagation, m.Target)
				}
			}
			src, err := s.mountSource(c, m.Source)
			if err != nil {
				return err
			}
			m.Source = src
		case mount.TypeVolume:
			if m.BindOptions != nil || m.TmpfsOptions != nil {
				return refused("bind or tmpfs options on volume mount %s are refused", m.Target)
			}
			if o := m.VolumeOptions; o != nil {
				// The CLI sends an empty driver with volume-nocopy: only a driver or its options are refused.
				if d := o.DriverConfig; d != nil && (d.Name != "" && d.Name != "local" || len(d.Options) > 0) {
					return refused("volume driver options on mount %s are refused", m.Target)
				}
				if o.Subpath != "" && (filepath.IsAbs(o.Subpath) || strings.Contains(o.Subpath, "..")) {
					return refused("volume subpath %q on %s is refused: a relative path inside the volume", o.Subpath, m.Target)
				}
			}
			if m.Source != "" { // empty: an anonymous volume of the container's own
				if err := s.ownVolume(ctx, c, rt, m.Source); err != nil {
					return err
				}
			}
			if m.VolumeOptions != nil && m.VolumeOptions.Labels != nil {
				// Labels a new volume is made with: the owner is the caller, whatever they say.
				m.VolumeOptions.Labels[labelUser] = c.Name
			}
		case mount.TypeTmpfs:
			if m.Source != "" || m.BindOptions != nil || m.VolumeOptions != nil {
				return refused("a tmpfs mount (%s) takes no source and no bind or volume options", m.Target)
			}
		default:
			return refused("a %q mount is refused: bind, volume and tmpfs are allowed", m.Type)
		}
	}
	return nil
}

// mountSource checks a bind source and returns the path it resolves to, which is what the
// engine mounts: a symbolic link swapped in later changes nothing the create declared.
func (s *Server) mountSource(c Caller, src string) (string, error) {
	if err := s.mountable(c, src); err != nil {
		return "", err
	}
	return hostpath.Resolve(filepath.Clean(src)), nil
}

// ownVolume checks that a named volume is the caller's; one that does not exist yet is made
// the caller's first (the engine would make it with no owner).
func (s *Server) ownVolume(ctx context.Context, c Caller, rt route, name string) error {
	lbl, found, err := s.objectLabels(ctx, rt.version, "volume", name)
	if err != nil {
		return err
	}
	if !found {
		if err := s.up.post(ctx, rt.version+"/volumes/create", map[string]any{
			"Name": name, "Labels": map[string]string{labelUser: c.Name}}); err != nil {
			return fmt.Errorf("creating volume %s: %w", name, err)
		}
		s.giveVolume(ctx, c, rt.version, name)
		if lbl, found, err = s.objectLabels(ctx, rt.version, "volume", name); err != nil {
			return err
		} else if !found {
			return fmt.Errorf("volume %s: not there after creating it", name)
		}
	}
	if owner := lbl[labelUser]; owner != c.Name {
		return &refusal{status: 403, owner: owner, msg: fmt.Sprintf("volume %s does not belong to %s: mount your own volumes (docker volume ls)", name, c.Name)}
	}
	return nil
}

// checkNamespaces refuses the host's namespaces and joining another user's container's.
func (s *Server) checkNamespaces(ctx context.Context, c Caller, rt route, hc *container.HostConfig) error {
	if hc.UsernsMode != "" {
		return refused("user namespace mode %q is refused: it would leave the engine's user-namespace remapping", hc.UsernsMode)
	}
	if hc.Cgroup != "" {
		return refused("cgroup %q is refused", hc.Cgroup)
	}
	if m := string(hc.CgroupnsMode); m != "" && m != "private" {
		return refused("cgroup namespace %q is refused", m)
	}
	for _, ns := range []struct{ name, mode string }{
		{"PID", string(hc.PidMode)}, {"IPC", string(hc.IpcMode)}, {"network", string(hc.NetworkMode)}, {"UTS", string(hc.UTSMode)},
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
	if m := string(hc.PidMode); m != "" && !strings.HasPrefix(m, "container:") {
		return refused("PID mode %q is refused", m)
	}
	if m := string(hc.UTSMode); m != "" {
		return refused("UTS mode %q is refused", m)
	}
	switch m := string(hc.IpcMode); {
	case m == "", m == "private", m == "shareable", m == "none", strings.HasPrefix(m, "container:"):
	default:
		return refused("IPC mode %q is refused", m)
	}
	if m := string(hc.NetworkMode); !strings.HasPrefix(m, "container:") {
		return s.ownNetwork(ctx, c, rt, m)
	}
	return nil
}

// checkEndpoints checks the networks a create joins: each the caller's or shared, with no
// driver options and links only to the caller's containers.
func (s *Server) checkEndpoints(ctx context.Context, c Caller, rt route, nc *network.NetworkingConfig) error {
	if nc == nil {
		return nil
	}
	for name, ep := range nc.EndpointsConfig {
		if err := s.ownNetwork(ctx, c, rt, name); err != nil {
			return err
		}
		if ep == nil {
			continue
		}
		if len(ep.DriverOpts) > 0 {
			return refused("driver options on network %s are refused", name)
		}
		for _, l := range ep.Links {
			other, _, _ := strings.Cut(l, ":")
			if _, err := s.owned(ctx, c, route{version: rt.version}, other); err != nil {
				return refused("a link to container %s is refused: %s", other, err.Error())
			}
		}
	}
	return nil
}

// ownNetwork allows the engine's default networks and the caller's own. Another user's is
// refused, and so is one no user owns (an admin's): a container there could answer to the
// names (aliases) others' containers look up.
func (s *Server) ownNetwork(ctx context.Context, c Caller, rt route, name string) error {
	switch name {
	case "", "default", "bridge", "none":
		return nil
	case "host":
		return refused("the host's network namespace is refused")
	}
	obj, found, err := s.object(ctx, rt.version, "network", name)
	if err != nil {
		return err
	}
	owner := obj.Labels[labelUser]
	if !found || owner != "" && owner != c.Name && !obj.namedBy(name) {
		// Another user's network behind an ID prefix is answered as a missing one.
		return &refusal{status: 404, owner: owner, msg: "network " + name + " not found"}
	}
	if owner != c.Name {
		return &refusal{status: 403, owner: owner, msg: fmt.Sprintf("network %s does not belong to %s: join your own networks (docker network ls) or the default bridge", name, c.Name)}
	}
	return nil
}

// rlimits are the docker ulimit names and the lines of /proc/PID/limits that name them.
var rlimits = map[string]string{
	"core": "Max core file size", "cpu": "Max cpu time", "data": "Max data size", "fsize": "Max file size",
	"locks": "Max file locks", "memlock": "Max locked memory", "msgqueue": "Max msgqueue size", "nice": "Max nice priority",
	"nofile": "Max open files", "nproc": "Max processes", "rss": "Max resident set", "rtprio": "Max realtime priority",
	"rttime": "Max realtime timeout", "sigpending": "Max pending signals", "stack": "Max stack size", "as": "Max address space",
}

// procRoot is where the callers' processes are read (their resource limits).
var procRoot = "/proc"

// hardLimit is a process's hard limit of a resource, as /proc/PID/limits gives it (which, unlike
// prlimit(2), needs no privilege over the process); unlimited is the largest uint64.
func hardLimit(pid int, line string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "limits"))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(l, line)
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 2 {
			break
		}
		if f[1] == "unlimited" {
			return math.MaxUint64, nil
		}
		return strconv.ParseUint(f[1], 10, 64)
	}
	return 0, fmt.Errorf("no %q in %s/%d/limits", line, procRoot, pid)
}

// checkResources bounds what a create or an update asks of the machine beside the policy's CPU
// and memory maxima (limits.check): weights no higher than the default, no real-time
// scheduling, no OOM-killer exemption, ulimits within the caller's own hard limits, and no
// device throttles or Windows settings.
func checkResources(c Caller, r *container.Resources) error {
	if r.CPUShares < 0 || r.CPUShares > maxCPUShares {
		return refused("CPU shares of %d are refused: at most %d, the default weight", r.CPUShares, maxCPUShares)
	}
	if r.BlkioWeight > maxBlkioWeight {
		return refused("a block I/O weight of %d is refused: at most %d, the default", r.BlkioWeight, maxBlkioWeight)
	}
	if r.CPURealtimePeriod != 0 || r.CPURealtimeRuntime != 0 {
		return refused("real-time CPU scheduling is refused")
	}
	if r.OomKillDisable != nil && *r.OomKillDisable {
		return refused("disabling the OOM killer is refused: the container would hold its memory at others' expense")
	}
	if r.CgroupParent != "" {
		return refused("a cgroup parent (%s) is refused", r.CgroupParent)
	}
	if len(r.DeviceCgroupRules) > 0 {
		return refused("device cgroup rules are refused")
	}
	if len(r.BlkioWeightDevice) > 0 || len(r.BlkioDeviceReadBps) > 0 || len(r.BlkioDeviceWriteBps) > 0 || len(r.BlkioDeviceReadIOps) > 0 || len(r.BlkioDeviceWriteIOps) > 0 {
		return refused("per-device block I/O settings are refused")
	}
	if r.CPUCount != 0 || r.CPUPercent != 0 || r.IOMaximumIOps != 0 || r.IOMaximumBandwidth != 0 {
		return refused("Windows resource settings are refused")
	}
	if r.MemorySwappiness != nil && (*r.MemorySwappiness < -1 || *r.MemorySwappiness > 100) {
		return refused("memory swappiness %d is refused: 0 to 100", *r.MemorySwappiness)
	}
	for _, u := range r.Ulimits {
		if u == nil {
			continue
		}
		line, ok := rlimits[u.Name]
		if !ok {
			return refused("ulimit %q is refused: not a resource limit the gateway knows", u.Name)
		}
		own, err := hardLimit(c.PID, line)
		if err != nil {
			return refused("ulimit %s is refused: your own limits cannot be read (%v)", u.Name, err)
		}
		if u.Soft < 0 || u.Hard < 0 || uint64(u.Soft) > own || uint64(u.Hard) > own {
			return refused("ulimit %s=%d:%d is refused: over your own hard limit, %d (ulimit -H)", u.Name, u.Soft, u.Hard, own)
		}
	}
	return nil
}

// checkSysctls allows only the container's own network namespace's settings.
func checkSysctls(hc *container.HostConfig) error {
	for k := range hc.Sysctls {
		if !strings.HasPrefix(k, "net.") || hc.NetworkMode.IsContainer() {
			return refused("sysctl %s is refused: only net.* settings of the container's own network namespace", k)
		}
	}
	return nil
}

// checkPorts refuses host ports below 1024 (a user's shell cannot bind them), and publishes
// on the loopback address where no address is given: the engine's published ports pass the
// host's firewall, which a user's own listening socket does not.
func checkPorts(pm network.PortMap) error {
	for port, bindings := range pm {
		for i := range bindings {
			b := &bindings[i]
			if !b.HostIP.IsValid() {
				b.HostIP = netip.AddrFrom4([4]byte{127, 0, 0, 1})
			}
			if b.HostPort == "" || b.HostPort == "0" {
				continue
			}
			lo, _, _ := strings.Cut(b.HostPort, "-")
			n, err := strconv.Atoi(lo)
			if err != nil || n < 1024 {
				return refused("host port %s (for %s) is refused: ports below 1024 are the system's; publish on 1024 or above", b.HostPort, port)
			}
		}
	}
	return nil
}

// logOptions are the options of the json-file and local log drivers a user may set.
var logOptions = map[string]bool{"max-size": true, "max-file": true, "compress": true, "mode": true, "max-buffer-size": true,
	"labels": true, "labels-regex": true, "env": true, "env-regex": true, "tag": true}

// checkLogConfig allows the engine's file log drivers with bounded files; the others send
// logs to addresses or files the engine reaches as root.
func checkLogConfig(lc container.LogConfig) error {
	if lc.Type != "" && lc.Type != "json-file" && lc.Type != "local" {
		return refused("log driver %q is refused: json-file and local are allowed (ask an admin for others)", lc.Type)
	}
	for k, v := range lc.Config {
		if !logOptions[k] {
			return refused("log option %q is refused", k)
		}
		switch k {
		case "max-file":
			if n, err := strconv.Atoi(v); err != nil || n < 1 || n > maxLogFiles {
				return refused("log option max-file=%s is refused: 1 to %d", v, maxLogFiles)
			}
		case "max-size":
			if n, ok := parseSize(v); !ok || n > maxLogSize {
				return refused("log option max-size=%s is refused: at most 1g", v)
			}
		}
	}
	return nil
}

// parseSize reads a size as docker's log options write it (10m, 1g, 512k, 100).
func parseSize(v string) (int64, bool) {
	s := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(v)), "b")
	mult := int64(1)
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'k':
			mult, s = 1<<10, s[:n-1]
		case 'm':
			mult, s = 1<<20, s[:n-1]
		case 'g':
			mult, s = 1<<30, s[:n-1]
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, false
	}
	return n * mult, true
}

// hostFields are the JSON names of HostConfig's fields (its Resources' among them).
var hostFields = func() []string {
	var names []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Anonymous && f.Type.Kind() == reflect.Struct {
				walk(f.Type)
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" {
				name = f.Name
			}
			names = append(names, name)
		}
	}
	walk(reflect.TypeOf(container.HostConfig{}))
	return names
}()

// unknownHostField names a key of a create's HostConfig that is no HostConfig field the
// gateway knows (decoding would drop it unseen, so it is refused instead), or "".
func unknownHostField(body []byte) string {
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil {
		return "" // decodeJSON says what is wrong with it
	}
	for k, v := range top {
		if !strings.EqualFold(k, "HostConfig") {
			continue
		}
		var hc map[string]json.RawMessage
		if json.Unmarshal(v, &hc) != nil {
			continue
		}
		for key := range hc {
			if !slices.ContainsFunc(hostFields, func(n string) bool { return strings.EqualFold(n, key) }) {
				return key
			}
		}
	}
	return ""
}

// giveVolume makes a new, empty local volume's directory the caller's, as their containers run
// as them (the engine makes it root's). Where the gateway cannot reach the engine's volumes (it
// runs elsewhere) the volume stays as the engine made it.
func (s *Server) giveVolume(ctx context.Context, c Caller, version, name string) {
	if s.anyUser(ctx, c) {
		return // who the containers run as is theirs to say
	}
	var v struct{ Driver, Mountpoint string }
	if found, err := s.inspect(ctx, version+"/volumes/"+url.PathEscape(name), "volume "+name, &v); !found || err != nil || v.Driver != "local" {
		return
	}
	fi, err := os.Lstat(v.Mountpoint)
	if err != nil || !fi.IsDir() {
		return
	}
	if entries, err := os.ReadDir(v.Mountpoint); err != nil || len(entries) > 0 {
		return
	}
	_ = os.Lchown(v.Mountpoint, c.UID, c.GID)
}

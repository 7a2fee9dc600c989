// Package proc reads what gpuwarden needs about host processes from a /proc tree: the
// container a process runs in (from its cgroup, both cgroup v1 and v2 layouts), its real
// user and its command. The root is configurable so tests can use fixture trees.
package proc

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// FS is a /proc tree.
type FS struct {
	// Root is the tree's root; /proc when empty.
	Root string
	// LookupUser names a UID; the host's user database when nil.
	LookupUser func(uid string) (string, error)
}

// Process is what is known of one process.
type Process struct {
	PID int
	// ContainerID is the full ID of the container the process runs in, "" on the host.
	ContainerID string
	// UID is the real user ID, User its login name (the UID when it has none).
	UID, User string
	// Command is the executable's name; CmdLine its arguments joined by spaces.
	Command, CmdLine string
}

// containerID finds a container ID in a cgroup path: /docker/<id> (cgroupfs driver),
// /system.slice/docker-<id>.scope (systemd driver, also under a custom cgroup parent),
// and the containerd / CRI-O / podman forms.
var containerID = regexp.MustCompile(`(?:^|/)(?:docker-|cri-containerd-|crio-|libpod-)?([0-9a-f]{64})(?:\.scope)?(?:/|$)`)

// Read returns what is known of pid; an error when the process does not exist.
func (fs FS) Read(pid int) (Process, error) {
	p := Process{PID: pid}
	dir := filepath.Join(fs.root(), strconv.Itoa(pid))
	cg, err := os.ReadFile(filepath.Join(dir, "cgroup"))
	if err != nil {
		return Process{}, fmt.Errorf("reading the cgroup of process %d: %w", pid, err)
	}
	p.ContainerID = ContainerFromCgroup(cg)
	if status, err := os.ReadFile(filepath.Join(dir, "status")); err == nil {
		p.UID = realUID(status)
	}
	if p.UID != "" {
		p.User = p.UID
		lookup := fs.LookupUser
		if lookup == nil {
			lookup = func(uid string) (string, error) {
				u, err := user.LookupId(uid)
				if err != nil {
					return "", err
				}
				return u.Username, nil
			}
		}
		if name, err := lookup(p.UID); err == nil && name != "" {
			p.User = name
		}
	}
	// The name from argv[0] is whole; comm is cut at 15 bytes but is there for kernel threads
	// and processes that rewrote their arguments.
	if cmd, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil {
		p.CmdLine = strings.TrimSpace(string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))
		if f := strings.Fields(p.CmdLine); len(f) > 0 {
			p.Command = filepath.Base(f[0])
		}
	}
	if comm, err := os.ReadFile(filepath.Join(dir, "comm")); err == nil && p.Command == "" {
		p.Command = strings.TrimSpace(string(comm))
	}
	return p, nil
}

func (fs FS) root() string {
	if fs.Root == "" {
		return "/proc"
	}
	return fs.Root
}

// ContainerFromCgroup returns the container ID in the contents of /proc/PID/cgroup, ""
// when the process runs on the host. Every hierarchy is looked at: under cgroup v1 the
// ID shows in each controller's line, under v2 in the single "0::" line.
func ContainerFromCgroup(data []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		// hierarchy-ID:controllers:path; the path may itself hold colons.
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if m := containerID.FindAllStringSubmatch(parts[2], -1); len(m) > 0 {
			return m[len(m)-1][1]
		}
	}
	return ""
}

func realUID(status []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Uid:"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				return f[0]
			}
		}
	}
	return ""
}

// driverDaemons are processes of the GPU driver and its tools, never user work.
var driverDaemons = map[string]bool{
	"nvidia-persistenced": true, "nv-hostengine": true, "dcgm": true, "dcgmi": true, "nvidia-smi": true,
	"Xorg": true, "X": true, "Xwayland": true, "nvidia-cuda-mps-server": true, "nvidia-cuda-mps-control": true,
	"nvidia-fabricmanager": true, "nv-fabricmanager": true, "dcgm-exporter": true,
}

// IsDriverDaemon reports whether a command is a driver daemon (persistenced, Xorg, dcgm, …).
// The kernel cuts comm at 15 bytes, so a 15-byte name matches a daemon it is the start of.
func IsDriverDaemon(command string) bool {
	if driverDaemons[command] {
		return true
	}
	if len(command) == 15 {
		for d := range driverDaemons {
			if strings.HasPrefix(d, command) {
				return true
			}
		}
	}
	return false
}

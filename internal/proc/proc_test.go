package proc

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const id = "3f2a9c1b7d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8"

// writeProc makes a fixture /proc/<pid> with the given cgroup file.
func writeProc(t *testing.T, root string, pid int, cgroup, uid, cmdline, comm string) {
	t.Helper()
	dir := filepath.Join(root, strconv.Itoa(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{
		"cgroup":  cgroup,
		"status":  "Name:\t" + comm + "\nState:\tS (sleeping)\nUid:\t" + uid + "\t" + uid + "\t" + uid + "\t" + uid + "\nGid:\t0\t0\t0\t0\n",
		"cmdline": cmdline,
		"comm":    comm + "\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRead(t *testing.T) {
	root := t.TempDir()
	users := map[string]string{"1000": "alice", "0": "root"}
	fs := FS{Root: root, LookupUser: func(uid string) (string, error) {
		if u, ok := users[uid]; ok {
			return u, nil
		}
		return "", errors.New("unknown uid")
	}}
	tests := []struct {
		name   string
		cgroup string
		uid    string
		want   Process
	}{
		{"cgroup v2, systemd driver", "0::/system.slice/docker-" + id + ".scope\n", "1000",
			Process{ContainerID: id, UID: "1000", User: "alice"}},
		{"cgroup v2, cgroupfs driver", "0::/docker/" + id + "\n", "0",
			Process{ContainerID: id, UID: "0", User: "root"}},
		{"cgroup v2, DS01 slice as cgroup parent", "0::/ds01.slice/ds01-student-alice.slice/docker-" + id + ".scope\n", "1000",
			Process{ContainerID: id, UID: "1000", User: "alice"}},
		{"cgroup v2, nested child cgroup", "0::/system.slice/docker-" + id + ".scope/init\n", "1000",
			Process{ContainerID: id, UID: "1000", User: "alice"}},
		{"cgroup v1, cgroupfs driver", "12:pids:/docker/" + id + "\n11:memory:/docker/" + id + "\n1:name=systemd:/docker/" + id + "\n", "1000",
			Process{ContainerID: id, UID: "1000", User: "alice"}},
		{"cgroup v1, systemd driver", "10:devices:/system.slice/docker-" + id + ".scope\n1:name=systemd:/system.slice/docker-" + id + ".scope\n", "1000",
			Process{ContainerID: id, UID: "1000", User: "alice"}},
		{"cgroup v1, host session", "12:pids:/user.slice/user-1000.slice/session-3.scope\n1:name=systemd:/user.slice/user-1000.slice/session-3.scope\n", "1000",
			Process{UID: "1000", User: "alice"}},
		{"cgroup v2, host service", "0::/system.slice/ssh.service\n", "2000",
			Process{UID: "2000", User: "2000"}},
		{"cgroup v2, containerd (Kubernetes) container", "0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-" + id + ".scope\n", "1000",
			Process{ContainerID: id, UID: "1000", User: "alice"}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pid := 100 + i
			writeProc(t, root, pid, tc.cgroup, tc.uid, "/usr/bin/python3\x00train.py\x00--epochs\x003\x00", "python3")
			got, err := fs.Read(pid)
			if err != nil {
				t.Fatal(err)
			}
			tc.want.PID, tc.want.Command, tc.want.CmdLine = pid, "python3", "/usr/bin/python3 train.py --epochs 3"
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want,+got):\n%s", diff)
			}
		})
	}
	if _, err := fs.Read(99999); err == nil {
		t.Error("reading a process that does not exist: no error")
	}
}

func TestCommandFromCommWhenNoArguments(t *testing.T) {
	root := t.TempDir()
	writeProc(t, root, 7, "0::/\n", "0", "", "nvidia-persiste")
	p, err := FS{Root: root, LookupUser: func(string) (string, error) { return "root", nil }}.Read(7)
	if err != nil {
		t.Fatal(err)
	}
	if p.Command != "nvidia-persiste" || p.ContainerID != "" {
		t.Errorf("got %+v", p)
	}
}

func TestRealProcOfThisProcess(t *testing.T) {
	p, err := FS{}.Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if p.UID != strconv.Itoa(os.Getuid()) || p.Command == "" {
		t.Errorf("this process: %+v", p)
	}
}

func TestIsDriverDaemon(t *testing.T) {
	for cmd, want := range map[string]bool{"nvidia-persistenced": true, "Xorg": true, "nv-hostengine": true, "dcgmi": true,
		"python3": false, "nvidia-smi": true, "": false, "nvidia-persiste": true, "python3-trainer": false} {
		if got := IsDriverDaemon(cmd); got != want {
			t.Errorf("IsDriverDaemon(%q) = %v, want %v", cmd, got, want)
		}
	}
}

func FuzzContainerFromCgroup(f *testing.F) {
	f.Add([]byte("0::/system.slice/docker-" + id + ".scope\n"))
	f.Add([]byte("12:pids:/docker/" + id + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got := ContainerFromCgroup(data)
		if got != "" && len(got) != 64 {
			t.Fatalf("container ID %q is not 64 hex digits", got)
		}
	})
}

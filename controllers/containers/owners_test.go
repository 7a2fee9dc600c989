package containers

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/actions"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/labels"
	"github.com/gpuwarden/gpuwarden/internal/proc"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// fakeProc writes /proc/PID/{cgroup,status} for a process of uid under a temporary root.
func fakeProc(t *testing.T, pid, uid string) proc.FS {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, pid)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(dir, "cgroup"), []byte("0::/system.slice/docker-abc.scope\n"), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "status"), []byte("Name:\tpython\nUid:\t"+uid+"\t"+uid+"\t"+uid+"\t"+uid+"\n"), 0o644)
	return proc.FS{Root: root, LookupUser: func(u string) (string, error) {
		return map[string]string{"1000": "irene", "0": "root"}[u], nil
	}}
}

// TestRecordAndPolicyAgreeOnTheOwner: for every way labels name (or do not name) an owner,
// and for a process's user where no label tells, the owner in the container's audit record
// is the user whose policy is chosen for it — one rule, not four.
func TestRecordAndPolicyAgreeOnTheOwner(t *testing.T) {
	cases := []struct {
		name   string
		labels map[string]string
		pid    int
		uid    string
		want   string
	}{
		{"gpuwarden label first", map[string]string{gpuwardenv1alpha1.LabelUser: "alice", labels.DS01User: "bob"}, 0, "", "alice"},
		{"DS01 label", map[string]string{labels.DS01User: "bob", labels.AIMEUser: "carol"}, 0, "", "bob"},
		{"AIME label", map[string]string{labels.AIMEUser: "carol"}, 0, "", "carol"},
		{"JupyterHub", map[string]string{labels.JupyterUser: "dave"}, 0, "", "dave"},
		{"devcontainer folder", map[string]string{labels.DevcontainerDir: "/home/erin/projects/x"}, 0, "", "erin"},
		{"compose working dir", map[string]string{labels.ComposeProject: "web", labels.ComposeWorkingDir: "/home/frank/web"}, 0, "", "frank"},
		{"invalid user name skipped", map[string]string{gpuwardenv1alpha1.LabelUser: "../etc", labels.DS01User: "gina"}, 0, "", "gina"},
		{"only an allocation label: no owner", map[string]string{gpuwardenv1alpha1.LabelAllocation: "hank-1"}, 0, "", gpuwardenv1alpha1.UnknownUser},
		{"nothing", map[string]string{"other": "x"}, 0, "", gpuwardenv1alpha1.UnknownUser},
		{"no label, a user's process", nil, 4242, "1000", "irene"},
		{"no label, a root process", nil, 4242, "0", gpuwardenv1alpha1.UnknownUser},
		{"a label beats the process", map[string]string{gpuwardenv1alpha1.LabelUser: "alice"}, 4242, "1000", "alice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			owners := &containerstore.Owners{Proc: fakeProc(t, "4242", tc.uid)}
			c := docker.Container{ID: "0123456789abcdef", Name: "c", Labels: tc.labels, PID: tc.pid, State: docker.StateRunning}

			rec := &testutil.AuditRecorder{}
			w := &Watcher{Audit: rec, Owners: owners}
			w.record(context.Background(), audit.ContainerStart, c, "")
			recorded := rec.Events()[0].User

			var policies []client.Object
			for _, u := range []string{"alice", "bob", "carol", "dave", "erin", "frank", "gina", "hank", "irene", gpuwardenv1alpha1.UnknownUser} {
				policies = append(policies, &gpuwardenv1alpha1.ContainerPolicy{ObjectMeta: metav1.ObjectMeta{Name: "for-" + u},
					Spec: gpuwardenv1alpha1.ContainerPolicySpec{Selector: gpuwardenv1alpha1.PolicySelector{Users: []string{u}}}})
			}
			r := &Reconciler{Owners: owners, Actions: &actions.Actions{Client: fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(policies...).Build(),
				Groups: resolve.StaticGroups{}, Clock: clocktesting.NewFakeClock(t0)}}
			p, err := r.policy(context.Background(), c, r.Owners.Of(c))
			if err != nil {
				t.Fatal(err)
			}
			chosen := strings.TrimPrefix(strings.Join(p.Matched, ","), "for-")
			if recorded != tc.want {
				t.Errorf("the audit record names %q, want %q", recorded, tc.want)
			}
			if tc.want != gpuwardenv1alpha1.UnknownUser && chosen != recorded {
				t.Errorf("the record names %q but the policy chosen is for %q", recorded, chosen)
			}
			if tc.want == gpuwardenv1alpha1.UnknownUser && chosen != "" {
				t.Errorf("no owner, yet the policy for %q was chosen", chosen)
			}
		})
	}
}

package access

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/gpuwarden/gpuwarden/internal/controlplane/pki"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// groupDB is a host group database a test changes: group → listed members, and users
// whose primary group a group is.
type groupDB struct {
	mu      sync.Mutex
	listed  map[string][]string
	primary map[string]string // user → primary group
}

func (g *groupDB) Members(group string) ([]string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.listed[group]), nil
}

func (g *groupDB) IsMember(name, group string) (bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.primary[name] == group || slices.Contains(g.listed[group], name), nil
}

func (g *groupDB) remove(group, name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.listed[group] = slices.DeleteFunc(g.listed[group], func(m string) bool { return m == name })
}

func newClient(t *testing.T, objs ...client.Object) client.Client {
	t.Helper()
	s := runtime.NewScheme()
	if err := rbacv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).Build()
}

func boundUsers(t *testing.T, c client.Client) []string {
	t.Helper()
	var b rbacv1.ClusterRoleBinding
	if err := c.Get(context.Background(), client.ObjectKey{Name: AdminsBinding}, &b); err != nil {
		t.Fatalf("reading the admins' binding: %v", err)
	}
	if b.RoleRef.Name != "cluster-admin" {
		t.Errorf("the admins' binding is to %s", b.RoleRef.Name)
	}
	var out []string
	for _, s := range b.Subjects {
		if s.Kind != rbacv1.UserKind {
			t.Errorf("the admins' binding has a %s subject %s: only users, by name", s.Kind, s.Name)
			continue
		}
		out = append(out, s.Name)
	}
	return out
}

// TestAdminsFollowTheGroup: the binding holds root and the group's members; an old
// binding to the certificate group gpuwarden:admins is replaced; a user removed from the
// group is dropped at the next pass; a user whose primary group it is is bound once they
// ask for a kubeconfig.
func TestAdminsFollowTheGroup(t *testing.T) {
	old := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: AdminsBinding},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: AdminsGroup}},
	}
	c := newClient(t, old)
	db := &groupDB{listed: map[string][]string{"labadmin": {"ann", "ben"}}, primary: map[string]string{"cy": "labadmin"}}
	a := &Admins{Client: c, Group: "labadmin", Hosts: db}
	ctx := context.Background()
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := boundUsers(t, c); !slices.Equal(got, []string{"ann", "ben", "root"}) {
		t.Errorf("bound %v, want ann, ben, root (and no group)", got)
	}
	db.remove("labadmin", "ben")
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := boundUsers(t, c); !slices.Equal(got, []string{"ann", "root"}) {
		t.Errorf("after ben left the group: bound %v, want ann, root", got)
	}
	// cy's primary group is the admin group: no member list names him; his request for a
	// kubeconfig binds him at once, and later passes keep him.
	if ok, err := a.Confirm(ctx, "cy"); !ok || err != nil {
		t.Errorf("Confirm(cy) = %v, %v", ok, err)
	}
	if ok, err := a.Confirm(ctx, "dora"); ok || err != nil {
		t.Errorf("Confirm(dora), not in the group = %v, %v", ok, err)
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := boundUsers(t, c); !slices.Equal(got, []string{"ann", "cy", "root"}) {
		t.Errorf("bound %v, want ann, cy, root", got)
	}
	db.mu.Lock()
	delete(db.primary, "cy")
	db.mu.Unlock()
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := boundUsers(t, c); !slices.Equal(got, []string{"ann", "root"}) {
		t.Errorf("after cy's primary group changed: bound %v, want ann, root", got)
	}
}

// TestAdminsPassOnTheInterval: Start passes at once and again each Interval (simulated).
func TestAdminsPassOnTheInterval(t *testing.T) {
	c := newClient(t)
	db := &groupDB{listed: map[string][]string{"labadmin": {"ann"}}}
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC))
	a := &Admins{Client: c, Group: "labadmin", Hosts: db, Clock: clk, Interval: 30 * time.Second}
	ctx := startAdmins(t, a)
	db.remove("labadmin", "ann")
	testutil.Eventually(t, 5*time.Second, "ann unbound within the interval", func() (bool, string) {
		if !clk.HasWaiters() {
			return false, "the pass loop is not waiting yet"
		}
		clk.Step(30 * time.Second)
		var b rbacv1.ClusterRoleBinding
		_ = c.Get(ctx, client.ObjectKey{Name: AdminsBinding}, &b)
		return len(b.Subjects) == 1 && b.Subjects[0].Name == "root", b.String()
	})
}

// TestAdminsWatchTheGroupFile: a change of the watched file triggers a pass before the
// interval.
func TestAdminsWatchTheGroupFile(t *testing.T) {
	c := newClient(t)
	db := &groupDB{listed: map[string][]string{"labadmin": {"ann"}}}
	file := filepath.Join(t.TempDir(), "group")
	if err := os.WriteFile(file, []byte("labadmin:x:900:ann\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC))
	a := &Admins{Client: c, Group: "labadmin", Hosts: db, Clock: clk, Interval: time.Hour, Watch: file}
	ctx := startAdmins(t, a)
	db.remove("labadmin", "ann")
	if err := os.WriteFile(file, []byte("labadmin:x:900:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "ann unbound after the file changed", func() (bool, string) {
		if clk.HasWaiters() {
			clk.Step(time.Second) // the file poll, never the hour
		}
		var b rbacv1.ClusterRoleBinding
		_ = c.Get(ctx, client.ObjectKey{Name: AdminsBinding}, &b)
		return len(b.Subjects) == 1, b.String()
	})
}

func TestGroupFileMembers(t *testing.T) {
	file := filepath.Join(t.TempDir(), "group")
	if err := os.WriteFile(file, []byte("root:x:0:\nlabadmin:x:900:ann, ben\nlab:x:901:cy\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := fileMembers(file, "labadmin"); err != nil || !slices.Equal(got, []string{"ann", "ben"}) {
		t.Errorf("members of labadmin = %v, %v", got, err)
	}
	if got, err := fileMembers(file, "nogroup"); err != nil || got != nil {
		t.Errorf("members of a group not there = %v, %v", got, err)
	}
}

// TestHostMembership: root is in its own primary group; an unknown user or group is in none.
func TestHostMembership(t *testing.T) {
	h := HostMembership{}
	if ok, err := h.IsMember("root", "root"); !ok || err != nil {
		t.Errorf("root in group root = %v, %v", ok, err)
	}
	if ok, err := h.IsMember("no-such-user-gpuwarden", "root"); ok || err != nil {
		t.Errorf("an unknown user = %v, %v", ok, err)
	}
	if ok, err := h.IsMember("root", "no-such-group-gpuwarden"); ok || err != nil {
		t.Errorf("an unknown group = %v, %v", ok, err)
	}
	if m, err := h.Members("no-such-group-gpuwarden"); m != nil || err != nil {
		t.Errorf("members of an unknown group = %v, %v", m, err)
	}
}

// TestKubeconfigCarriesNoAdminGroup: an admin's certificate names the user in UsersGroup
// only and lasts at most a day; anyone's at most MaxValidity; the admin is bound at once.
func TestKubeconfigCarriesNoAdminGroup(t *testing.T) {
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	p := pki.PKI{Dir: t.TempDir()}
	if err := p.Ensure(now, nil); err != nil {
		t.Fatal(err)
	}
	c := newClient(t)
	admins := &Admins{Client: c, Group: "labadmin", Hosts: &groupDB{listed: map[string][]string{"labadmin": {"ann"}}}}
	i := Issuer{PKI: p, Server: "https://127.0.0.1:6443", Clock: clocktesting.NewFakePassiveClock(now), Admins: admins}
	cert := func(user string, admin bool, validity time.Duration) *x509.Certificate {
		t.Helper()
		data, err := i.Kubeconfig(user, admin, validity)
		if err != nil {
			t.Fatalf("Kubeconfig(%s): %v", user, err)
		}
		kc, err := clientcmd.Load(data)
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(kc.AuthInfos[user].ClientCertificateData)
		crt, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return crt
	}
	ann := cert("ann", true, 7*24*time.Hour)
	if ann.Subject.CommonName != "ann" || !slices.Equal(ann.Subject.Organization, []string{UsersGroup}) {
		t.Errorf("ann's certificate: CN=%s O=%v, want CN=ann O=[%s]", ann.Subject.CommonName, ann.Subject.Organization, UsersGroup)
	}
	if got := ann.NotAfter.Sub(now); got > AdminValidity {
		t.Errorf("an admin's certificate lasts %s, want at most %s", got, AdminValidity)
	}
	if got := boundUsers(t, c); !slices.Contains(got, "ann") {
		t.Errorf("ann is not bound at once: %v", got)
	}
	// Asking as an admin when the group does not hold you gives a user's certificate.
	bob := cert("bob", true, 7*24*time.Hour)
	if got := bob.NotAfter.Sub(now); got < 7*24*time.Hour-time.Hour || slices.Contains(boundUsers(t, c), "bob") {
		t.Errorf("bob, not in the group: lasts %s, bound %v", got, boundUsers(t, c))
	}
	if _, err := i.Kubeconfig("carl", false, 365*24*time.Hour); err == nil {
		t.Error("a kubeconfig for a year was issued")
	}
}

// startAdmins runs a until the test ends, once it has bound the group's one member beside
// root; the context is the run's.
func startAdmins(t *testing.T, a *Admins) context.Context {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testutil.Eventually(t, 5*time.Second, "ann bound at start", func() (bool, string) {
		var b rbacv1.ClusterRoleBinding
		err := a.Client.Get(ctx, client.ObjectKey{Name: AdminsBinding}, &b)
		return err == nil && len(b.Subjects) == 2, b.String()
	})
	return ctx
}

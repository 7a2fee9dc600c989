package integration

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/access"
	"github.com/gpuwarden/gpuwarden/internal/controlplane/controlplanetest"
	"github.com/gpuwarden/gpuwarden/internal/controlplane/pki"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// testAdmins is the admin group of these tests: every user a test asks an admin's
// kubeconfig for is in it.
var testAdmins = &adminGroup{members: map[string]bool{}}

type adminGroup struct {
	mu      sync.Mutex
	members map[string]bool
}

func (g *adminGroup) Members(string) ([]string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Collect(maps.Keys(g.members)), nil
}

func (g *adminGroup) IsMember(name, _ string) (bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.members[name], nil
}

// kubeconfigClient is a client from a kubeconfig the Issuer wrote, as the user would use it.
// An admin's is an admin's because the admin group holds the user (AdminsBinding), not
// because of the certificate: the user is put in the test's group first.
func kubeconfigClient(t *testing.T, issuer access.Issuer, user string, admin bool) client.Client {
	t.Helper()
	if admin {
		testAdmins.mu.Lock()
		testAdmins.members[user] = true
		testAdmins.mu.Unlock()
		if issuer.Admins == nil {
			issuer.Admins = &access.Admins{Client: controlplanetest.Get(t).Client(t), Group: "integration-admins", Hosts: testAdmins}
		}
	}
	data, err := issuer.Kubeconfig(user, admin, access.DefaultValidity)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	if admin {
		testutil.Eventually(t, 20*time.Second, user+" is an admin", func() (bool, string) {
			review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
				ResourceAttributes: &authorizationv1.ResourceAttributes{Group: "gpuwarden.io", Resource: "gpuquotas", Verb: "create"}}}
			if err := c.Create(context.Background(), review); err != nil {
				return false, err.Error()
			}
			return review.Status.Allowed, review.Status.Reason
		})
	}
	return c
}

// accessInstalled installs users' access on the shared API server and returns an admin
// client and an issuer of users' kubeconfigs from its CA.
func accessInstalled(t *testing.T) (client.Client, access.Issuer) {
	t.Helper()
	env := controlplanetest.Get(t)
	admin := env.Client(t)
	if err := access.Install(context.Background(), admin); err != nil {
		t.Fatal(err)
	}
	return admin, access.Issuer{PKI: pki.PKI{Dir: filepath.Join(env.DataDir, "pki")}, Server: env.Config().Host, Clock: clocktesting.NewFakePassiveClock(time.Now())}
}

// TestUserKubeconfigsKeepUsersToTheirOwn: through the real API server, a user's kubeconfig
// lists allocations and creates and deletes its own, and is refused another's allocations and
// any change to quotas; an admin's may do both.
func TestUserKubeconfigsKeepUsersToTheirOwn(t *testing.T) {
	admin, issuer := accessInstalled(t)
	ctx := context.Background()
	if err := access.Install(ctx, admin); err != nil {
		t.Fatalf("installing a second time: %v", err)
	}
	dora := kubeconfigClient(t, issuer, "dora", false)
	ed := kubeconfigClient(t, issuer, "ed", true)

	others := testutil.MakeAllocation("frank-own").User("frank").GPUs(1).Obj()
	if err := admin.Create(ctx, others); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Delete(context.Background(), others) })

	// The policy is enforced once the API server has read it.
	testutil.Eventually(t, 20*time.Second, "dora refused an allocation for frank, naming why", func() (bool, string) {
		err := dora.Create(ctx, testutil.MakeAllocation("dora-for-frank").User("frank").GPUs(1).Obj())
		if err == nil {
			_ = admin.Delete(ctx, testutil.MakeAllocation("dora-for-frank").User("frank").GPUs(1).Obj())
			return false, "created"
		}
		return apierrors.IsForbidden(err) || apierrors.IsInvalid(err), err.Error()
	})
	err := dora.Create(ctx, testutil.MakeAllocation("dora-for-frank-2").User("frank").GPUs(1).Obj())
	if err == nil || !strings.Contains(err.Error(), "user dora may create only their own GPUAllocations; dora-for-frank-2 is for frank") {
		t.Errorf("dora creating frank's allocation: %v", err)
	}
	mine := testutil.MakeAllocation("dora-own").User("dora").GPUs(1).Obj()
	if err := dora.Create(ctx, mine); err != nil {
		t.Errorf("dora creating her own allocation: %v", err)
	}
	var list gpuwardenv1alpha1.GPUAllocationList
	if err := dora.List(ctx, &list); err != nil || len(list.Items) == 0 {
		t.Errorf("dora listing allocations: %v (%d)", err, len(list.Items))
	}
	if err := dora.Delete(ctx, others); err == nil || !strings.Contains(err.Error(), "may delete only their own") {
		t.Errorf("dora deleting frank's allocation: %v", err)
	}
	if err := dora.Delete(ctx, mine); err != nil {
		t.Errorf("dora deleting her own allocation: %v", err)
	}
	q := testutil.MakeQuota("dora-quota").Users("dora").Obj()
	if err := dora.Create(ctx, q); !apierrors.IsForbidden(err) {
		t.Errorf("dora creating a quota: %v, want Forbidden", err)
	}
	if err := admin.Create(ctx, q); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Delete(context.Background(), q) })
	patched := q.DeepCopy()
	patched.Spec.Precedence = 99
	if err := dora.Patch(ctx, patched, client.MergeFrom(q)); !apierrors.IsForbidden(err) {
		t.Errorf("dora editing a quota: %v, want Forbidden", err)
	}
	if err := dora.Delete(ctx, q); !apierrors.IsForbidden(err) {
		t.Errorf("dora deleting a quota: %v, want Forbidden", err)
	}
	// An admin's kubeconfig acts for anyone.
	forFrank := testutil.MakeAllocation("ed-for-frank").User("frank").GPUs(1).Obj()
	if err := ed.Create(ctx, forFrank); err != nil {
		t.Errorf("admin ed creating frank's allocation: %v", err)
	}
	if err := ed.Delete(ctx, forFrank); err != nil {
		t.Errorf("admin ed deleting it: %v", err)
	}
	if err := ed.Patch(ctx, patched, client.MergeFrom(q)); err != nil {
		t.Errorf("admin ed editing a quota: %v", err)
	}
	// Names the API server would read as more than a user are refused.
	for _, bad := range []string{"system:kube-controller-manager", "a/b", "", strings.Repeat("x", 65)} {
		if _, err := issuer.Kubeconfig(bad, false, time.Hour); err == nil {
			t.Errorf("a kubeconfig for %q was issued", bad)
		}
	}
	if _, err := issuer.Kubeconfig("dora", false, 2*pki.MaxClientValidity); err == nil {
		t.Errorf("a kubeconfig valid for two years was issued")
	}
}

// TestUsersAllocationsNameNoContainer: through the real API server, a user's own
// GPUAllocation may not name a container (whose it is only the gateway can tell); an admin's
// may, and the user may delete one made for them.
func TestUsersAllocationsNameNoContainer(t *testing.T) {
	admin, issuer := accessInstalled(t)
	ctx := context.Background()
	gil := kubeconfigClient(t, issuer, "gil", false)
	ed := kubeconfigClient(t, issuer, "ed", true)
	const theirs = "0123456789abcdef0123"
	naming := func(name, id, cname string) *gpuwardenv1alpha1.GPUAllocation {
		a := testutil.MakeAllocation(name).User("gil").GPUs(1).Obj()
		a.Spec.ContainerID, a.Spec.ContainerName = id, cname
		return a
	}
	testutil.Eventually(t, 20*time.Second, "gil refused an allocation naming a container", func() (bool, string) {
		err := gil.Create(ctx, naming("gil-names-id", theirs, ""))
		if err == nil {
			_ = admin.Delete(ctx, naming("gil-names-id", "", ""))
			return false, "created"
		}
		return apierrors.IsForbidden(err) && strings.Contains(err.Error(), "user gil may not name a container (spec.containerID, spec.containerName) in GPUAllocation gil-names-id"), err.Error()
	})
	if err := gil.Create(ctx, naming("gil-names-name", "", "alice-nb")); !apierrors.IsForbidden(err) {
		t.Errorf("gil naming a container by name: %v, want Forbidden", err)
	}
	plain := naming("gil-plain", "", "")
	if err := gil.Create(ctx, plain); err != nil {
		t.Fatalf("gil creating an allocation naming no container: %v", err)
	}
	t.Cleanup(func() { _ = admin.Delete(context.Background(), naming("gil-plain", "", "")) })
	// Made for gil naming a container (as the gateway and adoption do): hers to delete.
	made := naming("gil-made", theirs, "nb")
	if err := ed.Create(ctx, made); err != nil {
		t.Fatalf("admin ed creating an allocation naming a container: %v", err)
	}
	t.Cleanup(func() { _ = admin.Delete(context.Background(), naming("gil-made", "", "")) })
	if err := gil.Delete(ctx, made); err != nil {
		t.Errorf("gil deleting it: %v", err)
	}
}

// TestUsersReadTheEventsOfGpuwardensObjects: through the real API server, a user's kubeconfig
// reads the Events in the namespace where Events of cluster-scoped objects land (default),
// the allocations' among them, and no other namespace's: the node's Events (the gateway's
// refusals, which name other users) go to kube-system, which the API server accepts.
func TestUsersReadTheEventsOfGpuwardensObjects(t *testing.T) {
	admin, issuer := accessInstalled(t)
	ctx := context.Background()
	hana := kubeconfigClient(t, issuer, "hana", false)

	now := metav1.NewMicroTime(time.Now())
	event := func(name, ns string, regarding corev1.ObjectReference) *eventsv1.Event {
		return &eventsv1.Event{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, EventTime: now,
			ReportingController: "gpuwarden.io/test", ReportingInstance: "test", Action: "Test", Reason: "Test", Type: corev1.EventTypeNormal,
			Regarding: regarding, Note: "a test event"}
	}
	a := testutil.MakeAllocation("hana-events").User("hana").GPUs(1).Obj()
	if err := admin.Create(ctx, a); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Delete(context.Background(), a) })
	// As the recorders make them: an allocation's in default, the node's in kube-system.
	ofAllocation := event("hana-events.test", access.EventsNamespace, corev1.ObjectReference{
		APIVersion: gpuwardenv1alpha1.GroupVersion.String(), Kind: "GPUAllocation", Name: a.Name, UID: a.UID})
	ofNode := event("node.test", access.NodeEventsNamespace, corev1.ObjectReference{
		APIVersion: "v1", Kind: "Node", Name: "gpu01", Namespace: access.NodeEventsNamespace})
	for _, e := range []*eventsv1.Event{ofAllocation, ofNode} {
		if err := admin.Create(ctx, e); err != nil {
			t.Fatalf("creating the Event %s/%s: %v", e.Namespace, e.Name, err)
		}
		t.Cleanup(func() { _ = admin.Delete(context.Background(), e) })
	}

	testutil.Eventually(t, 20*time.Second, "hana reading the Events in default", func() (bool, string) {
		var list corev1.EventList
		if err := hana.List(ctx, &list, client.InNamespace(access.EventsNamespace)); err != nil {
			return false, err.Error()
		}
		for _, e := range list.Items {
			if e.InvolvedObject.Name == a.Name {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d Events, none of %s", len(list.Items), a.Name)
	})
	var one corev1.Event
	if err := hana.Get(ctx, client.ObjectKeyFromObject(ofAllocation), &one); err != nil {
		t.Errorf("hana getting her allocation's Event: %v", err)
	}
	var list corev1.EventList
	if err := hana.List(ctx, &list, client.InNamespace(access.NodeEventsNamespace)); !apierrors.IsForbidden(err) {
		t.Errorf("hana listing the Events in kube-system: %v, want Forbidden", err)
	}
	if err := hana.List(ctx, &list); !apierrors.IsForbidden(err) {
		t.Errorf("hana listing the Events of every namespace: %v, want Forbidden", err)
	}
	if err := hana.Delete(ctx, &one); !apierrors.IsForbidden(err) {
		t.Errorf("hana deleting an Event: %v, want Forbidden", err)
	}
}

package containers

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/actions"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/containerstore"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/docker/dockertest"
	"github.com/gpuwarden/gpuwarden/internal/gpu"
	"github.com/gpuwarden/gpuwarden/internal/ledger"
	"github.com/gpuwarden/gpuwarden/internal/provenance"
	"github.com/gpuwarden/gpuwarden/internal/reasons"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

var t0 = time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)

// containerTest is a container controller on an in-memory engine and a fake API.
type containerTest struct {
	t      *testing.T
	r      *Reconciler
	engine *dockertest.Engine
	c      client.Client
	audit  *testutil.AuditRecorder
	rec    *events.FakeRecorder
	clock  *clocktesting.FakeClock
}

func newContainerTest(t *testing.T, objs []client.Object, containers ...docker.Container) *containerTest {
	t.Helper()
	var gpus []client.Object
	for i, uuid := range []string{"GPU-0", "GPU-1", "GPU-2"} {
		gpus = append(gpus, &gpuwardenv1alpha1.GPU{ObjectMeta: metav1.ObjectMeta{Name: gpu.ObjectName("n1", i), Labels: map[string]string{gpuwardenv1alpha1.LabelNode: "n1"}},
			Spec:   gpuwardenv1alpha1.GPUSpec{NodeName: "n1", Index: int32(i)},
			Status: gpuwardenv1alpha1.GPUStatus{UUID: uuid, MIGMode: gpuwardenv1alpha1.MIGDisabled, Health: gpuwardenv1alpha1.HealthHealthy}})
	}
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(append(gpus, objs...)...).
		WithStatusSubresource(&gpuwardenv1alpha1.GPUAllocation{}).
		WithIndex(&gpuwardenv1alpha1.GPUAllocation{}, IndexContainerID, func(o client.Object) []string {
			return containerIDsOf(o.(*gpuwardenv1alpha1.GPUAllocation))
		}).Build()
	eng := dockertest.New(containers...)
	clk := clocktesting.NewFakeClock(t0)
	store := containerstore.New()
	list, _ := eng.List(context.Background())
	store.Replace(list, t0)
	rec := events.NewFakeRecorder(100)
	al := &testutil.AuditRecorder{}
	r := &Reconciler{Client: c, Reader: c, LedgerNamespace: "kube-system", Store: store, NodeName: "n1",
		Clock: clk, Recorder: rec, Audit: al, Owners: &containerstore.Owners{},
		Actions: &actions.Actions{Client: c, Engine: eng, Store: store, Groups: resolve.StaticGroups{}, Clock: clk, Recorder: rec, Audit: al}}
	return &containerTest{t: t, r: r, engine: eng, c: c, audit: al, rec: rec, clock: clk}
}

func (e *containerTest) reconcile(id string) ctrl.Result {
	e.t.Helper()
	res, err := e.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKey{Name: id}})
	if err != nil {
		e.t.Fatalf("Reconcile %s: %v", id, err)
	}
	return res
}

func (e *containerTest) allocation(name string) (*gpuwardenv1alpha1.GPUAllocation, bool) {
	a := &gpuwardenv1alpha1.GPUAllocation{}
	if err := e.c.Get(context.Background(), client.ObjectKey{Name: name}, a); err != nil {
		return nil, false
	}
	return a, true
}

func (e *containerTest) records(typ string) []audit.Event { return e.audit.Of(typ) }

func running(id string, labels map[string]string, gpus ...string) docker.Container {
	return docker.Container{ID: id, Name: "c-" + id[:4], Labels: labels, State: docker.StateRunning, PID: 0,
		Created: t0.Add(-time.Hour), StartedAt: t0.Add(-time.Hour), GPUs: docker.GPURequest{Devices: gpus}}
}

const (
	idA = "aaaa000000000000000000000000000000000000000000000000000000000001"
	idB = "bbbb000000000000000000000000000000000000000000000000000000000002"
)

// TestBindingAttachesOnlyTheOwnersContainer: a container labelled with an allocation of
// its owner is attached to it; one claiming another user's allocation is not.
func TestBindingAttachesOnlyTheOwnersContainer(t *testing.T) {
	e := newContainerTest(t, []client.Object{testutil.MakeAllocation("ann-1").User("ann").Node("n1").Bound("GPU-0").Obj()},
		running(idA, map[string]string{gpuwardenv1alpha1.LabelUser: "ann", gpuwardenv1alpha1.LabelAllocation: "ann-1"}, "GPU-0"),
		running(idB, map[string]string{gpuwardenv1alpha1.LabelUser: "bob", gpuwardenv1alpha1.LabelAllocation: "ann-1"}, "GPU-0"))
	e.reconcile(idB)
	if a, _ := e.allocation("ann-1"); a.Status.ContainerID != "" {
		t.Fatalf("bob's container attached to ann's allocation")
	}
	e.reconcile(idA)
	if a, _ := e.allocation("ann-1"); a.Status.ContainerID != idA {
		t.Errorf("ann's container not attached: containerID %q", a.Status.ContainerID)
	}
	// Bob's container runs on ann's GPU without an allocation: it is the one reported (and
	// stopped), never ann's.
	for _, rec := range e.records(audit.TypeDetectionUnmanagedContainer) {
		if rec.User != "bob" {
			t.Errorf("a container within its allocation was reported: %+v", rec)
		}
	}
}

// TestAdoptionOncePerStart: a GPU container made outside gpuwarden gets one signed Adopted
// allocation for the devices it uses; looking at it again adopts nothing more, and the
// start that follows a create keeps the adoption made at create.
func TestAdoptionOncePerStart(t *testing.T) {
	created := docker.Container{ID: idA, Name: "nb", Labels: map[string]string{"ds01.user": "cy"}, State: docker.StateCreated,
		Created: t0, GPUs: docker.GPURequest{Devices: []string{"GPU-1"}}}
	e := newContainerTest(t, nil, created)
	e.reconcile(idA)
	name := adoptedName(idA)
	a, ok := e.allocation(name)
	if !ok {
		t.Fatal("no adopted allocation")
	}
	if a.Spec.Source != gpuwardenv1alpha1.SourceAdopted || a.Spec.User != "cy" || strings.Join(a.Spec.Request.Devices, ",") != "GPU-1" ||
		a.Spec.ContainerID != idA || a.Annotations[gpuwardenv1alpha1.AnnotationAdoptedForStart] != neverStarted {
		t.Errorf("adopted allocation %+v %v", a.Spec, a.Annotations)
	}
	var cm corev1.ConfigMap
	if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: "kube-system", Name: ledger.Name}, &cm); err != nil {
		t.Fatal(err)
	}
	key, err := provenance.ParseKey(cm.Data[ledger.SigningKeyField])
	if err != nil || !provenance.Verify(key, a) {
		t.Errorf("the adoption is not signed with the ledger's key (%v)", err)
	}
	uid := a.UID

	started := created
	started.State, started.StartedAt, started.PID = docker.StateRunning, t0.Add(time.Second), 0
	e.engine.Put(started, "start")
	e.r.Store.Put(started)
	for range 3 {
		e.reconcile(idA)
	}
	a, _ = e.allocation(name)
	if a.UID != uid {
		t.Fatalf("the create-then-start was adopted anew")
	}
	if got := a.Annotations[gpuwardenv1alpha1.AnnotationAdoptedForStart]; got != started.StartStamp() {
		t.Errorf("the adoption is marked for start %q, want %q", got, started.StartStamp())
	}
	adopted := 0
	for len(e.rec.Events) > 0 {
		if ev := <-e.rec.Events; strings.Contains(ev, reasons.EventAdopted) {
			adopted++
		}
	}
	if adopted != 1 {
		t.Errorf("%d Adopted Events, want 1", adopted)
	}
}

// TestCleanupRemovesOrSaysWhatItWouldDo: a container stopped longer than removeAfterStop
// is removed under Enforce (lifecycle.remove), and only recorded under DryRun
// (lifecycle.would_remove), the engine untouched.
func TestCleanupRemovesOrSaysWhatItWouldDo(t *testing.T) {
	for _, mode := range []gpuwardenv1alpha1.PolicyMode{gpuwardenv1alpha1.ModeEnforce, gpuwardenv1alpha1.ModeDryRun} {
		t.Run(string(mode), func(t *testing.T) {
			hour := gpuwardenv1alpha1.Duration("1h")
			policy := &gpuwardenv1alpha1.ContainerPolicy{ObjectMeta: metav1.ObjectMeta{Name: "tidy"},
				Spec: gpuwardenv1alpha1.ContainerPolicySpec{Mode: mode, RemoveAfterStop: &hour}}
			stopped := docker.Container{ID: idA, Name: "old", Labels: map[string]string{gpuwardenv1alpha1.LabelUser: "dee"}, State: docker.StateExited,
				Created: t0.Add(-5 * time.Hour), StartedAt: t0.Add(-4 * time.Hour), FinishedAt: t0.Add(-2 * time.Hour)}
			e := newContainerTest(t, []client.Object{policy}, stopped)
			e.reconcile(idA)
			removed := slices.Contains(e.engine.Calls(), "remove "+idA)
			want, other := audit.TypeLifecycleRemove, audit.TypeLifecycleWouldRemove
			if mode == gpuwardenv1alpha1.ModeDryRun {
				want, other = other, want
			}
			if removed != (mode == gpuwardenv1alpha1.ModeEnforce) {
				t.Errorf("engine calls %v under %s", e.engine.Calls(), mode)
			}
			recs := e.records(want)
			if len(recs) != 1 || recs[0].User != "dee" || !strings.Contains(recs[0].Details["reason"].(string), "stopped_too_long") {
				t.Errorf("%s records: %+v", want, recs)
			}
			if n := len(e.records(other)); n != 0 {
				t.Errorf("%d %s records under %s", n, other, mode)
			}
			e.reconcile(idA) // looked at again: said once
			if n := len(e.records(want)); mode == gpuwardenv1alpha1.ModeDryRun && n != 1 {
				t.Errorf("the dry run said it %d times", n)
			}
		})
	}
}

package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/gpu"
	"github.com/gpuwarden/gpuwarden/internal/reasons"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// records returns the audit records of type typ for allocation name.
func (e *containerEnv) records(typ, name string) []audit.Event {
	var out []audit.Event
	for _, ev := range e.events(audit.Filter{Type: typ}) {
		if ev.Details["allocation"] == name {
			out = append(out, ev)
		}
	}
	return out
}

// create creates the allocation w builds, for the env's node.
func (e *containerEnv) create(w *testutil.AllocationWrapper) {
	e.t.Helper()
	if err := e.c.Create(context.Background(), w.Node(e.node).Obj()); err != nil {
		e.t.Fatal(err)
	}
}

// accepted waits until the running controllers have seen the quota: once the quota
// controller has, the allocation controller (same cache) has too.
func (e *containerEnv) accepted(quotas ...string) {
	e.t.Helper()
	for _, name := range quotas {
		testutil.Eventually(e.t, 20*time.Second, "quota "+name+" accepted", func() bool {
			var got gpuwardenv1alpha1.GPUQuota
			return e.c.Get(context.Background(), client.ObjectKey{Name: name}, &got) == nil &&
				meta.IsStatusConditionTrue(got.Status.Conditions, gpuwardenv1alpha1.ConditionAccepted)
		})
	}
}

// createQuotas creates the shared test quotas while the controllers run, and waits until
// they are in force.
func (e *containerEnv) createQuotas() {
	e.t.Helper()
	createQuotas(e.t, e.c)
	e.accepted("everyone", "vip")
}

// forge writes a status as someone other than the controller would.
func (e *containerEnv) forge(name string, change func(*gpuwardenv1alpha1.GPUAllocationStatus)) {
	e.t.Helper()
	a := e.get(name)
	orig := a.DeepCopy()
	change(&a.Status)
	if err := e.c.Status().Patch(context.Background(), a, client.MergeFrom(orig)); err != nil {
		e.t.Fatalf("forging the status of %s: %v", name, err)
	}
}

// TestForgedStatusesAreOverwrittenFromTheLedger: statuses and holders written by someone
// else — Bound on a Pending or Rejected allocation, Released or other devices on a Bound
// one, a holder on a GPU — are put back from the ledger.
func TestForgedStatusesAreOverwrittenFromTheLedger(t *testing.T) {
	e := newContainerEnv(t, dockerHost(t))
	uuids := e.fake.UUIDs()
	bound := e.allocate("forge-bound", "fay", 1)
	real := bound.Status.Devices[0].UUID
	e.allocate("forge-fill", "filler", 7)
	e.create(testutil.MakeAllocation("forge-pending").User("fay").GPUs(1))
	e.create(testutil.MakeAllocation("forge-rejected").User("fay").GPUs(9))
	testutil.Eventually(t, 20*time.Second, "forge-pending waits", func() bool {
		return e.get("forge-pending").Status.Reason == gpuwardenv1alpha1.ReasonNoCapacity
	})
	e.waitPhase("forge-rejected", gpuwardenv1alpha1.PhaseRejected)

	fake := []gpuwardenv1alpha1.BoundDevice{{Index: 7, UUID: uuids[7], Weight: resource.MustParse("1")}}
	e.forge("forge-bound", func(s *gpuwardenv1alpha1.GPUAllocationStatus) {
		s.Phase, s.Devices = gpuwardenv1alpha1.PhaseReleased, fake
	})
	for _, name := range []string{"forge-pending", "forge-rejected"} {
		e.forge(name, func(s *gpuwardenv1alpha1.GPUAllocationStatus) {
			s.Phase, s.Reason, s.Message, s.Devices = gpuwardenv1alpha1.PhaseBound, "", "", fake
		})
	}
	var g7 gpuwardenv1alpha1.GPU
	// Holders are written beside the passes, a moment after the binding.
	testutil.Eventually(t, 20*time.Second, "GPU 7 shows its holder", func() bool {
		return e.c.Get(context.Background(), client.ObjectKey{Name: gpu.ObjectName(e.node, 7)}, &g7) == nil && g7.Status.Holder != ""
	})
	holder := g7.Status.Holder
	orig := g7.DeepCopy()
	g7.Status.Holder = "forged-holder"
	if err := e.c.Status().Patch(context.Background(), &g7, client.MergeFrom(orig)); err != nil {
		t.Fatal(err)
	}

	testutil.Eventually(t, 20*time.Second, "forge-bound Bound again on its real device", func() bool {
		a := e.get("forge-bound")
		return a.Status.Phase == gpuwardenv1alpha1.PhaseBound && len(a.Status.Devices) == 1 && a.Status.Devices[0].UUID == real
	})
	testutil.Eventually(t, 20*time.Second, "forge-pending Pending again, holding nothing", func() bool {
		a := e.get("forge-pending")
		return a.Status.Phase == gpuwardenv1alpha1.PhasePending && len(a.Status.Devices) == 0 && a.Status.Reason == gpuwardenv1alpha1.ReasonNoCapacity
	})
	testutil.Eventually(t, 20*time.Second, "forge-rejected Rejected again, holding nothing", func() bool {
		a := e.get("forge-rejected")
		return a.Status.Phase == gpuwardenv1alpha1.PhaseRejected && len(a.Status.Devices) == 0
	})
	testutil.Eventually(t, 20*time.Second, "GPU 7's holder put back", func() bool {
		var g gpuwardenv1alpha1.GPU
		return e.c.Get(context.Background(), client.ObjectKey{Name: g7.Name}, &g) == nil && g.Status.Holder == holder
	})
	if n := len(e.records(audit.TypeGPUAllocate, "forge-bound")); n != 1 {
		t.Errorf("forge-bound has %d gpu.allocate records, want 1", n)
	}
}

// TestOneFailingStatusStopsNothing: a release whose reason is 5000 characters long (more
// than a status message may hold) is released like any other, beside another release in
// the same pass; each release is in the audit log once and no device shows two holders.
func TestOneFailingStatusStopsNothing(t *testing.T) {
	e := newContainerEnv(t, dockerHost(t))
	long := e.allocate("long-reason", "lena", 1)
	e.allocate("short-reason", "lena", 1)
	e.allocate("fill", "filler", 6)
	e.create(testutil.MakeAllocation("next").User("nick").Devices(long.Status.Devices[0].UUID))
	testutil.Eventually(t, 20*time.Second, "next waits for the device", func() bool {
		return e.get("next").Status.Reason == gpuwardenv1alpha1.ReasonNoCapacity
	})
	for name, reason := range map[string]string{"long-reason": strings.Repeat("x", 5000), "short-reason": "done"} {
		a := e.get(name)
		orig := a.DeepCopy()
		a.Annotations = map[string]string{gpuwardenv1alpha1.AnnotationRelease: reason}
		if err := e.c.Patch(context.Background(), a, client.MergeFrom(orig)); err != nil {
			t.Fatal(err)
		}
	}
	released := e.waitPhase("long-reason", gpuwardenv1alpha1.PhaseReleased)
	if len(released.Status.Message) > 4096 {
		t.Errorf("message of %d bytes", len(released.Status.Message))
	}
	e.waitPhase("short-reason", gpuwardenv1alpha1.PhaseReleased)
	e.waitPhase("next", gpuwardenv1alpha1.PhaseBound)
	var list gpuwardenv1alpha1.GPUAllocationList
	if err := e.c.List(context.Background(), &list); err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, list.Items)
	for _, name := range []string{"long-reason", "short-reason"} {
		if n := len(e.records(audit.TypeGPURelease, name)); n != 1 {
			t.Errorf("%s has %d gpu.release records, want 1", name, n)
		}
	}
}

// TestRequestsThatCanNeverBeMetAreRejected: more GPUs than the node has, a MIG profile no
// GPU offers, a device that does not exist, or one device twice is Rejected as
// Unsatisfiable, naming what is missing; a device by index is bound; a quota of 1n says so.
func TestRequestsThatCanNeverBeMetAreRejected(t *testing.T) {
	e := newContainerEnv(t, dockerHost(t))
	uuids := e.fake.UUIDs()
	cases := map[string]struct {
		req  gpuwardenv1alpha1.AllocationRequest
		want string
	}{
		"never-nine":      {gpuwardenv1alpha1.AllocationRequest{GPUs: ptr.To[int32](9)}, "9 whole GPUs; dk has 8"},
		"never-profile":   {gpuwardenv1alpha1.AllocationRequest{MIGProfile: "3g.40gb"}, "MIG profile 3g.40gb"},
		"never-device":    {gpuwardenv1alpha1.AllocationRequest{Devices: []string{"GPU-00000000-dead-beef-0000-000000000000"}}, "no device GPU-00000000-dead-beef"},
		"never-index":     {gpuwardenv1alpha1.AllocationRequest{Devices: []string{"12"}}, "no device 12"},
		"never-twice":     {gpuwardenv1alpha1.AllocationRequest{Devices: []string{uuids[2], "2"}}, "same device more than once"},
		"never-mig-index": {gpuwardenv1alpha1.AllocationRequest{Devices: []string{"1:0"}}, "no device 1:0"},
	}
	for name, c := range cases {
		e.create(testutil.MakeAllocation(name).User("uma").Request(c.req))
	}
	for name, c := range cases {
		a := e.waitPhase(name, gpuwardenv1alpha1.PhaseRejected)
		if a.Status.Reason != gpuwardenv1alpha1.ReasonUnsatisfiable || !strings.Contains(a.Status.Message, c.want) {
			t.Errorf("%s: %s %q, want %s naming %q", name, a.Status.Reason, a.Status.Message, gpuwardenv1alpha1.ReasonUnsatisfiable, c.want)
		}
	}
	e.create(testutil.MakeAllocation("by-index").User("uma").Devices("3"))
	if a := e.waitPhase("by-index", gpuwardenv1alpha1.PhaseBound); a.Status.Devices[0].UUID != uuids[3] {
		t.Errorf("device 3 bound as %s, want %s", a.Status.Devices[0].UUID, uuids[3])
	}

	q := testutil.MakeQuota("tiny").Users("tim").GPUEquivalents("1n").Obj()
	if err := e.c.Create(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	e.accepted(q.Name)
	e.create(testutil.MakeAllocation("tiny-1").User("tim").GPUs(1))
	if a := e.waitPhase("tiny-1", gpuwardenv1alpha1.PhaseRejected); !strings.Contains(a.Status.Message, "0/0.000000001") {
		t.Errorf("quota message %q does not show the real limit", a.Status.Message)
	}
}

// TestHandMadeAdoptedOrGatewayAllocationIsRefused: source Adopted or Gateway is gpuwarden's
// to set; one made by hand is Rejected with the reason, and holds nothing.
func TestHandMadeAdoptedOrGatewayAllocationIsRefused(t *testing.T) {
	e := newContainerEnv(t, dockerHost(t))
	uuids := e.fake.UUIDs()
	e.create(testutil.MakeAllocation("hand-adopted").User("vic").Devices(uuids[4]).Source(gpuwardenv1alpha1.SourceAdopted))
	e.create(testutil.MakeAllocation("hand-gateway").User("vic").GPUs(1).Source(gpuwardenv1alpha1.SourceGateway))
	for _, name := range []string{"hand-adopted", "hand-gateway"} {
		a := e.waitPhase(name, gpuwardenv1alpha1.PhaseRejected)
		if a.Status.Reason != gpuwardenv1alpha1.ReasonSourceNotAllowed || !strings.Contains(a.Status.Message, "only by gpuwarden") {
			t.Errorf("%s: %s %q", name, a.Status.Reason, a.Status.Message)
		}
	}
	// gpuwarden's own adoption still works, and is signed.
	id := e.run("--label", "ds01.user=vic", "--gpus", "device="+uuids[5], testImage(), "sleep", "3600")
	e.waitPhase("adopted-"+id[:12], gpuwardenv1alpha1.PhaseBound)
}

// TestAdoptedOverQuotaIsDecidedOnce: one adopted container over quota is one gpu.reject
// record, one Adopted Event and one detection record, however often it is looked at.
func TestAdoptedOverQuotaIsDecidedOnce(t *testing.T) {
	e := newContainerEnv(t, dockerHost(t))
	e.createQuotas() // everyone: 2 gpu-equivalents
	id := e.run("--label", "ds01.user=olaf", "--gpus", "3", testImage(), "sleep", "3600")
	name := "adopted-" + id[:12]
	a := e.waitPhase(name, gpuwardenv1alpha1.PhaseRejected)
	e.waitEvent(audit.TypeDetectionUnmanagedContainer, id)
	// The container is looked at again on every change of its allocation and on relists.
	testutil.Consistently(t, 3*time.Second, name+" keeps its first decision", func() bool { return e.get(name).UID == a.UID })
	if n := len(e.records(audit.TypeGPUReject, name)); n != 1 {
		t.Errorf("%d gpu.reject records, want 1", n)
	}
	if n := len(e.events(audit.Filter{Type: audit.TypeDetectionUnmanagedContainer, Container: id})); n != 1 {
		t.Errorf("%d detection records, want 1", n)
	}
	var evs eventsv1.EventList
	if err := e.c.List(context.Background(), &evs); err != nil {
		t.Fatal(err)
	}
	adopted := 0
	for _, ev := range evs.Items {
		if ev.Regarding.Name == name && ev.Reason == reasons.EventAdopted {
			adopted++
			if ev.Series != nil {
				adopted += int(ev.Series.Count) - 1
			}
		}
	}
	if adopted != 1 {
		t.Errorf("%d Adopted Events, want 1", adopted)
	}
}

// TestContainerTakingMoreThanItsAllocationIsReported: a container attached to a 1-GPU
// allocation but started with --gpus all is over its allocation: reported, and stopped
// when the policy says onUnallocatedGPU: Stop.
func TestContainerTakingMoreThanItsAllocationIsReported(t *testing.T) {
	e := newContainerEnv(t, dockerHost(t))
	e.policy(testutil.MakePolicy("stop-over").Users("otto").OnUnallocatedGPU(gpuwardenv1alpha1.UnallocatedGPUStop).StopGracePeriod(time.Second))
	e.allocate("otto-1", "otto", 1)
	id := e.run("--label", "gpuwarden.io/user=otto", "--label", "gpuwarden.io/allocation=otto-1", "--gpus", "all", testImage(), "sleep", "3600")
	ev := e.waitEvent(audit.TypeDetectionUnmanagedContainer, id)
	if ev.User != "otto" || strings.Count(ev.Details["gpu"].(string), "GPU-") != 7 {
		t.Errorf("detection record: user %q gpu %v, want otto and the 7 GPUs beyond the allocation", ev.User, ev.Details["gpu"])
	}
	testutil.Eventually(t, 20*time.Second, "the container stopped", func() bool {
		return strings.TrimSpace(dockerCLI(t, e.host, "inspect", "-f", "{{.State.Running}}", id)) == "false"
	})
}

package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/access"
	"github.com/gpuwarden/gpuwarden/internal/controlplane/controlplanetest"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// policyWait bounds the wait for the API server to read the admission policies.
const policyWait = 20 * time.Second

// booking is a GPUReservation of one GPU for two hours tomorrow, for the subjects.
func booking(name string, displace gpuwardenv1alpha1.Displace, subjects ...gpuwardenv1alpha1.Subject) *gpuwardenv1alpha1.GPUReservation {
	start := time.Now().Add(24 * time.Hour).Truncate(time.Hour)
	return &gpuwardenv1alpha1.GPUReservation{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: gpuwardenv1alpha1.GPUReservationSpec{
			Subjects: subjects,
			Request:  gpuwardenv1alpha1.AllocationRequest{GPUs: ptr.To[int32](1)},
			Start:    metav1.NewTime(start),
			End:      metav1.NewTime(start.Add(2 * time.Hour)),
			Displace: displace,
		},
	}
}

func userSubject(name string) gpuwardenv1alpha1.Subject {
	return gpuwardenv1alpha1.Subject{Kind: gpuwardenv1alpha1.SubjectUser, Name: name}
}

// annotated sets the booked-by annotations a client sends.
func annotated(r *gpuwardenv1alpha1.GPUReservation, by, admin string) *gpuwardenv1alpha1.GPUReservation {
	r.Annotations = map[string]string{gpuwardenv1alpha1.AnnotationBookedBy: by, gpuwardenv1alpha1.AnnotationBookedByAdmin: admin}
	return r
}

// bookedBy is what the stored reservation says of who booked it, "" when it is gone.
func bookedBy(ctx context.Context, c client.Client, name string) string {
	var r gpuwardenv1alpha1.GPUReservation
	if err := c.Get(ctx, client.ObjectKey{Name: name}, &r); err != nil {
		return err.Error()
	}
	return r.Annotations[gpuwardenv1alpha1.AnnotationBookedBy] + " admin=" + r.Annotations[gpuwardenv1alpha1.AnnotationBookedByAdmin]
}

// cleanupBooking deletes the reservation name when the test ends.
func cleanupBooking(t *testing.T, admin client.Client, name string) {
	t.Cleanup(func() { _ = admin.Delete(context.Background(), booking(name, "")) })
}

// refused checks that err is the API server's Forbidden naming want.
func refused(t *testing.T, what string, err error, want string) {
	t.Helper()
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), want) {
		t.Errorf("%s: %v, want Forbidden naming %q", what, err, want)
	}
}

// reservationPoliciesRead waits until the API server enforces both reservation policies for
// user: a booking for another is refused, and the user's own, sent claiming an admin's
// booking, is stored as the user's (the policies are read some time after Install).
func reservationPoliciesRead(t *testing.T, admin, user client.Client, name string) {
	t.Helper()
	ctx := context.Background()
	testutil.Eventually(t, policyWait, name+": the validating policy refuses a booking for another", func() (bool, string) {
		err := user.Create(ctx, booking(name+"-probe", gpuwardenv1alpha1.DisplaceWait, userSubject("nobody")))
		if err == nil {
			_ = admin.Delete(ctx, booking(name+"-probe", ""))
			return false, "created"
		}
		return apierrors.IsForbidden(err), err.Error()
	})
	testutil.Eventually(t, policyWait, name+": the mutating policy records who booked", func() (bool, string) {
		err := user.Create(ctx, annotated(booking(name+"-probe", gpuwardenv1alpha1.DisplaceWait, userSubject(name)), "mallory", "true"))
		if err != nil {
			return false, err.Error()
		}
		got := bookedBy(ctx, admin, name+"-probe")
		_ = admin.Delete(ctx, booking(name+"-probe", ""))
		return got == name+" admin=false", got
	})
}

// TestReservationAccessUsersBookOnlyForThemselves: through the real API server, a user books
// GPUs for themselves alone, letting others' work finish (displace: Wait), and the booking
// records them as its booker whatever they sent; a booking for another user, a group,
// everyone, several subjects or no one, or one that stops others' work, is refused, naming
// why. They read every reservation.
func TestReservationAccessUsersBookOnlyForThemselves(t *testing.T) {
	admin, issuer := accessInstalled(t)
	ctx := context.Background()
	alice := kubeconfigClient(t, issuer, "alice", false)
	reservationPoliciesRead(t, admin, alice, "alice")

	mine := annotated(booking("alice-own", gpuwardenv1alpha1.DisplaceWait, userSubject("alice")), "mallory", "true")
	if err := alice.Create(ctx, mine); err != nil {
		t.Fatalf("alice booking for herself: %v", err)
	}
	cleanupBooking(t, admin, mine.Name)
	if got := bookedBy(ctx, admin, mine.Name); got != "alice admin=false" {
		t.Errorf("alice's booking, sent as mallory's by an admin, is recorded as %q, want alice admin=false", got)
	}
	// displace defaults to Wait: a user's booking need not say it.
	plain := booking("alice-plain", "", userSubject("alice"))
	if err := alice.Create(ctx, plain); err != nil {
		t.Errorf("alice booking for herself without displace: %v", err)
	}
	cleanupBooking(t, admin, plain.Name)
	if plain.Spec.Displace != gpuwardenv1alpha1.DisplaceWait {
		t.Errorf("alice's booking without displace has displace %q, want Wait", plain.Spec.Displace)
	}

	for _, c := range []struct {
		name     string
		subjects []gpuwardenv1alpha1.Subject
		forWhom  string
	}{
		{"alice-for-bob", []gpuwardenv1alpha1.Subject{userSubject("bob")}, "user bob"},
		{"deadline", []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectGroup, Name: "nlp-lab"}}, "group nlp-lab"},
		{"alice-for-all", []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectEveryone}}, "everyone"},
		{"alice-and-bob", []gpuwardenv1alpha1.Subject{userSubject("alice"), userSubject("bob")}, "user alice, user bob"},
		{"alice-as-group", []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectGroup, Name: "alice"}}, "group alice"},
		{"alice-drains", nil, "no one (maintenance)"},
	} {
		err := alice.Create(ctx, booking(c.name, gpuwardenv1alpha1.DisplaceWait, c.subjects...))
		if err == nil {
			cleanupBooking(t, admin, c.name)
		}
		refused(t, "alice booking for "+c.forWhom, err,
			"user alice may book only for themselves (spec.subjects: [{kind: User, name: alice}]); "+c.name+" is for "+c.forWhom)
	}
	err := alice.Create(ctx, booking("alice-stops", gpuwardenv1alpha1.DisplaceStop, userSubject("alice")))
	if err == nil {
		cleanupBooking(t, admin, "alice-stops")
	}
	refused(t, "alice booking with displace: Stop", err,
		"user alice may book only with displace: Wait; Stop (stopping others' work at the start) is for admins")

	others := booking("bob-by-admin", gpuwardenv1alpha1.DisplaceStop, userSubject("bob"))
	if err := admin.Create(ctx, others); err != nil {
		t.Fatal(err)
	}
	cleanupBooking(t, admin, others.Name)
	var list gpuwardenv1alpha1.GPUReservationList
	if err := alice.List(ctx, &list); err != nil || len(list.Items) < 3 {
		t.Errorf("alice listing reservations: %v (%d)", err, len(list.Items))
	}
	var got gpuwardenv1alpha1.GPUReservation
	if err := alice.Get(ctx, client.ObjectKeyFromObject(others), &got); err != nil {
		t.Errorf("alice reading bob's reservation: %v", err)
	}
	if err := alice.Delete(ctx, mine); err != nil {
		t.Errorf("alice deleting her own booking: %v", err)
	}
}

// TestReservationAccessUsersDeleteOnlyTheirOwn: through the real API server, a user may not
// delete another's booking, nor one an admin made for them; an admin books for anyone,
// stopping others' work, recorded as an admin's booking whatever they sent, and deletes any.
func TestReservationAccessUsersDeleteOnlyTheirOwn(t *testing.T) {
	admin, issuer := accessInstalled(t)
	ctx := context.Background()
	carl := kubeconfigClient(t, issuer, "carl", false)
	ed := kubeconfigClient(t, issuer, "ed", true)
	reservationPoliciesRead(t, admin, carl, "carl")

	forBob := annotated(booking("ed-for-bob", gpuwardenv1alpha1.DisplaceStop, userSubject("bob")), "carl", "false")
	forCarl := booking("ed-for-carl", gpuwardenv1alpha1.DisplaceWait, userSubject("carl"))
	forLab := booking("ed-for-lab", gpuwardenv1alpha1.DisplaceStop, gpuwardenv1alpha1.Subject{Kind: gpuwardenv1alpha1.SubjectGroup, Name: "nlp-lab"})
	for _, r := range []*gpuwardenv1alpha1.GPUReservation{forBob, forCarl, forLab} {
		if err := ed.Create(ctx, r); err != nil {
			t.Fatalf("admin ed booking %s: %v", r.Name, err)
		}
		cleanupBooking(t, admin, r.Name)
		if got := bookedBy(ctx, admin, r.Name); got != "ed admin=true" {
			t.Errorf("admin ed's booking %s is recorded as %q, want ed admin=true", r.Name, got)
		}
	}

	refused(t, "carl deleting bob's booking", carl.Delete(ctx, forBob),
		"user carl may delete only their own bookings; ed-for-bob is for user bob")
	refused(t, "carl deleting the lab's booking", carl.Delete(ctx, forLab),
		"user carl may delete only their own bookings; ed-for-lab is for group nlp-lab")
	refused(t, "carl deleting the booking admin ed made for him", carl.Delete(ctx, forCarl),
		"user carl may delete only their own bookings; ed-for-carl was booked for them by admin ed, who may delete it")
	for _, r := range []*gpuwardenv1alpha1.GPUReservation{forBob, forCarl, forLab} {
		if err := ed.Delete(ctx, r); err != nil {
			t.Errorf("admin ed deleting %s: %v", r.Name, err)
		}
	}
}

// TestReservationAccessWhoBookedIsFixed: through the real API server, an update, even an
// admin's, keeps who booked as recorded at creation (changed or removed annotations come
// back); the spec cannot change at all (the CRD's rule); a user may neither update a
// booking nor write any status, their own booking's included.
func TestReservationAccessWhoBookedIsFixed(t *testing.T) {
	admin, issuer := accessInstalled(t)
	ctx := context.Background()
	dana := kubeconfigClient(t, issuer, "dana", false)
	ed := kubeconfigClient(t, issuer, "ed", true)
	reservationPoliciesRead(t, admin, dana, "dana")

	mine := booking("dana-own", gpuwardenv1alpha1.DisplaceWait, userSubject("dana"))
	if err := dana.Create(ctx, mine); err != nil {
		t.Fatalf("dana booking for herself: %v", err)
	}
	cleanupBooking(t, admin, mine.Name)

	for _, c := range []struct {
		what   string
		change func(*gpuwardenv1alpha1.GPUReservation)
	}{
		{"claiming an admin's booking", func(r *gpuwardenv1alpha1.GPUReservation) {
			r.Annotations[gpuwardenv1alpha1.AnnotationBookedByAdmin] = "true"
		}},
		{"naming another booker", func(r *gpuwardenv1alpha1.GPUReservation) { r.Annotations[gpuwardenv1alpha1.AnnotationBookedBy] = "ed" }},
		{"removing who booked", func(r *gpuwardenv1alpha1.GPUReservation) {
			delete(r.Annotations, gpuwardenv1alpha1.AnnotationBookedBy)
			delete(r.Annotations, gpuwardenv1alpha1.AnnotationBookedByAdmin)
		}},
		{"removing every annotation", func(r *gpuwardenv1alpha1.GPUReservation) { r.Annotations = nil }},
	} {
		for _, by := range []struct {
			name string
			c    client.Client
		}{{"admin ed", ed}, {"the control plane's admin", admin}} {
			var r gpuwardenv1alpha1.GPUReservation
			if err := admin.Get(ctx, client.ObjectKeyFromObject(mine), &r); err != nil {
				t.Fatal(err)
			}
			c.change(&r)
			if r.Annotations != nil {
				r.Annotations["note"] = by.name + " " + c.what
			}
			if err := by.c.Update(ctx, &r); err != nil {
				t.Errorf("%s %s: %v", by.name, c.what, err)
				continue
			}
			if got := bookedBy(ctx, admin, mine.Name); got != "dana admin=false" {
				t.Errorf("after %s %s the booking is recorded as %q, want dana admin=false", by.name, c.what, got)
			}
			if r.Annotations["note"] != "" && r.Annotations["note"] != by.name+" "+c.what {
				t.Errorf("%s %s: another annotation is %q, want it kept", by.name, c.what, r.Annotations["note"])
			}
		}
	}

	var r gpuwardenv1alpha1.GPUReservation
	if err := admin.Get(ctx, client.ObjectKeyFromObject(mine), &r); err != nil {
		t.Fatal(err)
	}
	changed := r.DeepCopy()
	changed.Spec.End = metav1.NewTime(r.Spec.End.Add(time.Hour))
	if err := ed.Update(ctx, changed); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "a reservation cannot be changed once made; delete it and book again") {
		t.Errorf("admin ed changing a booking's end: %v, want Invalid naming the rule", err)
	}
	noted := r.DeepCopy()
	noted.Labels = map[string]string{"note": "dana's"}
	if err := dana.Update(ctx, noted); !apierrors.IsForbidden(err) {
		t.Errorf("dana updating her booking: %v, want Forbidden", err)
	}
	status := r.DeepCopy()
	status.Status = gpuwardenv1alpha1.GPUReservationStatus{Phase: gpuwardenv1alpha1.ReservationAccepted, Message: "dana says so"}
	if err := dana.Status().Update(ctx, status); !apierrors.IsForbidden(err) {
		t.Errorf("dana writing her booking's status: %v, want Forbidden", err)
	}
	if err := dana.Status().Patch(ctx, status, client.MergeFrom(&r)); !apierrors.IsForbidden(err) {
		t.Errorf("dana patching her booking's status: %v, want Forbidden", err)
	}
	// The status is the controller's (here the control plane's admin): the annotations stay.
	if err := admin.Status().Update(ctx, status); err != nil {
		t.Errorf("writing the status as the controller: %v", err)
	}
	if got := bookedBy(ctx, admin, mine.Name); got != "dana admin=false" {
		t.Errorf("after a status write the booking is recorded as %q, want dana admin=false", got)
	}
}

// TestReservationAccessWithoutTheMutatingPolicy: on an API server that does not run the
// MutatingAdmissionPolicy (here: its binding deleted), the validating policy still refuses a
// user's booking that does not name them as its booker, or claims an admin's, and lets in one
// that names them as the mutating policy would have. A booking made meanwhile with no booker
// named keeps none once the mutating policy is back: an update cannot add one.
func TestReservationAccessWithoutTheMutatingPolicy(t *testing.T) {
	admin, issuer := accessInstalled(t)
	ctx := context.Background()
	fay := kubeconfigClient(t, issuer, "fay", false)
	reservationPoliciesRead(t, admin, fay, "fay")

	binding := &admissionregistrationv1.MutatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: access.ReservationBookerPolicy}}
	if err := admin.Delete(ctx, binding); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := access.Install(context.Background(), controlplanetest.Get(t).Client(t)); err != nil {
			t.Errorf("installing the policies again: %v", err)
		}
	})
	const want = `user fay's booking fay-unnamed must carry the annotations gpuwarden.io/booked-by: fay and gpuwarden.io/booked-by-admin: "false"`
	testutil.Eventually(t, policyWait, "fay's booking naming no booker refused", func() (bool, string) {
		err := fay.Create(ctx, booking("fay-unnamed", gpuwardenv1alpha1.DisplaceWait, userSubject("fay")))
		if err == nil {
			_ = admin.Delete(ctx, booking("fay-unnamed", ""))
			return false, "created"
		}
		return apierrors.IsForbidden(err) && strings.Contains(err.Error(), want), err.Error()
	})
	for _, c := range []struct{ by, admin string }{{"fay", "true"}, {"ed", "false"}, {"fay", ""}} {
		err := fay.Create(ctx, annotated(booking("fay-claims", gpuwardenv1alpha1.DisplaceWait, userSubject("fay")), c.by, c.admin))
		if err == nil {
			cleanupBooking(t, admin, "fay-claims")
		}
		refused(t, "fay's booking claiming booked-by "+c.by+", admin "+c.admin, err,
			`user fay's booking fay-claims must carry the annotations gpuwarden.io/booked-by: fay and gpuwarden.io/booked-by-admin: "false"`)
	}
	named := annotated(booking("fay-named", gpuwardenv1alpha1.DisplaceWait, userSubject("fay")), "fay", "false")
	if err := fay.Create(ctx, named); err != nil {
		t.Errorf("fay's booking naming her as its booker: %v", err)
	}
	cleanupBooking(t, admin, named.Name)

	// A booking made meanwhile by someone the validating policy does not hold names no
	// booker; once the mutating policy is back, an update cannot name one either.
	unnamed := booking("fay-unrecorded", gpuwardenv1alpha1.DisplaceWait, userSubject("fay"))
	if err := admin.Create(ctx, unnamed); err != nil {
		t.Fatal(err)
	}
	cleanupBooking(t, admin, unnamed.Name)
	if err := access.Install(ctx, admin); err != nil {
		t.Fatal(err)
	}
	reservationPoliciesRead(t, admin, fay, "fay")
	if got := bookedBy(ctx, admin, unnamed.Name); got != " admin=" {
		t.Fatalf("the booking made without the mutating policy is recorded as %q, want nothing", got)
	}
	var r gpuwardenv1alpha1.GPUReservation
	if err := admin.Get(ctx, client.ObjectKeyFromObject(unnamed), &r); err != nil {
		t.Fatal(err)
	}
	annotated(&r, "fay", "false")
	if err := admin.Update(ctx, &r); err != nil {
		t.Fatalf("naming its booker afterwards: %v", err)
	}
	if got := bookedBy(ctx, admin, unnamed.Name); got != " admin=" {
		t.Errorf("after naming its booker afterwards the booking is recorded as %q, want nothing", got)
	}
}

// TestReservationRules: the CRD's rules refuse a window that ends before it starts, a weekly
// window longer than a week and any window longer than 90 days, naming the rule.
func TestReservationRules(t *testing.T) {
	admin := controlplanetest.Get(t).Client(t)
	ctx := context.Background()
	for _, c := range []struct {
		name   string
		length time.Duration
		repeat gpuwardenv1alpha1.ReservationRepeat
		want   string
	}{
		{"rules-backwards", -time.Hour, gpuwardenv1alpha1.RepeatNone, "end must be after start"},
		{"rules-empty", 0, gpuwardenv1alpha1.RepeatNone, "end must be after start"},
		{"rules-long-week", 7*24*time.Hour + time.Minute, gpuwardenv1alpha1.RepeatWeekly, "a weekly window lasts at most a week"},
		{"rules-long", 90*24*time.Hour + time.Minute, gpuwardenv1alpha1.RepeatNone, "a window lasts at most 90 days"},
	} {
		r := booking(c.name, gpuwardenv1alpha1.DisplaceWait, userSubject("alice"))
		r.Spec.End = metav1.NewTime(r.Spec.Start.Add(c.length))
		r.Spec.Repeat = c.repeat
		err := admin.Create(ctx, r)
		if err == nil {
			cleanupBooking(t, admin, c.name)
		}
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want Invalid naming %q", c.name, err, c.want)
		}
	}
	for _, c := range []struct {
		name   string
		length time.Duration
		repeat gpuwardenv1alpha1.ReservationRepeat
	}{
		{"rules-week", 7 * 24 * time.Hour, gpuwardenv1alpha1.RepeatWeekly},
		{"rules-90-days", 90 * 24 * time.Hour, gpuwardenv1alpha1.RepeatNone},
	} {
		r := booking(c.name, gpuwardenv1alpha1.DisplaceWait, userSubject("alice"))
		r.Spec.End = metav1.NewTime(r.Spec.Start.Add(c.length))
		r.Spec.Repeat = c.repeat
		if err := admin.Create(ctx, r); err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		cleanupBooking(t, admin, c.name)
		if r.Spec.Displace != gpuwardenv1alpha1.DisplaceWait || r.Spec.Repeat != c.repeat {
			t.Errorf("%s stored with displace %q, repeat %q", c.name, r.Spec.Displace, r.Spec.Repeat)
		}
	}
	// Defaults: repeat None, displace Wait.
	r := booking("rules-defaults", "", userSubject("alice"))
	if err := admin.Create(ctx, r); err != nil {
		t.Fatal(err)
	}
	cleanupBooking(t, admin, r.Name)
	if r.Spec.Repeat != gpuwardenv1alpha1.RepeatNone || r.Spec.Displace != gpuwardenv1alpha1.DisplaceWait {
		t.Errorf("defaults: repeat %q, displace %q, want None and Wait", r.Spec.Repeat, r.Spec.Displace)
	}
	changed := r.DeepCopy()
	changed.Spec.Subjects = []gpuwardenv1alpha1.Subject{userSubject("bob")}
	if err := admin.Update(ctx, changed); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "a reservation cannot be changed once made; delete it and book again") {
		t.Errorf("changing the subjects: %v, want Invalid naming the rule", err)
	}
	// Metadata may change (the spec rule does not see it).
	labelled := r.DeepCopy()
	labelled.Labels = map[string]string{"team": "nlp"}
	if err := admin.Update(ctx, labelled); err != nil {
		t.Errorf("labelling a reservation: %v", err)
	}
}

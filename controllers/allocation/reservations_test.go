package allocation

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/reservation"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// TestAUsersOwnBookingIsHeldToTheirQuota: a user's own booking needs an allowance, fits it
// in every window, starts at most a window ahead, is one of at most MaxOwnBookings, and asks
// only what their quota could place; an admin's booking needs none of it.
func TestAUsersOwnBookingIsHeldToTheirQuota(t *testing.T) {
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	quota := func(name, hours string, full bool) gpuwardenv1alpha1.GPUQuota {
		q := gpuwardenv1alpha1.GPUQuota{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: gpuwardenv1alpha1.GPUQuotaSpec{Subjects: []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectUser, Name: name}},
				Limits: gpuwardenv1alpha1.QuotaLimits{AllowFullGPU: &full}}}
		if hours != "" {
			h := resource.MustParse(hours)
			q.Spec.Limits.ReservedGPUHours = &h
		}
		return q
	}
	p := &pass{r: &Reconciler{Groups: resolve.StaticGroups{}}, now: now, groups: map[string][]string{},
		quotas: []gpuwardenv1alpha1.GPUQuota{quota("ann", "10", true), quota("sid", "100", false), quota("noa", "", true)}}
	inventory := map[string][]allocation.Slot{"n1": {
		{GPUIndex: 0, GPUUUID: "GPU-a", UUID: "GPU-a", Healthy: true}, {GPUIndex: 1, GPUUUID: "GPU-b", UUID: "GPU-b", Healthy: true}}}
	book := func(user string, admin bool, start time.Time, length time.Duration, gpus int32) *gpuwardenv1alpha1.GPUReservation {
		return &gpuwardenv1alpha1.GPUReservation{ObjectMeta: metav1.ObjectMeta{Name: user + "-booking", Annotations: map[string]string{
			gpuwardenv1alpha1.AnnotationBookedBy: user, gpuwardenv1alpha1.AnnotationBookedByAdmin: map[bool]string{true: "true", false: "false"}[admin]}},
			Spec: gpuwardenv1alpha1.GPUReservationSpec{Subjects: []gpuwardenv1alpha1.Subject{{Kind: gpuwardenv1alpha1.SubjectUser, Name: user}},
				Request: gpuwardenv1alpha1.AllocationRequest{GPUs: &gpus}, Start: metav1.NewTime(start), End: metav1.NewTime(start.Add(length))}}
	}
	decide := func(r *gpuwardenv1alpha1.GPUReservation, accepted []reservation.Booked, open int) *gpuwardenv1alpha1.GPUReservationStatus {
		want := &gpuwardenv1alpha1.GPUReservationStatus{}
		p.decideReservation(context.Background(), r, want, inventory, nil, accepted, map[string]int{reservation.BookerOf(r): open})
		return want
	}
	for _, c := range []struct {
		name     string
		r        *gpuwardenv1alpha1.GPUReservation
		accepted []reservation.Booked
		open     int
		reason   string
		says     string
	}{
		{"within the allowance", book("ann", false, now.Add(time.Hour), 5*time.Hour, 2), nil, 1, "", ""},
		{"beyond it", book("ann", false, now.Add(time.Hour), 6*time.Hour, 2), nil, 1, gpuwardenv1alpha1.ReasonAllowanceExceeded,
			"ann's bookings would reserve 12 gpu-hours from 2026-12-07T10:00:00Z to 2027-01-06T10:00:00Z, this one's included; limits.reservedGPUHours is 10 per 30d (GPUQuota ann)"},
		{"with one made before", book("ann", false, now.Add(10*24*time.Hour), 3*time.Hour, 1),
			[]reservation.Booked{{Name: "earlier", Booker: "ann", Times: reservation.Times{First: reservation.Window{Start: now.Add(24 * time.Hour), End: now.Add(32 * time.Hour)}}, Weight: 1}},
			2, gpuwardenv1alpha1.ReasonAllowanceExceeded, "ann's bookings would reserve 11 gpu-hours"},
		{"too far ahead", book("ann", false, now.Add(40*24*time.Hour), time.Hour, 1), nil, 1, gpuwardenv1alpha1.ReasonAllowanceExceeded, "may book at most 720h ahead"},
		{"too many open", book("ann", false, now.Add(time.Hour), time.Hour, 1), nil, reservation.MaxOwnBookings + 1, gpuwardenv1alpha1.ReasonAllowanceExceeded, "at most 32"},
		{"no allowance", book("noa", false, now.Add(time.Hour), time.Hour, 1), nil, 1, gpuwardenv1alpha1.ReasonAllowanceExceeded, "no GPUQuota of theirs sets limits.reservedGPUHours"},
		{"more than their quota could place", book("sid", false, now.Add(time.Hour), time.Hour, 1), nil, 1, gpuwardenv1alpha1.ReasonFullGPUNotAllowed, "its user's quota could never place it"},
		{"an admin's, for a user with no allowance", book("noa", true, now.Add(40*24*time.Hour), 100*time.Hour, 2), nil, 40, "", ""},
	} {
		got := decide(c.r, c.accepted, c.open)
		if c.reason == "" {
			if got.Phase != gpuwardenv1alpha1.ReservationAccepted {
				t.Errorf("%s: %s %s: %s", c.name, got.Phase, got.Reason, got.Message)
			}
			continue
		}
		if got.Phase != gpuwardenv1alpha1.ReservationRejected || got.Reason != c.reason || !strings.Contains(got.Message, c.says) {
			t.Errorf("%s: %s %s: %s; want %s saying %q", c.name, got.Phase, got.Reason, got.Message, c.reason, c.says)
		}
	}
}

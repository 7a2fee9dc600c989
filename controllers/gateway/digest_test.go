package gateway

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/notify"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

type channelsOf map[string]notify.Channels

func (c channelsOf) Channels(_ context.Context, user string) (notify.Channels, error) {
	return c[user], nil
}

// TestDigestTellsOncePerDayWaited: a user who asked for the digest is told, at the first
// look after each full day a request of theirs has waited, of all their waiting requests
// with their places; a user who did not ask, and a request not at a day's turn, are not.
func TestDigestTellsOncePerDayWaited(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	pending := func(name, user string, waited time.Duration, q *gpuwardenv1alpha1.QueueStatus) client.Object {
		a := testutil.MakeAllocation(name).Created(now.Add(-waited)).User(user).Node("n1").Container(name + "-c").Phase(gpuwardenv1alpha1.PhasePending).Obj()
		a.Status.Queue = q
		return a
	}
	est := metav1.NewTime(now.Add(3 * time.Hour))
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(
		pending("a-day", "alice", 24*time.Hour+10*time.Minute, &gpuwardenv1alpha1.QueueStatus{Position: 1, Waiting: 3, Message: "first in the queue", EstimatedStart: &est}),
		pending("a-new", "alice", 2*time.Hour, &gpuwardenv1alpha1.QueueStatus{Position: 3, Waiting: 3, Message: "2 requests ahead"}),
		pending("b-between", "bob", 25*time.Hour+30*time.Minute, nil),
		pending("c-two-days", "carol", 48*time.Hour+5*time.Minute, nil),
	).Build()
	told := &tells{}
	d := &Digest{Client: c, Directory: channelsOf{"alice": {QueueDigest: true}, "bob": {QueueDigest: true}}, Notices: told, NodeName: "n1",
		Clock: clocktesting.NewFakePassiveClock(now)}
	if err := d.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := told.all()
	if len(got) != 1 || got[0].User != "alice" || got[0].Type != notify.TypeQueueDigest {
		t.Fatalf("told %+v, want one digest to alice", got)
	}
	for _, want := range []string{"2 of your requests still wait", "a-day (container a-day-c), waiting 24h10m: number 1 of 3; first in the queue; estimated start 2026-12-04T15:00:00Z",
		"a-new (container a-new-c), waiting 2h: number 3 of 3", "--queue-digest=false"} {
		if !strings.Contains(got[0].Message, want) {
			t.Errorf("digest lacks %q:\n%s", want, got[0].Message)
		}
	}
}

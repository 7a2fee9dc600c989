package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/gateway"
	"github.com/gpuwarden/gpuwarden/internal/ledger"
	"github.com/gpuwarden/gpuwarden/internal/message"
	"github.com/gpuwarden/gpuwarden/internal/notify"
	"github.com/gpuwarden/gpuwarden/internal/provenance"
)

// DefaultBindWait is how long a create through the gateway waits for a GPU to free.
const DefaultBindWait = 3 * time.Minute

// Allocator gives a create through the gateway its GPUs: a signed Gateway
// GPUAllocation for the caller, decided by the allocation controller like any other, and
// waited for until Bound, refused, or BindWait passes while it waits for capacity.
type Allocator struct {
	Client client.Client
	// Reader reads the ledger (the signing key) from the API server itself.
	Reader          client.Reader
	NodeName        string
	LedgerNamespace string
	Clock           clock.Clock
	BindWait        time.Duration
	// Poll is how often the allocation is looked at while it waits.
	Poll time.Duration
	// Audit records the requests the gateway gave up waiting for; nil records nothing.
	Audit audit.Logger
	// Waiter names this process's gateway on the allocations it waits for
	// (AnnotationWaiter): Strays knows a waiting allocation of another is no one's.
	Waiter string
	// Notices tell a user, through their own channels (e-mail, chat), that a request that
	// waited at least NoticeAfter (a minute when 0) got its GPUs, or that its create gave up
	// waiting; none when nil.
	Notices     Teller
	NoticeAfter time.Duration
}

// Teller delivers a notice (notify.Notifier).
type Teller interface {
	Tell(ctx context.Context, n notify.Notice)
}

// DefaultNoticeAfter is how long a request waits before its start is worth a notice.
const DefaultNoticeAfter = time.Minute

var _ gateway.Allocator = (*Allocator)(nil)

// Allocate implements gateway.Allocator.
func (g *Allocator) Allocate(ctx context.Context, user string, req gateway.GPURequest, containerName string, t gpuwardenv1alpha1.ContainerType) (string, []string, error) {
	request, err := g.request(ctx, req)
	var refused *gateway.AllocationError
	if errors.As(err, &refused) && g.Audit != nil {
		// Refused before any allocation is made (a GPU split into MIG slices named whole): a
		// refused request all the same, recorded like one the controller rejects.
		ref := audit.Allocation{Container: audit.Container{Name: containerName, Type: string(t)}}
		g.Audit.Log(audit.GPUReject(user, ref, gpuwardenv1alpha1.ReasonUnsatisfiable, refused.Message))
	}
	if err != nil {
		return "", nil, err
	}
	a := g.newAllocation(user, request, containerName, t)
	_, wait := g.waits()
	if req.Wait > 0 {
		wait = req.Wait
	}
	if req.MaxWait > 0 {
		wait = min(wait, req.MaxWait)
	}
	return g.createAndWait(ctx, a, "", wait, req.MaxWait)
}

// newAllocation is a Gateway allocation for user, named at random.
func (g *Allocator) newAllocation(user string, request gpuwardenv1alpha1.AllocationRequest, containerName string, t gpuwardenv1alpha1.ContainerType) *gpuwardenv1alpha1.GPUAllocation {
	suffix := make([]byte, 5)
	_, _ = rand.Read(suffix)
	a := &gpuwardenv1alpha1.GPUAllocation{
		ObjectMeta: metav1.ObjectMeta{Name: "gateway-" + hex.EncodeToString(suffix), Labels: map[string]string{gpuwardenv1alpha1.LabelNode: g.NodeName},
			Annotations: map[string]string{}},
		Spec: gpuwardenv1alpha1.GPUAllocationSpec{User: user, NodeName: g.NodeName, Request: request, ContainerType: t,
			Source: gpuwardenv1alpha1.SourceGateway, ContainerName: message.Truncate(containerName, 256)},
	}
	allocation.SyncLabels(a) // selectable by user from the start
	return a
}

// createAndWait signs and creates a, then waits until it is Bound (its name and devices),
// Rejected or wait passes (an *gateway.AllocationError; hint ends the message of a wait
// given up; maxWait, when known, is the longest the caller may ask for). An allocation not
// Bound is given back, at once when the caller goes away.
func (g *Allocator) createAndWait(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation, hint string, wait, maxWait time.Duration) (string, []string, error) {
	start := g.Clock.Now()
	key, err := ledger.SigningKey(ctx, g.Reader, g.Client, g.ledgerNamespace())
	if err != nil {
		return "", nil, err
	}
	a.Annotations[gpuwardenv1alpha1.AnnotationSignature] = provenance.Sign(key, a)
	a.Annotations[gpuwardenv1alpha1.AnnotationWaitUntil] = start.Add(wait).UTC().Format(time.RFC3339)
	if g.Waiter != "" {
		a.Annotations[gpuwardenv1alpha1.AnnotationWaiter] = g.Waiter
	}
	if err := g.Client.Create(ctx, a); err != nil {
		return "", nil, fmt.Errorf("creating the GPU allocation: %w", err)
	}
	poll, _ := g.waits()
	if hint == "" {
		hint = waitLonger(wait, maxWait)
		if a.Spec.Request.MIGProfile != "" {
			hint += ", or ask for a profile that is free"
		} else {
			hint += ", or ask for fewer GPUs"
		}
	}
	for {
		cur := &gpuwardenv1alpha1.GPUAllocation{}
		if err := g.Client.Get(ctx, client.ObjectKeyFromObject(a), cur); err == nil {
			switch cur.Status.Phase {
			case gpuwardenv1alpha1.PhaseBound:
				var uuids []string
				for _, d := range cur.Status.Devices {
					uuids = append(uuids, d.UUID)
				}
				if waited := g.Clock.Since(start); waited >= g.noticeAfter() {
					g.tell(ctx, cur, notify.TypeQueueStarted, "STARTED", fmt.Sprintf("Your request got GPU %s after waiting %s; container %s is being created now.",
						cur.Status.DevicesSummary, message.Duration(waited.Round(time.Second)), orUnnamed(cur.Spec.ContainerName)))
				}
				return a.Name, uuids, nil
			case gpuwardenv1alpha1.PhaseRejected:
				g.Release(context.Background(), a.Name)
				return "", nil, &gateway.AllocationError{Status: http.StatusForbidden, Message: fmt.Sprintf("no GPU for you: %s (%s)%s", cur.Status.Message, cur.Status.Reason, g.freeNote(ctx, a))}
			}
			if g.Clock.Since(start) >= wait {
				place := g.place(ctx, cur)
				g.Release(context.Background(), a.Name)
				why := cur.Status.Message
				if why == "" {
					why = "not decided yet"
				}
				msg := fmt.Sprintf("no GPU free after waiting %s: %s%s; your request was %s on %s (%s)",
					message.Duration(wait), why, g.freeNote(ctx, a), place, g.NodeName, hint)
				g.recordGaveUp(cur, g.Clock.Since(start), msg)
				if g.Clock.Since(start) >= g.noticeAfter() {
					g.tell(ctx, cur, notify.TypeQueueGaveUp, "GAVE UP", "Your container was not created: "+msg+".")
				}
				return "", nil, &gateway.AllocationError{Status: http.StatusServiceUnavailable, Message: msg}
			}
		}
		select {
		case <-ctx.Done(): // the caller gave up
			g.Release(context.Background(), a.Name)
			return "", nil, ctx.Err()
		case <-g.Clock.After(poll):
		}
	}
}

// Reacquire implements gateway.Allocator: a start is checked like a create. The container's
// devices must be held for its owner by a live allocation of this node — the one its label
// names, or one that names the container's ID — Bound to exactly those devices; else a new
// Gateway allocation asks for exactly those devices, naming the container's ID (the
// container controller attaches it by that ID: the label cannot change), and is waited for
// like a create. Devices another allocation holds are refused at once, naming the holder.
func (g *Allocator) Reacquire(ctx context.Context, user string, c gateway.Starting) (string, error) {
	var gpus gpuwardenv1alpha1.GPUList
	if err := g.Client.List(ctx, &gpus, client.MatchingLabels{gpuwardenv1alpha1.LabelNode: g.NodeName}); err != nil {
		return "", fmt.Errorf("listing the node's GPUs: %w", err)
	}
	devices, missing, _ := allocation.ResolveDevices(allocation.SlotsOf(gpus.Items), c.Devices)
	if len(missing) > 0 {
		return "", &gateway.AllocationError{Status: http.StatusForbidden, Message: fmt.Sprintf(
			"container %s was made for %s, which this node does not have (any more); recreate it with --gpus %d to get a free GPU",
			c.Name, strings.Join(missing, ","), len(c.Devices))}
	}
	var list gpuwardenv1alpha1.GPUAllocationList
	if err := g.Client.List(ctx, &list); err != nil {
		return "", fmt.Errorf("listing GPU allocations: %w", err)
	}
	recreate := fmt.Sprintf("recreate the container with --gpus %d to get a free GPU", len(devices))
	for i := range list.Items {
		a := &list.Items[i]
		if g.forContainer(a, user, c) && holdsExactly(a, devices) {
			return a.Name, nil // still held: nothing to do
		}
	}
	if holder, device := allocation.HeldElsewhere(list.Items, devices, g.NodeName, func(a *gpuwardenv1alpha1.GPUAllocation) bool {
		return g.forContainer(a, user, c) // its own, about to be released: no one else's
	}); holder != nil {
		return "", &gateway.AllocationError{Status: http.StatusForbidden, Message: fmt.Sprintf(
			"container %s cannot start: its GPU %s was given back when it stopped and is now held by %s's allocation %s; %s",
			c.Name, device, holder.Spec.User, holder.Name, recreate)}
	}
	a := g.newAllocation(user, gpuwardenv1alpha1.AllocationRequest{Devices: devices}, c.Name, c.Type)
	a.Spec.ContainerID = c.ID
	_, wait := g.waits()
	name, _, err := g.createAndWait(ctx, a, "try again later, or "+recreate, wait, 0)
	var ae *gateway.AllocationError
	if errors.As(err, &ae) {
		ae.Message = fmt.Sprintf("container %s cannot start until its GPUs (%s) are held again: %s", c.Name, strings.Join(devices, ","), ae.Message)
		if ae.Status == http.StatusForbidden {
			ae.Message += "; " + recreate
		}
	}
	return name, err
}

// forContainer reports whether a is a live allocation of user on this node that is the
// container's: the one its label names, or one that names its ID.
func (g *Allocator) forContainer(a *gpuwardenv1alpha1.GPUAllocation, user string, c gateway.Starting) bool {
	if !allocation.Live(a) || a.Spec.User != user || a.Spec.NodeName != g.NodeName && a.Spec.NodeName != "" {
		return false
	}
	if a.Status.ContainerID != "" && a.Status.ContainerID != c.ID || a.Spec.ContainerID != "" && a.Spec.ContainerID != c.ID {
		return false
	}
	return a.Name == c.Allocation && c.Allocation != "" || a.Spec.ContainerID == c.ID || a.Status.ContainerID == c.ID
}

// holdsExactly reports whether a is Bound to exactly the devices.
func holdsExactly(a *gpuwardenv1alpha1.GPUAllocation, devices []string) bool {
	if a.Status.Phase != gpuwardenv1alpha1.PhaseBound || len(a.Status.Devices) != len(devices) {
		return false
	}
	for _, d := range a.Status.Devices {
		if !slices.Contains(devices, d.UUID) {
			return false
		}
	}
	return true
}

// request turns the gateway's GPU request into the allocation's; "all" is every GPU of the node.
func (g *Allocator) request(ctx context.Context, req gateway.GPURequest) (gpuwardenv1alpha1.AllocationRequest, error) {
	switch {
	case req.MIGProfile != "":
		return gpuwardenv1alpha1.AllocationRequest{MIGProfile: req.MIGProfile}, nil
	case len(req.Devices) > 0:
		var gpus gpuwardenv1alpha1.GPUList
		if err := g.Client.List(ctx, &gpus, client.MatchingLabels{gpuwardenv1alpha1.LabelNode: g.NodeName}); err != nil {
			return gpuwardenv1alpha1.AllocationRequest{}, fmt.Errorf("listing the node's GPUs: %w", err)
		}
		slots := allocation.SlotsOf(gpus.Items)
		for _, d := range req.Devices {
			if index, ok := allocation.Partitioned(slots, d); ok {
				return gpuwardenv1alpha1.AllocationRequest{}, &gateway.AllocationError{Status: http.StatusForbidden, Message: fmt.Sprintf(
					"GPU %d is split into MIG slices: ask for a profile (--gpus '\"device=%s\"'), free now: %s",
					index, exampleProfile(slots, index), g.freeSlices(ctx, slots))}
			}
		}
		return gpuwardenv1alpha1.AllocationRequest{Devices: req.Devices}, nil
	case req.All:
		var gpus gpuwardenv1alpha1.GPUList
		if err := g.Client.List(ctx, &gpus, client.MatchingLabels{gpuwardenv1alpha1.LabelNode: g.NodeName}); err != nil {
			return gpuwardenv1alpha1.AllocationRequest{}, fmt.Errorf("listing the node's GPUs: %w", err)
		}
		n := int32(len(gpus.Items))
		return gpuwardenv1alpha1.AllocationRequest{GPUs: &n}, nil
	}
	n := int32(req.Count)
	return gpuwardenv1alpha1.AllocationRequest{GPUs: &n}, nil
}

// ledgerNamespace is where the ledger and the signing key live.
func (g *Allocator) ledgerNamespace() string {
	if g.LedgerNamespace == "" {
		return ledger.DefaultNamespace
	}
	return g.LedgerNamespace
}

// freeSlices says which MIG slices of the node are free now, by profile, as the ledger's
// bindings leave them: "1g.10gb ×3, 3g.40gb ×1", "none", or "unknown" when it cannot be read.
func (g *Allocator) freeSlices(ctx context.Context, slots []allocation.Slot) string {
	l, err := ledger.ReadNode(ctx, g.Reader, g.ledgerNamespace(), g.NodeName)
	if err != nil {
		ctrl.LoggerFrom(ctx).WithName("gateway").Error(err, "Reading the ledger to say which MIG slices are free")
		return "unknown"
	}
	return allocation.DescribeFree(allocation.FreeProfiles(slots, l.Holdings(), -1))
}

// freeNote is "; free now: …" for a refused or given-up request of a MIG profile, else "".
func (g *Allocator) freeNote(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation) string {
	if a.Spec.Request.MIGProfile == "" {
		return ""
	}
	var gpus gpuwardenv1alpha1.GPUList
	if err := g.Client.List(ctx, &gpus, client.MatchingLabels{gpuwardenv1alpha1.LabelNode: g.NodeName}); err != nil {
		return ""
	}
	return "; free now: " + g.freeSlices(ctx, allocation.SlotsOf(gpus.Items))
}

// exampleProfile is a profile GPU index is split into, its smallest, to show how to ask.
func exampleProfile(slots []allocation.Slot, index int) string {
	best, bestSize := "1g.10gb", 0.0
	for _, s := range slots {
		if s.GPUIndex == index && s.Profile != "" && (bestSize == 0 || s.Weight() < bestSize) {
			best, bestSize = s.Profile, s.Weight()
		}
	}
	return best
}

// place says where a waiting allocation was in its node's queue and when it would have
// started: "number 2 of 3 waiting (estimated start …, at the latest …, when bob-train
// ends)". An allocation the allocator has not placed yet is counted among the node's
// waiting requests, oldest first.
func (g *Allocator) place(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation) string {
	if q := a.Status.Queue; q != nil {
		s := fmt.Sprintf("number %d of %d waiting", q.Position, max(q.Waiting, q.Position))
		var when []string
		if q.EstimatedStart != nil {
			when = append(when, "estimated start "+q.EstimatedStart.UTC().Format(time.RFC3339))
		}
		switch {
		case q.LatestStart != nil && q.BlockedBy != "":
			when = append(when, fmt.Sprintf("at the latest %s, when %s ends", q.LatestStart.UTC().Format(time.RFC3339), q.BlockedBy))
		case q.LatestStart != nil:
			when = append(when, "at the latest "+q.LatestStart.UTC().Format(time.RFC3339))
		case q.BlockedBy != "":
			when = append(when, fmt.Sprintf("no latest start: %s holds its GPUs without a time limit", q.BlockedBy))
		}
		if len(when) > 0 {
			s += " (" + strings.Join(when, ", ") + ")"
		}
		return s
	}
	var list gpuwardenv1alpha1.GPUAllocationList
	if err := g.Client.List(ctx, &list); err != nil {
		return "number 1 of 1 waiting"
	}
	position, waiting := 1, 0
	for _, o := range list.Items {
		if o.Spec.NodeName != g.NodeName || (o.Status.Phase != "" && o.Status.Phase != gpuwardenv1alpha1.PhasePending) {
			continue
		}
		waiting++
		if o.Name != a.Name && o.CreationTimestamp.Before(&a.CreationTimestamp) {
			position++
		}
	}
	return fmt.Sprintf("number %d of %d waiting", position, max(waiting, 1))
}

// waitLonger says how to wait longer than wait, when the policy allows it.
func waitLonger(wait, maxWait time.Duration) string {
	if maxWait > wait {
		return fmt.Sprintf("wait longer with --label %s=%s (at most %s), or try again later", gpuwardenv1alpha1.LabelWait, message.Duration(maxWait), message.Duration(maxWait))
	}
	return "try again later"
}

// tell sends the user of a the notice of its request.
func (g *Allocator) tell(ctx context.Context, a *gpuwardenv1alpha1.GPUAllocation, typ, title, msg string) {
	if g.Notices == nil {
		return
	}
	g.Notices.Tell(context.WithoutCancel(ctx), notify.Notice{Type: typ, Title: title, Node: g.NodeName, User: a.Spec.User,
		Container: orUnnamed(a.Spec.ContainerName), Allocation: a.Name, Mode: string(gpuwardenv1alpha1.ModeEnforce), Message: msg, Time: g.Clock.Now().UTC()})
}

func (g *Allocator) noticeAfter() time.Duration {
	if g.NoticeAfter > 0 {
		return g.NoticeAfter
	}
	return DefaultNoticeAfter
}

// orUnnamed is a create's container name, or what a create without --name gets.
func orUnnamed(name string) string {
	if name == "" {
		return "(unnamed; docker names it)"
	}
	return name
}

// ReasonGaveUp is the gpu.reject reason of a request the gateway stopped waiting for before
// the allocation controller decided it.
const ReasonGaveUp = "NotDecided"

// recordGaveUp records a request the gateway stopped waiting for as a gpu.reject, with its
// reason and how long it waited: it is a refused request (the report counts it), not an
// access denied. One the allocation controller rejected was recorded by it.
func (g *Allocator) recordGaveUp(a *gpuwardenv1alpha1.GPUAllocation, waited time.Duration, msg string) {
	if g.Audit == nil {
		return
	}
	reason := a.Status.Reason
	if reason == "" {
		reason = ReasonGaveUp
	}
	ref := audit.AllocationOf(a, audit.Container{Name: a.Spec.ContainerName, Type: string(a.Spec.ContainerType)})
	ref.Wait = waited
	g.Audit.Log(audit.GPUReject(a.Spec.User, ref, reason, msg))
}

// Release implements gateway.Allocator: the allocation is deleted, its GPUs free at once.
func (g *Allocator) Release(ctx context.Context, name string) {
	a := &gpuwardenv1alpha1.GPUAllocation{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := g.Client.Delete(ctx, a); err != nil && !apierrors.IsNotFound(err) {
		ctrl.LoggerFrom(ctx).WithName("gateway").Error(err, "Giving back the GPUs of a create that failed", "allocation", name)
	}
}

// Use implements gateway.Allocator: a create through the gateway that names one of its
// caller's own allocations (source Manual) by label gets that allocation's devices. One of
// another user, or of no such name, is answered as missing alike: whose allocations exist is
// not for others to learn (the refusal is logged, for admins). A Pending one is waited for
// like a create's own; one not Bound then, Released, Rejected, of another node, on its way
// back, or used by a container already is refused, saying so.
func (g *Allocator) Use(ctx context.Context, user, name, containerName string) ([]string, error) {
	noSuch := &gateway.AllocationError{Status: http.StatusForbidden, Absent: true,
		Message: fmt.Sprintf("No such GPU allocation: %s (name one of yours: kubectl get ga -l %s=%s)", shortName(name), gpuwardenv1alpha1.LabelUser, user)}
	if len(validation.IsDNS1123Subdomain(name)) > 0 {
		return nil, noSuch
	}
	key := client.ObjectKey{Name: name}
	a := &gpuwardenv1alpha1.GPUAllocation{}
	// Read from the API server itself: one made with kubectl a moment ago is there.
	if err := g.Reader.Get(ctx, key, a); apierrors.IsNotFound(err) {
		return nil, noSuch
	} else if err != nil {
		return nil, fmt.Errorf("reading GPU allocation %s: %w", name, err)
	}
	if a.Spec.User != user {
		ctrl.LoggerFrom(ctx).WithName("gateway").Info("Refused a create that named another user's GPU allocation (answered as missing)",
			"caller", user, "allocation", name, "user", a.Spec.User)
		return nil, noSuch
	}
	poll, wait := g.waits()
	start := g.Clock.Now()
	for {
		uuids, done, err := g.usable(a, containerName)
		if done {
			return uuids, err
		}
		if g.Clock.Since(start) >= wait {
			why := a.Status.Message
			if why == "" {
				why = "not decided yet"
			}
			return nil, &gateway.AllocationError{Status: http.StatusServiceUnavailable, Message: fmt.Sprintf(
				"GPU allocation %s is still Pending after waiting %s: %s; try again once kubectl get ga %s shows it Bound", name, wait, why, name)}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-g.Clock.After(poll):
		}
		cur := &gpuwardenv1alpha1.GPUAllocation{}
		err = g.Client.Get(ctx, key, cur)
		if apierrors.IsNotFound(err) {
			err = g.Reader.Get(ctx, key, cur) // the cache may not have it yet
		}
		switch {
		case apierrors.IsNotFound(err):
			return nil, &gateway.AllocationError{Status: http.StatusForbidden, Message: fmt.Sprintf("GPU allocation %s was deleted while the create waited for it", name)}
		case err != nil:
			return nil, fmt.Errorf("reading GPU allocation %s: %w", name, err)
		}
		a = cur
	}
}

// usable says whether the caller's own allocation a can be used by a new container now:
// its devices (done), a refusal (done), or not yet (Pending).
func (g *Allocator) usable(a *gpuwardenv1alpha1.GPUAllocation, containerName string) ([]string, bool, error) {
	refuse := func(format string, args ...any) ([]string, bool, error) {
		return nil, true, &gateway.AllocationError{Status: http.StatusForbidden, Message: fmt.Sprintf("GPU allocation %s ", a.Name) + fmt.Sprintf(format, args...)}
	}
	switch {
	case a.Spec.Source != gpuwardenv1alpha1.SourceManual:
		return refuse("was made by gpuwarden for a container of its own (source %s): only an allocation you made with kubectl (source Manual) can be named; ask for GPUs with --gpus N instead",
			a.Spec.Source)
	case a.Spec.NodeName != "" && a.Spec.NodeName != g.NodeName:
		return refuse("is for node %s; this gateway is node %s's", a.Spec.NodeName, g.NodeName)
	case a.Status.Phase == gpuwardenv1alpha1.PhaseReleased || a.Status.Phase == gpuwardenv1alpha1.PhaseRejected:
		return refuse("is %s (%s: %s): create a new one", a.Status.Phase, a.Status.Reason, a.Status.Message)
	case a.Annotations[gpuwardenv1alpha1.AnnotationRelease] != "":
		return refuse("is being released (%s): create a new one", a.Annotations[gpuwardenv1alpha1.AnnotationRelease])
	case a.Status.ContainerID != "":
		which := shortID(a.Status.ContainerID)
		if a.Status.ContainerName != "" {
			which = a.Status.ContainerName + " (" + which + ")"
		}
		return refuse("is used by container %s already: an allocation is for one container; remove that one first, or create another allocation", which)
	case a.Spec.ContainerID != "":
		return refuse("is for container %s alone (spec.containerID)", shortID(a.Spec.ContainerID))
	case a.Spec.ContainerName != "" && a.Spec.ContainerName != containerName:
		return refuse("is for the container named %s alone (spec.containerName); name the container so (docker run --name %s)", a.Spec.ContainerName, a.Spec.ContainerName)
	case a.Status.Phase != gpuwardenv1alpha1.PhaseBound:
		return nil, false, nil // Pending: waited for
	}
	uuids := make([]string, 0, len(a.Status.Devices))
	for _, d := range a.Status.Devices {
		uuids = append(uuids, d.UUID)
	}
	if len(uuids) == 0 {
		return refuse("is Bound to no device")
	}
	return uuids, true, nil
}

// shortName bounds a name a caller sent, for a message.
func shortName(name string) string {
	if len(name) > 64 {
		return fmt.Sprintf("%.64q…", name)
	}
	return name
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// waits are how often a create's allocation is looked at while it waits to bind, and how
// long it waits at most.
func (g *Allocator) waits() (poll, wait time.Duration) {
	poll, wait = g.Poll, g.BindWait
	if poll == 0 {
		poll = 100 * time.Millisecond
	}
	if wait == 0 {
		wait = DefaultBindWait
	}
	return poll, wait
}

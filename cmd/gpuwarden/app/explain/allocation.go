package explain

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/options"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
)

func newAllocationCommand() *cobra.Command {
	o := &Options{}
	cmd := &cobra.Command{
		Use:   "allocation NAME",
		Short: "Explain where a waiting GPU allocation is in its node's queue, when it starts, and why each request ahead of it is ahead",
		Example: `  gpuwarden explain allocation alice-train
  gpuwarden explain allocation gateway-4f2c1a9e07   # a docker run --gpus waiting (kubectl get ga -l gpuwarden.io/user=$USER)`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			return explainAllocation(cmd.Context(), c, args[0], cmd.OutOrStdout())
		},
	}
	options.KubeconfigFlag(cmd.Flags(), &o.Kubeconfig)
	return cmd
}

// explainAllocation prints an allocation's place in its node's queue and, for each request
// ahead of it, what puts it ahead: a higher priority, a lower fair share, or the same of
// both and more time waited.
func explainAllocation(ctx context.Context, c client.Reader, name string, out io.Writer) error {
	a := &gpuwardenv1alpha1.GPUAllocation{}
	if err := c.Get(ctx, client.ObjectKey{Name: name}, a); apierrors.IsNotFound(err) {
		return fmt.Errorf("no GPU allocation %q (kubectl get ga lists them)", name)
	} else if err != nil {
		return fmt.Errorf("reading GPU allocation %s: %w", name, err)
	}
	node := a.Spec.NodeName
	if node == "" {
		node = "no node yet"
	}
	fmt.Fprintf(out, "GPU allocation %s of %s on %s: %s", a.Name, a.Spec.User, node, orDash(string(a.Status.Phase), "not decided yet"))
	if a.Status.Reason != "" {
		fmt.Fprintf(out, " (%s)", a.Status.Reason)
	}
	fmt.Fprintln(out)
	if a.Status.Borrowed {
		fmt.Fprintf(out, "It is borrowed: it took %s beyond their quota while the GPUs were free (GPUQuota borrowing).\n", a.Spec.User)
		fmt.Fprintln(out, GiveBackRule)
	}
	if why := a.Annotations[gpuwardenv1alpha1.AnnotationGiveBack]; why != "" && a.Status.Phase == gpuwardenv1alpha1.PhaseBound {
		fmt.Fprintf(out, "It is being given back now: %s.\n", why)
	}
	if d := a.Status.Displacement; d != nil && a.Status.Phase == gpuwardenv1alpha1.PhaseBound {
		fmt.Fprintf(out, "A reservation takes its GPUs: %s. Its time crosses the start, so by %s its checkpoint hook runs, it is stopped and its GPUs released (kubectl get rsv %s).\n",
			d.Message, d.At.UTC().Format(time.RFC3339), d.Reservation)
	}
	q := a.Status.Queue
	if q == nil {
		switch {
		case a.Status.Phase == gpuwardenv1alpha1.PhasePending && a.Spec.NodeName == "":
			fmt.Fprintln(out, "It waits for any GPU node to take it; it has a place in a node's queue once one does.")
		case a.Status.Phase == gpuwardenv1alpha1.PhasePending || a.Status.Phase == "":
			fmt.Fprintf(out, "It is not in the queue yet: %s\n", orDash(a.Status.Message, "the allocator has not decided it."))
		default:
			fmt.Fprintf(out, "It does not wait: %s\n", orDash(a.Status.Message, "nothing more to say."))
		}
		return nil
	}
	fmt.Fprintf(out, "Number %d of %d waiting for capacity on %s: %s.\n", q.Position, max(q.Waiting, q.Position), a.Spec.NodeName, q.Message)
	if a.Status.Message != "" {
		fmt.Fprintf(out, "Why it cannot start now: %s.\n", strings.TrimSuffix(a.Status.Message, "."))
	}
	switch {
	case q.LatestStart != nil:
		fmt.Fprintf(out, "Starts by %s at the latest", q.LatestStart.UTC().Format(time.RFC3339))
		if q.BlockedBy != "" {
			fmt.Fprintf(out, ", when %s ends", q.BlockedBy)
		}
		fmt.Fprintln(out, " (unless a request of higher order arrives).")
	default:
		fmt.Fprintln(out, "No latest start: some GPU it waits for is held without a time limit.")
	}
	if q.EstimatedStart != nil {
		fmt.Fprintf(out, "Estimated start: %s (from how long its holders' users usually keep GPUs, and which holders are idle).\n", q.EstimatedStart.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(out, "Its order: quota priority %d; fair share %s; waiting since %s.\n", q.Priority, orDash(q.FairShare, "not known"), a.CreationTimestamp.UTC().Format(time.RFC3339))
	if len(q.Ahead) == 0 {
		fmt.Fprintln(out, "Nothing is ahead of it.")
	} else {
		fmt.Fprintln(out, "Ahead of it:")
	}
	for i, name := range q.Ahead {
		b := &gpuwardenv1alpha1.GPUAllocation{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, b); err != nil {
			fmt.Fprintf(out, "  %d. %s: gone since (%v)\n", i+1, name, client.IgnoreNotFound(err))
			continue
		}
		fmt.Fprintf(out, "  %d. %s of %s: %s\n", i+1, b.Name, b.Spec.User, whyAhead(b, a))
	}
	if more := int(q.Position) - 1 - len(q.Ahead); more > 0 {
		fmt.Fprintf(out, "  … and %d more.\n", more)
	}
	fmt.Fprintf(out, "The queue's order: quota priority (higher first), then fair share (lower first; equal within %g), then age (older first).\n", allocation.ShareResolution)
	return nil
}

// GiveBackRule is how borrowed GPUs are taken back, for people.
const GiveBackRule = "Borrowed GPUs are given back when a request within its user's quota waits and no free GPU fits it: " +
	"the fewest borrowed allocations that make it fit, the lowest quota priority first, then the latest bound (least work lost); " +
	"a user's own share is never taken. Their owner is told, the container's checkpoint hook runs (label gpuwarden.io/checkpoint), " +
	"it is stopped with its grace period, and the allocation is released."

// whyAhead says what puts b ahead of a in the queue, from what each one's status says.
func whyAhead(b, a *gpuwardenv1alpha1.GPUAllocation) string {
	bq := b.Status.Queue
	if bq == nil {
		return fmt.Sprintf("%s since (%s)", orDash(string(b.Status.Phase), "not decided"), orDash(b.Status.Message, "no longer waiting"))
	}
	aq := a.Status.Queue
	switch {
	case bq.Priority != aq.Priority:
		return fmt.Sprintf("a higher quota priority (%d, against %d)", bq.Priority, aq.Priority)
	case rankStep(bq.FairShare) != rankStep(aq.FairShare):
		return fmt.Sprintf("the same priority and a lower fair share (%s, against %s)", bq.FairShare, rankOf(aq.FairShare))
	case b.CreationTimestamp.Before(&a.CreationTimestamp):
		return fmt.Sprintf("the same priority and fair share (%s), and waiting longer (since %s)", rankOf(bq.FairShare), b.CreationTimestamp.UTC().Format(time.RFC3339))
	default:
		return fmt.Sprintf("the same priority, fair share (%s) and age; first by name", rankOf(bq.FairShare))
	}
}

// rankOf is the rank a status's fairShare starts with ("1.25: recent use …").
func rankOf(fairShare string) string {
	rank, _, _ := strings.Cut(fairShare, ":")
	return rank
}

// rankStep is the queue's step of a status's fairShare (allocation.ShareStep).
func rankStep(fairShare string) int64 {
	f, err := strconv.ParseFloat(rankOf(fairShare), 64)
	if err != nil {
		return 0
	}
	return allocation.ShareStep(f)
}

func orDash(s, instead string) string {
	if s == "" {
		return instead
	}
	return s
}

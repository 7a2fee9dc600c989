// Package queue is the `gpuwarden queue` command: the requests that wait for GPUs, in the
// order they will get them, with their place, their start times and why they wait.
package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/options"
	"github.com/gpuwarden/gpuwarden/internal/message"
	"github.com/gpuwarden/gpuwarden/internal/overview"
)

// Options are the flags of `gpuwarden queue`.
type Options struct {
	Kubeconfig string
	Node       string
	Output     string
	now        func() time.Time
}

// NewCommand returns `gpuwarden queue`.
func NewCommand() *cobra.Command {
	o := &Options{}
	cmd := &cobra.Command{
		Use:   "queue",
		Short: "List the requests waiting for GPUs, in the order they get them, with their place, start times and why they wait",
		Example: `  gpuwarden queue                 # every node's queue
  gpuwarden queue --node gpu01
  gpuwarden queue -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Output != "" && o.Output != "json" {
				return fmt.Errorf("-o %q: the output is a table, or json", o.Output)
			}
			c, err := options.ClientFrom(o.Kubeconfig)
			if err != nil {
				return err
			}
			return o.Run(cmd.Context(), c, cmd.OutOrStdout())
		},
	}
	fs := cmd.Flags()
	options.KubeconfigFlag(fs, &o.Kubeconfig)
	fs.StringVar(&o.Node, "node", "", "the node whose queue to list (default: every node's)")
	fs.StringVarP(&o.Output, "output", "o", "", "json: one object per waiting request")
	return cmd
}

// Entry is one waiting request as `gpuwarden queue -o json` prints it.
type Entry = overview.Waiting

// Run lists the queue.
func (o *Options) Run(ctx context.Context, c client.Reader, out io.Writer) error {
	if o.now == nil {
		o.now = time.Now
	}
	var list gpuwardenv1alpha1.GPUAllocationList
	if err := c.List(ctx, &list); err != nil {
		return fmt.Errorf("listing GPU allocations: %w", err)
	}
	entries, unplaced := overview.Queue(list.Items, o.Node)
	if o.Output == "json" {
		enc := json.NewEncoder(out)
		for _, e := range entries {
			if err := enc.Encode(e); err != nil {
				return err
			}
		}
		return nil
	}
	if len(entries) == 0 {
		fmt.Fprintln(out, "Nothing waits for GPUs.")
	} else {
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tPLACE\tNAME\tUSER\tREQUEST\tWAITING\tESTIMATE\tLATEST\tWHY")
		for _, e := range entries {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Node, e.Position, e.Name, e.User, e.Request,
				o.since(e.WaitingSince), at(e.EstimatedStart), at(e.LatestStart), e.Why)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if unplaced > 0 {
		fmt.Fprintf(out, "%d more not placed yet (no node took them, or not decided yet).\n", unplaced)
	}
	return nil
}

// since is how long ago t was, as kubectl writes ages.
func (o *Options) since(t time.Time) string { return message.Age(o.now().Sub(t)) }

func at(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

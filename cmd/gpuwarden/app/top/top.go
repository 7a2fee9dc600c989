// Package top is the `gpuwarden top` command: a live terminal view of the GPUs (every GPU
// and MIG instance with its utilisation, memory, temperature, power and holder, its idle time
// and when it will be warned or stopped), the queue, the week's reservations and each
// user's holdings against quota and budget. It reads the API server (overview.Read) and one
// node's /metrics (overview.Scrape), never NVML or Docker; --once prints the same content
// as plain text for scripts, and -o json the overview.Snapshot.
package top

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/spf13/cobra"
	"golang.org/x/term"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/options"
	"github.com/gpuwarden/gpuwarden/internal/overview"
)

const (
	// DefaultMetrics is the node's gpuwarden /metrics (`gpuwarden server --metrics-bind-address`).
	DefaultMetrics = "http://127.0.0.1:9402/metrics"
	// DefaultInterval is how often the view is refreshed, and MinInterval the shortest.
	DefaultInterval = 2 * time.Second
	MinInterval     = 500 * time.Millisecond
	// readTimeout bounds one refresh.
	readTimeout = 10 * time.Second
)

// Options are the flags of `gpuwarden top`.
type Options struct {
	Kubeconfig string
	Node       string
	Metrics    string
	Output     string
	User       string
	Sort       string
	Once       bool
	Interval   time.Duration
	now        func() time.Time
}

// NewCommand returns `gpuwarden top`.
func NewCommand() *cobra.Command {
	o := &Options{}
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Watch the GPUs live: utilisation, memory and holder of each GPU and MIG instance, idle and stop times, the queue, the week's reservations and each user's share",
		Long: `Show, refreshed every --interval, every GPU and MIG instance with a utilisation and a memory
bar, its temperature and power, its holder (user, container, allocation; borrowed, or
reserved while a reservation's window holds it), how long it has been idle and when the
idle rules warn and stop it, and the time left to its runtime limit; the queue with places
and estimated starts; the reservations of the coming week; and per user the gpu-equivalents
held against quota and the budget used.

It reads the API server with your kubeconfig and the readings from one node's gpuwarden
/metrics (--metrics); when those cannot be read it shows the rest and says so.

Keys: q or Ctrl-C quits, s sorts the GPUs by node, user, utilisation or memory in turn, u
shows one user after another (a or Esc: everyone again), ? shows the keys.

--once prints the same content once as plain text (sections GPUS, QUEUE, RESERVATIONS (THIS
WEEK) and USERS; times in RFC 3339 UTC, ages and times left as 45s, 12m, 3h20m, 2d; "-" where
unknown). -o json prints the snapshot as one JSON document.`,
		Example: `  gpuwarden top
  gpuwarden top --user alice --sort util
  gpuwarden top --once
  gpuwarden top -o json | jq '.devices[] | select(.holder == null) | .index'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
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
	fs.StringVar(&o.Node, "node", "", "the node whose GPUs, queue and reservations to show (default: every node's)")
	fs.StringVar(&o.Metrics, "metrics", DefaultMetrics, `the node's gpuwarden /metrics the readings come from ("" or "0": none)`)
	fs.StringVarP(&o.Output, "output", "o", "", "json: the snapshot as one JSON document (implies --once)")
	fs.StringVar(&o.User, "user", "", "show only this user's GPUs, queued requests, reservations and usage")
	fs.StringVar(&o.Sort, "sort", sorts[0], "the GPUs' order: "+strings.Join(sorts, ", "))
	fs.BoolVar(&o.Once, "once", false, "print the view once as plain text and exit")
	fs.DurationVar(&o.Interval, "interval", DefaultInterval, "how often the view is refreshed (at least 500ms)")
	return cmd
}

// Validate checks the flags.
func (o *Options) Validate() error {
	var errs []error
	if o.Output != "" && o.Output != "json" {
		errs = append(errs, fmt.Errorf("-o %q: the output is the live view, --once's text, or json", o.Output))
	}
	if !slices.Contains(sorts, o.Sort) {
		errs = append(errs, fmt.Errorf("--sort %q: sort by %s", o.Sort, strings.Join(sorts, ", ")))
	}
	if o.Interval < MinInterval {
		errs = append(errs, fmt.Errorf("--interval %s: must be at least %s", o.Interval, MinInterval))
	}
	if m := o.metricsURL(); m != "" {
		if u, err := url.Parse(m); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf(`--metrics %q: want http://HOST:PORT/metrics, or "" for none`, o.Metrics))
		}
	}
	return errors.Join(errs...)
}

func (o *Options) metricsURL() string {
	if o.Metrics == "0" {
		return ""
	}
	return o.Metrics
}

func (o *Options) filter() filter { return filter{user: o.User, sort: o.Sort} }

// snapshot reads the objects and the readings and builds the snapshot; only an error
// reading the objects is returned: the readings' is in the snapshot.
func (o *Options) snapshot(ctx context.Context, c client.Reader) (overview.Snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	in, err := overview.Read(ctx, c)
	if err != nil {
		return overview.Snapshot{}, err
	}
	if m := o.metricsURL(); m != "" {
		in.Source = m
		if r, err := overview.Scrape(ctx, m); err != nil {
			in.ReadingsError = err.Error()
		} else {
			in.Readings = r
		}
	}
	return overview.Build(in, o.Node, o.now()), nil
}

// Run shows the view: live in the terminal out is, or once (--once, -o json).
func (o *Options) Run(ctx context.Context, c client.Reader, out io.Writer) error {
	if o.now == nil {
		o.now = time.Now
	}
	if o.Sort == "" {
		o.Sort = sorts[0]
	}
	if o.Once || o.Output != "" {
		s, err := o.snapshot(ctx, c)
		if err != nil {
			return err
		}
		return o.print(out, o.filter().apply(s))
	}
	f, ok := out.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return errors.New("the output is not a terminal: give --once for plain text, or -o json")
	}
	m := newModel(func(ctx context.Context) (overview.Snapshot, error) { return o.snapshot(ctx, c) }, o.filter(), o.Interval)
	m.ctx = ctx
	_, err := tea.NewProgram(m, tea.WithAltScreen(), tea.WithContext(ctx), tea.WithOutput(out)).Run()
	if errors.Is(err, tea.ErrInterrupted) || (errors.Is(err, tea.ErrProgramKilled) && ctx.Err() != nil) {
		return nil
	}
	return err
}

// print writes s once: as JSON, or as --once's text.
func (o *Options) print(out io.Writer, s overview.Snapshot) error {
	if o.Output == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	_, err := io.WriteString(out, text(sections(s, s.Time), header(s, o.filter())))
	return err
}

// Package report is `gpuwarden report`: GPU-hours allocated, used and idle per user, what
// the lifecycle rules stopped and gave back, refusals and waits, from the audit log, and
// right-size advice: the runs that would have fit a smaller MIG profile or fewer GPUs.
package report

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/events"
	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/gatewayclient"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/gateway"
	"github.com/gpuwarden/gpuwarden/internal/report"
)

// Options are the command's flags.
type Options struct {
	File  string
	Since string
	Until string
	CSV   bool
	User  string
	// MIGProfile is what whole-GPU runs are judged against for the right-size advice
	// where the log shows no MIG slice of their GPU model.
	MIGProfile string
	// Socket is the gateway's, which answers a user their own report.
	Socket string

	now func() time.Time
	// order says whether the file or the gateway is read (gatewayclient.OrderOf).
	order gatewayclient.Order
}

// NewCommand returns `gpuwarden report`.
func NewCommand() *cobra.Command {
	o := &Options{}
	cmd := &cobra.Command{
		Use:   "report",
		Short: "GPU-hours allocated and used per user, from the audit log",
		Long: `Report, per user, over a period (default: the last 30 days):
  ALLOCATED GPU-H  gpu-equivalents × time bound (gpu.allocate to gpu.release)
  USED GPU-H       gpu-equivalents × GPU utilisation, where NVML gives one (not on MIG slices)
  USED %           used over allocated time with a known utilisation
  IDLE GPU-H       gpu-equivalents × time the lifecycle rules judged the container idle
  IDLE/RUNTIME STOPS  containers the lifecycle rules stopped
  RECLAIMED GPU-H  what those stops gave back: gpu-equivalents × time from the release to
                   the end of the period, at most 24 h per stop
  REJECTED         requests refused (reasons below the table)
  BINDS, MEAN/MAX WAIT  requests bound and how long they waited
Used and idle time come from the gpu.usage records gpuwarden writes every 5 minutes (and
when a container lets its GPUs go): a running container's are at most 5 minutes behind.

Right-size advice follows the table, per user and container type, the way Princeton's Job
Defense Shield judges Slurm jobs: how many runs (one allocation each, gpu.allocate to
gpu.release) would have fit a smaller MIG profile or fewer GPUs, judged by the peaks in
their gpu.usage records, and the GPU-hours the smaller choice would have freed:
  - a run on whole GPUs whose peak memory on each device fits the smallest MIG profile
    of its GPU model (as its name says: 10 GB for 1g.10gb; the smallest the log shows on
    that model, else --mig-profile), whose peak utilisation is within that profile's
    compute share (slices/7: at most 14 % for 1g) and which used one device at most, fits
    that slice; freed: (its gpu-equivalents − the slice's) × its hours held
  - a run on several whole GPUs of which fewer showed use (utilisation above 0 or over
    256 MiB of memory) fits that many GPUs; freed: the unused GPUs × its hours held
  - a run on a MIG slice whose peak memory fits a profile of fewer slices that the log
    shows on its GPU model fits the smallest such; NVML gives no utilisation on MIG, so
    it is judged by memory alone; freed: (its gpu-equivalents − the smaller's) × hours
Runs with no gpu.usage record carrying peaks (too short, or logged before gpuwarden
recorded peaks) are not judged; runs still held are judged on what they showed so far
and counted as still running. --csv prints the table only.

The audit log is root's to read. Whoever may not read it gets the report of their own records
from gpuwarden through the gateway socket, which knows who calls from the kernel (--user
someone else is refused). Without --file, the gateway is asked when --gateway-socket is
given, and first when DOCKER_HOST names its socket (the file is read when nothing answers
there); otherwise when reading the file is denied.`,
		Example: `  gpuwarden report --since 30d
  gpuwarden report --since 2026-11-01 --until 2026-12-01 --csv > november.csv
  gpuwarden report --user $USER      # as a user: your own, through the gateway`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.order = gatewayclient.OrderOf(cmd.Flags(), o.Socket, cmd.Flags().Changed("file") || os.Getenv(events.EnvFile) != "")
			return o.Run(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	def := os.Getenv(events.EnvFile)
	if def == "" {
		def = audit.DefaultPath
	}
	fs := cmd.Flags()
	fs.StringVar(&o.File, "file", def, "the audit log (env "+events.EnvFile+")")
	fs.StringVar(&o.Since, "since", "30d", "start of the period: RFC 3339, a date, or an age such as 7d")
	fs.StringVar(&o.Until, "until", "", "end of the period (default: now): RFC 3339, a date, or an age")
	fs.StringVar(&o.User, "user", "", "only this user")
	fs.BoolVar(&o.CSV, "csv", false, "print CSV (one row per user, no total)")
	fs.StringVar(&o.MIGProfile, "mig-profile", report.DefaultMIGProfile, "the MIG profile whole-GPU runs are judged against for the right-size advice where the log shows no MIG slice of their GPU model (reading the file; the gateway judges by the default)")
	gatewayclient.Flag(fs, &o.Socket, "the gateway's socket, which answers your own report when the audit log is not yours to read")
	return cmd
}

// Run reads the audit log and prints the report.
func (o *Options) Run(ctx context.Context, out, errOut io.Writer) error {
	if o.now == nil {
		o.now = time.Now
	}
	now := o.now()
	since, err := events.ParseTime(o.Since, now)
	if err != nil {
		return fmt.Errorf("--since: %w", err)
	}
	until, err := events.ParseTime(o.Until, now)
	if err != nil {
		return fmt.Errorf("--until: %w", err)
	}
	if until.IsZero() {
		until = now
	}
	if !since.Before(until) {
		return fmt.Errorf("--since %s is not before --until %s", since.Format(time.RFC3339), until.Format(time.RFC3339))
	}
	if o.File == "" {
		return errors.New("--file: an audit log path is required")
	}
	if o.MIGProfile != "" && !report.ValidMIGProfile(o.MIGProfile) {
		return fmt.Errorf("--mig-profile: %q is not a MIG profile such as 1g.10gb", o.MIGProfile)
	}
	var r report.Report
	var source string
	err = o.order.Read(func() (err error) {
		r, err = o.fromFile(ctx, since, until, now)
		source = o.File
		return err
	}, func() (err error) {
		r, err = o.fromGateway(ctx, since, until)
		source = "gpuwarden at " + o.Socket
		return err
	})
	if err != nil {
		return err
	}
	if o.CSV {
		return writeCSV(out, r)
	}
	return writeTable(out, r, source)
}

func (o *Options) fromFile(ctx context.Context, since, until, now time.Time) (report.Report, error) {
	files, err := audit.Files(o.File)
	if err != nil {
		return report.Report{}, err
	}
	if len(files) == 0 {
		return report.Report{}, fmt.Errorf("no audit log at %s (see --file)", o.File)
	}
	b := &report.Builder{Since: since, Until: until, MIGProfile: o.MIGProfile}
	// Everything before the end: allocations bound before the period count from its start.
	if _, err := audit.Read(ctx, files, audit.Filter{Until: until, User: o.User}, func(e *audit.Event) error { b.Add(e); return nil }); err != nil {
		return report.Report{}, err
	}
	return b.Report(now), nil
}

// fromGateway asks the gateway for the report (of the caller's own records, unless an admin
// calls).
func (o *Options) fromGateway(ctx context.Context, since, until time.Time) (report.Report, error) {
	q := url.Values{"since": {since.UTC().Format(time.RFC3339Nano)}, "until": {until.UTC().Format(time.RFC3339Nano)}}
	if o.User != "" {
		q.Set("user", o.User)
	}
	c := gatewayclient.Client{Socket: o.Socket}
	resp, err := c.Get(ctx, gateway.ReportPath, q)
	if err != nil {
		return report.Report{}, err
	}
	defer resp.Body.Close()
	var r report.Report
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&r); err != nil {
		return report.Report{}, fmt.Errorf("reading the answer of gpuwarden at %s: %w", o.Socket, err)
	}
	return r, nil
}

// hours is a number of GPU-hours for people (the table) and, more precisely, for machines.
func hours(f float64) string { return strconv.FormatFloat(f, 'f', 2, 64) }

func preciseHours(f float64) string { return strconv.FormatFloat(f, 'f', 4, 64) }

func percent(r report.Row) string {
	if r.UtilizationKnownHours <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*r.UsedGPUHours/r.UtilizationKnownHours)
}

func wait(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return d.Round(time.Second).String()
}

func writeTable(out io.Writer, r report.Report, file string) error {
	fmt.Fprintf(out, "GPU usage from %s to %s (%s), from %s\n\n", r.Since.UTC().Format(time.RFC3339), r.Until.UTC().Format(time.RFC3339),
		r.Until.Sub(r.Since).Round(time.Minute), file)
	if len(r.Rows) == 0 {
		fmt.Fprintln(out, "No GPU use in this period.")
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tALLOCATED GPU-H\tUSED GPU-H\tUSED %\tIDLE GPU-H\tIDLE STOPS\tRUNTIME STOPS\tRECLAIMED GPU-H\tREJECTED\tBINDS\tMEAN WAIT\tMAX WAIT")
	for _, row := range append(r.Rows, r.Total) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%d\t%d\t%s\t%s\n", audit.Printable(row.User), hours(row.AllocatedGPUHours), hours(row.UsedGPUHours),
			percent(row), hours(row.IdleGPUHours), row.IdleStops, row.RuntimeStops, hours(row.ReclaimedGPUHours), row.Rejections,
			row.Binds, wait(row.MeanWait()), wait(row.MaxWait))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Rejections) > 0 {
		reasons := make([]string, 0, len(r.Rejections))
		for k := range r.Rejections {
			reasons = append(reasons, k)
		}
		sort.Strings(reasons)
		fmt.Fprint(out, "\nRefused requests by reason:")
		for _, k := range reasons {
			fmt.Fprintf(out, " %s %d", audit.Printable(k), r.Rejections[k])
		}
		fmt.Fprintln(out)
	}
	return writeAdvice(out, r.Advice)
}

// writeAdvice prints the right-size advice, one line per user, container type and
// suggestion; nothing when there is none.
func writeAdvice(out io.Writer, advice []report.Advice) error {
	if len(advice) == 0 {
		return nil
	}
	fmt.Fprint(out, "\nRight-size advice (runs that would have fit a smaller MIG profile or fewer GPUs, by their peaks):\n")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, a := range advice {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", audit.Printable(a.User), audit.Printable(a.ContainerType), a)
	}
	return tw.Flush()
}

func writeCSV(out io.Writer, r report.Report) error {
	w := csv.NewWriter(out)
	_ = w.Write([]string{"user", "allocated_gpu_hours", "used_gpu_hours", "utilization_known_gpu_hours", "idle_gpu_hours", "idle_stops",
		"runtime_stops", "reclaimed_gpu_hours", "rejections", "binds", "mean_wait_seconds", "max_wait_seconds", "since", "until"})
	for _, row := range r.Rows {
		_ = w.Write([]string{row.User, preciseHours(row.AllocatedGPUHours), preciseHours(row.UsedGPUHours), preciseHours(row.UtilizationKnownHours),
			preciseHours(row.IdleGPUHours), strconv.Itoa(row.IdleStops), strconv.Itoa(row.RuntimeStops), preciseHours(row.ReclaimedGPUHours),
			strconv.Itoa(row.Rejections), strconv.Itoa(row.Binds), strconv.FormatFloat(row.MeanWait().Seconds(), 'f', 0, 64),
			strconv.FormatFloat(row.MaxWait.Seconds(), 'f', 0, 64), r.Since.UTC().Format(time.RFC3339), r.Until.UTC().Format(time.RFC3339)})
	}
	w.Flush()
	return w.Error()
}

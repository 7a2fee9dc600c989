// Package events is the `gpuwarden events` command: query and follow the audit log.
package events

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/gatewayclient"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/gateway"
)

// EnvFile names the environment variable that overrides the default --file.
const EnvFile = "GPUWARDEN_AUDIT_LOG"

// Options are the flags of `gpuwarden events`.
type Options struct {
	File      string
	User      string
	Type      string
	Container string
	Since     string
	Until     string
	Limit     int
	JSON      bool
	Follow    bool
	Summary   bool
	// Socket is the gateway's, which answers a user their own records.
	Socket string

	// Set by Complete.
	filter audit.Filter
	// order says whether the file or the gateway is read (gatewayclient.OrderOf).
	order gatewayclient.Order
	color bool
	now   func() time.Time
	// pollInterval is how often --follow looks for new lines.
	pollInterval time.Duration
}

// NewCommand returns `gpuwarden events`.
func NewCommand() *cobra.Command { return newCommand(&Options{}) }

func newCommand(o *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Query and follow the audit log",
		Long: `Query the audit log: the live file, rotated files and their .gz archives, in time order.
Every filter combines with AND. Also reads DS01's older ts/event lines.

The audit log is root's to read. Whoever may not read it gets their own records from gpuwarden
through the gateway socket, which knows who calls from the kernel: the same filters and
output, only records whose user is you (--user someone else is refused). Without --file, the
gateway is asked when --gateway-socket is given, and first when DOCKER_HOST names its socket
(the file is read when nothing answers there); otherwise when reading the file is denied.`,
		Example: `  gpuwarden events --user alice --type gpu --since 7d
  gpuwarden events --type lifecycle.idle_stop --container train-1 --json
  gpuwarden events --summary --since 30d
  gpuwarden events --follow --type auth
  gpuwarden events --since 1d              # as a user: your own records, through the gateway`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Complete(cmd.OutOrStdout()); err != nil {
				return err
			}
			o.order = gatewayclient.OrderOf(cmd.Flags(), o.Socket, cmd.Flags().Changed("file") || os.Getenv(EnvFile) != "")
			return o.Run(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	def := os.Getenv(EnvFile)
	if def == "" {
		def = audit.DefaultPath
	}
	fs := cmd.Flags()
	fs.StringVar(&o.File, "file", def, "the audit log (env "+EnvFile+")")
	fs.StringVar(&o.User, "user", "", "only events of this user")
	fs.StringVar(&o.Type, "type", "", "only events of this type or below it (gpu matches gpu.*, not gpus.*)")
	fs.StringVar(&o.Container, "container", "", "only events of this container (name or ID) and of the GPU allocations bound to it")
	fs.StringVar(&o.Since, "since", "", "only events at or after this time: RFC 3339, or an age such as 30m, 2h, 7d")
	fs.StringVar(&o.Until, "until", "", "only events before this time: RFC 3339, or an age such as 30m, 2h, 7d")
	fs.IntVar(&o.Limit, "limit", 50, "show the last N matching events (0: all)")
	fs.BoolVar(&o.JSON, "json", false, "print one JSON object per line")
	fs.BoolVar(&o.Follow, "follow", false, "keep printing new events as they are written, across rotations")
	fs.BoolVar(&o.Summary, "summary", false, "print counts by type and by user instead of events")
	gatewayclient.Flag(fs, &o.Socket, "the gateway's socket, which answers your own records when the audit log is not yours to read")
	return cmd
}

// Complete parses the times and decides on colour.
func (o *Options) Complete(out io.Writer) error {
	if o.now == nil {
		o.now = time.Now
	}
	if o.pollInterval == 0 {
		o.pollInterval = 200 * time.Millisecond
	}
	if o.Limit < 0 {
		return fmt.Errorf("--limit %d: must be 0 (no limit) or more", o.Limit)
	}
	if o.Summary && (o.Follow || o.JSON) {
		return errors.New("--summary cannot be combined with --follow or --json")
	}
	if o.File == "" {
		return errors.New("--file: an audit log path is required")
	}
	o.filter = audit.Filter{User: o.User, Type: strings.TrimSuffix(o.Type, ".*"), Container: o.Container}
	var err error
	if o.filter.Since, err = ParseTime(o.Since, o.now()); err != nil {
		return fmt.Errorf("--since: %w", err)
	}
	if o.filter.Until, err = ParseTime(o.Until, o.now()); err != nil {
		return fmt.Errorf("--until: %w", err)
	}
	if !o.filter.Since.IsZero() && !o.filter.Until.IsZero() && !o.filter.Since.Before(o.filter.Until) {
		return fmt.Errorf("--since %s is not before --until %s", o.Since, o.Until)
	}
	if f, ok := out.(*os.File); ok && !o.JSON && os.Getenv("NO_COLOR") == "" {
		o.color = term.IsTerminal(int(f.Fd()))
	}
	return nil
}

// ParseTime reads RFC 3339 (or a date, 2026-11-20) or an age before now: 90s, 30m, 2h, 7d, 2w.
func ParseTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation("2006-01-02", s, time.Local); err == nil {
		return t, nil
	}
	unit := map[byte]time.Duration{'d': 24 * time.Hour, 'w': 7 * 24 * time.Hour}
	if u, ok := unit[s[len(s)-1]]; ok {
		n, err := strconv.ParseFloat(s[:len(s)-1], 64)
		if err == nil && n >= 0 {
			return now.Add(-time.Duration(n * float64(u))), nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2026-11-20T09:00:00Z), a date (2026-11-20) nor an age (30m, 2h, 7d)", s)
}

// Run prints the matching events, a summary, or follows the log: from the file, or from
// the gateway when it comes first or the file is not the caller's to read.
func (o *Options) Run(ctx context.Context, out, errOut io.Writer) error {
	p := &printer{out: out, json: o.JSON, color: o.color}
	return o.order.Read(func() error { return o.fromFile(ctx, p, errOut) }, func() error { return o.fromGateway(ctx, p, errOut) })
}

func (o *Options) fromFile(ctx context.Context, p *printer, errOut io.Writer) error {
	if o.Follow {
		return o.follow(ctx, p, errOut)
	}
	files, err := audit.Files(o.File)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		fmt.Fprintf(errOut, "No events logged yet: %s does not exist\n", o.File)
		return nil
	}
	if o.filter.Container != "" {
		// A container's GPU decisions: also the records of the allocations bound to it,
		// whose gpu.allocate can come before the container exists.
		if o.filter.Allocations, err = audit.ContainerAllocations(ctx, files, o.filter.User, o.filter.Container); err != nil {
			return err
		}
	}
	var st audit.ReadStats
	if o.Summary {
		s := newSummary()
		st, err = audit.Read(ctx, files, o.filter, func(e *audit.Event) error { s.add(e); return nil })
		if err == nil {
			s.print(p.out)
		}
	} else {
		last := audit.NewLast(o.Limit)
		st, err = audit.Read(ctx, files, o.filter, func(e *audit.Event) error { last.Add(*e); return nil })
		if err == nil {
			err = p.printAll(last.Events())
		}
	}
	reportSkipped(errOut, st)
	return err
}

// fromGateway asks the gateway for the records (the caller's own, unless an admin calls) and
// prints them as fromFile does.
func (o *Options) fromGateway(ctx context.Context, p *printer, errOut io.Writer) error {
	q := url.Values{}
	for k, v := range map[string]string{"user": o.filter.User, "type": o.filter.Type, "container": o.filter.Container} {
		if v != "" {
			q.Set(k, v)
		}
	}
	for k, t := range map[string]time.Time{"since": o.filter.Since, "until": o.filter.Until} {
		if !t.IsZero() {
			q.Set(k, t.UTC().Format(time.RFC3339Nano))
		}
	}
	// The gateway holds back at most gateway.MaxEventsLimit to send the last of: more, and
	// the summary, are streamed whole and kept here.
	limit := o.Limit
	if o.Summary || limit > gateway.MaxEventsLimit {
		limit = 0
	}
	q.Set("limit", strconv.Itoa(limit))
	if o.Follow {
		q.Set("follow", "1")
	}
	c := gatewayclient.Client{Socket: o.Socket}
	resp, err := c.Get(ctx, gateway.EventsPath, q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if o.Follow {
		reportHeldBack(errOut, resp)
	}
	last, s := audit.NewLast(o.Limit), newSummary()
	st, err := audit.Decode(ctx, resp.Body, func(batch []audit.Event) error {
		switch {
		case o.Follow:
			return p.printAll(batch)
		case o.Summary:
			for i := range batch {
				s.add(&batch[i])
			}
		default:
			for _, e := range batch {
				last.Add(e)
			}
		}
		return nil
	})
	if o.Follow && ctx.Err() != nil {
		reportSkipped(errOut, st)
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the answer of gpuwarden at %s: %w", o.Socket, err)
	}
	if msg := resp.Trailer.Get(gateway.TrailerError); msg != "" {
		return fmt.Errorf("gpuwarden at %s: %s", o.Socket, msg)
	}
	if o.Follow {
		return fmt.Errorf("gpuwarden at %s ended the stream (stopped or restarted?)", o.Socket)
	}
	n, _ := strconv.Atoi(resp.Trailer.Get(gateway.TrailerMalformed))
	st.Malformed += n
	n, _ = strconv.Atoi(resp.Trailer.Get(gateway.TrailerTooLong))
	st.TooLong += n
	if o.Summary {
		s.print(p.out)
	} else {
		err = p.printAll(last.Events())
	}
	reportSkipped(errOut, st)
	reportHeldBack(errOut, resp)
	return err
}

// reportHeldBack says how many of the last records asked for the gateway held back.
func reportHeldBack(errOut io.Writer, resp *http.Response) {
	if n, _ := strconv.Atoi(resp.Header.Get(gateway.HeaderHeldBack)); n > 0 {
		fmt.Fprintf(errOut, "gpuwarden events: the gateway held back the %d oldest of the records asked for: together they are too large; narrow --since or --type, or give --limit 0 to have them all streamed\n", n)
	}
}

func reportSkipped(errOut io.Writer, st audit.ReadStats) {
	if st.Malformed > 0 {
		fmt.Fprintf(errOut, "gpuwarden events: skipped %d malformed line(s)\n", st.Malformed)
	}
	if st.TooLong > 0 {
		fmt.Fprintf(errOut, "gpuwarden events: skipped %d line(s) too long (over %d bytes)\n", st.TooLong, audit.MaxLineSize)
	}
}

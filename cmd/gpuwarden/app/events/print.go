package events

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/audit"
)

// follow prints the last matching events, then new ones as they are written, until ctx
// ends.
func (o *Options) follow(ctx context.Context, p *printer, errOut io.Writer) error {
	st, err := audit.Follow(ctx, o.File, o.filter, audit.NewLast(o.Limit), o.pollInterval, p.printAll)
	if err == nil {
		reportSkipped(errOut, st)
	}
	return err
}

// printer writes events as an aligned table or as JSON lines.
type printer struct {
	out           io.Writer
	json, color   bool
	headerPrinted bool
}

func (p *printer) printAll(events []audit.Event) error {
	if len(events) == 0 {
		return nil
	}
	if p.json {
		var buf []byte
		for i := range events {
			var err error
			if buf, err = events[i].AppendJSON(buf); err != nil {
				return err
			}
		}
		_, err := p.out.Write(buf)
		return err
	}
	tw := tabwriter.NewWriter(p.out, 0, 0, 2, ' ', 0)
	if !p.headerPrinted {
		fmt.Fprintln(tw, "TIMESTAMP\tTYPE\tUSER\tCONTAINER\tDETAILS")
		p.headerPrinted = true
	}
	for i := range events {
		e := &events[i]
		user := e.User
		if user == "" {
			user = "-"
		}
		container := e.Container()
		if container == "" {
			container = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Time.UTC().Format("2006-01-02T15:04:05Z"),
			p.paint(audit.Printable(e.Type)), audit.Printable(user), audit.Printable(container), details(e))
	}
	return tw.Flush()
}

// details renders the details other than the container as sorted k=v pairs.
func details(e *audit.Event) string {
	keys := make([]string, 0, len(e.Details))
	for k := range e.Details {
		if k != "container" && k != "container_name" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		v := fmt.Sprint(e.Details[k])
		if strings.ContainsAny(v, " \t") {
			v = fmt.Sprintf("%q", v)
		}
		parts = append(parts, audit.Printable(k)+"="+audit.Printable(v))
	}
	return strings.Join(parts, " ")
}

const (
	red, green, yellow, blue, magenta = "31", "32", "33", "34", "35"
)

// paint colours an event type on a terminal; tabwriter counts the escape codes, which is
// the same for every row of a type, so columns stay aligned.
func (p *printer) paint(t string) string {
	if !p.color {
		return t
	}
	c := ""
	switch {
	case strings.Contains(t, "reject") || strings.Contains(t, "denied") || strings.Contains(t, "stop") || strings.Contains(t, "dropped"):
		c = red
	case strings.HasPrefix(t, "container."):
		c = blue
	case strings.HasPrefix(t, "gpu."):
		c = green
	case strings.HasPrefix(t, "lifecycle."), strings.HasPrefix(t, "detection."):
		c = yellow
	case strings.HasPrefix(t, "auth."):
		c = magenta
	default:
		return t
	}
	return "\x1b[" + c + "m" + t + "\x1b[0m"
}

// summary counts events by type and by user.
type summary struct {
	total          int
	byType, byUser map[string]int
	first, last    time.Time
}

func newSummary() *summary { return &summary{byType: map[string]int{}, byUser: map[string]int{}} }

func (s *summary) add(e *audit.Event) {
	s.total++
	s.byType[e.Type]++
	user := e.User
	if user == "" {
		user = "system"
	}
	s.byUser[user]++
	if s.first.IsZero() || e.Time.Before(s.first) {
		s.first = e.Time
	}
	if e.Time.After(s.last) {
		s.last = e.Time
	}
}

func (s *summary) print(out io.Writer) {
	if s.total == 0 {
		fmt.Fprintln(out, "No matching events")
		return
	}
	fmt.Fprintf(out, "%d events from %s to %s\n\n", s.total, s.first.UTC().Format(time.RFC3339), s.last.UTC().Format(time.RFC3339))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	printCounts(tw, "TYPE", s.byType)
	fmt.Fprintln(tw)
	printCounts(tw, "USER", s.byUser)
	tw.Flush()
}

func printCounts(w io.Writer, title string, counts map[string]int) {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if counts[keys[i]] != counts[keys[j]] {
			return counts[keys[i]] > counts[keys[j]]
		}
		return keys[i] < keys[j]
	})
	fmt.Fprintf(w, "%s\tEVENTS\n", title)
	for _, k := range keys {
		fmt.Fprintf(w, "%s\t%d\n", audit.Printable(k), counts[k])
	}
}

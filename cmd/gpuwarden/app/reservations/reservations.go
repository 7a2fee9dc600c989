// Package reservations is the `gpuwarden reservations` command: the GPU reservations of the
// coming week as a timeline per GPU (and per reserved MIG slice), with a legend naming each
// reservation, and the ones that reserve nothing (pending, rejected) with why.
package reservations

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/options"
	"github.com/gpuwarden/gpuwarden/internal/allocation"
	"github.com/gpuwarden/gpuwarden/internal/reservation"
)

const (
	// span is how far ahead the timeline looks.
	span = 7 * 24 * time.Hour
	// cell is how long one character of the timeline lasts.
	cell = 4 * time.Hour
	// perDay is how many cells a day has.
	perDay = int(24 * time.Hour / cell)
	day    = 24 * time.Hour
)

// marks name the reservations on the timeline, in name order; those past them share '#'.
const marks = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// Options are the flags of `gpuwarden reservations`.
type Options struct {
	Kubeconfig string
	Node       string
	Output     string
	All        bool
	now        func() time.Time
}

// NewCommand returns `gpuwarden reservations`.
func NewCommand() *cobra.Command {
	o := &Options{}
	cmd := &cobra.Command{
		Use:     "reservations",
		Aliases: []string{"rsv"},
		Short:   "Show the coming week's GPU reservations as a timeline per GPU, with whom each is for and why others reserve nothing",
		Long: `Show the GPU reservations (GPUReservation) of the next 7 days as a timeline: one row per GPU
of each node, and one per MIG slice a reservation names; one character per 4 hours (UTC),
'.' where the device is free, a letter where a reservation holds it. The legend below names
each letter's reservation: its phase, whom it is for, its window (UTC; "weekly" when it
repeats), what happens to other work at its start (displace) and its devices. Pending and
rejected reservations reserve nothing: they are listed apart, with their reason and message.
Ended ones are left out unless --all.`,
		Example: `  gpuwarden reservations                 # every node
  gpuwarden reservations --node gpu01
  gpuwarden reservations --all            # ended ones too
  gpuwarden reservations -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
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
	fs.StringVar(&o.Node, "node", "", "the node whose GPUs to show (default: every node's)")
	fs.StringVarP(&o.Output, "output", "o", "", "json: one object with the reservations and each GPU's reserved windows")
	fs.BoolVar(&o.All, "all", false, "list ended reservations too")
	return cmd
}

func (o *Options) validate() error {
	if o.Output != "" && o.Output != "json" {
		return fmt.Errorf("-o %q: the output is a timeline, or json", o.Output)
	}
	return nil
}

// Timeline is what `gpuwarden reservations -o json` prints.
type Timeline struct {
	// From and To are the week shown: windows that overlap it are listed.
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Reservations in name order.
	Reservations []Reservation `json:"reservations"`
	// GPUs are the timeline's rows: each GPU, and each MIG slice a reservation names, by
	// node and index.
	GPUs []GPU `json:"gpus"`
}

// Reservation is one GPUReservation.
type Reservation struct {
	Name  string `json:"name"`
	Phase string `json:"phase"`
	// Node is the node reserved on (or asked for); empty: any node.
	Node           string   `json:"node,omitempty"`
	Request        string   `json:"request"`
	Devices        []Device `json:"devices"`
	DevicesSummary string   `json:"devicesSummary,omitempty"`
	// Subjects are whom it is for (none: no one, the devices drained); For says it for people.
	Subjects []gpuwardenv1alpha1.Subject `json:"subjects"`
	For      string                      `json:"for"`
	Repeat   string                      `json:"repeat"`
	Displace string                      `json:"displace"`
	// Reserves says it holds its devices (Accepted or Active, with devices, not being
	// deleted); Mark is its character on the timeline then.
	Reserves bool   `json:"reserves"`
	Mark     string `json:"mark,omitempty"`
	// Windows are its windows that overlap [from, to), whole.
	Windows        []Span     `json:"windows"`
	ReleasedUnused *time.Time `json:"releasedUnused,omitempty"`
	Reason         string     `json:"reason,omitempty"`
	Message        string     `json:"message,omitempty"`

	first reservation.Window // its first window, as booked
}

// Device is one reserved device.
type Device struct {
	Index      int32  `json:"index"`
	UUID       string `json:"uuid"`
	MIGProfile string `json:"migProfile,omitempty"`
}

// Span is one window.
type Span struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// GPU is one row of the timeline: a GPU, or a MIG slice of it (MIGProfile set).
type GPU struct {
	Node       string `json:"node"`
	Index      int32  `json:"index"`
	UUID       string `json:"uuid,omitempty"`
	MIGProfile string `json:"migProfile,omitempty"`
	// Listed is false for a reserved device the node's GPUs no longer list (removed, or
	// its MIG slices made anew): nothing is held there.
	Listed bool `json:"listed"`
	// Windows are the windows reserved on it that overlap [from, to), each as long as the
	// reservation keeps the device (to its release when given back unused).
	Windows []Booking `json:"windows"`
}

// Booking is one window of a reservation on one device.
type Booking struct {
	Reservation string    `json:"reservation"`
	Start       time.Time `json:"start"`
	End         time.Time `json:"end"`
}

// row is a GPU row with what the text needs besides.
type row struct {
	GPU
	mig bool // a MIG-enabled GPU
}

// Run shows the reservations.
func (o *Options) Run(ctx context.Context, c client.Reader, out io.Writer) error {
	if err := o.validate(); err != nil {
		return err
	}
	if o.now == nil {
		o.now = time.Now
	}
	now := o.now().UTC()
	from, to := now, now.Add(span)

	var gpus gpuwardenv1alpha1.GPUList
	var opts []client.ListOption
	if o.Node != "" {
		opts = append(opts, client.MatchingLabels{gpuwardenv1alpha1.LabelNode: o.Node})
	}
	if err := c.List(ctx, &gpus, opts...); err != nil {
		return fmt.Errorf("listing GPUs: %w", err)
	}
	var list gpuwardenv1alpha1.GPUReservationList
	if err := c.List(ctx, &list); err != nil {
		return fmt.Errorf("listing GPU reservations: %w", err)
	}
	var rsvs []gpuwardenv1alpha1.GPUReservation
	known := false
	for _, r := range list.Items {
		n := nodeOf(&r)
		if o.Node != "" && n != "" && n != o.Node {
			continue
		}
		known = known || (o.Node != "" && n == o.Node)
		if r.Status.Phase == gpuwardenv1alpha1.ReservationEnded && !o.All {
			continue
		}
		rsvs = append(rsvs, r)
	}
	if o.Node != "" && len(gpus.Items) == 0 && !known {
		return o.unknownNode(ctx, c)
	}
	sort.Slice(rsvs, func(i, j int) bool { return rsvs[i].Name < rsvs[j].Name })

	b := newBoard(gpus.Items)
	tl := Timeline{From: from, To: to, Reservations: []Reservation{}, GPUs: []GPU{}}
	reserving := map[string]bool{}
	for _, bk := range reservation.Of(rsvs) {
		reserving[bk.Name] = true
	}
	k := 0
	for i := range rsvs {
		r := &rsvs[i]
		e := entry(r, from, to)
		if reserving[r.Name] {
			e.Reserves, e.Mark = true, "#"
			if k < len(marks) {
				e.Mark = marks[k : k+1]
			}
			k++
			var released time.Time
			if r.Status.ReleasedUnused != nil {
				released = r.Status.ReleasedUnused.UTC()
			}
			ws := reservation.Reserved(reservation.TimesOf(&r.Spec), released, from, to)
			for _, d := range r.Status.Devices {
				rw := b.rowFor(r.Status.NodeName, d)
				for _, w := range ws {
					rw.Windows = append(rw.Windows, Booking{Reservation: r.Name, Start: w.Start, End: w.End})
				}
			}
		}
		tl.Reservations = append(tl.Reservations, e)
	}
	rows := b.sorted()
	for _, rw := range rows {
		tl.GPUs = append(tl.GPUs, rw.GPU)
	}
	if o.Output == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(tl)
	}
	return o.print(out, &tl, rows)
}

// unknownNode is the error for --node naming no GPU node, with those there are.
func (o *Options) unknownNode(ctx context.Context, c client.Reader) error {
	var all gpuwardenv1alpha1.GPUList
	if err := c.List(ctx, &all); err != nil {
		return fmt.Errorf("listing GPUs: %w", err)
	}
	var nodes []string
	for i := range all.Items {
		if n := gpuNode(&all.Items[i]); n != "" && !slices.Contains(nodes, n) {
			nodes = append(nodes, n)
		}
	}
	if len(nodes) == 0 {
		return fmt.Errorf("no GPU node %s: no GPU node is known", o.Node)
	}
	slices.Sort(nodes)
	return fmt.Errorf("no GPU node %s (GPU nodes: %s)", o.Node, strings.Join(nodes, ", "))
}

// nodeOf is the node a reservation is on, or asks for ("": any).
func nodeOf(r *gpuwardenv1alpha1.GPUReservation) string {
	if r.Status.NodeName != "" {
		return r.Status.NodeName
	}
	return r.Spec.NodeName
}

func gpuNode(g *gpuwardenv1alpha1.GPU) string {
	if n := g.Labels[gpuwardenv1alpha1.LabelNode]; n != "" {
		return n
	}
	return g.Spec.NodeName
}

// entry is r as -o json prints it, without its place on the timeline.
func entry(r *gpuwardenv1alpha1.GPUReservation, from, to time.Time) Reservation {
	e := Reservation{Name: r.Name, Phase: string(r.Status.Phase), Node: nodeOf(r), Request: allocation.RequestSummary(r.Spec.Request),
		Devices: []Device{}, DevicesSummary: r.Status.DevicesSummary, Subjects: r.Spec.Subjects, For: reservation.Who(r.Spec.Subjects),
		Repeat: string(r.Spec.Repeat), Displace: string(r.Spec.Displace), Windows: []Span{}, Reason: r.Status.Reason, Message: r.Status.Message}
	if e.Phase == "" {
		e.Phase = string(gpuwardenv1alpha1.ReservationPending)
	}
	if e.Subjects == nil {
		e.Subjects = []gpuwardenv1alpha1.Subject{}
	}
	if e.Repeat == "" {
		e.Repeat = string(gpuwardenv1alpha1.RepeatNone)
	}
	if e.Displace == "" {
		e.Displace = string(gpuwardenv1alpha1.DisplaceWait)
	}
	for _, d := range r.Status.Devices {
		e.Devices = append(e.Devices, Device{Index: d.Index, UUID: d.UUID, MIGProfile: d.MIGProfile})
	}
	t := reservation.TimesOf(&r.Spec)
	e.first = t.First
	for _, w := range t.Between(from, to) {
		e.Windows = append(e.Windows, Span{Start: w.Start, End: w.End})
	}
	if r.Status.ReleasedUnused != nil {
		at := r.Status.ReleasedUnused.UTC()
		e.ReleasedUnused = &at
	}
	return e
}

// board holds the timeline's rows while reservations are put on them.
type board struct {
	rows    []*row
	byUUID  map[string]*row                          // node/uuid: a GPU's or a slice's row
	byIndex map[string]*row                          // node/index: a listed GPU's row
	slices  map[string]gpuwardenv1alpha1.MIGInstance // node/uuid: a listed MIG slice
}

func key(node string, id any) string { return fmt.Sprintf("%s/%v", node, id) }

// newBoard has a row for each GPU.
func newBoard(gpus []gpuwardenv1alpha1.GPU) *board {
	b := &board{byUUID: map[string]*row{}, byIndex: map[string]*row{}, slices: map[string]gpuwardenv1alpha1.MIGInstance{}}
	for i := range gpus {
		g := &gpus[i]
		n := gpuNode(g)
		rw := &row{GPU: GPU{Node: n, Index: g.Spec.Index, UUID: g.Status.UUID, Listed: true, Windows: []Booking{}},
			mig: g.Status.MIGMode == gpuwardenv1alpha1.MIGEnabled || len(g.Status.MIGInstances) > 0}
		b.rows = append(b.rows, rw)
		b.byIndex[key(n, g.Spec.Index)] = rw
		if g.Status.UUID != "" {
			b.byUUID[key(n, g.Status.UUID)] = rw
		}
		for _, s := range g.Status.MIGInstances {
			b.slices[key(n, s.UUID)] = s
		}
	}
	return b
}

// rowFor is the row of a reserved device: its GPU's, its listed slice's, or one for a
// device the node does not list (any more).
func (b *board) rowFor(node string, d gpuwardenv1alpha1.BoundDevice) *row {
	if d.UUID != "" {
		if rw := b.byUUID[key(node, d.UUID)]; rw != nil {
			return rw
		}
	}
	g := b.byIndex[key(node, d.Index)]
	rw := &row{GPU: GPU{Node: node, Index: d.Index, UUID: d.UUID, MIGProfile: d.MIGProfile, Windows: []Booking{}}}
	if s, ok := b.slices[key(node, d.UUID)]; ok && d.UUID != "" {
		rw.MIGProfile, rw.Listed = s.Profile, true
	} else if d.MIGProfile == "" && g != nil && g.UUID == "" {
		return g // a GPU whose UUID is not reported (yet)
	}
	b.rows = append(b.rows, rw)
	if d.UUID != "" {
		b.byUUID[key(node, d.UUID)] = rw
	}
	return rw
}

// sorted are the rows by node and index, each GPU before its slices, listed ones first.
func (b *board) sorted() []*row {
	rows := slices.Clone(b.rows)
	slices.SortStableFunc(rows, func(x, y *row) int {
		return cmp.Or(cmp.Compare(x.Node, y.Node), cmp.Compare(x.Index, y.Index),
			cmp.Compare(boolInt(x.MIGProfile != ""), boolInt(y.MIGProfile != "")),
			cmp.Compare(boolInt(!x.Listed), boolInt(!y.Listed)),
			cmp.Compare(x.MIGProfile, y.MIGProfile), cmp.Compare(x.UUID, y.UUID))
	})
	for _, rw := range rows {
		sort.SliceStable(rw.Windows, func(i, j int) bool { return rw.Windows[i].Start.Before(rw.Windows[j].Start) })
	}
	return rows
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// print writes the timeline for people.
func (o *Options) print(out io.Writer, tl *Timeline, rows []*row) error {
	day0 := tl.From.Truncate(day)
	days := int((tl.To.Sub(day0) + day - 1) / day)
	n := days * perDay
	mark := map[string]byte{}
	var reserving, other []Reservation
	for _, r := range tl.Reservations {
		if r.Reserves {
			mark[r.Name] = r.Mark[0]
			reserving = append(reserving, r)
		} else {
			other = append(other, r)
		}
	}

	fmt.Fprintf(out, "GPU reservations from %s to %s UTC, one character per %d hours from 00:00 UTC:\n",
		tl.From.Format("Mon 2006-01-02 15:04"), tl.To.Format("Mon 2006-01-02 15:04"), int(cell.Hours()))
	fmt.Fprintln(out, "'.' free, a letter: reserved by the reservation of that letter (below), '*': by more than one.")

	labels := make([]string, len(rows))
	width := len("GPU 00")
	unlisted := false
	for i, rw := range rows {
		labels[i] = label(rw, rows)
		if !rw.Listed {
			labels[i] += "?"
			unlisted = true
		}
		width = max(width, len(labels[i]), len(rw.Node))
	}
	if len(rows) == 0 {
		fmt.Fprintln(out, "\nNo GPUs.")
	}
	for i, rw := range rows {
		if i == 0 || rw.Node != rows[i-1].Node {
			fmt.Fprintln(out)
			var names, dates strings.Builder
			for d := range days {
				t := day0.Add(time.Duration(d) * day)
				fmt.Fprintf(&names, " %-*s", perDay, t.Format("Mon"))
				fmt.Fprintf(&dates, " %-*s", perDay, t.Format("01-02"))
			}
			fmt.Fprintln(out, strings.TrimRight(fmt.Sprintf("%-*s%s", width, rw.Node, names.String()), " "))
			fmt.Fprintln(out, strings.TrimRight(fmt.Sprintf("%-*s%s", width, "", dates.String()), " "))
		}
		cells := make([]byte, n)
		for c := range cells {
			cells[c] = ' '
			start := day0.Add(time.Duration(c) * cell)
			if (reservation.Window{Start: start, End: start.Add(cell)}).Overlaps(reservation.Window{Start: tl.From, End: tl.To}) {
				cells[c] = '.'
			}
		}
		for _, bk := range rw.Windows {
			w, ok := reservation.Clip(reservation.Window{Start: bk.Start, End: bk.End}, tl.From, tl.To)
			if !ok {
				continue
			}
			lo, hi := reservation.Cells(w, day0, cell, n)
			for c := lo; c < hi; c++ {
				switch cells[c] {
				case '.', mark[bk.Reservation]:
					cells[c] = mark[bk.Reservation]
				default:
					cells[c] = '*'
				}
			}
		}
		var line strings.Builder
		fmt.Fprintf(&line, "%-*s", width, labels[i])
		for d := range days {
			line.WriteByte(' ')
			line.Write(cells[d*perDay : (d+1)*perDay])
		}
		fmt.Fprintln(out, strings.TrimRight(line.String(), " "))
	}
	if unlisted {
		fmt.Fprintln(out, "?: a reserved device the node does not list (removed, or its MIG slices made anew): nothing is held there.")
	}

	fmt.Fprintln(out)
	if len(reserving) == 0 {
		fmt.Fprintln(out, "No reservation holds GPUs.")
	} else {
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "\tNAME\tPHASE\tFOR\tWHEN (UTC)\tDISPLACE\tDEVICES")
		for _, r := range reserving {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Mark, r.Name, r.Phase, r.For, when(&r, tl.From), r.Displace, devices(&r))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(other) > 0 {
		fmt.Fprintln(out)
		fmt.Fprintln(out, "Reserving nothing:")
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tPHASE\tFOR\tWHEN (UTC)\tREQUEST\tNODE\tWHY")
		for _, r := range other {
			node := r.Node
			if node == "" {
				node = "any"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Phase, r.For, when(&r, tl.From), r.Request, node, why(&r))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// label names a row: "GPU 0", "GPU 4 MIG", "  4:1g.10gb" (with its UUID's start where two
// slices of a GPU share a profile).
func label(rw *row, rows []*row) string {
	if rw.MIGProfile == "" {
		if rw.mig {
			return fmt.Sprintf("GPU %d MIG", rw.Index)
		}
		return fmt.Sprintf("GPU %d", rw.Index)
	}
	s := fmt.Sprintf("  %d:%s", rw.Index, rw.MIGProfile)
	for _, o := range rows {
		if o != rw && o.Node == rw.Node && o.Index == rw.Index && o.MIGProfile == rw.MIGProfile {
			return s + " " + short(rw.UUID)
		}
	}
	return s
}

// short is the start of a device's UUID: "MIG-1a2b3c4d".
func short(uuid string) string {
	if i := strings.IndexByte(uuid, '-'); i >= 0 && len(uuid) > i+9 {
		return uuid[:i+9]
	}
	return uuid
}

// when is a reservation's window for people: "2026-12-04 08:00-20:00",
// "2026-12-04 08:00 - 12-05 20:00", "weekly Mon 06:00-10:00", with its release.
func when(r *Reservation, now time.Time) string {
	var s string
	if r.Repeat == string(gpuwardenv1alpha1.RepeatWeekly) {
		s = "weekly " + weekly(r, now)
	} else {
		s = once(r)
	}
	if r.ReleasedUnused != nil {
		s += ", released unused " + r.ReleasedUnused.Format("01-02 15:04")
	}
	return s
}

func once(r *Reservation) string {
	w := r.first
	switch {
	case w.Start.Format(time.DateOnly) == w.End.Format(time.DateOnly):
		return w.Start.Format("2006-01-02 15:04") + "-" + w.End.Format("15:04")
	case w.Start.Year() == w.End.Year():
		return w.Start.Format("2006-01-02 15:04") + " - " + w.End.Format("01-02 15:04")
	}
	return w.Start.Format("2006-01-02 15:04") + " - " + w.End.Format("2006-01-02 15:04")
}

// weekly is a weekly window's days and hours, and its first day while that is ahead.
func weekly(r *Reservation, now time.Time) string {
	w := r.first
	var s string
	if w.End.Sub(w.Start) < day && w.Start.Weekday() == w.End.Weekday() {
		s = w.Start.Format("Mon 15:04") + "-" + w.End.Format("15:04")
	} else {
		s = w.Start.Format("Mon 15:04") + " - " + w.End.Format("Mon 15:04")
	}
	if w.Start.After(now) {
		s += " from " + w.Start.Format(time.DateOnly)
	}
	return s
}

// devices are a reservation's node and devices: "gpu01 0,1", "gpu01 4:1g.10gb".
func devices(r *Reservation) string {
	s := r.DevicesSummary
	if s == "" {
		var ds []string
		for _, d := range r.Devices {
			if d.MIGProfile != "" {
				ds = append(ds, fmt.Sprintf("%d:%s", d.Index, d.MIGProfile))
			} else {
				ds = append(ds, fmt.Sprint(d.Index))
			}
		}
		s = strings.Join(ds, ",")
	}
	return strings.TrimSpace(r.Node + " " + s)
}

// why is why a reservation reserves nothing: its reason and message, or its phase's.
func why(r *Reservation) string {
	switch {
	case r.Reason != "" && r.Message != "":
		return r.Reason + ": " + r.Message
	case r.Reason != "" || r.Message != "":
		return r.Reason + r.Message
	case r.Phase == string(gpuwardenv1alpha1.ReservationPending):
		return "not decided yet"
	case r.Phase == string(gpuwardenv1alpha1.ReservationEnded):
		return "ended"
	case r.Phase == string(gpuwardenv1alpha1.ReservationAccepted) || r.Phase == string(gpuwardenv1alpha1.ReservationActive):
		return "no devices, or being deleted"
	}
	return "-"
}

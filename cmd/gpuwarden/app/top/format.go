package top

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/message"
	"github.com/gpuwarden/gpuwarden/internal/overview"
)

// The formatting layer: a Snapshot as titled tables of plain-text cells. `--once` prints
// them as they are; the terminal view adds bars and colour to the same cells, and drops
// columns that do not fit, so that the two never say different things.

// The section titles, in the order they are shown.
const (
	titleGPUs         = "GPUS"
	titleQueue        = "QUEUE"
	titleReservations = "RESERVATIONS (THIS WEEK)"
	titleUsers        = "USERS"
)

// dash stands for what is not known.
const dash = "-"

// kind says what a cell holds, for the terminal view's colours; the zero kind is plain text.
type kind int

const (
	_ kind = iota
	// barCell is a fraction the terminal view draws as a bar before its text.
	barCell
	// noteCell is a remark: borrowed, reserved, displaced, unhealthy.
	noteCell
	// freeCell is a device no one holds.
	freeCell
)

// cell is one value of a table.
type cell struct {
	text string
	kind kind
	// frac is a barCell's fraction (0–1); nil when unknown.
	frac *float64
}

// column is a table's column; drop says how soon it goes in a narrow terminal (0: never;
// the highest first).
type column struct {
	name string
	drop int
}

// section is one titled table.
type section struct {
	title   string
	columns []column
	rows    [][]cell
	// empty is said instead of the table when it has no rows; notes follow the table.
	empty string
	notes []string
}

// header is the lines above the sections: what is shown, when, and where the readings come
// from.
func header(s overview.Snapshot, f filter) []string {
	what := "every node"
	if s.Node != "" {
		what = "node " + s.Node
	}
	if f.user != "" {
		what += ", user " + f.user
	}
	lines := []string{fmt.Sprintf("gpuwarden top  %s  %s  sorted by %s", s.Time.UTC().Format(time.RFC3339), what, f.sort)}
	switch {
	case s.ReadingsError != "":
		lines = append(lines, "readings unavailable: "+s.ReadingsError)
	case s.Readings == "":
		lines = append(lines, "readings: none (no --metrics address)")
	default:
		nodes := readNodes(s.Devices)
		switch len(nodes) {
		case 0:
			lines = append(lines, "readings from "+s.Readings+": none of these GPUs")
		case 1:
			lines = append(lines, "readings of node "+nodes[0]+" from "+s.Readings)
		default:
			lines = append(lines, "readings of nodes "+strings.Join(nodes, ", ")+" from "+s.Readings)
		}
	}
	for i := range lines {
		lines[i] = audit.Printable(lines[i])
	}
	return lines
}

// readNodes are the nodes whose devices have a reading.
func readNodes(devices []overview.Device) []string {
	var out []string
	for _, d := range devices {
		if (d.UtilizationPercent != nil || d.MemoryUsedBytes != nil || d.TemperatureC != nil || d.PowerWatts != nil) && !slices.Contains(out, d.Node) {
			out = append(out, d.Node)
		}
	}
	slices.Sort(out)
	return out
}

// sections are the snapshot's tables at now.
func sections(s overview.Snapshot, now time.Time) []section {
	return []section{gpuSection(s, now), queueSection(s, now), reservationSection(s), userSection(s)}
}

func gpuSection(s overview.Snapshot, now time.Time) section {
	sec := section{title: titleGPUs, empty: "No GPUs.", columns: []column{
		{"NODE", 6}, {"GPU", 0}, {"MODEL", 9}, {"UTIL", 0}, {"MEMORY", 1}, {"TEMP", 7}, {"POWER", 8},
		{"USER", 0}, {"CONTAINER", 3}, {"ALLOCATION", 5}, {"STATE", 2}, {"IDLE", 4}, {"WARN IN", 10}, {"STOP IN", 4}, {"RUNTIME LEFT", 4},
	}}
	for _, d := range s.Devices {
		row := []cell{
			{text: d.Node}, {text: deviceName(d)}, {text: or(d.Model)},
			utilCell(d.UtilizationPercent), memoryCell(d.MemoryUsedBytes, d.MemoryTotalBytes),
			{text: number(d.TemperatureC, "C")}, {text: number(d.PowerWatts, "W")},
		}
		h := d.Holder
		if h == nil {
			free := "free"
			if d.MIG {
				free = "(instances)"
			}
			row = append(row, cell{text: free, kind: freeCell}, cell{text: dash}, cell{text: dash})
		} else {
			row = append(row, cell{text: h.User}, cell{text: or(h.Container)}, cell{text: h.Allocation})
		}
		row = append(row, cell{text: or(state(d)), kind: noteCell})
		if h == nil {
			row = append(row, cell{text: dash}, cell{text: dash}, cell{text: dash}, cell{text: dash})
		} else {
			row = append(row, cell{text: since(h.IdleSince, now)}, cell{text: until(h.IdleWarnAt, now)},
				cell{text: until(h.IdleStopAt, now)}, cell{text: until(h.RuntimeEnd, now)})
		}
		sec.rows = append(sec.rows, row)
	}
	return sec
}

// deviceName is a GPU's index, "4 MIG" for a GPU in MIG mode, and "4:1g.10gb" for one of
// its instances, as `gpuwarden reservations` names them.
func deviceName(d overview.Device) string {
	i := strconv.Itoa(int(d.Index))
	switch {
	case d.Profile != "":
		return i + ":" + d.Profile
	case d.MIG:
		return i + " MIG"
	}
	return i
}

// state is what else is said of a device: borrowed, reserved now, to make way for a
// reservation, unhealthy.
func state(d overview.Device) string {
	var out []string
	if d.Health != "" && d.Health != "Healthy" {
		out = append(out, strings.ToLower(d.Health))
	}
	if h := d.Holder; h != nil && h.Borrowed {
		out = append(out, "borrowed")
	}
	if d.ReservedBy != "" {
		out = append(out, "reserved: "+d.ReservedBy)
	}
	if h := d.Holder; h != nil && h.DisplacedBy != "" {
		out = append(out, "stops for "+h.DisplacedBy+" at "+at(h.DisplacedAt))
	}
	return strings.Join(out, ", ")
}

func utilCell(p *float64) cell {
	if p == nil {
		return cell{text: dash, kind: barCell}
	}
	f := clamp(*p / 100)
	return cell{text: fmt.Sprintf("%.0f%%", *p), kind: barCell, frac: &f}
}

func memoryCell(used, total *int64) cell {
	switch {
	case used == nil && total == nil:
		return cell{text: dash, kind: barCell}
	case used == nil:
		return cell{text: dash + "/" + gib(*total), kind: barCell}
	case total == nil || *total <= 0:
		return cell{text: gib(*used) + "/" + dash, kind: barCell}
	}
	f := clamp(float64(*used) / float64(*total))
	return cell{text: gib(*used) + "/" + gib(*total), kind: barCell, frac: &f}
}

// clamp is f within 0–1; NaN is 0 (min and max keep a NaN, and a bar of NaN is a panic).
func clamp(f float64) float64 {
	if math.IsNaN(f) {
		return 0
	}
	return max(0, min(1, f))
}

// gib writes bytes as GiB with one decimal.
func gib(b int64) string { return strconv.FormatFloat(float64(b)/(1<<30), 'f', 1, 64) + "Gi" }

func number(v *float64, unit string) string {
	if v == nil {
		return dash
	}
	return fmt.Sprintf("%.0f%s", *v, unit)
}

func queueSection(s overview.Snapshot, now time.Time) section {
	sec := section{title: titleQueue, empty: "Nothing waits for GPUs.", columns: []column{
		{"NODE", 5}, {"PLACE", 0}, {"NAME", 0}, {"USER", 0}, {"REQUEST", 3}, {"WAITING", 2}, {"ESTIMATE", 1}, {"LATEST", 4}, {"WHY", 6},
	}}
	for _, w := range s.Queue {
		sec.rows = append(sec.rows, []cell{{text: w.Node}, {text: strconv.Itoa(int(w.Position))}, {text: w.Name}, {text: w.User},
			{text: w.Request}, {text: since(&w.WaitingSince, now)}, {text: at(w.EstimatedStart)}, {text: at(w.LatestStart)}, {text: w.Why}})
	}
	if s.Unplaced > 0 {
		sec.notes = append(sec.notes, fmt.Sprintf("%d more not placed yet (no node took them, or not decided yet).", s.Unplaced))
	}
	return sec
}

func reservationSection(s overview.Snapshot) section {
	sec := section{title: titleReservations, empty: "No reservations this week.", columns: []column{
		{"NAME", 0}, {"PHASE", 3}, {"FOR", 0}, {"START", 0}, {"END", 1}, {"NODE", 4}, {"DEVICES", 2}, {"REPEAT", 6}, {"DISPLACE", 5},
	}}
	for _, b := range s.Reservations {
		repeat := "once"
		if b.Weekly {
			repeat = "weekly"
		}
		phase := or(b.Phase)
		if b.Active {
			phase += " (on)"
		}
		sec.rows = append(sec.rows, []cell{{text: b.Name}, {text: phase}, {text: b.For}, {text: at(&b.Start)}, {text: at(&b.End)},
			{text: or(b.Node)}, {text: or(cmp.Or(b.Devices, b.Request))}, {text: repeat}, {text: or(b.Displace)}})
	}
	return sec
}

func userSection(s overview.Snapshot) section {
	sec := section{title: titleUsers, empty: "No one holds, waits or has a quota.", columns: []column{
		{"USER", 0}, {"HELD", 0}, {"QUOTA", 0}, {"CONTAINERS", 3}, {"BORROWED", 2}, {"WAITING", 1}, {"BUDGET USED", 4},
	}}
	for _, u := range s.Users {
		held := cell{text: equivalents(u.GPUEquivalents)}
		if q, err := strconv.ParseFloat(u.Quota, 64); err == nil && q > 0 {
			f := clamp(u.GPUEquivalents / q)
			held = cell{text: held.text, kind: barCell, frac: &f}
		}
		budget := dash
		if u.BudgetGPUHours > 0 {
			budget = fmt.Sprintf("%s/%s GPU-h", equivalents(u.BudgetUsedGPUHours), equivalents(u.BudgetGPUHours))
			if u.BudgetWindow != "" {
				budget += " per " + u.BudgetWindow
			}
		}
		sec.rows = append(sec.rows, []cell{{text: u.Name}, held, {text: or(u.Quota)}, {text: strconv.Itoa(u.Containers)},
			{text: equivalents(u.Borrowed)}, {text: strconv.Itoa(u.Waiting)}, {text: budget}})
	}
	return sec
}

// equivalents writes gpu-equivalents as kubectl get ga does: at most two decimals.
func equivalents(v float64) string {
	return strconv.FormatFloat(float64(int64(v*100+0.5))/100, 'f', -1, 64)
}

func or(s string) string { return cmp.Or(s, dash) }

// at writes a time as RFC 3339 in UTC.
func at(t *time.Time) string {
	if t == nil || t.IsZero() {
		return dash
	}
	return t.UTC().Format(time.RFC3339)
}

// since is how long ago t was; until how long until t ("now" once it is past).
func since(t *time.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return dash
	}
	return message.Age(now.Sub(*t))
}

func until(t *time.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return dash
	}
	if d := t.Sub(now); d > 0 {
		return message.Age(d)
	}
	return "now"
}

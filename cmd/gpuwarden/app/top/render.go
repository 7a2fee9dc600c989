package top

import (
	"strings"

	"github.com/charmbracelet/lipgloss"

	"github.com/gpuwarden/gpuwarden/internal/audit"
)

// look is how rendered cells look: plain text for --once, bars and colour in the terminal.
type look struct {
	// barWidth is the width of a barCell's bar; 0 draws none.
	barWidth int
	// paint colours a cell's text, bar the bar of a fraction, heading a section's title
	// and its column names; nil leaves them plain.
	paint   func(c cell, text string) string
	bar     func(frac float64, width int) string
	heading func(string) string
}

// plain is --once's look: the cells' text, nothing else.
var plain = look{}

// render writes the sections as lines no wider than width (0: as wide as they are),
// dropping the columns that go first in a narrow terminal.
func (l look) render(secs []section, width int) []string {
	var lines []string
	for i, s := range secs {
		if i > 0 {
			lines = append(lines, "")
		}
		lines = append(lines, l.head(s.title))
		if len(s.rows) == 0 {
			lines = append(lines, s.empty)
		} else {
			lines = append(lines, l.table(s, width)...)
		}
		for _, n := range s.notes {
			lines = append(lines, audit.Printable(n))
		}
	}
	return lines
}

func (l look) head(s string) string {
	if l.heading == nil {
		return s
	}
	return l.heading(s)
}

// shown is a cell as this look shows it, and its width on the screen. Control characters
// are written escaped: a name a user chose (an allocation's spec.containerName) must not
// drive the terminal of whoever watches.
func (l look) shown(c cell) (string, int) {
	c.text = audit.Printable(c.text)
	text := c.text
	if l.paint != nil {
		text = l.paint(c, c.text)
	}
	w := lipgloss.Width(c.text)
	if c.kind == barCell && c.frac != nil && l.barWidth > 0 && l.bar != nil {
		text = l.bar(*c.frac, l.barWidth) + " " + text
		w += l.barWidth + 1
	}
	return text, w
}

// gap is the space between columns.
const gap = 2

func (l look) table(s section, width int) []string {
	type shownCell struct {
		text  string
		width int
	}
	rows := make([][]shownCell, len(s.rows))
	widths := make([]int, len(s.columns))
	for i, c := range s.columns {
		widths[i] = lipgloss.Width(c.name)
	}
	for r, row := range s.rows {
		rows[r] = make([]shownCell, len(row))
		for i, c := range row {
			t, w := l.shown(c)
			rows[r][i] = shownCell{t, w}
			widths[i] = max(widths[i], w)
		}
	}
	keep := fit(s.columns, widths, width)

	line := func(cells []shownCell) string {
		var b strings.Builder
		last := keep[len(keep)-1]
		for _, i := range keep {
			b.WriteString(cells[i].text)
			if i != last {
				b.WriteString(strings.Repeat(" ", widths[i]-cells[i].width+gap))
			}
		}
		return strings.TrimRight(b.String(), " ")
	}
	names := make([]shownCell, len(s.columns))
	for i, c := range s.columns {
		names[i] = shownCell{c.name, lipgloss.Width(c.name)}
	}
	out := []string{l.head(line(names))}
	for _, r := range rows {
		out = append(out, line(r))
	}
	return out
}

// fit are the indexes of the columns that fit in width (0: all), dropping those with the
// highest drop first; columns with drop 0 always stay.
func fit(cols []column, widths []int, width int) []int {
	gone := make([]bool, len(cols))
	total := func() int {
		t := 0
		for i, w := range widths {
			if !gone[i] {
				t += w + gap
			}
		}
		return t - gap
	}
	for width > 0 && total() > width {
		worst := -1
		for i, c := range cols {
			if !gone[i] && c.drop > 0 && (worst < 0 || c.drop > cols[worst].drop) {
				worst = i
			}
		}
		if worst < 0 {
			break
		}
		gone[worst] = true
	}
	var keep []int
	for i := range cols {
		if !gone[i] {
			keep = append(keep, i)
		}
	}
	return keep
}

// text is the whole --once output.
func text(secs []section, head []string) string {
	lines := append(append([]string{}, head...), "")
	lines = append(lines, plain.render(secs, 0)...)
	return strings.Join(lines, "\n") + "\n"
}

package top

import (
	"context"
	"fmt"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"

	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/overview"
)

// model is the live view: the last snapshot read, refreshed every interval by a tea.Cmd
// (Update never waits on the API server), and what of it is shown.
type model struct {
	ctx      context.Context
	read     func(context.Context) (overview.Snapshot, error)
	interval time.Duration
	filter   filter
	// snap is the last snapshot read, unfiltered; nil until the first.
	snap *overview.Snapshot
	// err is the last refresh's error, at errAt; nil once one succeeds again.
	err   error
	errAt time.Time
	// width and height are the terminal's; 0 until it says.
	width, height int
	help          bool
}

// snapshotMsg is a refresh's result; tickMsg says it is time for the next one.
type (
	snapshotMsg struct {
		snap overview.Snapshot
		err  error
		at   time.Time
	}
	tickMsg struct{}
)

func newModel(read func(context.Context) (overview.Snapshot, error), f filter, interval time.Duration) *model {
	return &model{ctx: context.Background(), read: read, filter: f, interval: interval}
}

// Init reads the first snapshot.
func (m *model) Init() tea.Cmd { return m.refresh }

// refresh reads a snapshot, off the Update loop.
func (m *model) refresh() tea.Msg {
	s, err := m.read(m.ctx)
	return snapshotMsg{snap: s, err: err, at: time.Now()}
}

// Update handles keys, the terminal's size and refreshes.
func (m *model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case snapshotMsg:
		if msg.err != nil {
			m.err, m.errAt = msg.err, msg.at
		} else {
			m.err, m.snap = nil, &msg.snap
		}
		// The next refresh only once this one is in: slow reads never pile up.
		return m, tea.Tick(m.interval, func(time.Time) tea.Msg { return tickMsg{} })
	case tickMsg:
		return m, m.refresh
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
	case tea.KeyMsg:
		switch msg.String() {
		case "q", "ctrl+c":
			return m, tea.Quit
		case "s":
			m.filter.sort = next(sorts, m.filter.sort)
		case "u":
			m.filter.user = next(m.users(), m.filter.user)
		case "a", "esc":
			m.filter.user = ""
		case "?":
			m.help = !m.help
		}
	}
	return m, nil
}

// users are everyone (""), then the users the last snapshot names.
func (m *model) users() []string {
	out := []string{""}
	if m.snap != nil {
		for _, u := range m.snap.Users {
			out = append(out, u.Name)
		}
	}
	return out
}

var (
	boldStyle  = lipgloss.NewStyle().Bold(true)
	faintStyle = lipgloss.NewStyle().Faint(true)
	errStyle   = lipgloss.NewStyle().Foreground(lipgloss.Color("9"))
	noteStyle  = lipgloss.NewStyle().Foreground(lipgloss.Color("11"))
	freeStyle  = lipgloss.NewStyle().Foreground(lipgloss.Color("10"))
	barStyles  = []lipgloss.Style{
		lipgloss.NewStyle().Foreground(lipgloss.Color("10")), // below half
		lipgloss.NewStyle().Foreground(lipgloss.Color("11")), // below 85%
		lipgloss.NewStyle().Foreground(lipgloss.Color("9")),
	}
)

// live is the terminal's look: bars and colour over the same cells as --once.
var live = look{
	barWidth: 10,
	heading:  func(s string) string { return boldStyle.Render(s) },
	paint: func(c cell, s string) string {
		switch {
		case c.kind == freeCell:
			return freeStyle.Render(s)
		case c.kind == noteCell && s != dash:
			return noteStyle.Render(s)
		}
		return s
	},
	bar: func(f float64, width int) string {
		n := int(f*float64(width) + 0.5)
		st := barStyles[0]
		switch {
		case f >= 0.85:
			st = barStyles[2]
		case f >= 0.5:
			st = barStyles[1]
		}
		return st.Render(strings.Repeat("█", n)) + faintStyle.Render(strings.Repeat("░", width-n))
	},
}

// View draws the last snapshot to the terminal's size: columns that do not fit are
// dropped, lines below the bottom cut with a note.
func (m *model) View() string {
	var lines []string
	switch {
	case m.snap == nil && m.err == nil:
		lines = append(lines, "Reading the API server…")
	case m.snap != nil:
		s := m.filter.apply(*m.snap)
		lines = append(lines, header(s, m.filter)...)
	}
	if m.err != nil {
		what := fmt.Sprintf("cannot read the API server at %s: %s (retrying every %s", m.errAt.Format(time.TimeOnly), audit.Printable(m.err.Error()), m.interval)
		if m.snap != nil {
			what += "; showing what was read at " + m.snap.Time.Local().Format(time.TimeOnly)
		}
		lines = append(lines, errStyle.Render(what+")"))
	}
	if m.snap != nil {
		s := m.filter.apply(*m.snap)
		lines = append(lines, "")
		lines = append(lines, live.render(sections(s, s.Time), m.width)...)
	}
	keys := faintStyle.Render("? keys")
	if m.help {
		keys = faintStyle.Render(fmt.Sprintf("q quit   s sort (%s)   u next user   a/Esc every user   ? hide the keys", m.filter.sort))
	}
	if m.height > 0 && len(lines)+2 > m.height {
		cut := len(lines) - (m.height - 3)
		lines = append(lines[:max(0, m.height-3)], faintStyle.Render(fmt.Sprintf("… %d more lines: a taller terminal, or u to show one user", cut)))
	}
	lines = append(lines, "", keys)
	if m.width > 0 {
		clip := lipgloss.NewStyle().MaxWidth(m.width)
		for i, l := range lines {
			if lipgloss.Width(l) > m.width {
				lines[i] = clip.Render(l)
			}
		}
	}
	return strings.Join(lines, "\n")
}

package statuspage

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/overview"
)

// The history a tile's charts show: one point per sampleEvery over the last window.
const (
	window      = time.Hour
	sampleEvery = 30 * time.Second
	maxPoints   = int(window / sampleEvery)
)

// The sparkline's drawing box (SVG user units; CSS stretches it).
const (
	sparkW = 120.0
	sparkH = 28.0
)

// point is one sample of a device: utilisation and memory used, in percent.
type point struct {
	at              time.Time
	util, mem       float64
	hasUtil, hasMem bool
}

// series is a device's last hour, oldest first.
type series struct{ points []point }

// add records the snapshot's reading at its time, at most one point per sampleEvery (the
// newest replaces one taken within it), and drops what is older than the window.
func (s *series) add(d overview.Device, at time.Time) {
	p := point{at: at}
	if d.UtilizationPercent != nil {
		p.util, p.hasUtil = clamp(*d.UtilizationPercent), true
	}
	if d.MemoryUsedBytes != nil && d.MemoryTotalBytes != nil && *d.MemoryTotalBytes > 0 {
		p.mem, p.hasMem = clamp(100*float64(*d.MemoryUsedBytes)/float64(*d.MemoryTotalBytes)), true
	}
	if n := len(s.points); n > 1 && at.Sub(s.points[n-2].at) < sampleEvery {
		s.points[n-1] = p
	} else {
		s.points = append(s.points, p)
	}
	cut := 0
	for cut < len(s.points) && at.Sub(s.points[cut].at) > window {
		cut++
	}
	if cut > 0 || len(s.points) > maxPoints+1 {
		cut = max(cut, len(s.points)-maxPoints-1)
		s.points = append(s.points[:0], s.points[cut:]...)
	}
}

// Spark is a sparkline: an SVG polyline's points over a window (0–100 % bottom to top,
// the last hour left to right), and its accessible description.
type Spark struct {
	Points string `json:"points"`
	// Last is where the line ends, for a dot; empty without points.
	LastX string `json:"lastX"`
	LastY string `json:"lastY"`
	Label string `json:"label"`
	// Width and Height are the drawing box (the viewBox).
	Width  string `json:"width"`
	Height string `json:"height"`
}

// spark draws one of the series' values; a gap in the readings ends the line there.
func (s *series) spark(value func(point) (float64, bool), what string) Spark {
	sp := Spark{Width: num(sparkW), Height: num(sparkH), Label: what + " over the last hour: no readings yet"}
	if s == nil || len(s.points) == 0 {
		return sp
	}
	end := s.points[len(s.points)-1].at
	var b strings.Builder
	lo, hi, n := 100.0, 0.0, 0
	var last float64
	for _, p := range s.points {
		v, ok := value(p)
		if !ok {
			continue
		}
		x := sparkW * (1 - float64(end.Sub(p.at))/float64(window))
		y := 1 + (sparkH-2)*(1-v/100)
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(num(x) + "," + num(y))
		sp.LastX, sp.LastY = num(x), num(y)
		lo, hi, last = min(lo, v), max(hi, v), v
		n++
	}
	if n == 0 {
		return sp
	}
	sp.Points = b.String()
	if n == 1 { // one sample: a short flat line at its end, so that it shows
		sp.Points = num(sparkW-4) + "," + sp.LastY + " " + sp.LastX + "," + sp.LastY
	}
	sp.Label = fmt.Sprintf("%s over the last hour: now %.0f %%, lowest %.0f %%, highest %.0f %%", what, last, lo, hi)
	return sp
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }

package reservation

import (
	"testing"
	"time"
)

var timelineDay = time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC) // a Thursday

func timelineAt(h int) time.Time { return timelineDay.Add(time.Duration(h) * time.Hour) }

func TestClip(t *testing.T) {
	for _, c := range []struct {
		w      Window
		want   Window
		wantOK bool
	}{
		{Window{timelineAt(2), timelineAt(6)}, Window{timelineAt(2), timelineAt(6)}, true},
		{Window{timelineAt(-5), timelineAt(3)}, Window{timelineAt(0), timelineAt(3)}, true},
		{Window{timelineAt(20), timelineAt(30)}, Window{timelineAt(20), timelineAt(24)}, true},
		{Window{timelineAt(-5), timelineAt(0)}, Window{}, false},
		{Window{timelineAt(24), timelineAt(25)}, Window{}, false},
	} {
		got, ok := Clip(c.w, timelineAt(0), timelineAt(24))
		if ok != c.wantOK || (ok && got != c.want) {
			t.Errorf("Clip(%v) = %v, %v; want %v, %v", c.w, got, ok, c.want, c.wantOK)
		}
	}
}

// TestReserved: a weekly reservation's windows in a range, the one whose devices went back
// unused cut at that moment (and gone when it went back at its start).
func TestReserved(t *testing.T) {
	weekly := Times{First: Window{timelineAt(6), timelineAt(10)}, Weekly: true}
	from, to := timelineAt(0), timelineAt(0).Add(2*Week)
	if got := Reserved(weekly, time.Time{}, from, to); len(got) != 2 || got[0] != weekly.First || got[1].Start != timelineAt(6).Add(Week) {
		t.Errorf("weekly over two weeks: %v", got)
	}
	if got := Reserved(weekly, timelineAt(8), from, to); len(got) != 2 || got[0] != (Window{timelineAt(6), timelineAt(8)}) || got[1].End != timelineAt(10).Add(Week) {
		t.Errorf("released at 08:00 in the first window: %v", got)
	}
	if got := Reserved(weekly, timelineAt(6), from, to); len(got) != 1 || got[0].Start != timelineAt(6).Add(Week) {
		t.Errorf("released at the first window's start: %v", got)
	}
	if got := Reserved(weekly, timelineAt(8), timelineAt(9), to); len(got) != 1 || got[0].Start != timelineAt(6).Add(Week) {
		t.Errorf("released before the range's start: %v", got)
	}
	once := Times{First: Window{timelineAt(30), timelineAt(40)}}
	if got := Reserved(once, time.Time{}, from, timelineAt(24)); len(got) != 0 {
		t.Errorf("one-off after the range: %v", got)
	}
	if got := Reserved(once, timelineAt(50), from, to); len(got) != 1 || got[0] != once.First {
		t.Errorf("released outside its window changes nothing: %v", got)
	}
}

func TestCells(t *testing.T) {
	step := 4 * time.Hour
	for _, c := range []struct {
		w      Window
		lo, hi int
	}{
		{Window{timelineAt(8), timelineAt(12)}, 2, 3},    // exactly one cell
		{Window{timelineAt(9), timelineAt(13)}, 2, 4},    // touches two
		{Window{timelineAt(-10), timelineAt(1)}, 0, 1},   // began before the grid
		{Window{timelineAt(20), timelineAt(100)}, 5, 6},  // runs past the grid
		{Window{timelineAt(24), timelineAt(30)}, 0, 0},   // after it
		{Window{timelineAt(-10), timelineAt(0)}, 0, 0},   // ends where it begins
		{Window{timelineAt(-10), timelineAt(100)}, 0, 6}, // covers it all
	} {
		if lo, hi := Cells(c.w, timelineAt(0), step, 6); lo != c.lo || hi != c.hi {
			t.Errorf("Cells(%s-%s) = [%d,%d); want [%d,%d)", c.w.Start.Format("15:04"), c.w.End.Format("Jan 2 15:04"), lo, hi, c.lo, c.hi)
		}
	}
	if lo, hi := Cells(Window{timelineAt(0), timelineAt(4)}, timelineAt(0), 0, 6); lo != hi {
		t.Errorf("no step: [%d,%d)", lo, hi)
	}
}

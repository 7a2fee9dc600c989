package detect

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestTracker(t *testing.T) {
	set := func(keys string) map[string]int {
		m := map[string]int{}
		for _, k := range strings.Fields(keys) {
			m[k] = len(k)
		}
		return m
	}
	keys := func(m map[string]int) string { return strings.Join(slices.Sorted(maps.Keys(m)), " ") }
	steps := []struct {
		scan, started, ended, confirmed string
	}{
		{scan: "a b", started: "", ended: "", confirmed: ""},     // first sightings wait
		{scan: "a", started: "a", ended: "", confirmed: "a"},     // a twice in a row; b was a one-off
		{scan: "a b", started: "", ended: "", confirmed: "a"},    // b again, but not in a row
		{scan: "a b", started: "b", ended: "", confirmed: "a b"}, // now b twice in a row
		{scan: "b", started: "", ended: "a", confirmed: "b"},     // a ends the first scan it is missing from
		{scan: "a b", started: "", ended: "", confirmed: "b"},    // a back: waits again
		{scan: "", started: "", ended: "b", confirmed: ""},       // an empty scan ends everything
		{scan: "", started: "", ended: "", confirmed: ""},        // and forgets what was pending
		{scan: "a", started: "", ended: "", confirmed: ""},       // so a starts over
	}
	var tr Tracker[string, int]
	for i, s := range steps {
		started, ended := tr.Observe(set(s.scan))
		if keys(started) != s.started || keys(ended) != s.ended || keys(tr.Confirmed()) != s.confirmed {
			t.Errorf("scan %d (%q): started %q ended %q confirmed %q; want %q %q %q", i, s.scan,
				keys(started), keys(ended), keys(tr.Confirmed()), s.started, s.ended, s.confirmed)
		}
	}
}

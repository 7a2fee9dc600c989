package chaos

import (
	"bufio"
	"fmt"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// soakSeries are the server's own metrics the soak samples, with how much the later half
// of the run may rise over the earlier half's highest before it counts as growth.
var soakSeries = []struct {
	metric, title string
	ratio, slack  float64
}{
	{"go_goroutines", "goroutines", 0.25, 20},
	{"go_memstats_heap_inuse_bytes", "heap in use (MiB)", 0.5, 8 << 20},
	{"process_resident_memory_bytes", "RSS (MiB)", 0.25, 16 << 20},
	{"process_open_fds", "open fds", 0.25, 10},
}

// TestSoak runs the churn for GPUWARDEN_SOAK (default 60s; `make soak`: an hour), samples
// the server's goroutines, heap, RSS and open file descriptors every GPUWARDEN_SOAK_EVERY
// (default 10s; `make soak`: a minute), and fails when a series grows: the later half's
// highest above the earlier half's by more than the series' allowance. The samples are
// logged as a Markdown table, and written to GPUWARDEN_SOAK_REPORT when set.
func TestSoak(t *testing.T) {
	duration, every := 60*time.Second, 10*time.Second
	if v := os.Getenv("GPUWARDEN_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		testutil.Require(t, err == nil, "GPUWARDEN_SOAK=%s: %v", v, err)
		duration = d
	}
	if v := os.Getenv("GPUWARDEN_SOAK_EVERY"); v != "" {
		d, err := time.ParseDuration(v)
		testutil.Require(t, err == nil, "GPUWARDEN_SOAK_EVERY=%s: %v", v, err)
		every = d
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	prefix := "soak"
	if v := os.Getenv("GPUWARDEN_SOAK_PREFIX"); v != "" {
		prefix = v // a long soak beside the suite's short one
	}
	// An engine of its own: its container count is the soak's alone.
	// Released allocations and Events are kept for a while by design, and memory grows
	// with them until the first have aged out: short retentions, so that within the
	// soak the stored objects level off and what is left to grow is gpuwarden's own.
	r := newRig(t, rigOptions{prefix: prefix, ownEngine: true, metrics: addr,
		serverArgs: []string{"--allocation-retention", "2m", "--event-ttl", "5m"}})
	stop := r.churn(time.Now().UnixNano())
	defer stop()

	type sample struct {
		at         time.Duration
		values     []float64
		containers int
		// stored allocations and Events
		allocations, events int
	}
	var samples []sample
	start := time.Now()
	for {
		time.Sleep(time.Until(start.Add(time.Duration(len(samples)) * every)))
		m, err := scrape("http://" + addr + "/metrics")
		if err != nil {
			t.Fatalf("scraping the server's metrics: %v", err)
		}
		s := sample{at: time.Since(start).Round(time.Second)}
		for _, series := range soakSeries {
			v, ok := m[series.metric]
			testutil.Require(t, ok, "the server's /metrics has no %s", series.metric)
			s.values = append(s.values, v)
		}
		out, _ := r.docker("ps", "-q", "--filter", "name="+prefix+"-").Output()
		s.containers = len(strings.Fields(string(out)))
		if allocs, err := r.s.kubectl("", "get", "ga", "-o", "name"); err == nil {
			s.allocations = len(strings.Fields(allocs))
		}
		if events, err := r.s.kubectl("", "get", "events", "-A", "-o", "name"); err == nil {
			s.events = len(strings.Fields(events))
		}
		samples = append(samples, s)
		if time.Since(start) >= duration {
			break
		}
	}
	stop()
	// The samples are reported first: a failed check below must not lose them.
	defer r.check("the end of the soak")

	var b strings.Builder
	fmt.Fprintf(&b, "Soak: %s of churn (3 users, GPU containers through the gateway), sampled every %s; released allocations kept 2m, Events 5m.\n\n```\n%s```\n\n", duration, every, r.counts.String())
	b.WriteString("| time | running GPU containers | allocations stored | Events stored |")
	for _, s := range soakSeries {
		b.WriteString(" " + s.title + " |")
	}
	b.WriteString("\n|---|---|---|---|" + strings.Repeat("---|", len(soakSeries)) + "\n")
	for _, s := range samples {
		fmt.Fprintf(&b, "| %s | %d | %d | %d |", s.at, s.containers, s.allocations, s.events)
		for i, v := range s.values {
			if strings.Contains(soakSeries[i].title, "MiB") {
				fmt.Fprintf(&b, " %.1f |", v/(1<<20))
			} else {
				fmt.Fprintf(&b, " %.0f |", v)
			}
		}
		b.WriteString("\n")
	}
	// Growth: the first sample is the start-up; the rest in two halves.
	rest := samples[1:]
	half := len(rest) / 2
	b.WriteString("\n")
	for i, series := range soakSeries {
		early, late := 0.0, 0.0
		for j, s := range rest {
			if j < half {
				early = math.Max(early, s.values[i])
			} else {
				late = math.Max(late, s.values[i])
			}
		}
		allowed := early*(1+series.ratio) + series.slack
		verdict := "flat"
		if half == 0 || late > allowed {
			verdict = "GROWS"
			t.Errorf("%s grows: the later half's highest %.0f is above the earlier half's %.0f by more than allowed (%.0f)", series.title, late, early, allowed)
		}
		fmt.Fprintf(&b, "- %s: earlier half's highest %.0f, later half's %.0f (allowed %.0f): %s\n", series.metric, early, late, allowed, verdict)
	}
	t.Logf("\n%s", b.String())
	if path := os.Getenv("GPUWARDEN_SOAK_REPORT"); path != "" {
		report := "# gpuwarden soak\n\nProduced by `make soak` on " + time.Now().UTC().Format(time.RFC3339) + ".\n\n" + b.String()
		if err := os.WriteFile(path, []byte(report), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// scrape reads the unlabelled samples of a Prometheus text page.
func scrape(url string) (map[string]float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 || strings.HasPrefix(f[0], "#") || strings.Contains(f[0], "{") {
			continue
		}
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			out[f[0]] = v
		}
	}
	return out, sc.Err()
}

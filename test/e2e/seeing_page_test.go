package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// pageState is what the status page shows, read from the browser's DOM.
type pageState struct {
	// Tiles are the GPU tiles' texts; Queue the queue's rows, cell by cell.
	Tiles []string   `json:"tiles"`
	Queue [][]string `json:"queue"`
	Week  string     `json:"week"`
	Live  string     `json:"live"`
	// Marker is set on the window before alice's container goes: still there, the page
	// was not reloaded.
	Marker bool `json:"marker"`
}

const readPage = `({
  tiles: Array.from(document.querySelectorAll("#devices .tile")).map(t => t.innerText),
  queue: Array.from(document.querySelectorAll("#queue-body tr")).map(r => Array.from(r.cells).map(c => c.innerText.trim())),
  week: (document.getElementById("week") || {}).innerText || "",
  live: (document.getElementById("live") || {}).innerText || "",
  marker: window.__seeingMarker === 1
})`

// holds is whether a tile shows user holding it through container.
func (s pageState) holds(user, container string) bool {
	return slices.ContainsFunc(s.Tiles, func(t string) bool { return strings.Contains(t, user) && strings.Contains(t, container) })
}

// waiting is the place the queue shows for allocation; "" when it is not there.
func (s pageState) waiting(allocation string) string {
	for _, r := range s.Queue {
		if len(r) > 1 && r[1] == allocation {
			return r[0]
		}
	}
	return ""
}

func (s pageState) String() string {
	return fmt.Sprintf("live %q, tiles:\n%s\nqueue: %q\nweek:\n%s", s.Live, strings.Join(s.Tiles, "\n--\n"), s.Queue, s.Week)
}

// checkPage opens the status page in a real headless browser (Debian's chromium): it shows
// the holders, the queue and the reservation that `gpuwarden top` shows, with no console
// error; then alice's container is removed and the page, without a reload, shows GPU 7
// given to her waiting request and the queue empty. Screenshots of both go to
// $GPUWARDEN_ARTIFACTS (default: _artifacts at the repository's root).
func checkPage(t *testing.T, w *seeing) {
	browser := chromium(t)
	artifacts := artifactsDir(t)

	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1440, 1000))...)
	defer cancelAlloc()
	ctx, cancelTab := chromedp.NewContext(alloc)
	defer cancelTab()
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()

	// Every console message, exception and browser-log entry; errors fail the test.
	var mu sync.Mutex
	var messages, errs []string
	if err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			var args []string
			for _, a := range ev.Args {
				args = append(args, strings.Trim(string(a.Value), `"`)+a.Description)
			}
			m := fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " "))
			messages = append(messages, m)
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				errs = append(errs, m)
			}
		case *runtime.EventExceptionThrown:
			m := "exception: " + ev.ExceptionDetails.Text
			if ex := ev.ExceptionDetails.Exception; ex != nil {
				m += " " + ex.Description
			}
			messages, errs = append(messages, m), append(errs, m)
		case *log.EventEntryAdded:
			m := fmt.Sprintf("log %s (%s): %s %s", ev.Entry.Level, ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
			messages = append(messages, m)
			if ev.Entry.Level == log.EntryLevelError {
				errs = append(errs, m)
			}
		}
	}); err != nil {
		t.Fatalf("starting %s: %v", browser, err)
	}
	consoleErrors := func(when string) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		for _, m := range messages {
			t.Logf("browser: %s", m)
		}
		messages = nil
		if len(errs) > 0 {
			t.Errorf("the browser's console shows errors %s:\n%s", when, strings.Join(errs, "\n"))
			errs = nil
		}
	}

	if err := chromedp.Do(ctx, chromedp.Navigate(w.webURL)); err != nil {
		t.Fatalf("opening %s: %v", w.webURL, err)
	}
	read := func() (pageState, error) { return chromedp.Run(ctx, chromedp.Evaluate[pageState](readPage)) }
	var s pageState
	testutil.Eventually(t, 60*time.Second, "the page shows the holders, the queue and the booking, live", func() (bool, string) {
		var err error
		if s, err = read(); err != nil {
			return false, err.Error()
		}
		return s.Live == "Live" && s.holds(w.bob, w.bobContainer) && s.holds(w.alice, w.aliceContainer) &&
			s.waiting(w.waitingAllocation) == "1" && strings.Contains(s.Week, w.reservation), s.String()
	})
	screenshot(ctx, t, filepath.Join(artifacts, "statuspage.png"))
	consoleErrors("on opening the page")

	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.__seeingMarker = 1, true`)); err != nil {
		t.Fatal(err)
	}
	if out, err := as(w.alice, w.sock, "", "rm", "-f", w.aliceContainer); err != nil {
		t.Fatalf("alice's docker rm -f %s: %v\n%s", w.aliceContainer, err, out)
	}
	testutil.Eventually(t, 90*time.Second, "without a reload, the page shows alice's container gone, GPU 7 given to her waiting request and the queue empty", func() (bool, string) {
		var err error
		if s, err = read(); err != nil {
			return false, err.Error()
		}
		return s.Marker && !s.holds(w.alice, w.aliceContainer) && s.holds(w.alice, w.waiting) && s.holds(w.bob, w.bobContainer) &&
			s.waiting(w.waitingAllocation) == "", s.String()
	})
	screenshot(ctx, t, filepath.Join(artifacts, "statuspage-after.png"))
	consoleErrors("while the page followed the change")
}

// chromium is the browser the page is checked in: $GPUWARDEN_CHROMIUM, else Debian's
// (hack/install-deps.sh installs it). In CI its absence fails the test.
func chromium(t *testing.T) string {
	t.Helper()
	path := os.Getenv("GPUWARDEN_CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
		if _, err := os.Stat(path); err != nil {
			if p, err := exec.LookPath("chromium"); err == nil {
				path = p
			}
		}
	}
	_, err := os.Stat(path)
	testutil.Require(t, err == nil, "chromium at %s (run hack/install-deps.sh): %v", path, err)
	return path
}

// artifactsDir is $GPUWARDEN_ARTIFACTS, by default _artifacts at the repository's root,
// created.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("GPUWARDEN_ARTIFACTS")
	if dir == "" {
		root, err := filepath.Abs(filepath.Join("..", ".."))
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(root, "_artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("the artifacts directory: %v", err)
	}
	return dir
}

// screenshot saves a PNG of the whole page.
func screenshot(ctx context.Context, t *testing.T, path string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the status page: %s", path)
}

package gpu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
)

// utilizationOfGPU0 is what the first GPU of b reports.
func utilizationOfGPU0(t *testing.T, b Backend) uint32 {
	t.Helper()
	ctx := context.Background()
	devs, err := b.Devices(ctx)
	if err != nil || len(devs) == 0 {
		t.Fatalf("devices: %v, %v", devs, err)
	}
	samples, err := b.Samples(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range samples {
		if s.UUID == devs[0].UUID {
			return s.UtilizationPercent
		}
	}
	t.Fatalf("no sample of GPU 0 (%s)", devs[0].UUID)
	return 0
}

// writeFile replaces path whole, so that a watcher never reads it half written (empty: every
// default).
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	writeFile(t, good, `devices: {"0": {utilization: 97}}`)
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, `devices: {"0": {utilization: 140}}`)

	tests := []struct {
		name        string
		config      Config
		wantWatcher bool
		wantUtil    uint32 // of GPU 0, for simulated GPUs
		wantErr     string // a substring; "" for none
		wantControl bool   // the error is a *ControlError
	}{
		{name: "simulated", config: Config{Fake: "h100x8", Node: "n1"}},
		{name: "control file applied before the first reading", config: Config{Fake: "dgxa100", Node: "n1", Control: good}, wantWatcher: true, wantUtil: 97},
		{name: "missing control file is an empty one", config: Config{Fake: "dgxa100", Node: "n1", Control: filepath.Join(dir, "none.yaml")}, wantWatcher: true},
		{name: "unusable control file", config: Config{Fake: "dgxa100", Node: "n1", Control: bad}, wantErr: "utilization", wantControl: true},
		{name: "unknown profile", config: Config{Fake: "tpu", Node: "n1"}, wantErr: `unknown fake GPU profile "tpu"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, w, err := Open(tt.config)
			if tt.wantErr != "" {
				var ce *ControlError
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || errors.As(err, &ce) != tt.wantControl {
					t.Fatalf("Open(%+v) error = %v (a *ControlError: %t), want one with %q (a *ControlError: %t)",
						tt.config, err, errors.As(err, &ce), tt.wantErr, tt.wantControl)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open(%+v): %v", tt.config, err)
			}
			if (w != nil) != tt.wantWatcher {
				t.Errorf("Open(%+v) watcher = %v, want one: %t", tt.config, w, tt.wantWatcher)
			}
			if got := utilizationOfGPU0(t, b); got != tt.wantUtil {
				t.Errorf("GPU 0 utilization = %d, want %d", got, tt.wantUtil)
			}
		})
	}
}

// TestOpenNVMLWithoutFake: no profile reads NVML, and there is no file to watch.
func TestOpenNVMLWithoutFake(t *testing.T) {
	b, w, err := Open(Config{Node: "n1", Control: "/ignored"})
	if err != nil || w != nil {
		t.Fatalf("Open = %v, %v, %v; want NVML, no watcher", b, w, err)
	}
	if _, ok := b.(*NVML); !ok {
		t.Errorf("Open without a profile = %T, want *NVML", b)
	}
}

// logLines records the messages a logger is told, after its name.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.lines = append(l.lines, prefix+": "+field(args, "msg"))
	}, funcr.Options{})
}

func (l *logLines) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// TestControlWatcher: the watcher applies each change of the file, keeps what the GPUs
// reported while the file cannot be used, and logs both through the context's logger.
func TestControlWatcher(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control.yaml")
	writeFile(t, path, `devices: {"0": {utilization: 10}}`)
	b, w, err := Open(Config{Fake: "dgxa100", Node: "n1", Control: path})
	if err != nil {
		t.Fatal(err)
	}
	if w.NeedLeaderElection() {
		t.Error("the control file watcher waits for leader election; every replica's GPUs must follow the file")
	}
	w.interval = 5 * time.Millisecond
	var logs logLines
	ctx, cancel := context.WithCancel(logr.NewContext(context.Background(), logs.logger()))
	done := make(chan error, 1)
	go func() { done <- w.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Start: %v", err)
		}
	}()

	eventually := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: never; logged:\n%s", what, strings.Join(logs.get(), "\n"))
			}
		}
	}
	logged := func(n int) func() bool { return func() bool { return len(logs.get()) >= n } }

	writeFile(t, path, `devices: {"0": {utilization: 55}}`)
	eventually("utilization 55 applied", func() bool { return utilizationOfGPU0(t, b) == 55 })

	writeFile(t, path, `devices: {"0": {utilization: 140}}`)
	eventually("the unusable file logged", logged(1))
	if got := utilizationOfGPU0(t, b); got != 55 {
		t.Errorf("with an unusable file GPU 0 reports %d, want 55 (what it reported before)", got)
	}

	writeFile(t, path, `devices: {"0": {utilization: 77}}`)
	eventually("the file applied again logged", logged(2))
	if got := utilizationOfGPU0(t, b); got != 77 {
		t.Errorf("GPU 0 utilization = %d, want 77", got)
	}

	got := logs.get()
	want := []string{
		"fake-gpus: The fake GPU control file cannot be used; the GPUs keep what they reported",
		"fake-gpus: The fake GPU control file is applied again",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("logged (-want,+got):\n%s", diff)
	}
}

// field is the quoted value of key in funcr's key-value text.
func field(line, key string) string {
	_, rest, ok := strings.Cut(line, `"`+key+`"="`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}

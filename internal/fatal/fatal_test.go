package fatal

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestFatalLogFlushesThenExits runs a child that registers a flush and logs Fatal through
// a logger built with ExitHook: the flush runs, the cause reaches stderr, the exit code is 1.
func TestFatalLogFlushesThenExits(t *testing.T) {
	if out := os.Getenv("FATAL_TEST_OUT"); out != "" {
		OnExit(func() { _ = os.WriteFile(out, []byte("flushed"), 0o600) })
		core, _ := observer.New(zap.DebugLevel)
		zap.New(core, zap.WithFatalHook(ExitHook{})).Named("etcd").Fatal("failed to write to WAL: no space left on device")
		return
	}
	out := filepath.Join(t.TempDir(), "flushed")
	cmd := exec.Command(os.Args[0], "-test.run=^TestFatalLogFlushesThenExits$")
	cmd.Env = append(os.Environ(), "FATAL_TEST_OUT="+out)
	stderr, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Fatalf("exit code %d (%v), want 1:\n%s", code, err, stderr)
	}
	if data, err := os.ReadFile(out); err != nil || string(data) != "flushed" {
		t.Errorf("the registered flush did not run: %q %v", data, err)
	}
	if !strings.Contains(string(stderr), "fatal error in etcd: failed to write to WAL: no space left on device") {
		t.Errorf("stderr does not give the cause:\n%s", stderr)
	}
}

func TestRemovedFlushDoesNotRun(t *testing.T) {
	ran := false
	remove := OnExit(func() { ran = true })
	remove()
	Flush()
	if ran {
		t.Error("a removed flush ran")
	}
}

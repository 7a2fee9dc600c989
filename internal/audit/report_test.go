package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// recordedEvent is one Eventf call, its note formatted.
type recordedEvent struct {
	Regarding          runtime.Object
	Type, Reason, Verb string
	Note               string
}

type fakeRecorder struct {
	mu     sync.Mutex
	events []recordedEvent
}

func (f *fakeRecorder) Eventf(regarding, _ runtime.Object, eventtype, reason, action, note string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, recordedEvent{regarding, eventtype, reason, action, fmt.Sprintf(note, args...)})
}

// TestReportedBridgesWriteFailuresToEvents: a write failure is logged, and a Warning Event
// on the node once a recorder is set; recovery is logged only; a caller's OnError is told too.
func TestReportedBridgesWriteFailuresToEvents(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	var logged []string
	var mu sync.Mutex
	log := funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		logged = append(logged, prefix+" "+args)
	}, funcr.Options{})
	var told []error
	failing := &atomic.Bool{}
	r, err := OpenReported(logr.NewContext(context.Background(), log), Options{
		Path: path, Node: "gpu01",
		OnError: func(err error) { told = append(told, err) },
		openFile: func(name string, flag int, perm os.FileMode) (logFile, error) {
			f, err := os.OpenFile(name, flag, perm)
			return flakyFile{File: f, failing: failing}, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	failAndRecover := func() {
		t.Helper()
		failing.Store(true)
		r.Log(Event{Type: "test.full"})
		if err := r.Flush(); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("Flush on a full disk = %v, want ENOSPC", err)
		}
		failing.Store(false)
		if err := r.Flush(); err != nil {
			t.Fatalf("Flush after space came back: %v", err)
		}
	}

	failAndRecover() // no recorder yet: logged only
	rec := &fakeRecorder{}
	r.ReportTo(rec)
	failAndRecover()

	enospc := fmt.Sprintf("writing %s: write %s: %v", path, path, syscall.ENOSPC)
	want := []recordedEvent{{
		// In kube-system, for admins: not among the Events users may read (in default).
		Regarding: &corev1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: "gpu01", Namespace: "kube-system"},
		Type:      corev1.EventTypeWarning, Reason: "AuditLogWriteFailed", Verb: "WriteAuditLog",
		Note: "The audit log " + path + " cannot be written; events are kept in memory and retried: " + enospc,
	}}
	if diff := cmp.Diff(want, rec.events); diff != "" {
		t.Errorf("events (-want,+got):\n%s", diff)
	}
	quoted := fmt.Sprintf("%q", path)
	wantLogged := []string{
		`audit "msg"="The audit log cannot be written; events are kept in memory and retried" "error"=` + fmt.Sprintf("%q", enospc) + ` "path"=` + quoted,
		`audit "level"=0 "msg"="The audit log is written again" "path"=` + quoted,
	}
	wantLogged = append(wantLogged, wantLogged...)
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(wantLogged, logged); diff != "" {
		t.Errorf("logged (-want,+got):\n%s", diff)
	}
	if len(told) != 4 || !errors.Is(told[0], syscall.ENOSPC) || told[1] != nil || !errors.Is(told[2], syscall.ENOSPC) || told[3] != nil {
		t.Errorf("the caller's OnError was told %v, want [ENOSPC <nil> ENOSPC <nil>]", told)
	}
}

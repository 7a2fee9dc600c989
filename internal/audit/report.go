package audit

import (
	"context"
	"sync/atomic"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/gpuwarden/gpuwarden/internal/fatal"
	"github.com/gpuwarden/gpuwarden/internal/reasons"
)

// EventRecorder is what Reported needs of a Kubernetes event recorder (client-go's
// events.EventRecorder; a controller manager hands one out).
type EventRecorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// Reported is the process's audit log with its bridge to Kubernetes Events: a write failure
// is logged and retried, never fatal, and, once ReportTo has a recorder, is also a Warning
// Event (reason AuditLogWriteFailed) on the node. A fatal exit of the process (package
// fatal) flushes it first.
type Reported struct {
	*Writer
	node, path string
	log        logr.Logger
	recorder   atomic.Pointer[EventRecorder]
	// unregister stops flushing on a fatal exit once the log is closed.
	unregister func()
}

// OpenReported opens the audit log of o, logging its write failures through ctx's logger
// (the process's, ctrl.Log, when ctx carries none);
// o.OnError, when set, is told of them too, after the bridge.
func OpenReported(ctx context.Context, o Options) (*Reported, error) {
	r := &Reported{node: o.Node, path: o.Path, log: ctrllog.FromContext(ctx).WithName("audit")}
	if next := o.OnError; next != nil {
		o.OnError = func(err error) { r.onError(err); next(err) }
	} else {
		o.OnError = r.onError
	}
	w, err := Open(o)
	if err != nil {
		return nil, err
	}
	r.Writer = w
	// A library that gives up (etcd on a full disk) exits the process: what the audit log
	// holds is written first.
	r.unregister = fatal.OnExit(func() { _ = w.Flush() })
	return r, nil
}

// ReportTo makes write failures Warning Events on the node from now on; until it is
// called they are logged only.
func (r *Reported) ReportTo(rec EventRecorder) { r.recorder.Store(&rec) }

// Close flushes and closes the log.
func (r *Reported) Close() error {
	if r.unregister != nil {
		r.unregister()
	}
	return r.Writer.Close()
}

// onError is the Writer's OnError: err when writing starts failing (and every minute while
// it fails), nil when it works again.
func (r *Reported) onError(err error) {
	if err == nil {
		r.log.Info("The audit log is written again", "path", r.path)
		return
	}
	r.log.Error(err, "The audit log cannot be written; events are kept in memory and retried", "path", r.path)
	if rec := r.recorder.Load(); rec != nil {
		// An Event of the node, for admins: kept in kube-system, apart from the Events of
		// gpuwarden's objects that users read (in default).
		node := &corev1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: r.node, Namespace: metav1.NamespaceSystem}
		(*rec).Eventf(node, nil, corev1.EventTypeWarning, reasons.EventAuditLogWriteFailed, "WriteAuditLog",
			"The audit log %s cannot be written; events are kept in memory and retried: %v", r.path, err)
	}
}

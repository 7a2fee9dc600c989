package manager

import (
	"fmt"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/gpuwarden/gpuwarden/internal/audit"
)

// MaxEventNote is the longest Event message the API server accepts (events.k8s.io/v1
// note); a longer one is cut, so that an escaped message is never dropped whole.
const MaxEventNote = 1024

// EventNote is the message of an Event as gpuwarden records it: escaped like the audit
// log prints (audit.Printable: control characters, terminal escape sequences,
// bidirectional overrides and invalid UTF-8 written as Go escapes), so that a name or path
// a user chose cannot drive the terminal of whoever runs `kubectl get events`, and cut to
// what the API server accepts.
func EventNote(msg string) string {
	msg = audit.Printable(msg)
	if len(msg) <= MaxEventNote {
		return msg
	}
	const more = "…"
	cut := MaxEventNote - len(more)
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + more
}

// format is Sprintf's answer, or format itself when there is nothing to format in (a
// message recorded whole keeps its %).
func format(format string, args []any) string {
	if len(args) == 0 {
		return format
	}
	return fmt.Sprintf(format, args...)
}

// EscapingRecorder records every Event through R with its message escaped
// (EventNote); reason and action are escaped too.
type EscapingRecorder struct {
	R recorder.EventRecorder
}

var _ recorder.EventRecorder = EscapingRecorder{}

// Eventf records an Event with an escaped message.
func (e EscapingRecorder) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	e.R.Eventf(regarding, related, eventtype, audit.Printable(reason), audit.Printable(action), "%s", EventNote(format(note, args)))
}

// AnnotatedEventf records an annotated Event with an escaped message.
func (e EscapingRecorder) AnnotatedEventf(regarding, related runtime.Object, annotations map[string]string, eventtype, reason, action, note string, args ...any) {
	e.R.AnnotatedEventf(regarding, related, annotations, eventtype, audit.Printable(reason), audit.Printable(action), "%s", EventNote(format(note, args)))
}

// escapingLegacyRecorder is EscapingRecorder for the old events API.
type escapingLegacyRecorder struct {
	r record.EventRecorder
}

func (e escapingLegacyRecorder) Event(object runtime.Object, eventtype, reason, message string) {
	e.r.Event(object, eventtype, audit.Printable(reason), EventNote(message))
}

func (e escapingLegacyRecorder) Eventf(object runtime.Object, eventtype, reason, messageFmt string, args ...any) {
	e.r.Event(object, eventtype, audit.Printable(reason), EventNote(format(messageFmt, args)))
}

func (e escapingLegacyRecorder) AnnotatedEventf(object runtime.Object, annotations map[string]string, eventtype, reason, messageFmt string, args ...any) {
	e.r.AnnotatedEventf(object, annotations, eventtype, audit.Printable(reason), "%s", EventNote(format(messageFmt, args)))
}

// escapingManager is a manager whose every event recorder escapes (EscapingRecorder):
// one place, so that no controller that records an Event can miss it.
type escapingManager struct {
	ctrl.Manager
}

// GetEventRecorder returns the manager's recorder for name, escaping.
func (m escapingManager) GetEventRecorder(name string) recorder.EventRecorder {
	return EscapingRecorder{R: m.Manager.GetEventRecorder(name)}
}

// GetEventRecorderFor returns the manager's old-API recorder for name, escaping.
func (m escapingManager) GetEventRecorderFor(name string) record.EventRecorder {
	//lint:ignore SA1019 the old API is wrapped too, so that nothing bypasses the escaping
	return escapingLegacyRecorder{r: m.Manager.GetEventRecorderFor(name)}
}

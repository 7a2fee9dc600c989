package audit

import "github.com/prometheus/client_golang/prometheus"

// Logger is what components that record events need.
type Logger interface {
	Log(Event)
}

// Discard is a Logger that drops every event, for components built without an audit log.
var Discard Logger = discard{}

type discard struct{}

func (discard) Log(Event) {}

var (
	writtenDesc  = prometheus.NewDesc("gpuwarden_audit_events_written_total", "Audit events written and fsynced.", nil, nil)
	failuresDesc = prometheus.NewDesc("gpuwarden_audit_write_failures_total", "Failed attempts to open, write or sync the audit log, or to compress or prune rotated files.", nil, nil)
	droppedDesc  = prometheus.NewDesc("gpuwarden_audit_events_dropped_total", "Audit events lost because the memory bound was reached while the log could not be written.", nil, nil)
	pendingDesc  = prometheus.NewDesc("gpuwarden_audit_pending_bytes", "Bytes of audit events waiting in memory to be written.", nil, nil)
	rotatedDesc  = prometheus.NewDesc("gpuwarden_audit_rotations_total", "Rotations of the audit log.", nil, nil)
	failingDesc  = prometheus.NewDesc("gpuwarden_audit_write_failing", "1 while the audit log cannot be written, else 0.", nil, nil)
)

// Collector exports a Writer's counters at scrape time; a scrape never waits on the disk.
type Collector struct{ W *Writer }

// Describe implements prometheus.Collector.
func (c Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{writtenDesc, failuresDesc, droppedDesc, pendingDesc, rotatedDesc, failingDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.W.Stats()
	failing := 0.0
	if st.LastError != nil {
		failing = 1
	}
	ch <- prometheus.MustNewConstMetric(writtenDesc, prometheus.CounterValue, float64(st.Written))
	ch <- prometheus.MustNewConstMetric(failuresDesc, prometheus.CounterValue, float64(st.Failures))
	ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue, float64(st.Dropped))
	ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(st.PendingBytes))
	ch <- prometheus.MustNewConstMetric(rotatedDesc, prometheus.CounterValue, float64(st.Rotations))
	ch <- prometheus.MustNewConstMetric(failingDesc, prometheus.GaugeValue, failing)
}

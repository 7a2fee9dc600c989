package fakegpu_test

import (
	"testing"

	"github.com/gpuwarden/gpuwarden/internal/gpu/fakegpu"
)

// FuzzParseControl: whatever the control file holds, parsing returns a control or an error,
// never a panic, and the same bytes always give the same answer.
func FuzzParseControl(f *testing.F) {
	for _, s := range []string{"", "devices: {\"0\": {utilization: 97}}", "devices: {\"4:0\": {memoryUsedMiB: 5000}}", "processes: [{device: \"0\", pid: 1, usedMemoryMiB: 2}]",
		"{\"devices\": {\"GPU-x\": {\"lost\": true}}}", "devices: [1, 2]", "devices: {\"0\": {xid: -1}}", "&a [*a]"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err1 := fakegpu.ParseControl(data)
		_, err2 := fakegpu.ParseControl(data)
		if (err1 == nil) != (err2 == nil) {
			t.Errorf("two parses of the same bytes disagree: %v / %v", err1, err2)
		}
	})
}

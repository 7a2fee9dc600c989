package report

import (
	"bytes"
	"context"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/gatewayclient"
	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/gatewayclient/gatewayclienttest"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

var now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func run(t *testing.T, o *Options) (string, error) {
	t.Helper()
	o.now = func() time.Time { return now }
	var out, errOut bytes.Buffer
	err := o.Run(context.Background(), &out, &errOut)
	return out.String() + errOut.String(), err
}

func TestReportCommand(t *testing.T) {
	a := audit.Allocation{Name: "mia-nb", GPUEquivalents: "1", Container: audit.Container{Name: "mia-nb", ID: "c1"}, Wait: 90 * time.Second}
	bind, use, rel := audit.GPUAllocate("mia", a), audit.GPUUsage("mia", a, audit.Usage{Window: time.Hour, Used: 30 * time.Minute, UtilizationKnown: time.Hour, Idle: 15 * time.Minute}), audit.GPURelease("mia", a, "container removed")
	bind.Time, use.Time, rel.Time = now.Add(-3*time.Hour), now.Add(-2*time.Hour), now.Add(-time.Hour)
	rej := audit.GPUReject("bo", audit.Allocation{Name: "bo-big"}, "QuotaExceeded", "over quota")
	rej.Time = now.Add(-30 * time.Minute)
	path := testutil.AuditLog(t, bind, use, rel, rej)

	out, err := run(t, &Options{File: path, Since: "1d"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"GPU usage from 2026-11-30T12:00:00Z to 2026-12-01T12:00:00Z (24h0m0s)", "ALLOCATED GPU-H", "Refused requests by reason: QuotaExceeded 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	mia := regexpFields(out, "mia")
	if strings.Join(mia, " ") != "mia 2.00 0.50 50% 0.25 0 0 0.00 0 1 1m30s 1m30s" {
		t.Errorf("mia's row = %v:\n%s", mia, out)
	}
	csv, err := run(t, &Options{File: path, Since: "1d", CSV: true})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(csv), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "user,allocated_gpu_hours,used_gpu_hours") || !strings.HasPrefix(lines[1], "mia,2.0000,0.5000,1.0000,0.2500,0,0,0.0000,0,1,90,90,") ||
		!strings.HasPrefix(lines[2], "bo,0.0000,0.0000,0.0000,0.0000,0,0,0.0000,1,0,0,0,") {
		t.Errorf("CSV:\n%s", csv)
	}
	// The period narrows what counts: an hour ago until now holds none of mia's GPU time.
	out, _ = run(t, &Options{File: path, Since: "1h", User: "mia"})
	if !strings.Contains(out, "No GPU use in this period.") {
		t.Errorf("--since 1h --user mia:\n%s", out)
	}
}

func regexpFields(out, user string) []string {
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == user {
			return f
		}
	}
	return nil
}

func TestReportRefusesWhatItCannotUse(t *testing.T) {
	path := testutil.AuditLog(t)
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{File: path, Since: "yesterday"}, `--since: "yesterday" is neither an RFC 3339 time`},
		{Options{File: path, Since: "1d", Until: "2d"}, "--since 2026-11-30T12:00:00Z is not before --until 2026-11-29T12:00:00Z"},
		{Options{File: filepath.Join(t.TempDir(), "none.jsonl"), Since: "1d"}, "no audit log at"},
		{Options{File: "", Since: "1d"}, "--file: an audit log path is required"},
	} {
		if _, err := run(t, &tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v; want %q", tc.o, err, tc.want)
		}
	}
}

// TestReportThroughTheGateway: asked through the gateway, the report is the file's, as
// table and CSV, and names where it came from.
func TestReportThroughTheGateway(t *testing.T) {
	u, err := user.Current()
	if err != nil {
		t.Skipf("no login name: %v", err)
	}
	who := u.Username
	a := audit.Allocation{Name: "nb", GPUEquivalents: "1", Container: audit.Container{Name: "nb", ID: "c1"}, Wait: 90 * time.Second}
	bind, use, rel := audit.GPUAllocate(who, a), audit.GPUUsage(who, a, audit.Usage{Window: time.Hour, Used: 30 * time.Minute, UtilizationKnown: time.Hour, Idle: 15 * time.Minute}), audit.GPURelease(who, a, "container removed")
	bind.Time, use.Time, rel.Time = now.Add(-3*time.Hour), now.Add(-2*time.Hour), now.Add(-time.Hour)
	path := testutil.AuditLog(t, bind, use, rel)
	sock := gatewayclienttest.Serve(t, path)
	for _, o := range []Options{{Since: "1d", User: who}, {Since: "1d", User: who, CSV: true}, {Since: "2h", Until: "30m", User: who}} {
		local, err := run(t, &Options{File: path, Since: o.Since, Until: o.Until, User: o.User, CSV: o.CSV})
		if err != nil {
			t.Fatal(err)
		}
		remote, err := run(t, &Options{File: path, Since: o.Since, Until: o.Until, User: o.User, CSV: o.CSV, Socket: sock, order: gatewayclient.GatewayOnly})
		if err != nil {
			t.Fatalf("%+v through the gateway: %v", o, err)
		}
		if !o.CSV {
			local = strings.Replace(local, "from "+path, "from gpuwarden at "+sock, 1)
		}
		if remote != local || !strings.Contains(local, who) {
			t.Errorf("%+v through the gateway:\n%s\nfrom the file:\n%s", o, remote, local)
		}
	}
	if _, err := run(t, &Options{File: path, Since: "1d", Socket: filepath.Join(t.TempDir(), "none.sock"), order: gatewayclient.GatewayOnly}); err == nil || !strings.Contains(err.Error(), "asking gpuwarden at") {
		t.Errorf("a gateway that is not there: %v", err)
	}
}

// TestReportPrintsRightSizeAdvice: after the table, a line per user, container type and
// suggestion, most GPU-hours freed first; not in the CSV.
func TestReportPrintsRightSizeAdvice(t *testing.T) {
	const gib = 1 << 30
	var events []audit.Event
	// held is one allocation of hours, bound at start hours ago, with one gpu.usage record.
	held := func(user, ctype, name string, devices []string, eq, mig string, start, hours float64, u audit.Usage) {
		a := audit.Allocation{Name: name, Devices: devices, GPUEquivalents: eq, Container: audit.Container{Name: name, ID: "id-" + name, Type: ctype}}
		bind, rel := audit.GPUAllocate(user, a), audit.GPURelease(user, a, "container removed")
		a.MIGProfile = mig
		u.Window, u.MemorySampled, u.GPUModel = time.Hour, true, "NVIDIA H100 80GB HBM3"
		use := audit.GPUUsage(user, a, u)
		bind.Time = now.Add(-time.Duration(start * float64(time.Hour)))
		use.Time, rel.Time = bind.Time.Add(time.Hour), bind.Time.Add(time.Duration(hours*float64(time.Hour)))
		events = append(events, bind, use, rel)
	}
	small := audit.Usage{PeakMemoryBytes: 5 * gib, HasPeakUtilization: true, PeakUtilization: 8, BusyDevices: 1}
	held("alice", "notebook", "nb-1", []string{"GPU-1"}, "1", "", 20, 7, small)
	held("alice", "notebook", "nb-2", []string{"GPU-1"}, "1", "", 12, 7, small)
	held("alice", "notebook", "nb-3", []string{"GPU-1"}, "1", "", 4, 2, audit.Usage{PeakMemoryBytes: 50 * gib, HasPeakUtilization: true, PeakUtilization: 80, BusyDevices: 1})
	held("bob", "batch", "train", []string{"GPU-2", "GPU-3"}, "2", "", 10, 3, audit.Usage{PeakMemoryBytes: 60 * gib, HasPeakUtilization: true, PeakUtilization: 99, BusyDevices: 1})
	held("bob", "batch", "slice", []string{"MIG-1"}, "0.428571", "3g.40gb", 9, 5, audit.Usage{PeakMemoryBytes: 7 * gib, BusyDevices: 1})
	held("carol", "notebook", "tiny", []string{"MIG-2"}, "0.142857", "1g.10gb", 9, 2, audit.Usage{PeakMemoryBytes: gib, BusyDevices: 1})
	slices.SortStableFunc(events, func(a, b audit.Event) int { return a.Time.Compare(b.Time) })
	path := testutil.AuditLog(t, events...)

	out, err := run(t, &Options{File: path, Since: "1d"})
	if err != nil {
		t.Fatal(err)
	}
	_, advice, _ := strings.Cut(out, "\nRight-size advice")
	want := ` (runs that would have fit a smaller MIG profile or fewer GPUs, by their peaks):
alice  notebook  2 of 3 runs fit a 1g.10gb slice (peak memory ≤ 10 GB, utilisation ≤ 14 %): 12.00 GPU-hours freed
bob    batch     1 of 2 runs fit 1 GPU (the others of the GPUs they held stayed unused): 3.00 GPU-hours freed
bob    batch     1 of 2 runs fit a 1g.10gb slice (peak memory ≤ 10 GB; MIG gives no utilisation, judged by memory alone): 1.43 GPU-hours freed
`
	if advice != want {
		t.Errorf("the advice:\n%s\nwant:\n%s\nthe whole report:\n%s", advice, want, out)
	}
	csv, err := run(t, &Options{File: path, Since: "1d", CSV: true})
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(csv), "\n"); len(lines) != 4 || strings.Contains(csv, "advice") || strings.Contains(csv, "slice") {
		t.Errorf("CSV with advice:\n%s", csv)
	}
	// Only her own: nothing of bob's, and no section where nothing would have fit.
	out, _ = run(t, &Options{File: path, Since: "1d", User: "alice"})
	if !strings.Contains(out, "alice  notebook  2 of 3 runs") || strings.Contains(out, "bob") {
		t.Errorf("--user alice:\n%s", out)
	}
	out, _ = run(t, &Options{File: path, Since: "1d", User: "carol"})
	if strings.Contains(out, "Right-size advice") {
		t.Errorf("--user carol, whose run needed its slice:\n%s", out)
	}
	if _, err := run(t, &Options{File: path, Since: "1d", MIGProfile: "tiny"}); err == nil || !strings.Contains(err.Error(), `--mig-profile: "tiny" is not a MIG profile`) {
		t.Errorf("--mig-profile tiny: %v", err)
	}
}

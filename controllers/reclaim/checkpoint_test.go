package reclaim

import (
	"slices"
	"strings"
	"testing"
	"time"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// TestAnIdleStopRunsTheCheckpointHookFirst: a container that declares a checkpoint hook
// has it run through exec (as /bin/sh -c, within the policy's checkpointTimeout) before
// the stop; the hook's record is in the audit log and the stop's notice says how it ended.
func TestAnIdleStopRunsTheCheckpointHookFirst(t *testing.T) {
	policy := testutil.MakePolicy("idle").WithSpec(gpuwardenv1alpha1.ContainerPolicySpec{
		Idle:              &gpuwardenv1alpha1.IdlePolicy{Timeout: testutil.Duration(5 * time.Minute)},
		CheckpointTimeout: testutil.Duration(2 * time.Minute),
		Notify:            &gpuwardenv1alpha1.Notify{File: "/workspace/.gpuwarden-notice"}}).Obj()
	w := newSamplerWorld(t, 2, policy)
	hooked, plain := w.ids[0], w.ids[1]
	c, _ := w.engine.Container(hooked)
	c.Labels[gpuwardenv1alpha1.LabelCheckpoint] = "python save.py"
	c.Labels[gpuwardenv1alpha1.LabelManaged] = "true"
	w.engine.Put(c, "")
	w.s.Store.Put(c)
	w.engine.SetExec(func(id string, cmd []string) docker.ExecResult {
		return docker.ExecResult{ExitCode: 0, Output: "saved step 1200\n"}
	})
	for range 10 {
		w.clock.Step(time.Minute)
		w.round(t)
	}
	testutil.Eventually(t, 10*time.Second, "both idle containers stopped",
		func() bool { return len(w.audit.Of(audit.TypeLifecycleIdleStop)) == 2 })
	calls := w.engine.Calls()
	exec := slices.IndexFunc(calls, func(s string) bool { return strings.HasPrefix(s, "exec "+hooked) })
	stop := slices.IndexFunc(calls, func(s string) bool { return strings.HasPrefix(s, "stop "+hooked) })
	if exec < 0 || stop < exec || !strings.Contains(calls[exec], `"/bin/sh" "-c" "python save.py"`) {
		t.Errorf("engine calls %q: want the hook run through /bin/sh -c before the stop", calls)
	}
	if slices.ContainsFunc(calls, func(s string) bool { return strings.HasPrefix(s, "exec "+plain) }) {
		t.Errorf("a container without a hook had a command run in it: %q", calls)
	}
	recs := w.audit.Of(audit.TypeContainerCheckpoint)
	if len(recs) != 1 {
		t.Fatalf("checkpoint records: %+v; want one", recs)
	}
	d := recs[0].Details
	if d["command"] != "python save.py" || d["exit_code"] != 0 || d["output"] != "saved step 1200\n" || d["policy"] != "idle" ||
		d["started"] == nil || d["ended"] == nil || !strings.HasPrefix(d["reason"].(string), "idle:") {
		t.Errorf("checkpoint record: %+v", d)
	}
	testutil.Eventually(t, 10*time.Second, "the stop's notice says how the hook ended", func() (bool, string) {
		b, _ := w.engine.File(hooked, "/workspace/.gpuwarden-notice")
		return strings.Contains(string(b), `checkpoint hook "python save.py" ran for 0s and exited 0`), string(b)
	})
}

// TestACheckpointHookThatFailsOrHangsDoesNotHoldTheStop: the stop goes on whatever the hook
// does, and the record says how it ended; a hook label that cannot be used, or on a
// container the gateway did not make, runs nothing.
func TestACheckpointHookThatFailsOrHangsDoesNotHoldTheStop(t *testing.T) {
	policy := testutil.MakePolicy("idle").WithSpec(gpuwardenv1alpha1.ContainerPolicySpec{
		Idle: &gpuwardenv1alpha1.IdlePolicy{Timeout: testutil.Duration(5 * time.Minute)}}).Obj()
	w := newSamplerWorld(t, 4, policy)
	results := map[string]docker.ExecResult{w.ids[0]: {ExitCode: 2, Output: "disk full"}, w.ids[1]: {Running: true}}
	for i, id := range w.ids {
		c, _ := w.engine.Container(id)
		c.Labels[gpuwardenv1alpha1.LabelCheckpoint] = "./save"
		c.Labels[gpuwardenv1alpha1.LabelManaged] = "true"
		switch i {
		case 2: // unusable: a timeout without a unit; no hook is run
			c.Labels[gpuwardenv1alpha1.LabelCheckpointTimeout] = "30"
		case 3: // not made by the gateway: its labels may be an image's; no hook is run
			delete(c.Labels, gpuwardenv1alpha1.LabelManaged)
		}
		w.engine.Put(c, "")
		w.s.Store.Put(c)
	}
	w.engine.SetExec(func(id string, _ []string) docker.ExecResult { return results[id] })
	for range 10 {
		w.clock.Step(time.Minute)
		w.round(t)
	}
	testutil.Eventually(t, 10*time.Second, "all four stopped", func() bool { return len(w.audit.Of(audit.TypeLifecycleIdleStop)) == 4 })
	got := map[string]string{}
	for _, r := range w.audit.Of(audit.TypeContainerCheckpoint) {
		got[r.Details["container_id"].(string)] = audit.Checkpoint{ExitCode: r.Details["exit_code"].(int), TimedOut: r.Details["timed_out"] == true}.Outcome()
	}
	if got[w.ids[0]] != "failed" || got[w.ids[1]] != "timeout" || len(got) != 2 {
		t.Errorf("hook outcomes by container: %v; want failed, timeout, and none for the unusable label or the container the gateway did not make", got)
	}
}

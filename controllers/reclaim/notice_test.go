package reclaim

import (
	"strings"
	"testing"
	"time"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/lifecycle"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

var t0 = time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)

func TestNoticesSayWhatHappens(t *testing.T) {
	c := docker.Container{ID: "abc", Name: "nb"}
	a := testutil.MakeAllocation("nb").Obj()
	p := func(mode string) resolve.Policy {
		return resolve.Policy{Values: map[string]resolve.PolicyValue{"mode": {Value: mode}, "idle.keepAlive.path": {Value: "/workspace/.keep-alive"}}}
	}
	for _, tc := range []struct {
		n          lifecycle.Notice
		mode       string
		typ, title string
	}{
		{lifecycle.Notice{Kind: lifecycle.IdleWarning, StopAt: t0, Message: "Idle for 24m"}, string(gpuwardenv1alpha1.ModeEnforce), audit.TypeLifecycleIdleWarning, "WARNING"},
		{lifecycle.Notice{Kind: lifecycle.IdleInfo, Message: "For information only"}, string(gpuwardenv1alpha1.ModeEnforce), audit.TypeLifecycleIdleWarning, "NOTICE"},
		{lifecycle.Notice{Kind: lifecycle.IdleStop, StopAt: t0}, string(gpuwardenv1alpha1.ModeEnforce), audit.TypeLifecycleIdleStop, "STOPPED"},
		{lifecycle.Notice{Kind: lifecycle.IdleStop, StopAt: t0, Held: true}, string(gpuwardenv1alpha1.ModeNotifyOnly), audit.TypeLifecycleWouldStop, "WOULD STOP"},
	} {
		got := noticeFor(c, "alice", a, p(tc.mode), tc.n, "n1", t0)
		text := got.Text()
		if got.Type != tc.typ || !strings.HasPrefix(text, "--- gpuwarden "+tc.title+" ") {
			t.Errorf("%s (held %v): type %s, text:\n%s", tc.n.Kind, tc.n.Held, got.Type, text)
		}
		if tc.title == "WARNING" && !strings.Contains(text, "touch /workspace/.keep-alive") {
			t.Errorf("an idle warning says how to keep the container:\n%s", text)
		}
		if tc.n.Held && !strings.Contains(text, "nothing is stopped") {
			t.Errorf("a held stop says nothing was stopped:\n%s", text)
		}
	}
}

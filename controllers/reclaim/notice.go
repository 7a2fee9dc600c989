package reclaim

import (
	"strings"
	"time"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/lifecycle"
	"github.com/gpuwarden/gpuwarden/internal/notify"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// noticeTitles head the notice file by kind.
var noticeTitles = map[string]string{
	lifecycle.IdleWarning: "WARNING", lifecycle.RuntimeWarning: "WARNING", lifecycle.IdleInfo: "NOTICE",
	lifecycle.IdleStop: "STOPPED", lifecycle.RuntimeStop: "STOPPED",
}

// noticeFor is what one idle or runtime notice tells the container's owner.
func noticeFor(c docker.Container, user string, a *gpuwardenv1alpha1.GPUAllocation, p resolve.Policy, n lifecycle.Notice, node string, now time.Time) notify.Notice {
	out := notify.For(c, user, a.Name, p, node, now)
	out.Type, out.Policy, out.Message, out.Title = string(noticeRecords[n.Kind].record), resolve.PolicyName(n.Policy), n.Message, noticeTitles[n.Kind]
	if n.Held {
		// A stop the mode held back: the owner is told what would have happened.
		out.Type, out.Title = string(audit.WouldStop), "WOULD STOP"
	}
	if !n.StopAt.IsZero() {
		t := n.StopAt.UTC()
		out.StopAt = &t
	}
	if strings.HasPrefix(n.Kind, "idle") {
		out.KeepAlive = p.String("idle.keepAlive.path", "")
	}
	return out
}

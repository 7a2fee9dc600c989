package gateway

import (
	"context"

	"golang.org/x/sys/unix"
	ctrl "sigs.k8s.io/controller-runtime"
)

// RaiseFileLimit raises the soft RLIMIT_NOFILE to the hard one (the Go runtime does so at
// start too; this says so in ctx's log (ctrl.Log when ctx carries none), with what the gateway then takes of it by default:
// ConnsForFileLimit). etcd, the API server and the gateway share these descriptors:
// systemd's LimitNOFILE=1048576 in the unit sets the hard limit.
func RaiseFileLimit(ctx context.Context) {
	log := ctrl.LoggerFrom(ctx).WithName("rlimit")
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		log.Error(err, "Reading RLIMIT_NOFILE")
		return
	}
	if rl.Cur < rl.Max {
		soft := rl.Cur
		rl.Cur = rl.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
			log.Error(err, "Raising RLIMIT_NOFILE to its hard limit", "soft", soft, "hard", rl.Max)
			rl.Cur = soft
		}
	}
	conns, reserve := ConnsForFileLimit(rl.Cur)
	if rl.Cur < 65536 {
		log.Info("Open files limit is low for a shared server: raise the hard limit (LimitNOFILE=1048576 in the systemd unit, ulimit -Hn)",
			"nofile", rl.Cur, "hard", rl.Max, "gatewayMaxConnectionsDefault", conns, "reservedForControlPlane", reserve)
		return
	}
	log.Info("Open files limit", "nofile", rl.Cur, "hard", rl.Max, "gatewayMaxConnectionsDefault", conns, "reservedForControlPlane", reserve)
}

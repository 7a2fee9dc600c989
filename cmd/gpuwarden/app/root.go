// Package app assembles the gpuwarden command and its subcommands.
package app

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/controller"
	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/events"
	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/explain"
	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/importer"
	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/kubeconfig"
	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/notifications"
	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/queue"
	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/report"
	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/reservations"
	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/server"
	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/top"
	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/version"
	"github.com/gpuwarden/gpuwarden/internal/logging"
)

// NewCommand returns the gpuwarden root command.
func NewCommand() *cobra.Command {
	// Cobra adds the process-wide flag set to every command; Kubernetes libraries register
	// their own flags there (--version), which are not gpuwarden's. Start from an empty one.
	pflag.CommandLine = pflag.NewFlagSet(os.Args[0], pflag.ExitOnError)
	var verbosity int
	cmd := &cobra.Command{
		Use:   "gpuwarden",
		Short: "Govern a shared multi-user GPU server: quotas, allocations and container policies",
		Long: `gpuwarden governs a shared GPU server the Kubernetes way. Admins declare GPU quotas
(GPUQuota) and container policies (ContainerPolicy) as YAML; users get GPUs through
GPUAllocations; controllers make Docker and the GPUs match what is declared.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(*cobra.Command, []string) {
			logging.Setup(verbosity)
		},
	}
	cmd.PersistentFlags().IntVarP(&verbosity, "v", "v", 0, "log verbosity (0: what happened; higher: more detail)")
	cmd.AddCommand(server.NewCommand(), controller.NewCommand(), events.NewCommand(), explain.NewCommand(), kubeconfig.NewCommand(), notifications.NewCommand(), importer.NewCommand(), queue.NewCommand(), reservations.NewCommand(), report.NewCommand(), top.NewCommand(), version.NewCommand())
	return cmd
}

// Execute runs the command line and returns the process exit code.
func Execute() int {
	cmd := NewCommand()
	// The context carries no logger: gpuwarden's code logs through ctrl.LoggerFrom, which
	// then gives ctrl.Log, and the Kubernetes libraries' contextual logs (klog.FromContext)
	// stay klog's, which `server` sends to its apiserver.log.
	if err := cmd.ExecuteContext(signalContext(context.Background())); err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		return 1
	}
	return 0
}

// stopSignals end gpuwarden cleanly. SIGHUP is among them: a closed terminal or a service
// manager's reload must never kill the process abruptly, with the audit log unflushed.
var stopSignals = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP}

// signalContext is parent cancelled by the first of stopSignals, which it logs through
// parent's logger (ctrl.Log when it carries none); a second one exits at once with code 1,
// for a stop that hangs.
func signalContext(parent context.Context) context.Context {
	ctx, cancel := context.WithCancel(parent)
	c := make(chan os.Signal, 2)
	signal.Notify(c, stopSignals...)
	go func() {
		s := <-c
		log := ctrl.LoggerFrom(parent).WithName("signal")
		log.Info("Stopping", "signal", s.String())
		cancel()
		s = <-c
		log.Info("Second signal: exiting at once", "signal", s.String())
		os.Exit(1)
	}()
	return ctx
}

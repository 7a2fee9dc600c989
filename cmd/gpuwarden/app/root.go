// Package app assembles the gpuwarden command and its subcommands.
package app

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/common"
	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/controller"
	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/events"
	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/explain"
	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/importer"
	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/kubeconfig"
	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/report"
	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/server"
	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/version"
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
			common.SetupLogging(verbosity)
		},
	}
	cmd.PersistentFlags().IntVarP(&verbosity, "v", "v", 0, "log verbosity (0: what happened; higher: more detail)")
	cmd.AddCommand(server.NewCommand(), controller.NewCommand(), events.NewCommand(), explain.NewCommand(), kubeconfig.NewCommand(), importer.NewCommand(), report.NewCommand(), version.NewCommand())
	return cmd
}

// Execute runs the command line and returns the process exit code.
func Execute() int {
	cmd := NewCommand()
	if err := cmd.ExecuteContext(common.SignalContext()); err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		return 1
	}
	return 0
}

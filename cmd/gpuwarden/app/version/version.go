// Package version is the `gpuwarden version` command.
package version

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
	kubeversion "k8s.io/component-base/version"

	gpuversion "github.com/gpuwarden/gpuwarden/internal/version"
)

// NewCommand returns `gpuwarden version`.
func NewCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the gpuwarden version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "gpuwarden %s (embedded Kubernetes %s, %s)\n",
				gpuversion.Version, kubeversion.Get().GitVersion, runtime.Version())
			return err
		},
	}
}

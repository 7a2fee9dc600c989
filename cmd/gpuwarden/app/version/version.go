// Package version is the `gpuwarden version` command.
package version

import (
	"encoding/json"
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
	kubeversion "k8s.io/component-base/version"

	gpuversion "github.com/gpuwarden/gpuwarden/internal/version"
)

// Info is what `gpuwarden version -o json` prints.
type Info struct {
	Version    string `json:"version"`
	Commit     string `json:"commit"`
	Date       string `json:"date"`
	Kubernetes string `json:"kubernetes"`
	Go         string `json:"go"`
	Platform   string `json:"platform"`
}

// Get is this binary's version information.
func Get() Info {
	return Info{Version: gpuversion.Version, Commit: gpuversion.Commit, Date: gpuversion.Date,
		Kubernetes: kubeversion.Get().GitVersion, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
}

// NewCommand returns `gpuwarden version`.
func NewCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the gpuwarden version, commit and build date",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			i := Get()
			switch output {
			case "":
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "gpuwarden %s (commit %s, built %s; embedded Kubernetes %s, %s, %s)\n",
					i.Version, i.Commit, i.Date, i.Kubernetes, i.Go, i.Platform)
				return err
			case "json":
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(i)
			}
			return fmt.Errorf("-o %q: the output formats are json and the default text", output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json, or text when empty")
	return cmd
}

// Package importer is `gpuwarden import`: manifests from another system's configuration.
package importer

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/gpuwarden/gpuwarden/internal/ds01"
)

// NewCommand returns `gpuwarden import`.
func NewCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import",
		Short: "Write gpuwarden manifests from another system's configuration",
	}
	cmd.AddCommand(newDS01())
	return cmd
}

func newDS01() *cobra.Command {
	var src ds01.Sources
	var output string
	cmd := &cobra.Command{
		Use:   "ds01",
		Short: "GPUQuotas and ContainerPolicies equivalent to a DS01 installation's configuration",
		Long: `Reads DS01's resource-limits.yaml (defaults, group tiers, global policies, container types),
its group member files, user-overrides.yaml and lifecycle-exemptions.yaml, and writes
equivalent GPUQuota and ContainerPolicy manifests: the defaults (with the default group's
values) for everyone, each group above them (the first group listing a user wins, as in
DS01), container types above the groups, each user's override above all (layered: it keeps
every group value it does not set), and exemptions with their expiry. Every key that cannot
be carried over is named on stderr. Apply the output with kubectl apply -f.`,
		Example: `  gpuwarden import ds01 --limits /opt/ds01-infra/config/resource-limits.yaml \
    --groups /opt/ds01-infra/config/runtime/groups \
    --overrides /opt/ds01-infra/config/runtime/user-overrides.yaml \
    --exemptions /opt/ds01-infra/config/runtime/lifecycle-exemptions.yaml -o ds01.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if src.Limits == "" {
				return fmt.Errorf("--limits is required: DS01's resource-limits.yaml")
			}
			res, err := ds01.Convert(src, time.Now())
			if err != nil {
				return err
			}
			var b bytes.Buffer
			fmt.Fprintf(&b, "# Imported from DS01 (%s) by gpuwarden import ds01.\n", src.Limits)
			for _, o := range res.Objects {
				data, err := yaml.Marshal(o)
				if err != nil {
					return err
				}
				b.WriteString("---\n")
				data = bytes.ReplaceAll(data, []byte("  creationTimestamp: null\n"), nil)
				b.Write(bytes.TrimSuffix(data, []byte("status: {}\n")))
			}
			for _, w := range res.Warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning: "+w)
			}
			var out io.Writer = cmd.OutOrStdout()
			if output != "" && output != "-" {
				return os.WriteFile(output, b.Bytes(), 0o644)
			}
			_, err = out.Write(b.Bytes())
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&src.Limits, "limits", "", "DS01's resource-limits.yaml (required)")
	fs.StringVar(&src.Groups, "groups", "", "the directory of DS01's <group>.members files; without it, groups are the host's groups of those names")
	fs.StringVar(&src.Overrides, "overrides", "", "DS01's user-overrides.yaml")
	fs.StringVar(&src.Exemptions, "exemptions", "", "DS01's lifecycle-exemptions.yaml")
	fs.StringVarP(&output, "output", "o", "", "write the manifests here instead of to stdout")
	return cmd
}

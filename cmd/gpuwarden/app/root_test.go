package app

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestHelpListsOnlyGPUWardensFlags: flags that Kubernetes libraries register process-wide
// (--version, which "sets the reported version") stay out of gpuwarden's help and commands.
func TestHelpListsOnlyGPUWardensFlags(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"server", "--help"}, {"events", "--help"}} {
		cmd := NewCommand()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetArgs(args)
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out.String(), "--version") || strings.Contains(out.String(), "reported version") {
			t.Errorf("gpuwarden %s shows Kubernetes' --version flag:\n%s", strings.Join(args, " "), out.String())
		}
	}
	cmd := NewCommand()
	cmd.PersistentFlags().VisitAll(func(f *pflag.Flag) {
		if f.Name != "v" {
			t.Errorf("unexpected global flag --%s (%s)", f.Name, f.Usage)
		}
	})
}

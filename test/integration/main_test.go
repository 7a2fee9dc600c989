// Package integration runs gpuwarden's controllers and CRDs against the real embedded API
// server, started once for the package. Every test that needs the API server in-process
// belongs here, so that only one test binary links kube-apiserver.
package integration

import (
	"os"
	"testing"

	"github.com/gpuwarden/gpuwarden/internal/controlplane/controlplanetest"
)

func TestMain(m *testing.M) {
	os.Exit(controlplanetest.Main(m))
}

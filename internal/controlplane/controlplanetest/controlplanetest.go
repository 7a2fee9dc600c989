// Package controlplanetest starts the embedded control plane once per test package and
// hands out clients. Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(controlplanetest.Main(m)) }
package controlplanetest

import (
	"context"
	"fmt"
	"os"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gpuwarden/gpuwarden/internal/controlplane"
	"github.com/gpuwarden/gpuwarden/internal/crds"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
)

// Env is a running control plane with the gpuwarden CRDs installed.
type Env struct {
	// ControlPlane is the embedded etcd and API server.
	ControlPlane *controlplane.ControlPlane
	// DataDir is the control plane's temporary data dir.
	DataDir string
}

var env *Env

// Main starts the control plane, installs the CRDs, runs the package's tests and stops it.
// It returns the exit code for os.Exit.
func Main(m *testing.M) int {
	dir, err := os.MkdirTemp("", "gpuwarden-controlplane-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "controlplanetest:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	cp, err := controlplane.Start(ctx, controlplane.Options{DataDir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, "controlplanetest: starting the control plane:", err)
		return 1
	}
	defer cp.Stop()
	if err := crds.InstallWith(ctx, cp.RESTConfig()); err != nil {
		fmt.Fprintln(os.Stderr, "controlplanetest: installing CRDs:", err)
		return 1
	}
	if err := crds.WaitWatchable(ctx, cp.RESTConfig()); err != nil {
		fmt.Fprintln(os.Stderr, "controlplanetest:", err)
		return 1
	}
	env = &Env{ControlPlane: cp, DataDir: dir}
	return m.Run()
}

// Get returns the package's environment; it fails the test when Main did not start one.
func Get(tb testing.TB) *Env {
	tb.Helper()
	if env == nil {
		tb.Fatal("controlplanetest.Main was not called from TestMain")
	}
	return env
}

// Config returns an admin REST config.
func (e *Env) Config() *rest.Config { return e.ControlPlane.RESTConfig() }

// Client returns an admin client with the gpuwarden scheme.
func (e *Env) Client(tb testing.TB) client.Client {
	tb.Helper()
	c, err := client.New(e.Config(), client.Options{Scheme: scheme.New()})
	if err != nil {
		tb.Fatalf("building a client: %v", err)
	}
	return c
}

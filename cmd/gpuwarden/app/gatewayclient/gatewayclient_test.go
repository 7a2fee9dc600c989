package gatewayclient

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/gpuwarden/gpuwarden/internal/gateway"
)

func TestOrderOf(t *testing.T) {
	flags := func(args ...string) *pflag.FlagSet {
		fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
		var s string
		Flag(fs, &s, "")
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return fs
	}
	t.Setenv("DOCKER_HOST", "")
	if o := OrderOf(flags(), gateway.DefaultSocket, false); o != FileFirst {
		t.Errorf("no flag, no DOCKER_HOST: %v", o)
	}
	if o := OrderOf(flags("--gateway-socket", "/x.sock"), "/x.sock", false); o != GatewayOnly {
		t.Errorf("--gateway-socket: %v", o)
	}
	if o := OrderOf(flags("--gateway-socket", "/x.sock"), "/x.sock", true); o != FileFirst {
		t.Errorf("--gateway-socket with --file: %v", o)
	}
	t.Setenv("DOCKER_HOST", "unix://"+gateway.DefaultSocket)
	if o := OrderOf(flags(), gateway.DefaultSocket, false); o != GatewayFirst {
		t.Errorf("DOCKER_HOST naming the socket: %v", o)
	}
	if o := OrderOf(flags(), gateway.DefaultSocket, true); o != FileFirst {
		t.Errorf("DOCKER_HOST naming the socket, with --file: %v", o)
	}
	t.Setenv("DOCKER_HOST", "unix:///var/run/docker.sock")
	if o := OrderOf(flags(), gateway.DefaultSocket, false); o != FileFirst {
		t.Errorf("DOCKER_HOST naming the engine: %v", o)
	}
}

// TestOrderRead: the second source is read only when the first cannot be had: the file
// denied for permission, the gateway not there; another failure is the answer.
func TestOrderRead(t *testing.T) {
	denied := fmt.Errorf("reading audit log: %w", fs.ErrPermission)
	missing := fmt.Errorf("reading audit log: %w", fs.ErrNotExist)
	_, dialErr := (&net.Dialer{}).Dial("unix", filepath.Join(t.TempDir(), "none.sock"))
	absent := fmt.Errorf("asking gpuwarden at x: %w", dialErr)
	refused := &Refused{Socket: "x", Status: 403, Message: "no"}
	for _, tc := range []struct {
		order            Order
		file, gw         error
		wantFile, wantGW bool
		wantErrText      string
	}{
		{order: FileFirst, wantFile: true},
		{order: FileFirst, file: denied, wantFile: true, wantGW: true},
		{order: FileFirst, file: denied, gw: refused, wantFile: true, wantGW: true, wantErrText: "permission denied; and asking gpuwarden's gateway for your own: gpuwarden at x refused: no"},
		{order: FileFirst, file: missing, wantFile: true, wantErrText: "file does not exist"},
		{order: GatewayFirst, wantGW: true},
		{order: GatewayFirst, gw: absent, wantGW: true, wantFile: true},
		{order: GatewayFirst, gw: refused, wantGW: true, wantErrText: "refused: no"},
		{order: GatewayOnly, gw: absent, wantGW: true, wantErrText: "asking gpuwarden at x"},
	} {
		var file, gw bool
		err := tc.order.Read(func() error { file = true; return tc.file }, func() error { gw = true; return tc.gw })
		if file != tc.wantFile || gw != tc.wantGW {
			t.Errorf("%+v: read the file %v, asked the gateway %v", tc, file, gw)
		}
		switch {
		case tc.wantErrText == "" && err != nil:
			t.Errorf("%+v: %v", tc, err)
		case tc.wantErrText != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErrText)):
			t.Errorf("%+v: %v, want %q", tc, err, tc.wantErrText)
		}
	}
	if !Unreachable(absent) || Unreachable(refused) || Unreachable(errors.New("x")) {
		t.Error("Unreachable tells a socket nobody answers on from a refusal wrongly")
	}
}

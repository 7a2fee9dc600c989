// Package gatewayclienttest serves a real gateway on a socket of a test's own, for the
// commands that ask it: the test process is the caller, as the kernel names it.
package gatewayclienttest

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/gateway"
)

// Serve starts a gateway answering the records of auditLog until the test ends, and returns
// its socket. It fronts no Docker engine: only gpuwarden's own endpoints answer.
func Serve(t *testing.T, auditLog string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "gw.sock")
	up := make(chan struct{})
	s := &gateway.Server{Socket: sock, AuditLog: auditLog, AdminGroup: gateway.DefaultAdminGroup,
		Dial:      func(context.Context) (net.Conn, error) { return nil, net.ErrClosed },
		Listening: func() { close(up) }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case <-up:
	case err := <-done:
		t.Fatalf("starting the gateway: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the gateway did not listen within 10s")
	}
	return sock
}

package docker

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
)

// TestHost: the flag wins, then $DOCKER_HOST, then the standard socket.
func TestHost(t *testing.T) {
	tests := []struct {
		name, flag, env, want string
	}{
		{"flag", "tcp://engine:2375", "unix:///run/other.sock", "tcp://engine:2375"},
		{"unix flag", "unix:///run/docker.sock", "", "unix:///run/docker.sock"},
		{"environment", "", "unix:///run/user/1000/docker.sock", "unix:///run/user/1000/docker.sock"},
		{"default socket", "", "", "unix:///var/run/docker.sock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("DOCKER_HOST", tt.env)
			if got := Host(tt.flag); got != tt.want {
				t.Errorf("Host(%q) with DOCKER_HOST=%q = %q, want %q", tt.flag, tt.env, got, tt.want)
			}
		})
	}
}

// TestDialer: the gateway reaches unix:// and tcp:// engines at the address Host names, and
// refuses any other scheme, naming the host.
func TestDialer(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "docker.sock")
	unixL, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer unixL.Close()
	tcpL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcpL.Close()

	tests := []struct {
		name, flag, env string
		want            net.Listener // the engine reached; nil: refused
		wantErr         string
	}{
		{name: "unix flag", flag: "unix://" + sock, env: "tcp://" + tcpL.Addr().String(), want: unixL},
		{name: "tcp flag", flag: "tcp://" + tcpL.Addr().String(), want: tcpL},
		{name: "environment", env: "unix://" + sock, want: unixL},
		{name: "ssh refused", flag: "ssh://me@engine", wantErr: `"ssh://me@engine": the gateway fronts unix:// and tcp:// engines`},
		{name: "ssh from the environment refused", env: "ssh://me@engine", wantErr: `"ssh://me@engine": the gateway fronts unix:// and tcp:// engines`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("DOCKER_HOST", tt.env)
			dial, err := Dialer(tt.flag)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Dialer(%q) error = %v, want %q", tt.flag, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Dialer(%q): %v", tt.flag, err)
			}
			accepted := make(chan net.Addr, 1)
			go func() {
				if c, err := tt.want.Accept(); err == nil {
					accepted <- c.LocalAddr()
					c.Close()
				}
			}()
			c, err := dial(context.Background())
			if err != nil {
				t.Fatalf("dialling: %v", err)
			}
			defer c.Close()
			if got := <-accepted; got.String() != tt.want.Addr().String() {
				t.Errorf("reached %s, want %s", got, tt.want.Addr())
			}
		})
	}
}

// TestDialerDefaultSocket: with neither flag nor $DOCKER_HOST, the gateway dials the standard socket.
func TestDialerDefaultSocket(t *testing.T) {
	t.Setenv("DOCKER_HOST", "")
	dial, err := Dialer("")
	if err != nil {
		t.Fatal(err)
	}
	c, err := dial(context.Background())
	if err == nil {
		c.Close() // an engine on this machine answered there
		return
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Net != "unix" || op.Addr.String() != "/var/run/docker.sock" {
		t.Errorf("dialling the default engine: %v, want a unix dial of /var/run/docker.sock", err)
	}
}

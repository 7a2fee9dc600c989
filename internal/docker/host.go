package docker

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/moby/moby/client"
)

// Host is the engine address a --docker-host value names, the one rule New and Dialer
// share: host itself, else $DOCKER_HOST, else the standard socket.
func Host(host string) string {
	if host == "" {
		host = os.Getenv(client.EnvOverrideHost)
	}
	if host == "" {
		host = client.DefaultDockerHost
	}
	return host
}

// Dialer returns a function that opens a raw connection to the engine at Host(host), for
// the gateway to relay to. Only unix:// and tcp:// engines can be fronted; the error for
// another begins with the quoted host, so that a caller can put the setting's name before it.
func Dialer(host string) (func(ctx context.Context) (net.Conn, error), error) {
	host = Host(host)
	var d net.Dialer
	if p, ok := strings.CutPrefix(host, "unix://"); ok {
		return func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "unix", p) }, nil
	}
	if a, ok := strings.CutPrefix(host, "tcp://"); ok {
		return func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }, nil
	}
	return nil, fmt.Errorf("%q: the gateway fronts unix:// and tcp:// engines", host)
}

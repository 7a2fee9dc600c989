// Package gatewayclient asks gpuwarden's own endpoints on the Docker gateway's socket, where
// the kernel tells the server who calls: a kubeconfig of the caller's own (`gpuwarden
// kubeconfig`), and the caller's audit records and report (`gpuwarden events` and `gpuwarden
// report`), which are root's to read from the file. The socket is found one way for all of
// them: --gateway-socket, by default the gateway's default socket.
package gatewayclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/gpuwarden/gpuwarden/internal/gateway"
)

// FlagName is the flag that names the gateway's socket.
const FlagName = "gateway-socket"

// Flag adds --gateway-socket to flags, into socket: empty unless given, for
// gateway.ClientSocket's rule (DOCKER_HOST's Unix socket, else the default).
func Flag(flags *pflag.FlagSet, socket *string, usage string) {
	flags.StringVar(socket, FlagName, "", usage+" (default: $DOCKER_HOST when it is unix://…, as the profile script sets it, else "+gateway.DefaultSocket+")")
}

// DockerHostNames reports whether DOCKER_HOST is the gateway's socket: the caller runs
// Docker through the gateway (as users do), so it is the gateway they ask.
func DockerHostNames(socket string) bool {
	p, ok := strings.CutPrefix(os.Getenv("DOCKER_HOST"), "unix://")
	return ok && p != "" && filepath.Clean(p) == filepath.Clean(socket)
}

// Order is where a command that reads the audit log reads it.
type Order int

const (
	// FileFirst reads the file, and asks the gateway when the file is not the caller's to
	// read: the caller's own records.
	FileFirst Order = iota
	// GatewayFirst asks the gateway (DOCKER_HOST names it: the caller uses it for Docker),
	// and reads the file when the gateway is not there (gpuwarden stopped).
	GatewayFirst
	// GatewayOnly asks the gateway (--gateway-socket was given).
	GatewayOnly
)

// OrderOf is the order of a command with flags, whose gateway is at socket: no file named
// (fileGiven: --file or its environment variable) and --gateway-socket given, the gateway
// only; no file named and DOCKER_HOST naming the socket, the gateway first; else the file.
func OrderOf(flags *pflag.FlagSet, socket string, fileGiven bool) Order {
	if socket == "" {
		socket = gateway.DefaultSocket
	}
	switch {
	case fileGiven:
		return FileFirst
	case flags.Changed(FlagName):
		return GatewayOnly
	case DockerHostNames(socket):
		return GatewayFirst
	}
	return FileFirst
}

// Read reads in the order: fromFile, fromGateway or both, the second when the first cannot
// be had (the file denied for permission; the gateway not there).
func (o Order) Read(fromFile, fromGateway func() error) error {
	switch o {
	case GatewayOnly:
		return fromGateway()
	case GatewayFirst:
		err := fromGateway()
		if !Unreachable(err) {
			return err
		}
		if ferr := fromFile(); ferr != nil {
			return fmt.Errorf("%w; and reading the audit log: %w", err, ferr)
		}
		return nil
	}
	err := fromFile()
	if !Denied(err) {
		return err
	}
	if gerr := fromGateway(); gerr != nil {
		return fmt.Errorf("%w; and asking gpuwarden's gateway for your own: %w", err, gerr)
	}
	return nil
}

// Denied reports whether reading the audit log failed for permission: the log is root's,
// and the gateway answers the caller's own records.
func Denied(err error) bool { return errors.Is(err, fs.ErrPermission) }

// Unreachable reports whether asking the gateway failed because nothing answers on its
// socket (gpuwarden stopped), not because it refused.
func Unreachable(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// Client asks the gateway at Socket.
type Client struct {
	Socket string
	// Timeout bounds a request with its whole answer; 0 bounds only the connection (a read
	// of a large log, a followed one: the caller's context ends them).
	Timeout time.Duration
}

// Refused is an answer other than 200, with the gateway's message.
type Refused struct {
	Socket  string
	Status  int
	Message string
}

func (e *Refused) Error() string {
	return fmt.Sprintf("gpuwarden at %s refused: %s", e.Socket, e.Message)
}

// Get asks for path with query; the answer, once it is a 200, is the caller's to read and
// close. Any other answer is a *Refused.
func (c Client) Get(ctx context.Context, path string, query url.Values) (*http.Response, error) {
	c.Socket = gateway.ClientSocket(c.Socket)
	d := net.Dialer{Timeout: 10 * time.Second}
	hc := &http.Client{Timeout: c.Timeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, "unix", c.Socket) },
	}}
	u := url.URL{Scheme: "http", Host: "gpuwarden", Path: path, RawQuery: query.Encode()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // what failed, without the URL the socket stands for
		}
		return nil, fmt.Errorf("asking gpuwarden at %s: %w", c.Socket, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, &Refused{Socket: c.Socket, Status: resp.StatusCode, Message: message(body)}
	}
	return resp, nil
}

// message is the message of a Docker-style error body (without the gateway's "gpuwarden: ",
// which Refused says already).
func message(body []byte) string {
	var e struct{ Message string }
	if json.Unmarshal(body, &e) == nil && e.Message != "" {
		return strings.TrimPrefix(e.Message, "gpuwarden: ")
	}
	return strings.TrimSpace(string(body))
}

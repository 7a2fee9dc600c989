package kubeconfig

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpuwarden/gpuwarden/internal/gateway"
)

// envCLI makes the test binary `gpuwarden kubeconfig`, for the profile script to run.
const envCLI = "GPUWARDEN_KUBECONFIG_TEST_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(envCLI) == "1" {
		cmd := NewCommand()
		args := os.Args[1:]
		if len(args) > 0 && args[0] == "kubeconfig" {
			args = args[1:]
		}
		cmd.SetArgs(args)
		if err := cmd.Execute(); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// serve answers on a Unix socket as the gateway (a kubeconfig naming the socket) or as a
// Docker engine (page not found) would.
func serve(t *testing.T, path string, asGateway bool) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if asGateway && r.URL.Path == gateway.KubeconfigPath {
			_, _ = w.Write([]byte("kubeconfig from " + path))
			return
		}
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(map[string]string{"message": "page not found"})
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
}

// shortDir is a directory whose paths fit in a Unix socket's name.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("/tmp", "gwk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// One rule finds the gateway: --gateway-socket, else DOCKER_HOST's Unix socket, else the
// default; an engine that is not the gateway is named as such.
func TestKubeconfigAsksTheGatewayDockerHostNames(t *testing.T) {
	dir := shortDir(t)
	gw, engine := filepath.Join(dir, "gw.sock"), filepath.Join(dir, "docker.sock")
	serve(t, gw, true)
	serve(t, engine, false)

	for _, tc := range []struct{ name, dockerHost, flag, want string }{
		{"the default", "", "", gateway.DefaultSocket},
		{"DOCKER_HOST", "unix://" + gw, "", gw},
		{"a tcp DOCKER_HOST is not a gateway's", "tcp://127.0.0.1:2375", "", gateway.DefaultSocket},
		{"the flag over DOCKER_HOST", "unix://" + engine, gw, gw},
	} {
		t.Setenv("DOCKER_HOST", tc.dockerHost)
		if got := gateway.ClientSocket(tc.flag); got != tc.want {
			t.Errorf("%s: ClientSocket(%q) = %q, want %q", tc.name, tc.flag, got, tc.want)
		}
	}

	t.Setenv("DOCKER_HOST", "unix://"+gw)
	o := &Options{Days: 7}
	if data, err := o.Run(context.Background()); err != nil || string(data) != "kubeconfig from "+gw {
		t.Errorf("with DOCKER_HOST at the gateway: %q, %v", data, err)
	}
	t.Setenv("DOCKER_HOST", "unix://"+engine)
	if _, err := o.Run(context.Background()); err == nil || !strings.Contains(err.Error(), engine+" (from DOCKER_HOST) is not gpuwarden's gateway") {
		t.Errorf("with DOCKER_HOST at a Docker engine: %v; want it named as not the gateway", err)
	}
	o.Socket = gw
	if data, err := o.Run(context.Background()); err != nil || string(data) != "kubeconfig from "+gw {
		t.Errorf("--gateway-socket over DOCKER_HOST: %q, %v", data, err)
	}
}

// The profile script fetches the kubeconfig from the gateway DOCKER_HOST names (the same
// one docker talks to), not only from the default socket, and keeps a DOCKER_HOST it finds.
func TestProfileScriptFollowsDockerHost(t *testing.T) {
	dir := shortDir(t)
	gw := filepath.Join(dir, "gw.sock")
	serve(t, gw, true)
	bin := filepath.Join(dir, "bin")
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	stubs := map[string]string{
		"gpuwarden": "#!/bin/sh\nexec env " + envCLI + "=1 '" + self + "' \"$@\"\n",
		"id":        "#!/bin/sh\necho 1000\n", // a user's login, not root's
	}
	for name, body := range stubs {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script, err := filepath.Abs("../../../../hack/profile.sh")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", `. "$1"; printf '%s\n%s\n' "$DOCKER_HOST" "$KUBECONFIG"`, "sh", script)
	cmd.Env = []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "HOME=" + home, "DOCKER_HOST=unix://" + gw}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the profile script: %v\n%s", err, out)
	}
	kc := filepath.Join(home, ".kube", "gpuwarden.kubeconfig")
	if want := "unix://" + gw + "\n" + kc + "\n"; string(out) != want {
		t.Errorf("the profile script left DOCKER_HOST and KUBECONFIG as\n%s\nwant\n%s", out, want)
	}
	if b, err := os.ReadFile(kc); err != nil || string(b) != "kubeconfig from "+gw {
		t.Errorf("%s: %q, %v; want the kubeconfig of the gateway DOCKER_HOST names", kc, b, err)
	}
}

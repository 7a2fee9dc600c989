package options

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// defaults are the options as `gpuwarden controller` parses an empty command line.
func defaults(t *testing.T) ManagerOptions {
	t.Helper()
	var o ManagerOptions
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o.AddFlags(fs, ":9402", ":9403", "0", true)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	o.NodeName = "gpu01"
	return o
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*ManagerOptions)
		want   string // a substring of the error; "" for none
	}{
		{"defaults", func(*ManagerOptions) {}, ""},
		{"unix engine", func(o *ManagerOptions) { o.DockerHost = "unix:///run/docker.sock" }, ""},
		{"tcp engine", func(o *ManagerOptions) { o.DockerHost = "tcp://engine:2375" }, ""},
		{"no engine", func(o *ManagerOptions) { o.DockerHost = NoDocker }, ""},
		{"ssh engine", func(o *ManagerOptions) { o.DockerHost = "ssh://me@engine" }, `--docker-host "ssh://me@engine": want unix:///path/to/docker.sock, tcp://host:port or "none"`},
		{"node name not a DNS name", func(o *ManagerOptions) { o.NodeName = "GPU_01" }, `--node-name "GPU_01"`},
		{"node name too long for a label", func(o *ManagerOptions) { o.NodeName = strings.Repeat("a", 64) }, "a node name may have at most 63"},
		{"scan interval", func(o *ManagerOptions) { o.ScanInterval = 50 * time.Millisecond }, "--scan-interval 50ms: must be at least 100ms"},
		{"sample interval", func(o *ManagerOptions) { o.SampleInterval = 500 * time.Millisecond }, "--sample-interval 500ms: must be at least 1s"},
		{"retention", func(o *ManagerOptions) { o.AllocationRetention = time.Second }, "--allocation-retention 1s: must be at least 1m"},
		{"telemetry interval", func(o *ManagerOptions) { o.TelemetryInterval = time.Millisecond }, "--telemetry-interval 1ms: must be at least 1s"},
		{"mount of /", func(o *ManagerOptions) { o.GatewayAllowMounts = []string{"/"} }, `--gateway-allow-mount "/"`},
		{"relative mount", func(o *ManagerOptions) { o.GatewayAllowMounts = []string{"data"} }, `--gateway-allow-mount "data"`},
		{"negative bind wait", func(o *ManagerOptions) { o.GatewayBindWait = -time.Second }, "--gateway-bind-wait -1s: must not be negative"},
		{"connections per user", func(o *ManagerOptions) { o.GatewayLimits.ConnsPerUser = 0 }, "--gateway-max-connections-per-user 0"},
		{"requests per user", func(o *ManagerOptions) { o.GatewayLimits.RequestsPerUser = 0 }, "--gateway-max-requests-per-user 0"},
		{"connections", func(o *ManagerOptions) { o.GatewayLimits.Conns = -1 }, "--gateway-max-connections -1"},
		{"idle timeout", func(o *ManagerOptions) { o.GatewayLimits.IdleTimeout = 0 }, "--gateway-idle-timeout 0s"},
		{"control file without fake GPUs", func(o *ManagerOptions) { o.FakeGPUsControl = "/c.yaml" }, `--fake-gpus-control "/c.yaml": drives simulated GPUs only`},
		{"control file with fake GPUs", func(o *ManagerOptions) { o.FakeGPUs, o.FakeGPUsControl = "h100x8", "/c.yaml" }, ""},
		{"unknown profile", func(o *ManagerOptions) { o.FakeGPUs = "tpu" }, `--fake-gpus "tpu": unknown profile`},
		{"status page on loopback", func(o *ManagerOptions) { o.WebBindAddress = "127.0.0.1:9404" }, ""},
		{"status page on every interface", func(o *ManagerOptions) { o.WebBindAddress = ":9404" }, ""},
		{"status page on an IPv6 address", func(o *ManagerOptions) { o.WebBindAddress = "[::1]:9404" }, ""},
		{"status page off", func(o *ManagerOptions) { o.WebBindAddress = "0" }, ""},
		{"status page off in options built in code", func(o *ManagerOptions) { o.WebBindAddress = "" }, ""},
		{"status page without a port", func(o *ManagerOptions) { o.WebBindAddress = "127.0.0.1" }, `--web-bind-address "127.0.0.1": want HOST:PORT`},
		{"status page on a port out of range", func(o *ManagerOptions) { o.WebBindAddress = "127.0.0.1:70000" }, `--web-bind-address "127.0.0.1:70000": the port must be a number from 0 to 65535`},
		{"status page on a named port", func(o *ManagerOptions) { o.WebBindAddress = "127.0.0.1:http" }, `--web-bind-address "127.0.0.1:http"`},
		{"missing proc root", func(o *ManagerOptions) { o.ProcRoot = "/nonexistent" }, `--proc-root "/nonexistent"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := defaults(t)
			tt.change(&o)
			err := o.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate = %v, want an error with %q", err, tt.want)
			}
		})
	}
}

// TestWebBindAddressDefaults: the single-node server serves its status page on loopback
// by default; a node's controller only when asked.
func TestWebBindAddressDefaults(t *testing.T) {
	for _, tt := range []struct {
		def, want string
		on        bool
	}{{DefaultWebBindAddress, "127.0.0.1:9404", true}, {"0", "0", false}} {
		var o ManagerOptions
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		o.AddFlags(fs, "127.0.0.1:9402", "127.0.0.1:9403", tt.def, false)
		if err := fs.Parse(nil); err != nil {
			t.Fatal(err)
		}
		if o.WebBindAddress != tt.want || o.WebOn() != tt.on {
			t.Errorf("default %q: --web-bind-address %q (on %v), want %q (on %v)", tt.def, o.WebBindAddress, o.WebOn(), tt.want, tt.on)
		}
	}
	if (&ManagerOptions{}).WebOn() {
		t.Error("zero-valued options serve the status page")
	}
}

func TestCompleteNodeName(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Skip(err)
	}
	for _, tt := range []struct{ given, want string }{
		{"gpu01", "gpu01"},
		{"", strings.ToLower(host)},
	} {
		o := ManagerOptions{NodeName: tt.given}
		if err := o.Complete(); err != nil || o.NodeName != tt.want {
			t.Errorf("Complete with --node-name %q: %q, %v; want %q", tt.given, o.NodeName, err, tt.want)
		}
	}
}

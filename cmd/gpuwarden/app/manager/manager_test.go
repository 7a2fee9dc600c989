package manager

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gpuwarden/gpuwarden/cmd/gpuwarden/app/options"
	"github.com/gpuwarden/gpuwarden/internal/gateway"
)

// wiring is what controllerOptions decides, in comparable form.
type wiring struct {
	Docker, Health, DialDocker, Kubeconfigs, GatewayUp bool
	Socket, ImageOwners                                string
	Telemetry                                          time.Duration
}

func TestControllerOptions(t *testing.T) {
	base := options.ManagerOptions{NodeName: "gpu01", ProcRoot: "/proc", MetricsBindAddress: ":9402",
		TelemetryInterval: 5 * time.Second, GatewaySocket: "/run/gpuwarden/docker.sock"}
	issue := func(string, bool, time.Duration) ([]byte, error) { return nil, nil }
	tests := []struct {
		name    string
		change  func(*options.ManagerOptions)
		extras  Extras
		env     string // $DOCKER_HOST
		want    wiring
		wantErr string
	}{
		{name: "engine and gateway", extras: Extras{Kubeconfigs: issue, ImageOwners: "/data/images.json"},
			want: wiring{Docker: true, Health: true, DialDocker: true, Kubeconfigs: true, GatewayUp: true,
				Socket: "/run/gpuwarden/docker.sock", ImageOwners: "/data/images.json", Telemetry: 5 * time.Second}},
		{name: "image owners by default",
			want: wiring{Docker: true, Health: true, DialDocker: true, GatewayUp: true,
				Socket: "/run/gpuwarden/docker.sock", ImageOwners: gateway.DefaultImageOwners, Telemetry: 5 * time.Second}},
		{name: "no gateway", change: func(o *options.ManagerOptions) { o.GatewaySocket = "" }, extras: Extras{ImageOwners: "/data/images.json"},
			want: wiring{Docker: true, Health: true, Telemetry: 5 * time.Second}},
		{name: "no Docker, so no gateway", change: func(o *options.ManagerOptions) { o.DockerHost = options.NoDocker },
			want: wiring{Health: true, Telemetry: 5 * time.Second}},
		{name: "no metrics, so no telemetry", change: func(o *options.ManagerOptions) { o.MetricsBindAddress = "0"; o.GatewaySocket = "" },
			want: wiring{Docker: true, Health: true, Telemetry: -1}},
		{name: "no metrics, but the status page shows the readings", change: func(o *options.ManagerOptions) {
			o.MetricsBindAddress, o.WebBindAddress, o.GatewaySocket = "0", options.DefaultWebBindAddress, ""
		}, want: wiring{Docker: true, Health: true, Telemetry: 5 * time.Second}},
		{name: "gateway before an ssh engine from the environment", env: "ssh://me@engine",
			wantErr: `--docker-host "ssh://me@engine": the gateway fronts unix:// and tcp:// engines`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("DOCKER_HOST", tt.env)
			o := base
			if tt.change != nil {
				tt.change(&o)
			}
			co, up, err := controllerOptions(o, tt.extras, nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("controllerOptions error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := wiring{Docker: co.Docker != nil, Health: co.Health != nil, DialDocker: co.Gateway.DialDocker != nil,
				Kubeconfigs: co.Gateway.Kubeconfigs != nil, GatewayUp: up != nil,
				Socket: co.Gateway.Socket, ImageOwners: co.Gateway.ImageOwners, Telemetry: co.TelemetryInterval}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("wiring (-want,+got):\n%s", diff)
			}
			if co.NodeName != "gpu01" || co.Proc.Root != "/proc" {
				t.Errorf("node %q, proc root %q; want the flags'", co.NodeName, co.Proc.Root)
			}
			if up == nil {
				return
			}
			select {
			case <-up:
				t.Fatal("the gateway is up before it listens")
			default:
			}
			co.Gateway.Listening()
			co.Gateway.Listening() // once is enough; again must not panic
			select {
			case <-up:
			default:
				t.Error("the gateway listens, and Run is not told")
			}
		})
	}
}

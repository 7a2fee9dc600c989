package gateway

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
)

// FuzzCreateChecker: whatever a create body holds, the checker neither panics nor lets
// through a request that, decoded again from what would be forwarded, is privileged, uses
// a host namespace or adds capabilities.
func FuzzCreateChecker(f *testing.F) {
	for _, seed := range []string{
		`{"Image":"x","HostConfig":{"Privileged":true}}`,
		`{"Image":"x","HostConfig":{"privileged":false,"Privileged":true}}`,
		`{"Image":"x","HostConfig":{"Privil\u0065ged":true}}`,
		`{"Image":"x","HostConfig":{"PidMode":"host","Binds":["/etc:/x"]}}`,
		`{"Image":"x","HostConfig":{"DeviceRequests":[{"Count":-1,"Capabilities":[["gpu"]]}]}}`,
		`{"Image":"x","Env":["NVIDIA_VISIBLE_DEVICES=all"],"HostConfig":{"Runtime":"nvidia"}}`,
		`{"Image":"x","HostConfig":{"Mounts":[{"Type":"bind","Source":"/home/alice/../../etc","Target":"/x"}]}}`,
		`{"Image":"x","HostConfig":{"DeviceRequests":[{"DeviceIDs":["1g.10gb"],"Capabilities":[["gpu"]]}]}}`,
		`{"Image":"x","HostConfig":{"DeviceRequests":[{"DeviceIDs":["0","3g.40gb+me"],"Capabilities":[["gpu"]]}]}}`,
		`{}`, `[]`, `null`, `{"HostConfig":null}`,
	} {
		f.Add([]byte(seed))
	}
	w := newWorld(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		var req container.CreateRequest
		if decodeJSON(body, &req) != nil {
			return
		}
		if req.Config == nil {
			req.Config = &container.Config{}
		}
		if req.HostConfig == nil {
			req.HostConfig = &container.HostConfig{}
		}
		if w.s.checkHost(context.Background(), w.alice(), route{version: "/v1.41"}, req.HostConfig) != nil {
			return
		}
		gpus, err := gpuRequest(req.Config, req.HostConfig)
		if err != nil {
			return
		}
		if gpus.MIGProfile != "" && (!migProfile.MatchString(gpus.MIGProfile) || len(gpus.Devices) > 0 || gpus.All || gpus.Count > 0) {
			t.Fatalf("a MIG profile asked for with something else, or malformed: %+v", gpus)
		}
		for _, d := range gpus.Devices {
			if !deviceName.MatchString(d) || len(d) > maxDeviceName {
				t.Fatalf("device %q passed the check", d)
			}
		}
		w.s.setLabels(w.alice(), req.Config)
		out, err := json.Marshal(req)
		if err != nil {
			t.Fatalf("re-encoding a checked request: %v", err)
		}
		var again container.CreateRequest
		if err := json.Unmarshal(out, &again); err != nil {
			t.Fatalf("the engine could not decode what the gateway forwards: %v\n%s", err, out)
		}
		hc := again.HostConfig
		if hc != nil && (hc.Privileged || hc.PidMode == "host" || hc.NetworkMode == "host" || hc.IpcMode == "host" || len(hc.CapAdd) > 0) {
			t.Fatalf("forwarded a request the checker should refuse: %s", out)
		}
		if again.Config != nil && again.Config.Labels["gpuwarden.io/user"] != "alice" {
			t.Fatalf("forwarded without the caller's owner label: %s", out)
		}
	})
}

// FuzzClassify: any method and path is classified without panicking, and no path that is
// not in canonical form reaches the allow-list.
func FuzzClassify(f *testing.F) {
	for _, p := range []string{"/v1.41/containers/json", "/containers/x/../y/json", "//v1.41/_ping", "/v1.41abc/exec/1/start", "/gpuwarden/kubeconfig", "/gpuwarden/events", "/gpuwarden/report", "/v1.41/containers/a/archive", ""} {
		f.Add("GET", p)
		f.Add("POST", p)
	}
	f.Fuzz(func(t *testing.T, method, p string) {
		rt, why := classify(method, p)
		if why == "" && rt.kind != refuse && (strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") || strings.Contains(p, "//") || strings.Contains(p, "/./")) {
			t.Errorf("%s %q classified %+v", method, p, rt)
		}
	})
}

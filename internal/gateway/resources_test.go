package gateway

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// staticPolicies answers every container with the same effective policy values.
type staticPolicies map[string]any

func (p staticPolicies) Effective(context.Context, string, map[string]string) (resolve.Policy, error) {
	out := resolve.Policy{Values: map[string]resolve.PolicyValue{}}
	for k, v := range p {
		out.Values[k] = resolve.PolicyValue{Path: k, Value: v, From: "ContainerPolicy researchers"}
	}
	return out, nil
}

func TestResourceDefaultsAndMaxima(t *testing.T) {
	hostCPUs := float64(runtime.NumCPU())
	for _, tc := range []struct {
		name     string
		policy   staticPolicies
		host     string // the create's HostConfig
		admin    bool
		want     map[string]float64
		refusing string
	}{
		{"the gateway's defaults", nil, `{}`, false, map[string]float64{"ShmSize": DefaultShmSize, "PidsLimit": DefaultPidsLimit, "NanoCpus": 0, "Memory": 0}, ""},
		{"the policy's defaults", staticPolicies{"resources.cpus": "1", "resources.memory": "8Gi", "resources.shmSize": "2Gi", "resources.pidsLimit": float64(4096)}, `{}`, false,
			map[string]float64{"NanoCpus": 1e9, "Memory": 8 << 30, "ShmSize": 2 << 30, "PidsLimit": 4096}, ""},
		{"a default for a bigger machine is this one's whole", staticPolicies{"resources.cpus": "4096"}, `{}`, false, map[string]float64{"NanoCpus": hostCPUs * 1e9}, ""},
		{"what the create sets stays", staticPolicies{"resources.cpus": "1", "resources.memory": "8Gi", "resources.maxMemory": "16Gi"}, `{"NanoCpus":500000000,"Memory":1073741824,"ShmSize":1048576,"PidsLimit":10}`, false,
			map[string]float64{"NanoCpus": 5e8, "Memory": 1 << 30, "ShmSize": 1 << 20, "PidsLimit": 10}, ""},
		{"unlimited pids is no pids limit set", nil, `{"PidsLimit":-1}`, false, map[string]float64{"PidsLimit": DefaultPidsLimit}, ""},
		{"a maximum is the limit where the create sets none", staticPolicies{"resources.maxMemory": "16Gi", "resources.maxCPUs": "500m"}, `{}`, false,
			map[string]float64{"Memory": 16 << 30, "NanoCpus": 5e8}, ""},
		{"a cpuset is a CPU limit", staticPolicies{"resources.cpus": "1"}, `{"CpusetCpus":"0"}`, false, map[string]float64{"NanoCpus": 0}, ""},
		{"over the memory maximum", staticPolicies{"resources.maxMemory": "16Gi"}, `{"Memory":34359738368}`, false, nil, "memory 32Gi is over the most a container may have, 16Gi, set by ContainerPolicy researchers (spec.resources.maxMemory)"},
		{"over the CPU maximum", staticPolicies{"resources.maxCPUs": "2"}, `{"NanoCpus":4000000000}`, false, nil, "4 CPUs are over the most a container may have, 2, set by ContainerPolicy researchers (spec.resources.maxCPUs)"},
		{"over the CPU maximum by quota", staticPolicies{"resources.maxCPUs": "2"}, `{"CpuQuota":300000,"CpuPeriod":100000}`, false, nil, "3 CPUs are over"},
		{"an admin may ask for more", staticPolicies{"resources.maxMemory": "16Gi"}, `{"Memory":34359738368}`, true, map[string]float64{"Memory": 32 << 30}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			if tc.policy != nil {
				w.s.Policies = tc.policy
			}
			who := w.alice()
			who.Admin = tc.admin
			before := len(w.engine.reached())
			rec := w.do(who, "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":`+tc.host+`}`)
			if tc.refusing != "" {
				if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), tc.refusing) {
					t.Errorf("%d %s; want a refusal saying %q", rec.Code, strings.TrimSpace(rec.Body.String()), tc.refusing)
				}
				for _, r := range w.engine.reached()[before:] {
					if !strings.HasPrefix(r, "GET ") { // /info, for the engine's user namespaces
						t.Errorf("a refused create reached the engine: %s", r)
					}
				}
				return
			}
			if rec.Code != http.StatusCreated {
				t.Fatalf("create: %d %s", rec.Code, rec.Body)
			}
			hc := w.engine.lastBody()["HostConfig"].(map[string]any)
			for k, want := range tc.want {
				got, _ := hc[k].(float64)
				if got != want {
					t.Errorf("%s forwarded = %v, want %v", k, hc[k], want)
				}
			}
		})
	}
}

func TestUpdateOverTheMaximumIsRefused(t *testing.T) {
	w := newWorld(t)
	w.s.Policies = staticPolicies{"resources.maxMemory": "16Gi", "resources.maxCPUs": "2"}
	for body, want := range map[string]string{
		`{"Memory":68719476736}`:  "memory 64Gi is over",
		`{"NanoCpus":8000000000}`: "8 CPUs are over",
	} {
		if rec := w.do(w.alice(), "POST", "/v1.41/containers/alice-nb/update", body); rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("update %s: %d %s; want %q", body, rec.Code, rec.Body, want)
		}
	}
	if rec := w.do(w.alice(), "POST", "/v1.41/containers/alice-nb/update", `{"Memory":1073741824}`); rec.Code != http.StatusOK {
		t.Errorf("an update within the maximum: %d %s", rec.Code, rec.Body)
	}
	if got := fmt.Sprint(w.engine.lastBody()["Memory"]); got != "1.073741824e+09" {
		t.Errorf("update forwarded memory %s", got)
	}
}

func TestDriverDevicesNeedGPUs(t *testing.T) {
	w := newWorld(t)
	rec := w.do(w.alice(), "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"Devices":[{"PathOnHost":"/dev/nvidiactl"},{"PathOnHost":"/dev/nvidia-uvm"}]}}`)
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "/dev/nvidiactl is refused for a container without GPUs") {
		t.Errorf("driver devices without GPUs: %d %s", rec.Code, rec.Body)
	}
}

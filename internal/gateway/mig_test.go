package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
)

// TestAMIGProfileWhereADeviceWouldBe: --gpus '"device=1g.10gb"' (and every other form that
// names devices) asks for one free slice of the profile; a name that is neither a device nor
// a well-formed profile, a profile mixed with anything else, and too much are refused with
// the problem named, never forwarded.
func TestAMIGProfileWhereADeviceWouldBe(t *testing.T) {
	ids := func(ids ...string) string {
		b, _ := json.Marshal(ids)
		return fmt.Sprintf(`{"HostConfig":{"DeviceRequests":[{"DeviceIDs":%s,"Capabilities":[["gpu"]]}]}}`, b)
	}
	many := make([]string, 65)
	for i := range many {
		many[i] = fmt.Sprint(i)
	}
	for _, tc := range []struct {
		name, body string
		want       GPURequest
		refusal    string // the words of a 400, or "" when asked
	}{
		{"--gpus device=1g.10gb", ids("1g.10gb"), GPURequest{MIGProfile: "1g.10gb"}, ""},
		{"a media-extension profile", ids("1g.10gb+me"), GPURequest{MIGProfile: "1g.10gb+me"}, ""},
		{"a whole-GPU-sized profile", ids("7g.80gb"), GPURequest{MIGProfile: "7g.80gb"}, ""},
		{"compose device_ids", `{"HostConfig":{"DeviceRequests":[{"Driver":"nvidia","DeviceIDs":["1g.10gb"],"Capabilities":[["gpu"]]}]}}`, GPURequest{MIGProfile: "1g.10gb"}, ""},
		{"CDI", `{"HostConfig":{"DeviceRequests":[{"Driver":"cdi","DeviceIDs":["nvidia.com/gpu=3g.40gb"]}]}}`, GPURequest{MIGProfile: "3g.40gb"}, ""},
		{"NVIDIA_VISIBLE_DEVICES", `{"Env":["NVIDIA_VISIBLE_DEVICES=2g.20gb"],"HostConfig":{"Runtime":"nvidia"}}`, GPURequest{MIGProfile: "2g.20gb"}, ""},
		{"a MIG instance by position is still a device", ids("4:0"), GPURequest{Devices: []string{"4:0"}}, ""},
		{"an index and a UUID are still devices", ids("1", "GPU-abc", "MIG-0f/1/0"), GPURequest{Devices: []string{"1", "GPU-abc", "MIG-0f/1/0"}}, ""},
		{"upper case", ids("1G.10GB"), GPURequest{}, `device "1G.10GB" is not a MIG profile: a profile is written like 1g.10gb, 3g.40gb or 1g.10gb+me`},
		{"no memory", ids("1g."), GPURequest{}, `device "1g." is not a MIG profile`},
		{"a leading zero", ids("01g.10gb"), GPURequest{}, `device "01g.10gb" is not a MIG profile`},
		{"an unknown suffix", ids("1g.10gb+gfx"), GPURequest{}, `device "1g.10gb+gfx" is not a MIG profile`},
		{"a shell", ids("1g.10gb;rm -rf /"), GPURequest{}, `device "1g.10gb;rm -rf /" is not a MIG profile`},
		{"a newline", ids("1g.10gb\n"), GPURequest{}, `device "1g.10gb\n" is not a MIG profile`},
		{"odd bytes", ids("\x00\u202e0"), GPURequest{}, `device "\x00\u202e0" is not a GPU: name a GPU index (0), a MIG instance (4:0), a UUID (GPU-…, MIG-…) or a MIG profile (1g.10gb)`},
		{"a word", ids("any"), GPURequest{}, `device "any" is not a GPU`},
		{"a huge name", ids(strings.Repeat("1", 100000) + "g.10gb"), GPURequest{}, "is 100006 characters long; a GPU's name is at most 128"},
		{"too many devices", ids(many...), GPURequest{}, "65 devices asked for; at most 64"},
		{"two profiles", ids("1g.10gb", "1g.10gb"), GPURequest{}, `MIG profiles 1g.10gb, 1g.10gb asked for at once: a container gets one MIG slice, so ask for one profile (--gpus '"device=1g.10gb"')`},
		{"a profile and an index", ids("0", "3g.40gb"), GPURequest{}, `MIG profile 3g.40gb asked for with other GPUs: ask for the profile alone (--gpus '"device=3g.40gb"') or for GPUs without it`},
		{"a profile and a UUID", ids("3g.40gb", "GPU-abc"), GPURequest{}, "MIG profile 3g.40gb asked for with other GPUs"},
		{"a profile and all", `{"HostConfig":{"DeviceRequests":[{"Driver":"cdi","DeviceIDs":["nvidia.com/gpu=all","nvidia.com/gpu=1g.10gb"]}]}}`, GPURequest{}, "MIG profile 1g.10gb asked for with other GPUs"},
	} {
		var req struct {
			Env        []string
			HostConfig *container.HostConfig
		}
		if err := json.Unmarshal([]byte(tc.body), &req); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got, err := gpuRequest(&container.Config{Env: req.Env}, req.HostConfig)
		var r *refusal
		if shown := fmt.Sprintf("%+v", got); len(shown) > 200 {
			got = GPURequest{Devices: []string{shown[:200] + "…"}}
		}
		switch {
		case tc.refusal == "" && (err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want)):
			t.Errorf("%s: gpuRequest = %+v, %v; want %+v", tc.name, got, err, tc.want)
		case tc.refusal != "" && (!errors.As(err, &r) || r.status != http.StatusBadRequest || !strings.Contains(r.msg, tc.refusal)):
			t.Errorf("%s: gpuRequest = %+v, %v; want a 400 saying %q", tc.name, got, err, tc.refusal)
		case tc.refusal != "" && len(r.msg) > 400:
			t.Errorf("%s: the refusal is %d bytes long", tc.name, len(r.msg))
		}
	}

	// Through the gateway: the allocator is asked for the profile; a bad name reaches neither
	// the allocator nor the engine.
	w := newWorld(t)
	w.do(w.alice(), "POST", "/v1.41/containers/create", `{"Image":"x",`+strings.TrimPrefix(ids("1g.10gb"), "{"))
	if len(w.gpus.asked) != 1 || w.gpus.asked[0].MIGProfile != "1g.10gb" {
		t.Errorf("asked %+v, want one slice of 1g.10gb", w.gpus.asked)
	}
	w = newWorld(t)
	rec := w.do(w.alice(), "POST", "/v1.41/containers/create", `{"Image":"x",`+strings.TrimPrefix(ids("1g.10gb", "3g.40gb"), "{"))
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "a container gets one MIG slice") || len(w.gpus.asked) != 0 {
		t.Errorf("two profiles: %d %s, asked %+v", rec.Code, rec.Body, w.gpus.asked)
	}
}

// TestAMIGProfileByLabel: --label gpuwarden.io/mig-profile=1g.10gb asks for one free slice of
// the profile as --gpus '"device=1g.10gb"' does, and stays on the container, checked; a
// value that is no profile, an oversized one, and a label beside another GPU request are
// refused with the problem named, reaching neither the allocator nor the engine.
func TestAMIGProfileByLabel(t *testing.T) {
	label := func(v string) string {
		b, _ := json.Marshal(map[string]string{"gpuwarden.io/mig-profile": v})
		return string(b)
	}
	for _, tc := range []struct {
		name, body string
		want       GPURequest
		refusal    string
	}{
		{"the label alone", `{"Labels":` + label("1g.10gb") + `}`, GPURequest{MIGProfile: "1g.10gb"}, ""},
		{"a media-extension profile", `{"Labels":` + label("1g.10gb+me") + `}`, GPURequest{MIGProfile: "1g.10gb+me"}, ""},
		{"no label, no GPUs", `{"Labels":{"other":"1g.10gb"}}`, GPURequest{}, ""},
		{"empty", `{"Labels":` + label("") + `}`, GPURequest{}, `label gpuwarden.io/mig-profile="" is not a MIG profile: a profile is written like 1g.10gb, 3g.40gb or 1g.10gb+me`},
		{"upper case", `{"Labels":` + label("1G.10GB") + `}`, GPURequest{}, `label gpuwarden.io/mig-profile="1G.10GB" is not a MIG profile`},
		{"an index", `{"Labels":` + label("0") + `}`, GPURequest{}, `label gpuwarden.io/mig-profile="0" is not a MIG profile`},
		{"a shell", `{"Labels":` + label("1g.10gb;rm -rf /") + `}`, GPURequest{}, `is not a MIG profile`},
		{"huge", `{"Labels":` + label(strings.Repeat("1", 100000)+"g.10gb") + `}`, GPURequest{}, "label gpuwarden.io/mig-profile is 100006 characters long; a MIG profile is at most 128"},
		{"with --gpus 1", `{"Labels":` + label("1g.10gb") + `,"HostConfig":{"DeviceRequests":[{"Count":1,"Capabilities":[["gpu"]]}]}}`, GPURequest{},
			`label gpuwarden.io/mig-profile=1g.10gb asks for a MIG slice, and the create asks for GPUs another way too: ask in one`},
		{"with the same profile by device", `{"Labels":` + label("1g.10gb") + `,"HostConfig":{"DeviceRequests":[{"DeviceIDs":["1g.10gb"],"Capabilities":[["gpu"]]}]}}`, GPURequest{},
			"another way too"},
		{"with NVIDIA_VISIBLE_DEVICES", `{"Env":["NVIDIA_VISIBLE_DEVICES=all"],"Labels":` + label("3g.40gb") + `}`, GPURequest{}, "another way too"},
	} {
		var req struct {
			Env        []string
			Labels     map[string]string
			HostConfig *container.HostConfig
		}
		if err := json.Unmarshal([]byte(tc.body), &req); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if req.HostConfig == nil {
			req.HostConfig = &container.HostConfig{}
		}
		got, err := gpuRequest(&container.Config{Env: req.Env, Labels: req.Labels}, req.HostConfig)
		var r *refusal
		switch {
		case tc.refusal == "" && (err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want)):
			t.Errorf("%s: gpuRequest = %+v, %v; want %+v", tc.name, got, err, tc.want)
		case tc.refusal != "" && (!errors.As(err, &r) || r.status != http.StatusBadRequest || !strings.Contains(r.msg, tc.refusal)):
			t.Errorf("%s: gpuRequest = %+v, %v; want a 400 saying %q", tc.name, got, err, tc.refusal)
		case tc.refusal != "" && len(r.msg) > 400:
			t.Errorf("%s: the refusal is %d bytes long", tc.name, len(r.msg))
		}
	}

	// Through the gateway: the allocator is asked for the profile, and the container keeps
	// the label (the checked value), with its owner's.
	w := newWorld(t)
	rec := w.do(w.alice(), "POST", "/v1.41/containers/create?name=nb", `{"Image":"x","Labels":`+label("1g.10gb")+`}`)
	if rec.Code != http.StatusCreated || len(w.gpus.asked) != 1 || w.gpus.asked[0].MIGProfile != "1g.10gb" {
		t.Fatalf("create with the label: %d %s, asked %+v", rec.Code, rec.Body, w.gpus.asked)
	}
	labels := w.engine.lastBody()["Labels"].(map[string]any)
	if labels["gpuwarden.io/mig-profile"] != "1g.10gb" || labels["gpuwarden.io/user"] != "alice" || labels["gpuwarden.io/allocation"] != "gateway-1" {
		t.Errorf("labels forwarded: %v", labels)
	}
	w = newWorld(t)
	rec = w.do(w.alice(), "POST", "/v1.41/containers/create", `{"Image":"x","Labels":`+label("any")+`}`)
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "is not a MIG profile") || len(w.gpus.asked) != 0 ||
		strings.Contains(strings.Join(w.engine.got, " "), "create") {
		t.Errorf("a bad label: %d %s, asked %+v, engine got %v", rec.Code, rec.Body, w.gpus.asked, w.engine.got)
	}
}

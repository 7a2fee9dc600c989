package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// fakeEngine answers like a Docker engine and records what reached it.
type fakeEngine struct {
	mu         sync.Mutex
	got        []string // "METHOD path" of every request
	bodies     []string
	containers map[string]map[string]string // labels by ID and name
	// objects are volumes and networks by "volumes/NAME" or "networks/NAME": their labels.
	objects map[string]map[string]string
	// inspect overrides a container's inspection (by the ID or name asked): its JSON, with
	// the ID, name and labels filled in where it leaves them out.
	inspect map[string]string
}

func (e *fakeEngine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	e.mu.Lock()
	e.got = append(e.got, r.Method+" "+r.URL.Path)
	e.bodies = append(e.bodies, string(body))
	e.mu.Unlock()
	p := strings.TrimPrefix(r.URL.Path, "/v1.41")
	switch {
	case strings.HasSuffix(p, "/json") && strings.HasPrefix(p, "/containers/") && p != "/containers/json":
		id := strings.Split(p, "/")[2]
		if id == "5" { // a prefix several containers share: the engine cannot say which
			http.Error(w, `{"message":"Multiple IDs found with provided prefix: 5"}`, http.StatusInternalServerError)
			return
		}
		l, ok := e.containers[id]
		if raw, over := e.inspect[id]; over {
			var m map[string]any
			_ = json.Unmarshal([]byte(raw), &m)
			if m["Id"] == nil {
				m["Id"], m["Name"] = "full-"+id, "/"+id
			}
			if cfg, _ := m["Config"].(map[string]any); cfg != nil && cfg["Labels"] == nil {
				cfg["Labels"] = l
			}
			_ = json.NewEncoder(w).Encode(m)
			return
		}
		if !ok {
			http.Error(w, `{"message":"No such container"}`, http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"Id": "full-" + id, "Name": "/" + id, "Config": map[string]any{"Labels": l}})
	case p == "/containers/json":
		var list []map[string]any
		for id, l := range e.containers {
			list = append(list, map[string]any{"Id": id, "Labels": l})
		}
		_ = json.NewEncoder(w).Encode(list)
	case p == "/networks/12ab": // a prefix of bob's network's ID, resolved by the engine
		_ = json.NewEncoder(w).Encode(map[string]any{"Labels": map[string]string{gpuwardenv1alpha1.LabelUser: "bob"}, "Name": "bob-net", "Id": "12ab34cd"})
	case e.object(p) != nil:
		_ = json.NewEncoder(w).Encode(map[string]any{"Labels": e.object(p), "Name": p[strings.LastIndex(p, "/")+1:]})
	case strings.HasPrefix(p, "/volumes/") && r.Method == http.MethodGet, strings.HasPrefix(p, "/networks/") && p != "/networks/bobnet" && p != "/networks/bridge" && r.Method == http.MethodGet:
		http.Error(w, `{"message":"not found"}`, http.StatusNotFound)
	case p == "/volumes/create":
		var v struct {
			Name   string
			Labels map[string]string
		}
		_ = json.Unmarshal(body, &v)
		e.mu.Lock()
		if e.objects == nil {
			e.objects = map[string]map[string]string{}
		}
		if e.objects["volumes/"+v.Name] == nil {
			e.objects["volumes/"+v.Name] = v.Labels
		}
		e.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, `{}`)
	case p == "/networks":
		fmt.Fprint(w, `[{"Name":"bridge","Labels":{}},{"Name":"alicenet","Labels":{"gpuwarden.io/user":"alice"}},{"Name":"bobnet","Labels":{"gpuwarden.io/user":"bob"}}]`)
	case p == "/networks/bobnet":
		fmt.Fprint(w, `{"Name":"bobnet","Labels":{"gpuwarden.io/user":"bob"}}`)
	case p == "/containers/create":
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, `{"Id":"new","Warnings":[]}`)
	default:
		fmt.Fprint(w, `{}`)
	}
}

func (e *fakeEngine) object(p string) map[string]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.objects[strings.TrimPrefix(p, "/")]
}

func (e *fakeEngine) reached() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.got...)
}

func (e *fakeEngine) lastBody() map[string]any {
	e.mu.Lock()
	defer e.mu.Unlock()
	var m map[string]any
	_ = json.Unmarshal([]byte(e.bodies[len(e.bodies)-1]), &m)
	return m
}

// fakeGPUs binds every request to GPU-0 and GPU-1, or refuses it.
type fakeGPUs struct {
	refuse   string
	asked    []GPURequest
	released []string
	// reacquired are the starts checked; refuseStart refuses them (503 when unavailable).
	reacquired  []Starting
	refuseStart string
	unavailable bool
	// used are the allocations creates named, as user/name.
	mu   sync.Mutex
	used []string
}

func (f *fakeGPUs) Reacquire(_ context.Context, user string, c Starting) (string, error) {
	f.reacquired = append(f.reacquired, c)
	switch {
	case f.refuseStart != "" && f.unavailable:
		return "", &AllocationError{Status: http.StatusServiceUnavailable, Message: f.refuseStart}
	case f.refuseStart != "":
		return "", &AllocationError{Status: http.StatusForbidden, Message: f.refuseStart}
	}
	return "gateway-2", nil
}

func (f *fakeGPUs) Allocate(_ context.Context, _ string, req GPURequest, _ string, _ gpuwardenv1alpha1.ContainerType) (string, []string, error) {
	f.asked = append(f.asked, req)
	if f.refuse != "" {
		return "", nil, &AllocationError{Status: http.StatusForbidden, Message: f.refuse}
	}
	return "gateway-1", []string{"GPU-0"}, nil
}

func (f *fakeGPUs) Release(_ context.Context, name string) { f.released = append(f.released, name) }

// Use gives alice her own allocation alice-1 (GPU-3); any other is not there for anyone.
func (f *fakeGPUs) Use(_ context.Context, user, name, _ string) ([]string, error) {
	f.mu.Lock()
	f.used = append(f.used, user+"/"+name)
	f.mu.Unlock()
	if user == "alice" && name == "alice-1" {
		return []string{"GPU-3"}, nil
	}
	return nil, &AllocationError{Status: http.StatusForbidden, Absent: true, Message: "No such GPU allocation: " + name}
}

type world struct {
	s      *Server
	engine *fakeEngine
	gpus   *fakeGPUs
	audit  *testutil.AuditRecorder
	home   string
}

func newWorld(t testing.TB) *world {
	t.Helper()
	dir := t.TempDir()
	engine := &fakeEngine{containers: map[string]map[string]string{
		"alice-nb":  {gpuwardenv1alpha1.LabelUser: "alice"},
		"bob-job":   {gpuwardenv1alpha1.LabelUser: "bob"},
		"alice-svc": {gpuwardenv1alpha1.LabelUser: "alice", gpuwardenv1alpha1.LabelProtected: "true"},
	}, objects: map[string]map[string]string{
		"volumes/bobs": {gpuwardenv1alpha1.LabelUser: "bob"}, "volumes/alicevol": {gpuwardenv1alpha1.LabelUser: "alice"},
		"networks/alicenet": {gpuwardenv1alpha1.LabelUser: "alice"}, "networks/adminnet": {"team": "ops"},
	}}
	dial := serveEngine(t, dir, engine)
	home := filepath.Join(dir, "home", "alice")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(home, "etc-link")); err != nil {
		t.Fatal(err)
	}
	w := &world{engine: engine, gpus: &fakeGPUs{}, audit: &testutil.AuditRecorder{}, home: home}
	w.s = &Server{Dial: dial,
		AdminGroup: DefaultAdminGroup, AllowMounts: []string{"/data/shared"}, GPUs: w.gpus, Audit: w.audit}
	w.s.up = newUpstream(w.s.Dial)
	return w
}

// serveEngine serves a test double of the engine on a Unix socket in dir until the test
// ends, and returns how to reach it.
func serveEngine(t testing.TB, dir string, engine http.Handler) func(ctx context.Context) (net.Conn, error) {
	t.Helper()
	sock := filepath.Join(dir, "engine.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	hs := &httptest.Server{Listener: l, Config: &http.Server{Handler: engine}}
	hs.Start()
	t.Cleanup(hs.Close)
	var d net.Dialer
	return func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "unix", sock) }
}

// do sends a request as alice (or as who), the way the socket would have named her.
func (w *world) do(who Caller, method, target, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	r = r.WithContext(context.WithValue(r.Context(), callerKey{}, who))
	rec := httptest.NewRecorder()
	w.s.ServeHTTP(rec, r)
	return rec
}

func (w *world) alice() Caller { return Caller{UID: 1000, Name: "alice", Home: w.home} }

// TestAnObjectThatDoesNotExistIsNoDenial: compose looks its network and volumes up before it
// makes them; the ordinary "no such" answer is not an auth.denied.
func TestAnObjectThatDoesNotExistIsNoDenial(t *testing.T) {
	w := newWorld(t)
	for _, path := range []string{"/v1.41/networks/web_default", "/v1.41/volumes/web_data", "/v1.41/containers/nosuch/json"} {
		rec := w.do(w.alice(), "GET", path, "")
		if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "No such") {
			t.Errorf("GET %s: %d %s; want the engine's 404", path, rec.Code, rec.Body)
		}
	}
	if denied := w.audit.Of(audit.TypeAuthDenied); len(denied) != 0 {
		t.Errorf("lookups of objects that do not exist recorded %d auth.denied: %+v", len(denied), denied)
	}
	// Another user's container, hidden behind an ID prefix, is answered word for word as one
	// that does not exist (and is recorded, for the admin).
	bob := Caller{UID: 1001, Name: "bob", Home: "/home/bob"}
	w.engine.mu.Lock()
	if w.engine.inspect == nil {
		w.engine.inspect = map[string]string{}
	}
	w.engine.inspect["a1b2c3"] = `{"Id":"a1b2c3d4e5f6","Name":"/alice-secret","Config":{"Labels":{"gpuwarden.io/user":"alice"}}}`
	w.engine.mu.Unlock()
	absent, hidden := w.do(bob, "GET", "/v1.41/containers/d4e5f6/json", ""), w.do(bob, "GET", "/v1.41/containers/a1b2c3/json", "")
	ambiguous := w.do(bob, "GET", "/v1.41/containers/5/json", "")
	if ambiguous.Code != absent.Code || strings.ReplaceAll(absent.Body.String(), "d4e5f6", "X") != strings.ReplaceAll(ambiguous.Body.String(), "5", "X") {
		t.Errorf("a prefix several containers share is answered %d %q, a missing one %d %q: hidden containers show", ambiguous.Code, ambiguous.Body, absent.Code, absent.Body)
	}
	if absent.Code != http.StatusNotFound || absent.Code != hidden.Code ||
		strings.ReplaceAll(absent.Body.String(), "d4e5f6", "X") != strings.ReplaceAll(hidden.Body.String(), "a1b2c3", "X") {
		t.Errorf("a hidden container is answered %d %q, one that does not exist %d %q: they can be told apart", hidden.Code, hidden.Body, absent.Code, absent.Body)
	}
	if denied := w.audit.Of(audit.TypeAuthDenied); len(denied) != 1 || denied[0].User != "bob" {
		t.Errorf("the hidden container's refusal is recorded %d times: %+v; want once, as bob", len(denied), denied)
	}
	// Another user's network behind an ID prefix is answered as a missing one, too.
	missingNet, hiddenNet := w.do(w.alice(), "GET", "/v1.41/networks/99ff", ""), w.do(w.alice(), "GET", "/v1.41/networks/12ab", "")
	if hiddenNet.Code != http.StatusNotFound || strings.ReplaceAll(missingNet.Body.String(), "99ff", "X") != strings.ReplaceAll(hiddenNet.Body.String(), "12ab", "X") {
		t.Errorf("bob's network by a prefix is answered %d %q, a missing one %d %q", hiddenNet.Code, hiddenNet.Body, missingNet.Code, missingNet.Body)
	}
}

func TestOwnersOnlyTouchTheirOwnContainers(t *testing.T) {
	w := newWorld(t)
	bob := Caller{UID: 1001, Name: "bob", Home: "/home/bob"}
	for _, op := range []struct{ method, path string }{
		{"GET", "/v1.41/containers/alice-nb/json"}, {"GET", "/v1.41/containers/alice-nb/logs"}, {"POST", "/v1.41/containers/alice-nb/exec"},
		{"POST", "/v1.41/containers/alice-nb/stop"}, {"DELETE", "/v1.41/containers/alice-nb"}, {"GET", "/v1.41/containers/alice-nb/archive"},
		{"GET", "/v1.41/containers/alice-nb/export"}, {"POST", "/containers/alice-nb/kill"},
	} {
		rec := w.do(bob, op.method, op.path, "{}")
		if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "belongs to alice, not to bob") {
			t.Errorf("bob %s %s: %d %s", op.method, op.path, rec.Code, rec.Body)
		}
	}
	if evs := w.audit.Events(); len(evs) != 8 || evs[0].Type != audit.TypeAuthDenied || evs[0].User != "bob" {
		t.Errorf("%d audit records, first %+v; want one auth.denied per refusal, as bob", len(evs), evs[:min(len(evs), 1)])
	}
	if rec := w.do(w.alice(), "POST", "/v1.41/containers/alice-nb/stop", ""); rec.Code != http.StatusOK {
		t.Errorf("alice stops her own: %d %s", rec.Code, rec.Body)
	}
	// Forwarded by its full ID, so that a name taken over meanwhile cannot redirect it.
	if got := w.engine.reached(); got[len(got)-1] != "POST /v1.41/containers/full-alice-nb/stop" {
		t.Errorf("forwarded as %s", got[len(got)-1])
	}
	if rec := w.do(w.alice(), "POST", "/v1.41/containers/alice-svc/stop", ""); rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "protected") {
		t.Errorf("a protected container: %d %s", rec.Code, rec.Body)
	}
	rec := w.do(bob, "GET", "/v1.41/containers/json?all=1", "")
	if strings.Contains(rec.Body.String(), "alice") || !strings.Contains(rec.Body.String(), "bob-job") {
		t.Errorf("bob's list: %s", rec.Body)
	}
	// Networks: the caller's and the engine's own, never another user's.
	if rec := w.do(w.alice(), "GET", "/v1.41/networks", ""); strings.Contains(rec.Body.String(), "bobnet") ||
		!strings.Contains(rec.Body.String(), "alicenet") || !strings.Contains(rec.Body.String(), "bridge") {
		t.Errorf("alice's network list: %s", rec.Body)
	}
	if rec := w.do(w.alice(), "GET", "/v1.41/networks/bobnet", ""); rec.Code != http.StatusForbidden {
		t.Errorf("alice inspects bob's network: %d %s", rec.Code, rec.Body)
	}
	if rec := w.do(w.alice(), "GET", "/v1.41/networks/bridge", ""); rec.Code != http.StatusOK {
		t.Errorf("alice inspects the engine's bridge network: %d %s", rec.Code, rec.Body)
	}
	if rec := w.do(Caller{Name: "root", Admin: true}, "GET", "/v1.41/containers/json", ""); !strings.Contains(rec.Body.String(), "alice-nb") {
		t.Errorf("an admin sees everything: %s", rec.Body)
	}
}

// Hostile and malformed requests: each refused (or made harmless), and none forwarded raw.
func TestHostileRequestsAreRefused(t *testing.T) {
	w := newWorld(t)
	for _, tc := range []struct {
		name, method, path, body, want string
	}{
		{"privileged", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"Privileged":true}}`, "privileged container is refused"},
		{"privileged, lower-case key", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"privileged":true}}`, "privileged"},
		{"privileged, the last duplicate wins", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"Privileged":false,"Privileged":true}}`, "privileged"},
		{"privileged, escaped key", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"Privil\u0065ged":true}}`, "privileged"},
		{"host PID", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"PidMode":"host"}}`, "PID namespace"},
		{"host network", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"NetworkMode":"host"}}`, "network namespace"},
		{"host IPC", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"IpcMode":"host"}}`, "IPC namespace"},
		{"host UTS", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"UTSMode":"host"}}`, "UTS namespace"},
		{"host user namespace", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"UsernsMode":"host"}}`, "user namespace"},
		{"another's network namespace", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"NetworkMode":"container:bob-job"}}`, "belongs to bob"},
		{"capabilities", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"CapAdd":["SYS_ADMIN"]}}`, "SYS_ADMIN"},
		{"a host device", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"Devices":[{"PathOnHost":"/dev/sda","PathInContainer":"/dev/sda"}]}}`, "/dev/sda"},
		{"device cgroup rules", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"DeviceCgroupRules":["a *:* rwm"]}}`, "cgroup rules"},
		{"seccomp unconfined", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"SecurityOpt":["seccomp=unconfined"]}}`, "security option"},
		{"apparmor unconfined", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"SecurityOpt":["apparmor:unconfined"]}}`, "security option"},
		{"cgroup parent", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"CgroupParent":"system.slice"}}`, "cgroup parent"},
		{"bind /etc", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"Binds":["/etc:/x"]}}`, "bind mount of /etc"},
		{"bind with traversal", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"Binds":["` + w.home + `/../../../etc:/x"]}}`, "is refused"},
		{"bind through a link in the home", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"Binds":["` + w.home + `/etc-link:/x"]}}`, "is refused"},
		{"bind mount /", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"Mounts":[{"Type":"bind","Source":"/","Target":"/host"}]}}`, "bind mount of /"},
		{"bind a prefix look-alike", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"Binds":["/data/shared-secrets:/x"]}}`, "is refused"},
		{"volume bound to a host path", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"Mounts":[{"Type":"volume","Target":"/x","VolumeOptions":{"DriverConfig":{"Name":"local","Options":{"type":"none","o":"bind","device":"/etc"}}}}]}}`, "volume driver options"},
		{"volume driver", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"VolumeDriver":"evil"}}`, "volume driver"},
		{"a runtime", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"Runtime":"kata-host"}}`, "runtime"},
		{"volumes from another's container", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"VolumesFrom":["bob-job"]}}`, "belongs to bob"},
		{"not JSON", "POST", "/v1.41/containers/create", `{"Image":`, "not valid JSON"},
		{"an empty body", "POST", "/v1.41/containers/create", ``, "needs a body"},
		{"a body over 1 MiB", "POST", "/v1.41/containers/create", `{"Image":"x","Env":["` + strings.Repeat("A", maxBody) + `"]}`, "over 1048576 bytes"},
		{"GPUs asked two ways", "POST", "/v1.41/containers/create", `{"Image":"x","Env":["NVIDIA_VISIBLE_DEVICES=0"],"HostConfig":{"DeviceRequests":[{"Count":1,"Capabilities":[["gpu"]]}]}}`, "2 ways"},
		{"a non-GPU device request", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"DeviceRequests":[{"Count":1,"Capabilities":[["tpu"]]}]}}`, "only GPUs"},
		{"a CDI device that is no GPU", "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"DeviceRequests":[{"Driver":"cdi","DeviceIDs":["vendor.com/disk=0"]}]}}`, "CDI device"},
		{"a privileged exec", "POST", "/v1.41/containers/alice-nb/exec", `{"Cmd":["sh"],"Privileged":true}`, "privileged exec"},
		{"an update adding devices", "POST", "/v1.41/containers/alice-nb/update", `{"Devices":[{"PathOnHost":"/dev/sda"}]}`, "may not add devices"},
		{"a build on the host network", "POST", "/v1.41/build?networkmode=host", ``, "a build on network"},
		{"swarm", "POST", "/v1.41/swarm/init", `{}`, "for gpuwarden admins"},
		{"plugins", "POST", "/v1.41/plugins/pull", `{}`, "for gpuwarden admins"},
		{"system df", "GET", "/v1.41/system/df", ``, "for gpuwarden admins"},
		{"container prune", "POST", "/v1.41/containers/prune", ``, "for gpuwarden admins"},
		{"an unknown container endpoint", "POST", "/v1.41/containers/alice-nb/checkpoints", ``, "not allowed"},
		{"attach over a web socket", "GET", "/v1.41/containers/alice-nb/attach/ws", ``, "not allowed"},
		{"path traversal", "GET", "/v1.41/containers/alice-nb/../bob-job/json", ``, "canonical"},
		{"a doubled slash", "GET", "//v1.41/containers/bob-job/json", ``, "canonical"},
		{"an odd version prefix", "GET", "/v1.41abc/containers/bob-job/json", ``, "for gpuwarden admins"},
		{"an unversioned inspect of another's", "GET", "/containers/bob-job/json", ``, "belongs to bob"},
		{"forced image removal", "DELETE", "/v1.41/images/busybox?force=1", ``, "by force"},
		{"a volume with driver options", "POST", "/v1.41/volumes/create", `{"Name":"v","DriverOpts":{"device":"/etc","o":"bind"}}`, "options are for admins"},
		{"removing another's volume", "DELETE", "/v1.41/volumes/bobs", ``, "does not belong to alice"},
	} {
		before := len(w.engine.reached())
		rec := w.do(w.alice(), tc.method, tc.path, tc.body)
		if rec.Code < 400 || !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("%s: %d %s; want a refusal saying %q", tc.name, rec.Code, strings.TrimSpace(rec.Body.String()), tc.want)
		}
		for _, r := range w.engine.reached()[before:] {
			if !strings.HasPrefix(r, "GET ") { // an inspection, to learn the owner
				t.Errorf("%s: forwarded %s to the engine", tc.name, r)
			}
		}
	}
	// Still serving.
	if rec := w.do(w.alice(), "GET", "/_ping", ""); rec.Code != http.StatusOK {
		t.Errorf("ping after the hostile requests: %d", rec.Code)
	}
}

func TestCreateGetsOwnerLabelsAndBoundGPUs(t *testing.T) {
	w := newWorld(t)
	rec := w.do(w.alice(), "POST", "/v1.41/containers/create?name=nb",
		`{"Image":"x","Labels":{"gpuwarden.io/user":"bob","gpuwarden.io/protected":"true","ds01.user":"bob","mine":"yes"},
		  "HostConfig":{"Binds":["`+w.home+`/work:/work"],"DeviceRequests":[{"Driver":"","Count":1,"Capabilities":[["gpu"]]}]}}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	body := w.engine.lastBody()
	labels := body["Labels"].(map[string]any)
	if labels["gpuwarden.io/user"] != "alice" || labels["gpuwarden.io/protected"] != nil || labels["ds01.user"] != nil || labels["mine"] != "yes" ||
		labels["gpuwarden.io/allocation"] != "gateway-1" || labels["gpuwarden.io/type"] != "docker" {
		t.Errorf("labels forwarded: %v", labels)
	}
	hc := body["HostConfig"].(map[string]any)
	dr := hc["DeviceRequests"].([]any)
	if len(dr) != 1 || fmt.Sprint(dr[0].(map[string]any)["DeviceIDs"]) != "[GPU-0]" {
		t.Errorf("device requests forwarded: %v", dr)
	}
	if fmt.Sprint(body["Env"]) != "[HOME=/tmp USER=alice NVIDIA_VISIBLE_DEVICES=GPU-0]" {
		t.Errorf("env forwarded: %v", body["Env"])
	}
	if hc["ShmSize"] != float64(DefaultShmSize) || hc["PidsLimit"] != float64(DefaultPidsLimit) {
		t.Errorf("resource defaults forwarded: shm %v, pids %v", hc["ShmSize"], hc["PidsLimit"])
	}
	// A container without GPUs gets none, whatever its image says.
	w.do(w.alice(), "POST", "/v1.41/containers/create", `{"Image":"nvidia/cuda"}`)
	if fmt.Sprint(w.engine.lastBody()["Env"]) != "[HOME=/tmp USER=alice NVIDIA_VISIBLE_DEVICES=void]" {
		t.Errorf("env of a GPU-less create: %v", w.engine.lastBody()["Env"])
	}
	// A refused allocation answers at once with the allocator's words.
	w.gpus.refuse = "no GPU for you: 2 of 2 gpu-equivalents in use (GPUQuota students)"
	rec = w.do(w.alice(), "POST", "/v1.41/containers/create", `{"Image":"x","HostConfig":{"DeviceRequests":[{"Count":1,"Capabilities":[["gpu"]]}]}}`)
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "GPUQuota students") {
		t.Errorf("over quota: %d %s", rec.Code, rec.Body)
	}
	// It is a GPU decision (the allocator's gpu.reject), not an access denied.
	if denied := w.audit.Of(audit.TypeAuthDenied); len(denied) != 0 {
		t.Errorf("a refused GPU request recorded %d auth.denied: %+v", len(denied), denied)
	}
}

func TestEveryGPUFormIsOneRequest(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       GPURequest
	}{
		{"--gpus 2", `{"HostConfig":{"DeviceRequests":[{"Count":2,"Capabilities":[["gpu"]]}]}}`, GPURequest{Count: 2}},
		{"--gpus all", `{"HostConfig":{"DeviceRequests":[{"Count":-1,"Capabilities":[["gpu"]]}]}}`, GPURequest{All: true}},
		{"--gpus device=0,GPU-abc", `{"HostConfig":{"DeviceRequests":[{"DeviceIDs":["0","GPU-abc"],"Capabilities":[["gpu"]]}]}}`, GPURequest{Devices: []string{"0", "GPU-abc"}}},
		{"compose, neither count nor ids", `{"HostConfig":{"DeviceRequests":[{"Driver":"nvidia","Capabilities":[["gpu"]]}]}}`, GPURequest{All: true}},
		{"CDI", `{"HostConfig":{"DeviceRequests":[{"Driver":"cdi","DeviceIDs":["nvidia.com/gpu=0"]}]}}`, GPURequest{Devices: []string{"0"}}},
		{"nvidia runtime", `{"Env":["NVIDIA_VISIBLE_DEVICES=all"],"HostConfig":{"Runtime":"nvidia"}}`, GPURequest{All: true}},
		{"/dev/nvidia1", `{"HostConfig":{"Devices":[{"PathOnHost":"/dev/nvidia1"},{"PathOnHost":"/dev/nvidiactl"}]}}`, GPURequest{Devices: []string{"1"}}},
		{"none", `{"Env":["NVIDIA_VISIBLE_DEVICES=void"]}`, GPURequest{}},
	} {
		var req struct {
			Env        []string
			HostConfig json.RawMessage
		}
		_ = json.Unmarshal([]byte(tc.body), &req)
		w := newWorld(t)
		w.do(w.alice(), "POST", "/v1.41/containers/create", `{"Image":"x",`+strings.TrimPrefix(tc.body, "{"))
		var got GPURequest
		if len(w.gpus.asked) > 0 {
			got = w.gpus.asked[0]
			if got.MaxWait != DefaultMaxWait {
				t.Errorf("%s: max wait %s, want the gateway's default %s", tc.name, got.MaxWait, DefaultMaxWait)
			}
			got.MaxWait = 0
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: asked %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestKubeconfigForTheCaller(t *testing.T) {
	w := newWorld(t)
	if rec := w.do(w.alice(), "GET", KubeconfigPath, ""); rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "issues no kubeconfigs") {
		t.Errorf("without an issuer: %d %s", rec.Code, rec.Body)
	}
	w.s.Kubeconfigs = func(user string, admin bool, validity time.Duration) ([]byte, error) {
		return []byte(fmt.Sprintf("user=%s admin=%v validity=%s", user, admin, validity)), nil
	}
	if rec := w.do(w.alice(), "GET", KubeconfigPath+"?days=2", ""); rec.Code != http.StatusOK || rec.Body.String() != "user=alice admin=false validity=48h0m0s" {
		t.Errorf("alice's: %d %s", rec.Code, rec.Body)
	}
	root := Caller{UID: 0, Name: "root", Admin: true}
	if rec := w.do(root, "GET", KubeconfigPath, ""); rec.Body.String() != "user=root admin=true validity=168h0m0s" {
		t.Errorf("an admin's: %d %s", rec.Code, rec.Body)
	}
	for _, q := range []string{"?days=0", "?days=31", "?days=x", "?user=bob&days=1000"} {
		if rec := w.do(w.alice(), "GET", KubeconfigPath+q, ""); rec.Code != http.StatusBadRequest {
			t.Errorf("%s: %d %s", q, rec.Code, rec.Body)
		}
	}
	if rec := w.do(w.alice(), "GET", KubeconfigPath+"?user=bob", ""); rec.Body.String() != "user=alice admin=false validity=168h0m0s" {
		t.Errorf("asking for bob's: %d %s", rec.Code, rec.Body)
	}
	if rec := w.do(w.alice(), "GET", "/v1.41"+KubeconfigPath, ""); rec.Code < 400 {
		t.Errorf("a versioned kubeconfig path: %d", rec.Code)
	}
}

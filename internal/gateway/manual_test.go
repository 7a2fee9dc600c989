package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/audit"
)

// makingEngine is an engine that keeps the containers it is asked to make (slowly, so that
// racing creates overlap) and lists them; anything else goes to the fake engine.
type makingEngine struct {
	*fakeEngine
	mu    sync.Mutex
	made  []map[string]string
	names []string
}

func (m *makingEngine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch p := strings.TrimPrefix(r.URL.Path, "/v1.41"); p {
	case "/containers/create":
		var body struct{ Labels map[string]string }
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &body)
		time.Sleep(50 * time.Millisecond)
		m.mu.Lock()
		m.made = append(m.made, body.Labels)
		m.names = append(m.names, r.URL.Query().Get("name"))
		m.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, `{"Id":"new","Warnings":[]}`)
	case "/containers/json":
		m.mu.Lock()
		var list []map[string]any
		for i, l := range m.made {
			list = append(list, map[string]any{"Id": fmt.Sprint("made-", i), "Names": []string{"/" + m.names[i]}, "Labels": l})
		}
		m.mu.Unlock()
		_ = json.NewEncoder(w).Encode(list)
	default:
		m.fakeEngine.ServeHTTP(w, r)
	}
}

func newMakingWorld(t *testing.T) (*world, *makingEngine) {
	t.Helper()
	w := newWorld(t)
	m := &makingEngine{fakeEngine: w.engine}
	w.s.Dial = serveEngine(t, t.TempDir(), m)
	w.s.up = newUpstream(w.s.Dial)
	return w, m
}

func (m *makingEngine) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.made)
}

// TestCreateNamingOwnAllocationGetsItsDevices: a create that names the caller's own
// allocation by label gets exactly its devices, labelled with it, and no new allocation;
// a GPU request it meets (none, all, its number) is taken, one it does not is refused.
func TestCreateNamingOwnAllocationGetsItsDevices(t *testing.T) {
	w, m := newMakingWorld(t)
	for i, gpus := range []string{``, `,"HostConfig":{"DeviceRequests":[{"Count":1,"Capabilities":[["gpu"]]}]}`,
		`,"HostConfig":{"DeviceRequests":[{"Count":-1,"Capabilities":[["gpu"]]}]}`} {
		rec := w.do(w.alice(), "POST", fmt.Sprintf("/v1.41/containers/create?name=own-%d", i), `{"Image":"x","Labels":{"gpuwarden.io/allocation":"alice-1"}`+gpus+`}`)
		if rec.Code != http.StatusCreated {
			t.Fatalf("create %d naming alice-1: %d %s", i, rec.Code, rec.Body)
		}
		m.mu.Lock()
		l := m.made[len(m.made)-1]
		m.mu.Unlock()
		if l[gpuwardenv1alpha1.LabelAllocation] != "alice-1" || l[gpuwardenv1alpha1.LabelUser] != "alice" {
			t.Errorf("labels made: %v", l)
		}
		m.mu.Lock()
		m.made = nil // used up: the next create may name it again
		m.names = nil
		m.mu.Unlock()
	}
	if len(w.gpus.asked) != 0 {
		t.Errorf("a create naming an allocation asked for a new one: %+v", w.gpus.asked)
	}
	for _, bad := range []struct{ gpus, want string }{
		{`"DeviceRequests":[{"Count":2,"Capabilities":[["gpu"]]}]`, "holds 1 GPU(s) and the create asks for 2"},
		{`"DeviceRequests":[{"DeviceIDs":["0"],"Capabilities":[["gpu"]]}]`, "are the allocation's: leave out --gpus"},
		{`"DeviceRequests":[{"DeviceIDs":["1g.10gb"],"Capabilities":[["gpu"]]}]`, "are the allocation's: leave out --gpus"},
	} {
		rec := w.do(w.alice(), "POST", "/v1.41/containers/create", `{"Image":"x","Labels":{"gpuwarden.io/allocation":"alice-1"},"HostConfig":{`+bad.gpus+`}}`)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), bad.want) {
			t.Errorf("create naming alice-1 with %s: %d %s; want 400 %q", bad.gpus, rec.Code, rec.Body, bad.want)
		}
	}
	if n := m.count(); n != 0 {
		t.Errorf("refused creates reached the engine: %d made", n)
	}
}

// TestCreateNamingOwnAllocationForwardsTheDevices: what reaches the engine binds the
// allocation's devices in every form and carries its label.
func TestCreateNamingOwnAllocationForwardsTheDevices(t *testing.T) {
	w := newWorld(t)
	rec := w.do(w.alice(), "POST", "/v1.41/containers/create?name=train", `{"Image":"x","Labels":{"gpuwarden.io/allocation":"alice-1"}}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	body := w.engine.lastBody()
	if l := body["Labels"].(map[string]any); l[gpuwardenv1alpha1.LabelAllocation] != "alice-1" || l[gpuwardenv1alpha1.LabelUser] != "alice" {
		t.Errorf("labels forwarded: %v", l)
	}
	dr := body["HostConfig"].(map[string]any)["DeviceRequests"].([]any)
	if len(dr) != 1 || fmt.Sprint(dr[0].(map[string]any)["DeviceIDs"]) != "[GPU-3]" {
		t.Errorf("device requests forwarded: %v", dr)
	}
	if !strings.Contains(fmt.Sprint(body["Env"]), "NVIDIA_VISIBLE_DEVICES=GPU-3") {
		t.Errorf("env forwarded: %v", body["Env"])
	}
	// The engine refused the create: the allocation stays its user's (it is not the gateway's to give back).
	if len(w.gpus.released) != 0 {
		t.Errorf("released %v", w.gpus.released)
	}
}

// TestAnotherUsersAllocationIsAnsweredAsMissing: bob naming alice's allocation — plainly,
// with her owner label, or beside a GPU request — gets word for word the answer a name that
// does not exist gets, reaches no engine, and leaves no record he could read.
func TestAnotherUsersAllocationIsAnsweredAsMissing(t *testing.T) {
	w, m := newMakingWorld(t)
	bob := Caller{UID: 1001, Name: "bob", Home: "/home/bob"}
	missing := w.do(bob, "POST", "/v1.41/containers/create", `{"Image":"x","Labels":{"gpuwarden.io/allocation":"nosuch-1"}}`)
	if missing.Code != http.StatusForbidden || !strings.Contains(missing.Body.String(), "No such GPU allocation: nosuch-1") {
		t.Fatalf("a name that does not exist: %d %s", missing.Code, missing.Body)
	}
	for _, body := range []string{
		`{"Image":"x","Labels":{"gpuwarden.io/allocation":"alice-1"}}`,
		`{"Image":"x","Labels":{"gpuwarden.io/user":"alice","gpuwarden.io/allocation":"alice-1"}}`,
		`{"Image":"x","Labels":{"gpuwarden.io/allocation":"bob-9","gpuwarden.io/allocation":"alice-1"},"HostConfig":{"DeviceRequests":[{"Count":1,"Capabilities":[["gpu"]]}]}}`,
	} {
		rec := w.do(bob, "POST", "/v1.41/containers/create", body)
		if rec.Code != missing.Code || strings.ReplaceAll(rec.Body.String(), "alice-1", "X") != strings.ReplaceAll(missing.Body.String(), "nosuch-1", "X") {
			t.Errorf("bob naming alice-1 (%s): %d %s; want what a missing one gets: %d %s", body, rec.Code, rec.Body, missing.Code, missing.Body)
		}
	}
	if n := m.count(); n != 0 || len(w.gpus.asked) != 0 {
		t.Errorf("bob's creates made %d containers and asked for %d allocations", n, len(w.gpus.asked))
	}
	w.gpus.mu.Lock()
	used := w.gpus.used
	w.gpus.mu.Unlock()
	for _, u := range used {
		if !strings.HasPrefix(u, "bob/") {
			t.Errorf("an allocation was asked for as %s", u)
		}
	}
	if recs := w.audit.Of(audit.TypeAuthDenied); len(recs) != 0 {
		t.Errorf("records bob could read tell alice's allocation from a missing one: %+v", recs)
	}
}

// TestRacingCreatesGetAnAllocationOnce: two creates raced onto one allocation make one
// container; the other is told the allocation is used; so is a later one.
func TestRacingCreatesGetAnAllocationOnce(t *testing.T) {
	w, m := newMakingWorld(t)
	codes := make(chan string, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := w.do(w.alice(), "POST", fmt.Sprintf("/v1.41/containers/create?name=race-%d", i), `{"Image":"x","Labels":{"gpuwarden.io/allocation":"alice-1"}}`)
			codes <- fmt.Sprintf("%d %s", rec.Code, rec.Body)
		}()
	}
	wg.Wait()
	close(codes)
	var made, refused int
	for c := range codes {
		switch {
		case strings.HasPrefix(c, "201"):
			made++
		case strings.HasPrefix(c, "403") && strings.Contains(c, "GPU allocation alice-1 is used by container race-") && strings.Contains(c, "an allocation is for one container"):
			refused++
		default:
			t.Errorf("a raced create answered %s", c)
		}
	}
	if made != 1 || refused != 1 || m.count() != 1 {
		t.Errorf("two raced creates: %d made, %d refused, %d containers; want one of each and one container", made, refused, m.count())
	}
	rec := w.do(w.alice(), "POST", "/v1.41/containers/create?name=later", `{"Image":"x","Labels":{"gpuwarden.io/allocation":"alice-1"}}`)
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "is used by container race-") {
		t.Errorf("a later create: %d %s", rec.Code, rec.Body)
	}
	if recs := w.audit.Of(audit.TypeAuthDenied); len(recs) != 0 {
		t.Errorf("a used allocation of her own recorded auth.denied for alice: %+v", recs)
	}
}

package gateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

// imageEngine is a fake engine that keeps images and their names the way the engine does.
type imageEngine struct {
	mu         sync.Mutex
	n          int
	images     map[string]*fakeImage // by ID
	containers []fakeImageContainer
	runtime    string
	queries    []string // the query of every build, commit and create
}

type fakeImage struct {
	tags, digests []string
}

type fakeImageContainer struct {
	id, owner, image string
}

func newImageEngine() *imageEngine {
	return &imageEngine{images: map[string]*fakeImage{}, runtime: "runc"}
}

func (e *imageEngine) newID() string {
	e.n++
	return fmt.Sprintf("sha256:%064d", e.n)
}

// resolve finds an image by name or ID prefix, as the engine does.
func (e *imageEngine) resolve(ref string) (string, *fakeImage) {
	if n, ok := normalName(ref); ok {
		for id, im := range e.images {
			for _, t := range im.tags {
				if t == n {
					return id, im
				}
			}
		}
	}
	for id, im := range e.images {
		if strings.HasPrefix(id, ref) || strings.HasPrefix(strings.TrimPrefix(id, "sha256:"), ref) {
			return id, im
		}
	}
	return "", nil
}

// name points name at id, taking it from any other image.
func (e *imageEngine) name(id, name string) {
	for _, im := range e.images {
		for i, t := range im.tags {
			if t == name {
				im.tags = append(im.tags[:i], im.tags[i+1:]...)
				break
			}
		}
	}
	e.images[id].tags = append(e.images[id].tags, name)
}

func (e *imageEngine) add(name string, digest bool) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	id := e.newID()
	e.images[id] = &fakeImage{}
	if digest {
		e.images[id].digests = []string{repoOf(name) + "@sha256:" + strings.Repeat("d", 64)}
	}
	e.name(id, name)
	return id
}

func (e *imageEngine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, _ = io.Copy(io.Discard, r.Body)
	p := strings.TrimPrefix(r.URL.Path, "/v1.41")
	q := r.URL.Query()
	notFound := func(what string) { http.Error(w, `{"message":"No such image: `+what+`"}`, http.StatusNotFound) }
	switch {
	case p == "/info":
		_ = json.NewEncoder(w).Encode(map[string]string{"DefaultRuntime": e.runtime})
	case p == "/containers/json":
		var list []map[string]any
		for _, c := range e.containers {
			img := c.image
			if id, _ := e.resolve(c.image); id == "" {
				img = "sha256:" + strings.Repeat("f", 64) // the name moved: the engine lists the ID
			}
			list = append(list, map[string]any{"Id": c.id, "Names": []string{"/" + c.id}, "Image": img,
				"Labels": map[string]string{gpuwardenv1alpha1.LabelUser: c.owner}})
		}
		_ = json.NewEncoder(w).Encode(list)
	case strings.HasPrefix(p, "/containers/") && strings.HasSuffix(p, "/json"):
		id := strings.Split(p, "/")[2]
		for _, c := range e.containers {
			if c.id == id {
				_ = json.NewEncoder(w).Encode(map[string]any{"Id": c.id, "Name": "/" + c.id,
					"Config": map[string]any{"Image": c.image, "Labels": map[string]string{gpuwardenv1alpha1.LabelUser: c.owner}}})
				return
			}
		}
		http.Error(w, `{"message":"No such container"}`, http.StatusNotFound)
	case strings.HasPrefix(p, "/images/") && strings.HasSuffix(p, "/json") && r.Method == http.MethodGet:
		ref := strings.TrimSuffix(strings.TrimPrefix(p, "/images/"), "/json")
		id, im := e.resolve(ref)
		if im == nil {
			notFound(ref)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"Id": id, "RepoTags": im.tags, "RepoDigests": im.digests})
	case strings.HasSuffix(p, "/get") && r.Method == http.MethodGet:
		fmt.Fprint(w, "TAR")
	case strings.HasSuffix(p, "/tag") && r.Method == http.MethodPost:
		id, im := e.resolve(strings.TrimSuffix(strings.TrimPrefix(p, "/images/"), "/tag"))
		if im == nil {
			notFound(p)
			return
		}
		n, _ := normalName(joinRef(q.Get("repo"), q.Get("tag")))
		e.name(id, n)
		w.WriteHeader(http.StatusCreated)
	case strings.HasSuffix(p, "/push"):
		fmt.Fprint(w, `{"status":"pushed"}`)
	case strings.HasPrefix(p, "/images/") && r.Method == http.MethodDelete:
		ref := strings.TrimPrefix(p, "/images/")
		id, im := e.resolve(ref)
		if im == nil {
			notFound(ref)
			return
		}
		if n, ok := normalName(ref); ok && len(im.tags) > 1 {
			for i, t := range im.tags {
				if t == n {
					im.tags = append(im.tags[:i], im.tags[i+1:]...)
				}
			}
			fmt.Fprintf(w, `[{"Untagged":%q}]`, n)
			return
		}
		delete(e.images, id)
		fmt.Fprintf(w, `[{"Deleted":%q}]`, id)
	case p == "/images/create":
		e.queries = append(e.queries, r.URL.RawQuery)
		id := e.newID()
		e.images[id] = &fakeImage{}
		if q.Get("fromSrc") != "" {
			if repo := q.Get("repo"); repo != "" {
				n, _ := normalName(joinRef(repo, q.Get("tag")))
				e.name(id, n)
			}
			fmt.Fprintf(w, "{\"status\":%q}\r\n", id)
			return
		}
		n, _ := normalName(joinRef(q.Get("fromImage"), q.Get("tag")))
		e.images[id].digests = []string{repoOf(n) + "@sha256:" + strings.Repeat("e", 64)}
		e.name(id, n)
		fmt.Fprint(w, "{\"status\":\"Pulling\"}\r\n{\"status\":\"Downloaded newer image\"}\r\n")
	case p == "/build":
		e.queries = append(e.queries, r.URL.RawQuery)
		id := e.newID()
		e.images[id] = &fakeImage{}
		for _, t := range q["t"] {
			n, _ := normalName(t)
			e.name(id, n)
		}
		fmt.Fprintf(w, "{\"stream\":\"Step 1/1\"}\r\n{\"aux\":{\"ID\":%q}}\r\n{\"stream\":\"Successfully built\"}\r\n", id)
	case p == "/commit":
		e.queries = append(e.queries, r.URL.RawQuery)
		id := e.newID()
		e.images[id] = &fakeImage{}
		if repo := q.Get("repo"); repo != "" {
			n, _ := normalName(joinRef(repo, q.Get("tag")))
			e.name(id, n)
		}
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"Id":%q}`, id)
	default:
		fmt.Fprint(w, `{}`)
	}
}

type imageWorld struct {
	s      *Server
	engine *imageEngine
	store  string
}

func newImageWorld(t *testing.T) *imageWorld {
	t.Helper()
	dir := t.TempDir()
	e := newImageEngine()
	w := &imageWorld{engine: e, store: filepath.Join(dir, "data", "gateway-images.json")}
	w.s = &Server{Dial: serveEngine(t, dir, e),
		AdminGroup: DefaultAdminGroup, Audit: &testutil.AuditRecorder{}, ImageOwners: w.store}
	w.s.up = newUpstream(w.s.Dial)
	return w
}

var (
	imgAlice = Caller{UID: 1000, Name: "alice", Home: "/home/alice"}
	imgBob   = Caller{UID: 1001, Name: "bob", Home: "/home/bob"}
	imgAdmin = Caller{UID: 0, Name: "root", Admin: true}
)

func (w *imageWorld) do(who Caller, method, target string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(""))
	r = r.WithContext(context.WithValue(r.Context(), callerKey{}, who))
	rec := httptest.NewRecorder()
	w.s.ServeHTTP(rec, r)
	return rec
}

func (w *imageWorld) expect(t *testing.T, who Caller, method, target string, code int, says string) {
	t.Helper()
	w.expectWith(t, who, "", method, target, code, says)
}

// expectWith sends registry credentials (X-Registry-Auth) too.
func (w *imageWorld) expectWith(t *testing.T, who Caller, auth, method, target string, code int, says string) {
	t.Helper()
	r := httptest.NewRequest(method, target, strings.NewReader(""))
	if auth != "" {
		r.Header.Set("X-Registry-Auth", auth)
	}
	r = r.WithContext(context.WithValue(r.Context(), callerKey{}, who))
	rec := httptest.NewRecorder()
	w.s.ServeHTTP(rec, r)
	if rec.Code != code || !strings.Contains(rec.Body.String(), says) {
		t.Errorf("%s %s %s: %d %s; want %d and %q", who.Name, method, target, rec.Code, strings.TrimSpace(rec.Body.String()), code, says)
	}
}

func TestNormalName(t *testing.T) {
	for in, want := range map[string]string{
		"busybox": "busybox:latest", "busybox:1": "busybox:1", "library/busybox": "busybox:latest",
		"docker.io/library/busybox:2": "busybox:2", "index.docker.io/alice/x": "alice/x:latest",
		"alice/x:1": "alice/x:1", "localhost:5000/x": "localhost:5000/x:latest", "reg.example.org/a/b:c": "reg.example.org/a/b:c",
		"gpuwarden-test/busybox:latest": "gpuwarden-test/busybox:latest",
	} {
		if got, ok := normalName(in); !ok || got != want {
			t.Errorf("normalName(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "sha256:abc", "busybox@sha256:" + strings.Repeat("a", 64), strings.Repeat("a", 64), "x/Alice", "a b", "x:-1"} {
		if got, ok := normalName(in); ok {
			t.Errorf("normalName(%q) = %q, want not a tag reference", in, got)
		}
	}
	if got := joinRef("alice/x:1", "2"); got != "alice/x:2" {
		t.Errorf("joinRef = %q", got)
	}
	if got := joinRef("localhost:5000/x", ""); got != "localhost:5000/x" || hasTag(got) {
		t.Errorf("joinRef without a tag = %q (hasTag %v)", got, hasTag(got))
	}
}

// Each image verb: bob on alice's names refused, alice's own working, shared names
// read-only, and the record survives a restart of the gateway.
func TestImageOwnership(t *testing.T) {
	w := newImageWorld(t)
	shared := w.engine.add("busybox:latest", true)
	w.engine.add("lab/base:1", false) // built by the admin here: no registry digest

	// alice names a shared image: hers from now on.
	w.expect(t, imgAlice, "POST", "/v1.41/images/busybox/tag?repo=alice/bb&tag=1", http.StatusCreated, "")
	// bob may not tag onto, remove, push, save, retag, pull or import onto her name.
	w.expect(t, imgBob, "POST", "/v1.41/images/busybox/tag?repo=alice/bb&tag=1", http.StatusForbidden, "belongs to alice")
	w.expect(t, imgBob, "DELETE", "/v1.41/images/alice/bb:1", http.StatusForbidden, "belongs to alice")
	w.expect(t, imgBob, "POST", "/v1.41/images/alice/bb/push?tag=1", http.StatusForbidden, "belongs to alice")
	w.expect(t, imgBob, "POST", "/v1.41/images/create?fromImage=alice/bb&tag=1", http.StatusForbidden, "belongs to alice")
	w.expect(t, imgBob, "POST", "/v1.41/images/create?fromSrc=-&repo=alice/bb&tag=1", http.StatusForbidden, "belongs to alice")
	w.expect(t, imgBob, "POST", "/v1.41/build?t=alice/bb:1", http.StatusForbidden, "belongs to alice")
	// Saving: alice's tag points at the shared busybox, so it may be saved; her own build may not.
	w.expect(t, imgAlice, "POST", "/v1.41/build?t=alice/model:1", http.StatusOK, "Successfully built")
	w.expect(t, imgBob, "GET", "/v1.41/images/alice/model:1/get", http.StatusForbidden, "belongs to alice")
	w.expect(t, imgBob, "GET", "/v1.41/images/get?names=busybox&names=alice/model:1", http.StatusForbidden, "belongs to alice")
	w.expect(t, imgBob, "POST", "/v1.41/images/alice/model:1/tag?repo=bob/stolen", http.StatusForbidden, "belongs to alice")
	w.expect(t, imgAlice, "GET", "/v1.41/images/alice/model:1/get", http.StatusOK, "TAR")
	w.expect(t, imgBob, "GET", "/v1.41/images/busybox/get", http.StatusOK, "TAR")

	// Shared names: read-only for users.
	w.expect(t, imgBob, "POST", "/v1.41/images/busybox/tag?repo=lab/base&tag=1", http.StatusForbidden, "is shared")
	w.expect(t, imgBob, "DELETE", "/v1.41/images/busybox", http.StatusForbidden, "is shared")
	w.expect(t, imgBob, "POST", "/v1.41/images/busybox/push?tag=latest", http.StatusForbidden, "is shared")
	w.expect(t, imgBob, "POST", "/v1.41/build?t=busybox", http.StatusForbidden, "is shared")
	w.expect(t, imgBob, "POST", "/v1.41/images/create?fromImage=lab/base&tag=1", http.StatusForbidden, "is shared")
	// A shared name that came from its registry may be refreshed from it, and stays shared.
	w.expect(t, imgBob, "POST", "/v1.41/images/create?fromImage=busybox&tag=latest", http.StatusOK, "Downloaded")
	w.expect(t, imgBob, "DELETE", "/v1.41/images/busybox", http.StatusForbidden, "is shared")
	_ = shared

	// alice's own verbs.
	w.expect(t, imgAlice, "POST", "/v1.41/images/alice/model:1/tag?repo=alice/model&tag=2", http.StatusCreated, "")
	w.expect(t, imgAlice, "POST", "/v1.41/images/alice/model/push?tag=2", http.StatusOK, "pushed")
	w.expect(t, imgAlice, "POST", "/v1.41/build?t=alice/model:1", http.StatusOK, "Successfully built") // rebuild her own name
	w.expect(t, imgAlice, "POST", "/v1.41/images/create?fromSrc=-&repo=alice/rootfs&tag=1", http.StatusOK, "sha256:")
	// A pull with her credentials is hers (a private registry's image); a public one is shared.
	creds := base64.URLEncoding.EncodeToString([]byte(`{"username":"alice","password":"s3cret"}`))
	w.expectWith(t, imgAlice, creds, "POST", "/v1.41/images/create?fromImage=alice/pulled&tag=1", http.StatusOK, "Downloaded")
	w.expectWith(t, imgAlice, "e30=", "POST", "/v1.41/images/create?fromImage=python&tag=3.12", http.StatusOK, "Downloaded")
	w.expect(t, imgBob, "GET", "/v1.41/images/python:3.12/get", http.StatusOK, "TAR")
	w.expect(t, imgBob, "DELETE", "/v1.41/images/python:3.12", http.StatusForbidden, "is shared")
	w.expect(t, imgBob, "GET", "/v1.41/images/alice/pulled:1/get", http.StatusForbidden, "belongs to alice")
	w.expect(t, imgAlice, "DELETE", "/v1.41/images/alice/model:2", http.StatusOK, "")
	w.expect(t, imgBob, "POST", "/v1.41/images/alice/pulled:1/tag?repo=alice/pulled&tag=1", http.StatusForbidden, "belongs to alice")

	// Loads are admins'; pulling every tag, pushing every tag and URL imports too.
	w.expect(t, imgAlice, "POST", "/v1.41/images/load", http.StatusForbidden, "docker load is for admins")
	w.expect(t, imgAlice, "POST", "/v1.41/images/create?fromImage=alice/pulled", http.StatusForbidden, "every tag")
	w.expect(t, imgAlice, "POST", "/v1.41/images/alice/model/push", http.StatusForbidden, "every tag")
	w.expect(t, imgAlice, "POST", "/v1.41/images/create?fromSrc=http://127.0.0.1/x.tar&repo=alice/y", http.StatusForbidden, "import from a URL")
	w.expect(t, imgAlice, "DELETE", "/v1.41/images/alice/rootfs:1?force=1", http.StatusForbidden, "by force")

	// Removing by ID needs every name of the image to be the caller's.
	id, _ := w.engine.resolve("alice/rootfs:1")
	w.expect(t, imgBob, "DELETE", "/v1.41/images/"+id, http.StatusForbidden, "belongs to alice")
	w.expect(t, imgAlice, "DELETE", "/v1.41/images/"+id, http.StatusOK, "Deleted")

	// The record is durable: a new gateway on the same file knows alice's names.
	w.s = &Server{Dial: w.s.Dial, AdminGroup: DefaultAdminGroup, Audit: &testutil.AuditRecorder{}, ImageOwners: w.store}
	w.s.up = newUpstream(w.s.Dial)
	w.expect(t, imgBob, "DELETE", "/v1.41/images/alice/model:1", http.StatusForbidden, "belongs to alice")
	if fi, err := os.Stat(w.store); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the record: %v %v", fi, err)
	}
	// An admin changes any name at the engine; the stale record gives the name back to the admin.
	w.expect(t, imgAdmin, "POST", "/v1.41/images/busybox/tag?repo=alice/model&tag=1", http.StatusCreated, "")
	w.expect(t, imgAlice, "DELETE", "/v1.41/images/alice/model:1", http.StatusForbidden, "is shared")
}

// A name another user's containers were made from is theirs while they exist, even when
// its maker removed it.
func TestImageNamesInUse(t *testing.T) {
	w := newImageWorld(t)
	w.engine.add("busybox:latest", true)
	w.expect(t, imgAlice, "POST", "/v1.41/images/busybox/tag?repo=alice/tool&tag=1", http.StatusCreated, "")
	w.engine.containers = []fakeImageContainer{{id: "bob-job", owner: "bob", image: "alice/tool:1"}}
	w.expect(t, imgAlice, "POST", "/v1.41/build?t=alice/tool:1", http.StatusForbidden, "bob's container bob-job")
	w.expect(t, imgAlice, "DELETE", "/v1.41/images/alice/tool:1", http.StatusForbidden, "bob's container bob-job")
	// Gone from the engine (an admin removed it), the name is still bob's container's.
	w.expect(t, imgAdmin, "DELETE", "/v1.41/images/alice/tool:1", http.StatusOK, "")
	w.expect(t, imgAlice, "POST", "/v1.41/images/busybox/tag?repo=alice/tool&tag=1", http.StatusForbidden, "bob's container bob-job")
	// alice's own containers do not stop her.
	w.engine.containers = []fakeImageContainer{{id: "alice-job", owner: "alice", image: "alice/tool:1"}}
	w.expect(t, imgAlice, "POST", "/v1.41/images/busybox/tag?repo=alice/tool&tag=1", http.StatusCreated, "")
}

func TestCommitOwnContainer(t *testing.T) {
	w := newImageWorld(t)
	w.engine.add("busybox:latest", true)
	w.engine.containers = []fakeImageContainer{{id: "alice-nb", owner: "alice", image: "busybox"}, {id: "bob-job", owner: "bob", image: "busybox"}}
	w.expect(t, imgAlice, "POST", "/v1.41/commit?container=alice-nb&repo=alice/snap&tag=1", http.StatusCreated, `"Id"`)
	w.expect(t, imgAlice, "POST", "/v1.41/commit?container=bob-job&repo=alice/snap2", http.StatusForbidden, "belongs to bob")
	w.expect(t, imgBob, "POST", "/v1.41/commit?container=bob-job&repo=alice/snap&tag=1", http.StatusForbidden, "belongs to alice")
	w.expect(t, imgAlice, "POST", "/v1.41/commit?container=alice-nb&repo=busybox", http.StatusForbidden, "is shared")
	w.expect(t, imgAlice, "POST", "/v1.41/commit?container=alice-nb", http.StatusCreated, `"Id"`) // untagged: hers by ID
	w.engine.mu.Lock()
	last := w.engine.queries[len(w.engine.queries)-1]
	w.engine.mu.Unlock()
	if !strings.Contains(last, "container=full-alice-nb") && !strings.Contains(last, "container=alice-nb") {
		t.Errorf("commit reached the engine with %s", last)
	}
	var id string
	_ = json.Unmarshal(w.do(imgAlice, "POST", "/v1.41/commit?container=alice-nb").Body.Bytes(), &struct{ ID *string }{&id})
	w.expect(t, imgBob, "DELETE", "/v1.41/images/"+id, http.StatusForbidden, "belongs to alice")
	w.expect(t, imgBob, "GET", "/v1.41/images/"+id+"/get", http.StatusForbidden, "belongs to alice")
	w.expect(t, imgAlice, "DELETE", "/v1.41/images/"+id, http.StatusOK, "Deleted")
}

func TestBuildQueryChecks(t *testing.T) {
	w := newImageWorld(t)
	orig := resolveHost
	resolveHost = func(host string) ([]net.IP, error) {
		if ip := net.ParseIP(host); ip != nil {
			return []net.IP{ip}, nil
		}
		switch host {
		case "intranet.example":
			return []net.IP{net.ParseIP("10.1.2.3")}, nil
		case "metadata.example":
			return []net.IP{net.ParseIP("169.254.169.254")}, nil
		}
		return []net.IP{net.ParseIP("93.184.216.34")}, nil
	}
	t.Cleanup(func() { resolveHost = orig })
	for target, says := range map[string]string{
		"/v1.41/build?remote=http://127.0.0.1:9402/metrics":             "loopback, link-local or private",
		"/v1.41/build?remote=http://[::1]/x":                            "loopback, link-local or private",
		"/v1.41/build?remote=https://intranet.example/ctx.tar":          "points at 10.1.2.3",
		"/v1.41/build?remote=http://metadata.example/latest":            "points at 169.254.169.254",
		"/v1.41/build?remote=git://10.0.0.1/repo.git":                   "points at 10.0.0.1",
		"/v1.41/build?remote=git@github.com:alice/x.git":                "over ssh",
		"/v1.41/build?remote=https://example.org/ctx.tar":               "follows redirects",
		"/v1.41/build?remote=client-session":                            "session",
		"/v1.41/build?version=2":                                        "BuildKit",
		"/v1.41/build?networkmode=host":                                 "a build on network",
		"/v1.41/build?networkmode=bobnet":                               "does not belong to alice",
		"/v1.41/build?cgroupparent=/":                                   "cgroup parent",
		`/v1.41/build?outputs=[{"Type":"local","Attrs":{"dest":"/"}}]`:  "outputs",
		`/v1.41/build?ulimits=[{"Name":"memlock","Hard":-1,"Soft":-1}]`: "ulimits",
		"/v1.41/build?pull=1":                                           "--pull",
		"/v1.41/build?t=x/Alice":                                        "not an image name",
	} {
		u, _ := url.Parse(target)
		u.RawQuery = u.Query().Encode()
		w.expect(t, imgAlice, "POST", u.String(), http.StatusForbidden, says)
	}
	// What the classic builder of the Debian CLI sends: its session is dropped, the owner label set.
	w.expect(t, imgAlice, "POST", `/v1.41/build?t=alice/ok:1&session=abc&ulimits=null&outputs=&labels=`+url.QueryEscape(`{"a":"b","gpuwarden.io/user":"bob"}`), http.StatusOK, "Successfully built")
	w.engine.mu.Lock()
	q, _ := url.ParseQuery(w.engine.queries[len(w.engine.queries)-1])
	w.engine.mu.Unlock()
	if q.Get("session") != "" || !strings.Contains(q.Get("labels"), `"gpuwarden.io/user":"alice"`) || !strings.Contains(q.Get("labels"), `"a":"b"`) {
		t.Errorf("the build reached the engine as %v", q)
	}
	// An engine whose default runtime is nvidia: builds refused for users, not for admins.
	w.engine.mu.Lock()
	w.engine.runtime = "nvidia"
	w.engine.mu.Unlock()
	w.expect(t, imgAlice, "POST", "/v1.41/build?t=alice/ok:2", http.StatusForbidden, `default-runtime`)
	w.expect(t, imgAdmin, "POST", "/v1.41/build?t=lab/x:2", http.StatusOK, "Successfully built")
	warned := make(chan string, 1)
	if err := (RuntimeCheck{Dial: w.s.Dial, Warn: func(m string) { warned <- m }}).Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-warned:
		if !strings.Contains(m, "/etc/docker/daemon.json") {
			t.Errorf("the warning: %s", m)
		}
	default:
		t.Error("no warning about the nvidia default runtime")
	}
}

// Two users building onto one new name at once: the second is refused while the first writes.
func TestImageNameReservation(t *testing.T) {
	st := openImageStore("")
	release, err := st.reserve("alice", "x:1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.reserve("bob", "x:1"); err == nil || !strings.Contains(err.Error(), "being written by alice") {
		t.Errorf("bob while alice writes: %v", err)
	}
	release()
	if _, err := st.reserve("bob", "x:1"); err != nil {
		t.Errorf("bob after alice: %v", err)
	}
}

func TestImageRoutes(t *testing.T) {
	for _, c := range []struct {
		method, path string
		want         kind
	}{
		{"GET", "/v1.41/images/json", pass},
		{"GET", "/v1.41/images/alice/x:1/json", pass},
		{"GET", "/v1.41/images/alice/x:1/history", pass},
		{"GET", "/v1.41/images/alice/x:1/get", onImage},
		{"GET", "/v1.41/images/get", onImage},
		{"POST", "/v1.41/images/alice/x:1/tag", onImage},
		{"POST", "/v1.41/images/alice/x/push", onImage},
		{"POST", "/v1.41/images/create", onImage},
		{"POST", "/v1.41/images/load", onImage},
		{"DELETE", "/v1.41/images/alice/x:1", onImage},
		{"POST", "/v1.41/images/prune", adminOnly},
		{"POST", "/v1.41/commit", commitImage},
		{"POST", "/v1.41/build", build},
	} {
		rt, why := classify(c.method, c.path)
		if why != "" || rt.kind != c.want {
			t.Errorf("%s %s: kind %d %q, want %d", c.method, c.path, rt.kind, why, c.want)
		}
	}
}

// An unreadable record is set aside: every name it held becomes shared (read-only for users).
func TestImageStoreUnreadable(t *testing.T) {
	p := filepath.Join(t.TempDir(), "gateway-images.json")
	if err := os.WriteFile(p, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	st := openImageStore(p)
	if o := st.owner("alice/x:1", "sha256:1"); o != "" {
		t.Errorf("owner from an unreadable record: %q", o)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Errorf("the unreadable record was not set aside: %v", err)
	}
	st.record("alice", "sha256:1", false, "alice/x:1")
	if o := openImageStore(p).owner("alice/x:1", "sha256:1"); o != "alice" {
		t.Errorf("a new record read back: %q", o)
	}
}

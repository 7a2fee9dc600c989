package gateway

// Images and builds for callers who are not admins (admins are forwarded as they ask).
//
// Who owns an image name (a repository:tag) is recorded by the gateway in a small JSON file
// (Server.ImageOwners) when a user makes the name through it: build -t, tag, commit,
// import, or a pull of a name that did not exist. A record holds only while the name still
// points to the image recorded with it, so a name changed outside the gateway (by an admin
// at the engine) falls back to shared. A name that exists without a valid record is shared:
// the admin's, read-only for users. A name another user's containers were made from counts
// as theirs: changing it would change what their next `docker compose up` runs.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	ctrl "sigs.k8s.io/controller-runtime"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/labels"
)

// The image kinds of request (routes.go's images section).
const (
	onImage     kind = iota + 100 // tag, push, pull, import, load, remove, save: names checked
	commitImage                   // POST /commit of one of the caller's containers
)

// DefaultImageOwners is where `gpuwarden controller` records who made which image name
// (`gpuwarden server` keeps it in its data dir).
const DefaultImageOwners = "/var/lib/gpuwarden/gateway-images.json"

// GPUDefaultRuntimeFix says why an engine whose default runtime is nvidia is a problem and
// how to fix it.
const GPUDefaultRuntimeFix = `the Docker engine's default runtime is "nvidia": every container it starts, build steps included, ` +
	`gets the GPUs its image asks for (ENV NVIDIA_VISIBLE_DEVICES=all) without an allocation; ` +
	`set "default-runtime": "runc" in /etc/docker/daemon.json (keep "nvidia" under "runtimes"; docker run --gpus ` +
	`works without it) and restart docker`

// imageRecord is who made a name, and the image it made it point to.
type imageRecord struct {
	Owner string `json:"owner"`
	ID    string `json:"id"`
}

// imageStore is the durable record of who made which image name (and which untagged image).
type imageStore struct {
	path string
	mu   sync.Mutex
	data struct {
		Names map[string]imageRecord `json:"names"`
		IDs   map[string]string      `json:"ids"`
	}
	// busy are the names being written through the gateway now, and by whom.
	busy map[string]string
}

// imageState is the Server's store, opened on first use.
type imageState struct {
	once  sync.Once
	store *imageStore
}

func (s *Server) imageStore() *imageStore {
	s.imgs.once.Do(func() {
		s.imgs.store = openImageStore(s.ImageOwners)
	})
	return s.imgs.store
}

// openImageStore reads the store; an unreadable one is set aside (and its names become
// shared: read-only for users, which fails closed).
func openImageStore(path string) *imageStore {
	st := &imageStore{path: path, busy: map[string]string{}}
	b, err := os.ReadFile(path)
	if path == "" {
		err = os.ErrNotExist // kept in memory only
	}
	if err == nil {
		err = json.Unmarshal(b, &st.data)
		if err != nil {
			aside := fmt.Sprintf("%s.unreadable-%d", path, time.Now().Unix())
			_ = os.Rename(path, aside)
			ctrl.Log.WithName("gateway").Error(err, "The gateway's record of image owners is unreadable; set aside, users' image names are shared (read-only) until made again", "file", aside)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		ctrl.Log.WithName("gateway").Error(err, "Reading the gateway's record of image owners", "file", path)
	}
	if st.data.Names == nil {
		st.data.Names = map[string]imageRecord{}
	}
	if st.data.IDs == nil {
		st.data.IDs = map[string]string{}
	}
	return st
}

// saveLocked writes the store atomically (a temporary file renamed over it). Called with mu held.
func (st *imageStore) saveLocked() {
	if st.path == "" {
		return
	}
	b, err := json.MarshalIndent(&st.data, "", " ")
	if err == nil {
		err = writeFileAtomic(st.path, b)
	}
	if err != nil {
		ctrl.Log.WithName("gateway").Error(err, "Recording image owners", "file", st.path)
	}
}

func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// owner is who made name point to image id; "" when nobody did through the gateway (or the
// name has moved since).
func (st *imageStore) owner(name, id string) string {
	st.mu.Lock()
	defer st.mu.Unlock()
	if rec, ok := st.data.Names[name]; ok && rec.ID == id {
		return rec.Owner
	}
	return ""
}

func (st *imageStore) idOwner(id string) string {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.data.IDs[id]
}

// record says user made name point to id (and made id, when made is true).
func (st *imageStore) record(user, id string, made bool, names ...string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, n := range names {
		st.data.Names[n] = imageRecord{Owner: user, ID: id}
	}
	if made {
		st.data.IDs[id] = user
	}
	st.saveLocked()
}

// forget drops the records of removed names and images.
func (st *imageStore) forget(names []string, ids ...string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, n := range names {
		delete(st.data.Names, n)
	}
	for _, id := range ids {
		delete(st.data.IDs, id)
	}
	st.saveLocked()
}

// reserve marks names as being written by user until release; a name another user is
// writing now is refused.
func (st *imageStore) reserve(user string, names ...string) (release func(), err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, n := range names {
		if by, ok := st.busy[n]; ok && by != user {
			return nil, &refusal{status: http.StatusConflict, owner: by, msg: fmt.Sprintf("the image name %s is being written by %s right now; use a name of your own (%s)", n, by, suggestName(user, n))}
		}
	}
	var mine []string
	for _, n := range names {
		if _, ok := st.busy[n]; !ok {
			st.busy[n] = user
			mine = append(mine, n)
		}
	}
	return func() {
		st.mu.Lock()
		defer st.mu.Unlock()
		for _, n := range mine {
			delete(st.busy, n)
		}
	}, nil
}

var (
	hex64       = regexp.MustCompile(`^[a-f0-9]{64}$`)
	hexPrefix   = regexp.MustCompile(`^(sha256:)?[a-f0-9]{1,64}$`)
	refChars    = regexp.MustCompile(`^[A-Za-z0-9._/:@+-]+$`)
	tagRE       = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	networkName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	pathRE      = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$`)
)

// normalName is a tag reference in the form the engine lists it (RepoTags): "busybox:latest",
// "alice/x:1", "localhost:5000/x:1"; ok is false for an image ID, a digest or what is not a
// valid reference.
func normalName(ref string) (string, bool) {
	if ref == "" || strings.Contains(ref, "@") || strings.HasPrefix(ref, "sha256:") || !refChars.MatchString(ref) {
		return "", false
	}
	name, tag := ref, "latest"
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		name, tag = ref[:i], ref[i+1:]
	}
	if !tagRE.MatchString(tag) || hex64.MatchString(name) {
		return "", false
	}
	domain, rest := "docker.io", name
	if i := strings.Index(name, "/"); i > 0 {
		first := name[:i]
		if strings.ContainsAny(first, ".:") || first == "localhost" || strings.ToLower(first) != first {
			domain, rest = first, name[i+1:]
		}
	}
	if domain == "index.docker.io" {
		domain = "docker.io"
	}
	if !pathRE.MatchString(rest) {
		return "", false
	}
	if domain != "docker.io" {
		return domain + "/" + rest + ":" + tag, true
	}
	if r, ok := strings.CutPrefix(rest, "library/"); ok && !strings.Contains(r, "/") {
		rest = r
	}
	return rest + ":" + tag, true
}

// targetName is the name an import or a commit makes (its repo and tag parameters; latest
// when no tag is given), "" when it names none.
func targetName(q url.Values) (string, error) {
	repo := q.Get("repo")
	if repo == "" {
		return "", nil
	}
	tag := q.Get("tag")
	if tag == "" && !hasTag(repo) {
		tag = "latest"
	}
	n, ok := normalName(joinRef(repo, tag))
	if !ok {
		return "", refused("%q is not an image name the gateway can check (want repository:tag, in lower case)", joinRef(repo, tag))
	}
	return n, nil
}

// repoOf is a normal name without its tag.
func repoOf(name string) string {
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		return name[:i]
	}
	return name
}

// joinRef is what the engine makes of a name and a separate tag (pull, push, import): the
// tag, when given, replaces one in the name.
func joinRef(name, tag string) string {
	if tag == "" {
		return name
	}
	if i := strings.Index(name, "@"); i >= 0 {
		name = name[:i]
	}
	name = repoOf(name)
	if strings.HasPrefix(tag, "sha256:") {
		return name + "@" + tag
	}
	return name + ":" + tag
}

// hasTag tells whether ref names a tag (rather than all tags of a repository).
func hasTag(ref string) bool {
	return strings.Contains(ref, "@") || strings.LastIndex(ref, ":") > strings.LastIndex(ref, "/")
}

// suggestName is a name of the user's own for what they wanted to call name.
func suggestName(user, name string) string {
	base := repoOf(name)
	if i := strings.LastIndex(base, "/"); i >= 0 {
		base = base[i+1:]
	}
	tag := strings.TrimPrefix(name, repoOf(name))
	if tag == "" {
		tag = ":latest"
	}
	return strings.ToLower(user) + "/" + base + tag
}

// imageInfo is what the gateway needs of an image.
type imageInfo struct {
	ID          string `json:"Id"`
	RepoTags    []string
	RepoDigests []string
	// Config.Labels are the labels the image gives its containers.
	Config struct{ Labels map[string]string }
}

// inspectImage asks the engine about an image; found is false when it has none by ref.
func (s *Server) inspectImage(ctx context.Context, version, ref string) (imageInfo, bool, error) {
	if !refChars.MatchString(ref) || strings.Contains(ref, "..") || strings.HasPrefix(ref, "/") {
		return imageInfo{}, false, refused("%q is not an image reference the gateway can check", ref)
	}
	var info imageInfo
	found, err := s.inspect(ctx, version+"/images/"+ref+"/json", "image "+ref, &info)
	return info, found, err
}

// tagged tells whether the image carries the normal name.
func (i imageInfo) tagged(name string) bool {
	for _, t := range i.RepoTags {
		if n, ok := normalName(t); ok && n == name {
			return true
		}
	}
	return false
}

// usedByOthers names another user's container made from the image name, if any.
func (s *Server) usedByOthers(ctx context.Context, version string, c Caller, name string) (owner, ctName string, err error) {
	resp, err := s.up.get(ctx, version+"/containers/json?all=1")
	if err != nil {
		return "", "", fmt.Errorf("the Docker engine behind the gateway is unreachable: %w", err)
	}
	var list []struct {
		ID      string `json:"Id"`
		Names   []string
		Image   string
		ImageID string
		Labels  map[string]string
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&list)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil {
		return "", "", fmt.Errorf("listing containers to see who uses image %s: engine answered %s", name, resp.Status)
	}
	for _, ct := range list {
		o, _ := labels.Owner(ct.Labels)
		if o == c.Name {
			continue
		}
		img := ct.Image
		if hexPrefix.MatchString(img) {
			// The name it was made from no longer points to its image: the engine lists the ID.
			if img, err = s.containerImage(ctx, version, ct.ID); err != nil {
				return "", "", err
			}
		}
		if n, ok := normalName(img); ok && n == name {
			cn := ct.ID
			if len(ct.Names) > 0 {
				cn = strings.TrimPrefix(ct.Names[0], "/")
			}
			if o == "" {
				o = "an admin"
			}
			return o, cn, nil
		}
	}
	return "", "", nil
}

// containerImage is the image name a container was made from ("" when it is gone); an
// answer that cannot be read is an error, so that a name in use is never taken for free.
func (s *Server) containerImage(ctx context.Context, version, id string) (string, error) {
	resp, err := s.up.get(ctx, version+"/containers/"+id+"/json")
	if err != nil {
		return "", fmt.Errorf("the Docker engine behind the gateway is unreachable: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return "", nil
	}
	var ct struct{ Config struct{ Image string } }
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("inspecting container %s to see which image name it uses: engine answered %s", id, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&ct); err != nil {
		return "", fmt.Errorf("inspecting container %s to see which image name it uses: %w", id, err)
	}
	return ct.Config.Image, nil
}

// nameState is what an image name is to the caller.
type nameState int

const (
	nameNew    nameState = iota // no image has it
	nameOwn                     // the caller made it
	nameShared                  // exists, made by nobody through the gateway: the admin's
	nameOthers                  // another user made it
)

// checkWrite says whether the caller may make name point elsewhere, or remove or push it
// (verb says which, for the message): only a new name or one of their own that no other
// user's container was made from. A pull may also refresh a shared name that came from
// its registry (what the registry serves under that name is what the admin trusted).
func (s *Server) checkWrite(ctx context.Context, c Caller, version, name, verb string) (nameState, imageInfo, error) {
	st := s.imageStore()
	info, found, err := s.inspectImage(ctx, version, name)
	if err != nil {
		return 0, info, err
	}
	state := nameNew
	owner := ""
	if found && info.tagged(name) {
		owner = st.owner(name, info.ID)
		switch owner {
		case c.Name:
			state = nameOwn
		case "":
			state = nameShared
		default:
			state = nameOthers
		}
	}
	switch {
	case state == nameOthers:
		return state, info, &refusal{status: http.StatusForbidden, owner: owner, msg: fmt.Sprintf(
			"the image name %s belongs to %s, so you may not %s it; use a name of your own (%s)", name, owner, verb, suggestName(c.Name, name))}
	case state == nameShared && !(verb == verbPull && fromRegistry(info, name)):
		return state, info, &refusal{status: http.StatusForbidden, msg: fmt.Sprintf(
			"the image %s is shared (an admin's, read-only for users), so you may not %s it; run it or build FROM it as it is, "+
				"or give it a name of your own (docker tag %s %s); an admin can change it", name, verb, name, suggestName(c.Name, name))}
	case verb == verbPush:
		return state, info, nil // a push changes nothing here
	}
	if owner, ct, err := s.usedByOthers(ctx, version, c, name); err != nil {
		return state, info, err
	} else if ct != "" {
		return state, info, &refusal{status: http.StatusForbidden, owner: owner, msg: fmt.Sprintf(
			"the image name %s is what %s's container %s was made from, so you may not %s it while that container exists; use a new name (%s)",
			name, owner, ct, verb, suggestName(c.Name, name))}
	}
	return state, info, nil
}

const (
	verbTag    = "tag onto"
	verbBuild  = "build onto"
	verbPull   = "pull onto"
	verbImport = "import onto"
	verbCommit = "commit onto"
	verbRemove = "remove"
	verbPush   = "push"
)

// fromRegistry tells whether the image name came from its registry (the image has a digest
// in the name's repository).
func fromRegistry(info imageInfo, name string) bool {
	repo := repoOf(name)
	for _, d := range info.RepoDigests {
		if i := strings.Index(d, "@"); i > 0 {
			if n, ok := normalName(d[:i]); ok && repoOf(n) == repo {
				return true
			}
		}
	}
	return false
}

// checkRead says whether the caller may save, run or push the image ref or tag it to a name
// of their own: it must be theirs or shared, not only another user's. It returns what the
// engine says of the image (nothing when it has none by ref).
func (s *Server) checkRead(ctx context.Context, c Caller, version, ref, verb string) (imageInfo, error) {
	st := s.imageStore()
	info, found, err := s.inspectImage(ctx, version, ref)
	if err != nil || !found {
		return imageInfo{}, err // the engine answers "No such image"
	}
	owner := st.idOwner(info.ID)
	if owner == c.Name {
		return info, nil
	}
	for _, t := range info.RepoTags {
		n, ok := normalName(t)
		if !ok {
			continue
		}
		switch o := st.owner(n, info.ID); o {
		case "", c.Name:
			return info, nil
		default:
			owner = o
		}
	}
	if owner == "" {
		return info, nil // untagged and made by nobody through the gateway: shared
	}
	return imageInfo{}, &refusal{status: http.StatusForbidden, owner: owner, msg: fmt.Sprintf(
		"the image %s belongs to %s, so you may not %s it; ask them to share it (docker save, or an admin's tag)", ref, owner, verb)}
}

// onImage serves tag, push, pull, import, load, remove and save for a user.
func (s *Server) onImage(w http.ResponseWriter, r *http.Request, c Caller, rt route) error {
	rest := strings.TrimPrefix(rt.rest, "/images/")
	verb := ""
	if i := strings.LastIndex(rest, "/"); i >= 0 {
		verb = rest[i+1:]
	}
	switch {
	case r.Method == http.MethodGet:
		return s.saveImages(w, r, c, rt, rest)
	case r.Method == http.MethodDelete:
		return s.removeImage(w, r, c, rt, rest)
	case rest == "load":
		return refused("docker load is for admins: an archive's names are applied before the gateway could check them. " +
			"Ask an admin to load it, or run `docker import` of a container's filesystem with a name of your own")
	case rest == "create":
		return s.createImage(w, r, c, rt)
	case verb == "tag":
		return s.tagImage(w, r, c, rt, strings.TrimSuffix(rest, "/tag"))
	case verb == "push":
		return s.pushImage(w, r, c, rt, strings.TrimSuffix(rest, "/push"))
	}
	return refused("%s %s is not an endpoint the gateway serves", r.Method, r.URL.Path)
}

func (s *Server) saveImages(w http.ResponseWriter, r *http.Request, c Caller, rt route, rest string) error {
	refs := r.URL.Query()["names"]
	if rest != "get" {
		refs = []string{strings.TrimSuffix(rest, "/get")}
	}
	for _, ref := range refs {
		if _, err := s.checkRead(r.Context(), c, rt.version, ref, "save"); err != nil {
			return err
		}
	}
	s.up.forward(w, r, r.URL.Path, r.URL.RawQuery, nil, 0) // never a raw stream
	return nil
}

func (s *Server) removeImage(w http.ResponseWriter, r *http.Request, c Caller, rt route, ref string) error {
	if isTrue(r.URL.Query().Get("force")) {
		return refused("removing an image by force is for admins (it removes names other users' containers were made from)")
	}
	st := s.imageStore()
	info, found, err := s.inspectImage(r.Context(), rt.version, ref)
	if err != nil {
		return err
	}
	if !found {
		s.up.forward(w, r, r.URL.Path, r.URL.RawQuery, nil, 0)
		return nil
	}
	var names []string
	for _, t := range info.RepoTags {
		if n, ok := normalName(t); ok {
			names = append(names, n)
		}
	}
	release, err := st.reserve(c.Name, names...)
	if err != nil {
		return err
	}
	defer release()
	names = nil
	if n, ok := normalName(ref); ok && info.tagged(n) {
		// One name removed: the image goes only when it was its last.
		if _, _, err := s.checkWrite(r.Context(), c, rt.version, n, verbRemove); err != nil {
			return err
		}
		names = []string{n}
	} else {
		// By ID or digest: the image and all its names go.
		for _, t := range info.RepoTags {
			n, ok := normalName(t)
			if !ok {
				return refused("the image %s has the name %s, which the gateway cannot check; an admin can remove it", ref, t)
			}
			if _, _, err := s.checkWrite(r.Context(), c, rt.version, n, verbRemove); err != nil {
				return err
			}
			names = append(names, n)
		}
		if len(info.RepoTags) == 0 {
			if o := st.idOwner(info.ID); o != c.Name {
				if o == "" {
					return refused("the untagged image %s is shared (an admin's), so you may not remove it; an admin can", ref)
				}
				return &refusal{status: http.StatusForbidden, owner: o, msg: fmt.Sprintf("the image %s belongs to %s, so you may not remove it", ref, o)}
			}
		}
	}
	s.forwardWatch(w, r, r.URL.Path, r.URL.RawQuery, nil, 0, nil, func(ctx context.Context, status int) {
		if status != http.StatusOK {
			return
		}
		if _, still, _ := s.inspectImage(ctx, rt.version, info.ID); still {
			st.forget(names)
		} else {
			st.forget(names, info.ID)
		}
	})
	return nil
}

func (s *Server) tagImage(w http.ResponseWriter, r *http.Request, c Caller, rt route, src string) error {
	q := r.URL.Query()
	tag := q.Get("tag")
	if tag == "" {
		tag = "latest"
	}
	target, ok := normalName(joinRef(q.Get("repo"), tag))
	if !ok {
		return refused("%q is not an image name the gateway can check (want repository:tag, in lower case)", joinRef(q.Get("repo"), tag))
	}
	if _, err := s.checkRead(r.Context(), c, rt.version, src, "tag"); err != nil {
		return err
	}
	st := s.imageStore()
	release, err := st.reserve(c.Name, target)
	if err != nil {
		return err
	}
	defer release()
	if _, _, err := s.checkWrite(r.Context(), c, rt.version, target, verbTag); err != nil {
		return err
	}
	s.forwardWatch(w, r, r.URL.Path, r.URL.RawQuery, nil, 0, nil, func(ctx context.Context, status int) {
		if status == http.StatusCreated {
			s.recordNames(ctx, c, rt.version, "", false, target)
		}
	})
	return nil
}

// recordNames records the names as the caller's, each with the image it points to now
// (when id is given, only a name that points to id); made also records that image as theirs.
func (s *Server) recordNames(ctx context.Context, c Caller, version, id string, made bool, names ...string) {
	st := s.imageStore()
	if made && id != "" {
		st.record(c.Name, id, true)
	}
	for _, n := range names {
		info, found, err := s.inspectImage(ctx, version, n)
		if err != nil || !found || !info.tagged(n) || id != "" && info.ID != id {
			continue
		}
		st.record(c.Name, info.ID, false, n)
	}
}

func (s *Server) pushImage(w http.ResponseWriter, r *http.Request, c Caller, rt route, name string) error {
	ref := joinRef(name, r.URL.Query().Get("tag"))
	if !hasTag(ref) {
		return refused("pushing every tag of a repository (docker push --all-tags) is for admins; push one tag of your own")
	}
	if n, ok := normalName(ref); ok {
		state, _, err := s.checkWrite(r.Context(), c, rt.version, n, verbPush)
		if err != nil {
			return err
		}
		if state == nameNew {
			return &refusal{status: http.StatusNotFound, msg: "An image does not exist locally with the tag: " + repoOf(n)}
		}
	} else if _, err := s.checkRead(r.Context(), c, rt.version, ref, "push"); err != nil {
		return err
	}
	s.up.forward(w, r, r.URL.Path, r.URL.RawQuery, nil, 0)
	return nil
}

// createImage is a pull (fromImage) or an import (fromSrc).
func (s *Server) createImage(w http.ResponseWriter, r *http.Request, c Caller, rt route) error {
	q := r.URL.Query()
	switch {
	case q.Get("fromSrc") != "":
		if q.Get("fromSrc") != "-" {
			return refused("an import from a URL is for admins (the engine fetches it as root, following redirects, " +
				"so it could reach this machine's private addresses); download it yourself and run `docker import FILE NAME`")
		}
		target, err := targetName(q)
		if err != nil {
			return err
		}
		var release func()
		if target != "" {
			var err error
			if release, err = s.imageStore().reserve(c.Name, target); err != nil {
				return err
			}
			defer release()
			if _, _, err := s.checkWrite(r.Context(), c, rt.version, target, verbImport); err != nil {
				return err
			}
		}
		var res streamResult
		s.forwardWatch(w, r, r.URL.Path, r.URL.RawQuery, r.Body, r.ContentLength, res.watch, func(ctx context.Context, _ int) {
			if res.failed || !strings.HasPrefix(res.status, "sha256:") {
				return
			}
			if target == "" {
				s.imageStore().record(c.Name, res.status, true)
				return
			}
			s.recordNames(ctx, c, rt.version, res.status, true, target)
		})
		return nil
	case q.Get("fromImage") != "":
		ref := joinRef(q.Get("fromImage"), q.Get("tag"))
		if !hasTag(ref) {
			return refused("pulling every tag of a repository (docker pull --all-tags) is for admins; pull one tag")
		}
		if strings.Contains(ref, "@") {
			s.up.forward(w, r, r.URL.Path, r.URL.RawQuery, nil, 0) // by digest: what the registry signed, no tag moves
			return nil
		}
		n, ok := normalName(ref)
		if !ok {
			return refused("%q is not an image name the gateway can check (want repository:tag, in lower case)", ref)
		}
		release, err := s.imageStore().reserve(c.Name, n)
		if err != nil {
			return err
		}
		defer release()
		state, _, err := s.checkWrite(r.Context(), c, rt.version, n, verbPull)
		if err != nil {
			return err
		}
		var res streamResult
		s.forwardWatch(w, r, r.URL.Path, r.URL.RawQuery, nil, 0, res.watch, func(ctx context.Context, status int) {
			// A public image (pulled without credentials) is shared: its content is no
			// secret, and everyone may run it. One pulled with the caller's credentials is theirs.
			if status == http.StatusOK && !res.failed && state != nameShared && !anonymousAuth(r.Header.Get("X-Registry-Auth")) {
				s.recordNames(ctx, c, rt.version, "", false, n)
			}
		})
		return nil
	}
	s.up.forward(w, r, r.URL.Path, r.URL.RawQuery, nil, 0) // the engine says what is missing
	return nil
}

// anonymousAuth tells whether an X-Registry-Auth header carries no credentials (absent, or
// the CLI's empty "{}"); one that cannot be read counts as credentials.
func anonymousAuth(h string) bool {
	if strings.TrimSpace(h) == "" {
		return true
	}
	var b []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.URLEncoding, base64.StdEncoding, base64.RawURLEncoding, base64.RawStdEncoding} {
		if b, err = enc.DecodeString(strings.TrimSpace(h)); err == nil {
			break
		}
	}
	if err != nil {
		return false
	}
	var a struct{ Username, Password, Auth, IdentityToken, RegistryToken string }
	if json.Unmarshal(b, &a) != nil {
		return false
	}
	return a.Username == "" && a.Password == "" && a.Auth == "" && a.IdentityToken == "" && a.RegistryToken == ""
}

// commit commits one of the caller's containers, onto a name of their own or a new one.
func (s *Server) commit(w http.ResponseWriter, r *http.Request, c Caller, rt route) error {
	if c.Admin {
		return s.forwardAsIs(w, r, rt)
	}
	q := r.URL.Query()
	ct, err := s.owned(r.Context(), c, route{version: rt.version}, q.Get("container"))
	if err != nil {
		return err
	}
	target, err := targetName(q)
	if err != nil {
		return err
	}
	if target != "" {
		release, err := s.imageStore().reserve(c.Name, target)
		if err != nil {
			return err
		}
		defer release()
		if _, _, err := s.checkWrite(r.Context(), c, rt.version, target, verbCommit); err != nil {
			return err
		}
	}
	b, err := readJSONBody(r)
	if err != nil {
		return err
	}
	var cfg *container.Config
	if err := decodeJSON(b, &cfg); err != nil {
		return err
	}
	body, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	q.Set("container", ct.ID) // the container checked, whatever its name means meanwhile
	r.Header.Set("Content-Type", "application/json")
	var res struct{ ID string }
	captured := func(line []byte) { _ = json.Unmarshal(line, &res) }
	s.forwardWatch(w, r, r.URL.Path, q.Encode(), bytes.NewReader(body), int64(len(body)), captured, func(ctx context.Context, status int) {
		switch {
		case status != http.StatusCreated || res.ID == "":
		case target == "":
			s.imageStore().record(c.Name, res.ID, true)
		default:
			s.recordNames(ctx, c, rt.version, res.ID, true, target)
		}
	})
	return nil
}

// build checks a build's query and its tags, forwards the context as it comes, and records
// the tags as the caller's once built.
func (s *Server) build(w http.ResponseWriter, r *http.Request, c Caller, rt route) error {
	q := r.URL.Query()
	if q.Get("version") == "2" {
		return refused("BuildKit builds (DOCKER_BUILDKIT=1, docker buildx) are for admins: they open a session to the engine " +
			"that the gateway cannot check; build with the classic builder: DOCKER_BUILDKIT=0 docker build …")
	}
	if remote := q.Get("remote"); remote != "" {
		return refuseRemote(remote)
	}
	switch m := q.Get("networkmode"); {
	case m == "" || m == "default" || m == "bridge" || m == "none":
	case m == "host" || strings.HasPrefix(m, "container:"):
		return refused("a build on network %q is refused (it would reach the host's or a container's network); build on the default network", m)
	default:
		if err := s.buildNetwork(r.Context(), c, rt.version, m); err != nil {
			return err
		}
	}
	if q.Get("cgroupparent") != "" {
		return refused("a build with a cgroup parent is refused")
	}
	release, err := s.boundBuild(r.Context(), c, q)
	if err != nil {
		return err
	}
	defer release()
	if nonEmptyJSON(q.Get("outputs")) {
		return refused("build outputs (--output) are for admins: the engine would write them on the host as root")
	}
	if nonEmptyJSON(q.Get("ulimits")) {
		return refused("build ulimits are for admins; the engine's defaults apply")
	}
	if isTrue(q.Get("pull")) {
		return refused("docker build --pull is for admins (it would re-pull base images onto names others use); " +
			"docker pull the base image first, then build")
	}
	// The classic builder needs no session; the gateway opens none to the engine.
	q.Del("session")
	rtName, err := s.defaultRuntime(r.Context(), rt.version)
	if err != nil {
		return err
	}
	if rtName == "nvidia" {
		return refused("builds are refused while %s", GPUDefaultRuntimeFix)
	}
	var tags []string
	for _, t := range q["t"] {
		n, ok := normalName(t)
		if !ok {
			return refused("%q is not an image name the gateway can check (want repository:tag, in lower case)", t)
		}
		tags = append(tags, n)
	}
	st := s.imageStore()
	unreserve, err := st.reserve(c.Name, tags...)
	if err != nil {
		return err
	}
	defer unreserve()
	for _, t := range tags {
		if _, _, err := s.checkWrite(r.Context(), c, rt.version, t, verbBuild); err != nil {
			return err
		}
	}
	lbl := map[string]string{}
	if v := q.Get("labels"); v != "" {
		if err := json.Unmarshal([]byte(v), &lbl); err != nil {
			return &refusal{status: http.StatusBadRequest, msg: "labels: " + err.Error()}
		}
		if lbl == nil {
			lbl = map[string]string{}
		}
	}
	lbl[gpuwardenv1alpha1.LabelUser] = c.Name // who built it, for docker inspect; ownership is the gateway's record
	lb, _ := json.Marshal(lbl)
	q.Set("labels", string(lb))
	res := streamResult{quiet: isTrue(q.Get("q"))}
	s.forwardWatch(w, r, r.URL.Path, q.Encode(), r.Body, r.ContentLength, res.watch, func(ctx context.Context, status int) {
		if status == http.StatusOK && !res.failed && res.id != "" {
			s.recordNames(ctx, c, rt.version, res.id, true, tags...)
		}
	})
	return nil
}

// refuseRemote refuses a remote build context with why.
func refuseRemote(remote string) error {
	const instead = "fetch it yourself (curl -LO, git clone) and build from the directory; the docker CLI does so itself for URL and git contexts"
	if remote == "client-session" {
		return refused("a build context streamed through a session is for admins; build with the classic builder (DOCKER_BUILDKIT=0)")
	}
	host := remoteHost(remote)
	if host == "" {
		return refused("the remote build context %q is refused: %s", remote, instead)
	}
	if strings.HasPrefix(remote, "git@") || strings.HasPrefix(remote, "ssh://") {
		return refused("a git build context over ssh (%s) is refused: the engine would use root's SSH keys; %s", host, instead)
	}
	ips, err := resolveHost(host)
	if err != nil {
		return refused("the remote build context's host %s does not resolve (%v); %s", host, err, instead)
	}
	for _, ip := range ips {
		if !publicIP(ip) {
			return refused("the remote build context %s points at %s, a loopback, link-local or private address of this machine's networks; %s", remote, ip, instead)
		}
	}
	return refused("a remote build context (%s) is refused: the engine fetches it as root and follows redirects, which can lead "+
		"to this machine's loopback, link-local or private addresses; %s", remote, instead)
}

// resolveHost is the host's addresses (a variable for tests).
var resolveHost = func(host string) ([]net.IP, error) {
	if ip := net.ParseIP(host); ip != nil {
		return []net.IP{ip}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, err
	}
	ips := make([]net.IP, 0, len(addrs))
	for _, a := range addrs {
		ips = append(ips, a.IP)
	}
	return ips, nil
}

// remoteHost is the host a remote context (a URL, git@host:repo, github.com/…) names.
func remoteHost(remote string) string {
	rest := remote
	if i := strings.Index(rest, "://"); i >= 0 {
		rest = rest[i+3:]
	} else if h, ok := strings.CutPrefix(rest, "git@"); ok {
		rest = h
		if i := strings.Index(rest, ":"); i >= 0 {
			rest = rest[:i]
		}
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		rest = rest[i+1:]
	}
	if h, _, err := net.SplitHostPort(rest); err == nil {
		rest = h
	}
	return strings.Trim(rest, "[]")
}

// publicIP tells whether ip is an address of the internet at large.
func publicIP(ip net.IP) bool {
	return !(ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsUnspecified() || ip.IsMulticast() || ip.IsInterfaceLocalMulticast() ||
		// carrier-grade NAT, and IPv4 addresses in IPv6 clothing
		ip.To4() != nil && ip.To4()[0] == 100 && ip.To4()[1]&0xc0 == 64)
}

func nonEmptyJSON(v string) bool {
	v = strings.TrimSpace(v)
	return v != "" && v != "null" && v != "[]" && v != "{}"
}

// buildNetwork checks that a build's network is the caller's.
func (s *Server) buildNetwork(ctx context.Context, c Caller, version, name string) error {
	if !networkName.MatchString(name) {
		return refused("%q is not a network name the gateway can check", name)
	}
	return s.ownNetwork(ctx, c, route{version: version}, name)
}

// defaultRuntime is the engine's default runtime (GET /info).
func (s *Server) defaultRuntime(ctx context.Context, version string) (string, error) {
	return engineDefaultRuntime(ctx, s.up, version)
}

func engineDefaultRuntime(ctx context.Context, up *upstream, version string) (string, error) {
	resp, err := up.get(ctx, version+"/info")
	if err != nil {
		return "", fmt.Errorf("the Docker engine behind the gateway is unreachable: %w", err)
	}
	defer resp.Body.Close()
	var info struct{ DefaultRuntime string }
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("asking the engine for its default runtime: engine answered %s", resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&info); err != nil {
		return "", fmt.Errorf("asking the engine for its default runtime: %w", err)
	}
	return info.DefaultRuntime, nil
}

// streamResult is what a streamed answer (build, pull, import) said at its end.
type streamResult struct {
	failed bool   // an error message came
	id     string // a build's image (aux.ID; a quiet build's only stream line)
	// quiet: a build with q=1, whose output is its image ID alone (no RUN step's output, which
	// could print any ID).
	quiet  bool
	status string // the last status (an import's image ID)
}

func (res *streamResult) watch(line []byte) {
	var m struct {
		Error       string          `json:"error"`
		ErrorDetail json.RawMessage `json:"errorDetail"`
		Status      string          `json:"status"`
		Stream      string          `json:"stream"`
		Aux         struct{ ID string }
	}
	if json.Unmarshal(line, &m) != nil {
		return
	}
	if m.Error != "" || len(m.ErrorDetail) > 0 {
		res.failed = true
	}
	if strings.HasPrefix(m.Aux.ID, "sha256:") {
		res.id = m.Aux.ID
	}
	if id := strings.TrimSpace(m.Stream); res.quiet && strings.HasPrefix(id, "sha256:") && !strings.ContainsAny(id, " \t\n") {
		res.id = id
	}
	if m.Status != "" {
		res.status = strings.TrimSpace(m.Status)
	}
}

// forwardWatch forwards a request and passes the answer back as forward does, showing each
// line of a 2xx answer to onLine (nil: none), and calls after (nil: nothing) with the
// engine's status (0 when unreachable) before the caller has the whole answer: so what
// after records is in place when the client's next request comes. after's context outlives
// the caller's connection.
func (s *Server) forwardWatch(w http.ResponseWriter, r *http.Request, path, query string, body io.Reader, length int64,
	onLine func([]byte), after func(ctx context.Context, status int)) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), time.Minute)
	defer cancel()
	if after == nil {
		after = func(context.Context, int) {}
	}
	out, err := outgoing(r.Context(), r, path, query, body, length)
	if err != nil {
		after(ctx, 0)
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	resp, err := s.up.client.Do(out)
	if err != nil {
		after(ctx, 0)
		writeError(w, http.StatusBadGateway, "the Docker engine behind the gateway is unreachable: "+err.Error())
		return
	}
	defer resp.Body.Close()
	if resp.ContentLength >= 0 && resp.ContentLength <= maxBody {
		// A whole answer (tag, commit, rmi): held until after is done.
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		if err == nil && onLine != nil && resp.StatusCode/100 == 2 {
			for _, line := range bytes.Split(b, []byte("\n")) {
				onLine(bytes.TrimSpace(line))
			}
		}
		after(ctx, resp.StatusCode)
		resp.Body = io.NopCloser(bytes.NewReader(b))
		copyResponse(w, resp)
		return
	}
	// A stream (build, pull, import): passed on as it comes; its end (the last chunk) only
	// once after is done, when this handler returns.
	if onLine == nil || resp.StatusCode/100 != 2 {
		copyResponse(w, resp)
		after(ctx, resp.StatusCode)
		return
	}
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			onLine(bytes.TrimSpace(sc.Bytes()))
		}
		_, _ = io.Copy(io.Discard, pr) // a line over 1 MiB: the rest unread
	}()
	body0 := resp.Body
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.TeeReader(body0, pw), body0}
	copyResponse(w, resp)
	pw.Close()
	<-done
	after(ctx, resp.StatusCode)
}

// RuntimeCheck warns, once the engine answers, when its default runtime hands out GPUs.
type RuntimeCheck struct {
	Dial func(ctx context.Context) (net.Conn, error)
	// Warn is told the warning; the log when nil.
	Warn func(msg string)
}

// NeedLeaderElection: every node's engine is checked.
func (RuntimeCheck) NeedLeaderElection() bool { return false }

// Start asks the engine every few seconds until it answers, warns if needed, and returns.
func (rc RuntimeCheck) Start(ctx context.Context) error {
	up := newUpstream(rc.Dial)
	for {
		rt, err := engineDefaultRuntime(ctx, up, "")
		if err == nil {
			if rt == "nvidia" {
				msg := "Builds through the gateway are refused for users: " + GPUDefaultRuntimeFix
				if rc.Warn != nil {
					rc.Warn(msg)
				} else {
					ctrl.LoggerFrom(ctx).WithName("gateway").Info("WARNING: " + msg)
				}
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(3 * time.Second):
		}
	}
}

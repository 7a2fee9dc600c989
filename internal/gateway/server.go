package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	ctrl "sigs.k8s.io/controller-runtime"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/audit"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/labels"
)

// DefaultSocket is where the gateway listens by default.
const DefaultSocket = "/run/gpuwarden/docker.sock"

// ClientSocket is the gateway socket a command on this host asks (for a kubeconfig, …), the
// one rule every client shares with the profile script: socket when given (a command's
// --gateway-socket), else $DOCKER_HOST when it names a Unix socket (the profile script
// points it at the gateway, and a user who points it elsewhere by hand means it), else
// DefaultSocket.
func ClientSocket(socket string) string {
	if socket != "" {
		return socket
	}
	if p, ok := strings.CutPrefix(os.Getenv("DOCKER_HOST"), "unix://"); ok && p != "" {
		return p
	}
	return DefaultSocket
}

// DefaultAdminGroup is the host group whose members are the gateway's admins.
const DefaultAdminGroup = "gpuwarden-admin"

// maxBody bounds a JSON request body the gateway decodes; a larger one is refused whole.
const maxBody = 1 << 20

// Server is the gateway. Start serves until its context ends.
type Server struct {
	// Socket is the Unix socket served (mode 0666: the kernel says who calls).
	Socket string
	// Dial reaches the real engine.
	Dial func(ctx context.Context) (net.Conn, error)
	// AdminGroup's members (and root) are admins.
	AdminGroup string
	// AllowMounts are host path prefixes anyone may bind-mount, beside their home.
	AllowMounts []string
	// RootGroup's members may run containers as any user, root included: container root is
	// host root unless the engine remaps user namespaces, so this equals the docker group.
	RootGroup string
	// GPUs gets a create's GPUs; nil refuses GPU requests.
	GPUs Allocator
	// Policies give a container's resource defaults and maxima; the gateway's own
	// defaults only when nil.
	Policies Policies
	// Audit receives auth.denied records.
	Audit audit.Logger
	// Kubeconfigs issues a caller a kubeconfig of their own (an admin's when the caller is
	// an admin), valid for the days asked; nil where the gateway cannot (no CA at hand).
	Kubeconfigs func(user string, admin bool, validity time.Duration) ([]byte, error)
	// Notifications reads and sets where callers' own notices go; nil where nobody keeps
	// them.
	Notifications Notifications
	// AuditLog is the audit log whose records the gateway answers callers (their own, an
	// admin's anyone's) at EventsPath and ReportPath; empty answers none.
	AuditLog string
	// Listening is called once the socket listens; optional.
	Listening func()
	// Denied is told of every refusal (an Event); optional.
	Denied func(c Caller, operation, owner, reason string)
	// ImageOwners is the file where the gateway records who made which image name (see
	// images.go); empty keeps the record in memory only.
	ImageOwners string
	// Limits cap connections and requests, per user and in all, and time idle ones out.
	Limits Limits

	up *upstream
	// engine is what the engine says of itself (user namespaces, default runtime).
	engine engineInfo
	// builds counts each user's running builds.
	builds builds
	// peerOf tells who is at the other end of a connection; the kernel (peer) when nil.
	peerOf func(net.Conn) (Caller, error)
	// imgs is the record of image owners, read on first use.
	imgs imageState
	// reads bounds the audit log reads in flight (records.go).
	reads auditReads
	// done is closed once Start's context ends: a followed log stops then.
	done <-chan struct{}
}

// NeedLeaderElection: the gateway serves on every replica's host.
func (s *Server) NeedLeaderElection() bool { return false }

// Start listens on the socket and serves until ctx ends.
func (s *Server) Start(ctx context.Context) error {
	l, err := s.listen()
	if err != nil {
		return err
	}
	s.up = newUpstream(s.Dial)
	s.done = ctx.Done()
	l, lim := s.limit(l)
	hs := &http.Server{
		Handler:           lim.limitRequests(s),
		ReadHeaderTimeout: lim.lim.HeaderTimeout,
		IdleTimeout:       lim.lim.IdleTimeout,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			c = unwrapConn(c)
			who := s.peerOf
			if who == nil {
				who = func(c net.Conn) (Caller, error) { return peer(c, s.AdminGroup) }
			}
			caller, err := who(c)
			if err != nil {
				ctrl.LoggerFrom(ctx).WithName("gateway").Info("Refusing a connection whose caller is unknown", "error", err.Error())
				return context.WithValue(ctx, callerKey{}, Caller{UID: -1})
			}
			return context.WithValue(ctx, callerKey{}, caller)
		},
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l) }()
	ctrl.LoggerFrom(ctx).WithName("gateway").Info("Serving the Docker API", "socket", s.Socket, "maxConnections", lim.lim.Conns,
		"maxConnectionsPerUser", lim.lim.ConnsPerUser, "maxRequestsPerUser", lim.lim.RequestsPerUser,
		"idleTimeout", lim.lim.IdleTimeout.String(), "headerTimeout", lim.lim.HeaderTimeout.String())
	if s.Listening != nil {
		s.Listening()
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		return fmt.Errorf("serving the gateway at %s: %w", s.Socket, err)
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = hs.Shutdown(shutdown)
	_ = os.Remove(s.Socket)
	return nil
}

// listen makes the socket: a stale one (nobody answering) is replaced; a live one is
// another gateway's and an error.
func (s *Server) listen() (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(s.Socket), 0o755); err != nil {
		return nil, fmt.Errorf("--gateway-socket %s: %w", s.Socket, err)
	}
	if c, err := net.DialTimeout("unix", s.Socket, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("--gateway-socket %s: another process serves it already", s.Socket)
	}
	_ = os.Remove(s.Socket)
	l, err := net.Listen("unix", s.Socket)
	if err != nil {
		return nil, fmt.Errorf("--gateway-socket %s: %w", s.Socket, err)
	}
	if err := os.Chmod(s.Socket, 0o666); err != nil {
		l.Close()
		return nil, fmt.Errorf("--gateway-socket %s: %w", s.Socket, err)
	}
	return l, nil
}

// refusal is a request the gateway will not forward, and why.
type refusal struct {
	status int
	msg    string
	owner  string
	// decision: the refusal is a GPU decision (no GPU for the request), recorded as such by
	// the allocator (gpu.reject), not an access denied.
	decision bool
	// absent: the engine has no such object, and says so as it would to anyone (compose
	// looks networks and volumes up before it makes them), or gpuwarden's own endpoint cannot
	// answer what was asked (a malformed query, too many reads at once): no access was denied.
	absent bool
}

func (e *refusal) Error() string { return e.msg }

func refused(format string, args ...any) *refusal {
	return &refusal{status: http.StatusForbidden, msg: fmt.Sprintf(format, args...)}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	caller, ok := callerOf(r.Context())
	if !ok || caller.UID < 0 {
		writeError(w, http.StatusForbidden, "gpuwarden gateway: who is calling cannot be told from the socket; refused")
		return
	}
	rt, why := classify(r.Method, r.URL.Path)
	if why == "" && rt.kind == adminOnly && !caller.Admin {
		why = fmt.Sprintf("%s %s is for gpuwarden admins (group %s) only", r.Method, r.URL.Path, s.AdminGroup)
	}
	if why == "" && rt.kind == refuse {
		why = fmt.Sprintf("%s %s is not an endpoint the gateway serves", r.Method, r.URL.Path)
	}
	if why != "" {
		status := http.StatusForbidden
		if rt.kind == adminOnly && swarmPath(rt.rest) {
			// As a non-swarm engine answers (clients take a swarm leave's 503 as done).
			status, why = http.StatusServiceUnavailable, "This node is not part of a swarm for gateway users: "+why
		}
		s.deny(w, caller, rt, r.Method+" "+r.URL.Path, &refusal{status: status, msg: why})
		return
	}
	outcome := "allowed"
	err := s.handle(w, r, caller, rt)
	var rf *refusal
	switch {
	case errors.As(err, &rf):
		s.deny(w, caller, rt, r.Method+" "+r.URL.Path, rf)
		return
	case err != nil:
		outcome = "failed"
		writeError(w, http.StatusBadRequest, err.Error())
	}
	requests.WithLabelValues(rt.class, outcome, caller.Kind()).Inc()
}

// deny answers a refusal and records it.
func (s *Server) deny(w http.ResponseWriter, c Caller, rt route, op string, rf *refusal) {
	// Worded the same whether the object does not exist or is another user's and hidden:
	// the answer must not tell the two apart.
	writeError(w, rf.status, "gpuwarden: "+rf.msg)
	if rf.absent {
		requests.WithLabelValues(rt.class, "failed", c.Kind()).Inc()
		return
	}
	requests.WithLabelValues(rt.class, "refused", c.Kind()).Inc()
	if rf.decision {
		return
	}
	if s.Audit != nil {
		s.Audit.Log(audit.AuthDeniedOwner(c.Name, op, audit.Container{ID: rt.id}, rf.owner, rf.msg))
	}
	if s.Denied != nil {
		s.Denied(c, op, rf.owner, rf.msg)
	}
}

// handle serves an allowed request.
func (s *Server) handle(w http.ResponseWriter, r *http.Request, c Caller, rt route) error {
	switch rt.kind {
	case kubeconfig:
		return s.kubeconfig(w, r, c)
	case notifications:
		return s.notifications(w, r, c)
	case auditEvents:
		return s.auditEvents(w, r, c)
	case auditReport:
		return s.auditReport(w, r, c)
	}
	if c.Admin && rt.kind != createContainer {
		return s.forwardAsIs(w, r, rt)
	}
	switch rt.kind {
	case pass:
		if r.Method == http.MethodDelete && rt.class == "image" && isTrue(r.URL.Query().Get("force")) {
			return refused("removing an image by force is for admins")
		}
		return s.forwardAsIs(w, r, rt)
	case listContainer:
		return s.listContainers(w, r, c, rt)
	case createContainer:
		return s.createContainer(w, r, c, rt)
	case onContainer, attachContainer, createExec:
		return s.onContainer(w, r, c, rt)
	case onExec, startExec:
		return s.onExec(w, r, c, rt)
	case events:
		return s.events(w, r, c, rt)
	case build:
		return s.build(w, r, c, rt)
	case onImage:
		return s.onImage(w, r, c, rt)
	case commitImage:
		return s.commit(w, r, c, rt)
	case createOwned:
		return s.createOwned(w, r, c, rt)
	case onOwned:
		return s.onOwned(w, r, c, rt)
	case listVolumes:
		return s.listVolumes(w, r, c, rt)
	case listNetworks:
		return s.listNetworks(w, r, c, rt)
	}
	return refused("%s %s is not an endpoint the gateway serves", r.Method, r.URL.Path)
}

// swarmPath tells whether a path is one of swarm mode's endpoints.
func swarmPath(p string) bool {
	first, _, _ := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	switch first {
	case "swarm", "services", "nodes", "tasks", "secrets", "configs":
		return true
	}
	return false
}

func isTrue(v string) bool { return v == "1" || strings.EqualFold(v, "true") }

// forwardAsIs forwards what needs no check; a streamed body (an image tar, an archive) is
// passed on as it comes, a JSON body is bounded.
func (s *Server) forwardAsIs(w http.ResponseWriter, r *http.Request, rt route) error {
	if wantsHijack(r, rt) {
		body, err := readJSONBody(r)
		if err != nil {
			return err
		}
		s.up.hijack(w, r, r.URL.Path, r.URL.RawQuery, body)
		return nil
	}
	s.up.forward(w, r, r.URL.Path, r.URL.RawQuery, r.Body, r.ContentLength)
	return nil
}

// wantsHijack: only attach and exec start may become raw streams. An Upgrade header on any
// other endpoint is dropped (it is hop-by-hop) and the request forwarded as a plain one, so a
// streaming answer can never become a raw connection to the engine.
func wantsHijack(_ *http.Request, rt route) bool {
	return rt.kind == attachContainer || rt.kind == startExec
}

// readJSONBody reads a small JSON body whole; one over maxBody is refused, never cut.
func readJSONBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("reading the request body: %w", err)
	}
	if len(b) > maxBody {
		return nil, &refusal{status: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("a request body over %d bytes is refused", maxBody)}
	}
	return b, nil
}

// decodeJSON decodes a body as the engine does (encoding/json: keys case-insensitive, the
// last duplicate wins); an empty body is v's zero value.
func decodeJSON(b []byte, v any) error {
	if len(strings.TrimSpace(string(b))) == 0 {
		return nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return &refusal{status: http.StatusBadRequest, msg: "the request body is not valid JSON for this endpoint: " + err.Error()}
	}
	return nil
}

// inspected is what the gateway needs of a container.
type inspected struct {
	ID     string `json:"Id"`
	Name   string
	Config struct {
		Labels map[string]string
		User   string
	}
	// HostConfig is what the create declared: its mounts and devices are checked again at
	// every start.
	HostConfig container.HostConfig
	// Mounts are its mount points, those taken from other containers among them.
	Mounts []container.MountPoint
}

// labelUser is the owner label of containers, volumes and networks.
const labelUser = gpuwardenv1alpha1.LabelUser

// objectLabels inspects a volume or network through the engine; found is false when it does
// not exist.
func (s *Server) objectLabels(ctx context.Context, version, object, id string) (map[string]string, bool, error) {
	obj, found, err := s.object(ctx, version, object, id)
	return obj.Labels, found, err
}

// engineObject is what the gateway reads of a volume or network.
type engineObject struct {
	Labels map[string]string
	Name   string
	ID     string `json:"Id"`
}

// namedBy reports whether id is the object's name or whole ID, not a prefix the engine
// resolved: a prefix of another user's object must be answered as one that does not exist.
func (o engineObject) namedBy(id string) bool { return id == o.Name || id == o.ID }

// object inspects a volume or network through the engine; found is false when it does not
// exist.
func (s *Server) object(ctx context.Context, version, object, id string) (engineObject, bool, error) {
	var obj engineObject
	found, err := s.inspect(ctx, version+"/"+object+"s/"+url.PathEscape(id), object+" "+id, &obj)
	return obj, found, err
}

// engineAnswer is an answer of the engine other than found or not found.
type engineAnswer struct{ status string }

func (e *engineAnswer) Error() string { return "engine answered " + e.status }

// container inspects a container through the engine; found is false when it does not exist,
// and also when the engine could not answer for id in particular (an ID prefix several
// containers share, other users' among them): that answer must not differ from a missing
// one's, or it would tell that hidden containers exist.
func (s *Server) container(ctx context.Context, version, id string) (inspected, bool, error) {
	var c inspected
	found, err := s.inspect(ctx, version+"/containers/"+url.PathEscape(id)+"/json", "container "+id, &c)
	var answered *engineAnswer
	if errors.As(err, &answered) {
		return c, false, nil
	}
	return c, found, err
}

// inspect reads what the engine says of an object (what names it, in errors) into v; found is
// false when the engine has no such object.
func (s *Server) inspect(ctx context.Context, path, what string, v any) (bool, error) {
	resp, err := s.up.get(ctx, path)
	if err != nil {
		return false, fmt.Errorf("the Docker engine behind the gateway is unreachable: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return false, nil
	}
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("inspecting %s: %w", what, &engineAnswer{status: resp.Status})
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(v); err != nil {
		return false, fmt.Errorf("inspecting %s: %w", what, err)
	}
	return true, nil
}

// owned checks that the caller may act on a container, and returns it (its full ID and
// labels).
func (s *Server) owned(ctx context.Context, c Caller, rt route, id string) (inspected, error) {
	ct, found, err := s.container(ctx, rt.version, id)
	if err != nil {
		return inspected{}, err
	}
	if !found {
		return inspected{}, &refusal{status: http.StatusNotFound, msg: "No such container: " + id, absent: true}
	}
	owner, _ := labels.Owner(ct.Config.Labels)
	if owner != c.Name && id != ct.ID && id != strings.TrimPrefix(ct.Name, "/") && !c.Admin {
		// An ID prefix resolves among the caller's own containers only: another's is not
		// there for them, as the engine would answer, and its owner is not told.
		return inspected{}, &refusal{status: http.StatusNotFound, msg: "No such container: " + id}
	}
	if owner != c.Name {
		who := owner
		if who == "" {
			who = "nobody gpuwarden knows"
		}
		return inspected{}, &refusal{status: http.StatusForbidden, owner: owner, msg: fmt.Sprintf("container %s belongs to %s, not to %s", strings.TrimPrefix(ct.Name, "/"), who, c.Name)}
	}
	if rt.write && labels.IsProtected(ct.Config.Labels) {
		return inspected{}, &refusal{status: http.StatusForbidden, owner: owner, msg: fmt.Sprintf("container %s is protected", strings.TrimPrefix(ct.Name, "/"))}
	}
	return ct, nil
}

// onContainer serves an operation on one of the caller's containers, addressed by its full
// ID so that a name taken over meanwhile cannot redirect it.
func (s *Server) onContainer(w http.ResponseWriter, r *http.Request, c Caller, rt route) error {
	ct, err := s.owned(r.Context(), c, rt, rt.id)
	if err != nil {
		return err
	}
	if rt.link != "" {
		if !isTrue(r.URL.Query().Get("link")) {
			return refused("%s %s is not an endpoint the gateway serves", r.Method, r.URL.Path)
		}
		// The engine names a link by its parent's name, not its ID.
		s.up.forward(w, r, rt.version+"/containers/"+strings.TrimPrefix(ct.Name, "/")+"/"+rt.link, r.URL.RawQuery, nil, 0)
		return nil
	}
	p := rt.version + "/containers/" + ct.ID
	if i := strings.Index(strings.TrimPrefix(rt.rest, "/containers/"), "/"); i >= 0 {
		p += strings.TrimPrefix(rt.rest, "/containers/")[i:]
	}
	switch rt.kind {
	case attachContainer:
		s.up.hijack(w, r, p, r.URL.RawQuery, nil)
		return nil
	case createExec:
		return s.createExec(w, r, c, p)
	}
	if isStart(r.Method, p) {
		if err := s.checkStart(r.Context(), c, ct); err != nil {
			return err
		}
	}
	if strings.HasSuffix(p, "/archive") && len(docker.BindSources(&ct.HostConfig, ct.Mounts)) > 0 && !s.anyUser(r.Context(), c) {
		// The engine mounts a container's bind sources again, as root, to copy in or out:
		// a directory swapped for a link to / since would be read or written as root.
		return refused("docker cp on container %s is refused: it has bind mounts, which the engine would mount again as root for the copy; copy through the mounted directory on the host, or with docker exec (… tar)", strings.TrimPrefix(ct.Name, "/"))
	}
	if r.Method == http.MethodPost && (strings.HasSuffix(p, "/update") || strings.HasSuffix(p, "/rename")) {
		return s.checkedUpdate(w, r, c, p, ct.Config.Labels)
	}
	s.up.forward(w, r, p, r.URL.RawQuery, r.Body, r.ContentLength)
	return nil
}

package gateway

import (
	"net/http"
	"path"
	"regexp"
	"strings"
)

// kind is what the gateway does with a request.
type kind int

const (
	refuse        kind = iota // not on the allow-list
	pass                      // harmless to anyone: forwarded as is
	adminOnly                 // forwarded for admins, refused for users
	listContainer             // GET /containers/json, filtered to the caller's own
	createContainer
	onContainer     // names a container: the caller must own it
	attachContainer // names a container and takes over the connection
	createExec      // names a container; the body is checked
	onExec          // names an exec: the caller must own its container
	startExec       // names an exec and takes over the connection
	events          // filtered to the caller's own containers
	build           // the query is checked
	createOwned     // networks and volumes: owner label set, options checked
	onOwned         // a network or volume: the caller must own it
	listVolumes     // filtered to the caller's own
	listNetworks    // filtered to the caller's own and the engine's (bridge, host, none)
	kubeconfig      // gpuwarden's own: a kubeconfig for the caller
	notifications   // gpuwarden's own: where the caller's notices go
	auditEvents     // gpuwarden's own: the caller's audit records
	auditReport     // gpuwarden's own: the caller's usage report
)

// gpuwarden's own endpoints, beside the Docker API (no version prefix, GET only).
const (
	// KubeconfigPath is where the gateway hands callers a kubeconfig of their own.
	KubeconfigPath = "/gpuwarden/kubeconfig"
	// EventsPath is where the gateway answers callers' audit records: their own, an admin's
	// anyone's (records.go).
	EventsPath = "/gpuwarden/events"
	// ReportPath is where the gateway answers callers' usage reports (records.go).
	ReportPath = "/gpuwarden/report"
)

// route is a classified request.
type route struct {
	kind  kind
	class string // for the metrics
	// version is the /vN.M prefix, kept when forwarding; rest the path after it.
	version, rest string
	// id is the container, exec, network or volume the path names; object its kind.
	id, object string
	// write: an operation that changes the container (refused on a protected one).
	write bool
	// link is the alias of a legacy link removed from the container (DELETE …/{id}/{alias}).
	link string
}

var versionPrefix = regexp.MustCompile(`^/v[0-9]+\.[0-9]+(/.*)$`)

// containerOps are the container endpoints on the allow-list, by method; write says the
// operation changes the container.
var containerOps = map[string]map[string]bool{
	http.MethodGet:  {"json": false, "logs": false, "top": false, "stats": false, "changes": false, "export": false, "archive": false},
	http.MethodHead: {"archive": false},
	http.MethodPut:  {"archive": true},
	http.MethodPost: {"start": true, "stop": true, "restart": true, "kill": true, "pause": true, "unpause": true, "update": true,
		"rename": true, "wait": false, "resize": false, "attach": false, "exec": false},
}

// notInPath are characters no Docker object name has: a decoded path holding one (an escaped
// "?" that would cut the path short where it is parsed again, a control character) is refused.
func notInPath(r rune) bool {
	return r == '?' || r == '#' || r == '%' || r == '\\' || r < 0x20 || r == 0x7f
}

// classify puts a request on the allow-list, or refuses it with why.
func classify(method, p string) (route, string) {
	if !strings.HasPrefix(p, "/") || p != path.Clean(p) || strings.Contains(p, "//") || strings.ContainsFunc(p, notInPath) {
		return route{class: "other"}, "the path " + p + " is not in canonical form"
	}
	r := route{rest: p}
	if m := versionPrefix.FindStringSubmatch(p); m != nil {
		r.version, r.rest = strings.TrimSuffix(p, m[1]), m[1]
	}
	parts := strings.Split(strings.TrimPrefix(r.rest, "/"), "/")
	switch {
	case r.rest == "/_ping" && (method == http.MethodGet || method == http.MethodHead),
		(r.rest == "/version" || r.rest == "/info") && method == http.MethodGet:
		r.kind, r.class = pass, "ping"
	case r.rest == KubeconfigPath && r.version == "" && method == http.MethodGet:
		r.kind, r.class = kubeconfig, "kubeconfig"
	case r.rest == NotificationsPath && r.version == "" && (method == http.MethodGet || method == http.MethodPut),
		r.rest == NotificationsTestPath && r.version == "" && method == http.MethodPost:
		r.kind, r.class = notifications, "notifications"
	case r.rest == EventsPath && r.version == "" && method == http.MethodGet:
		r.kind, r.class = auditEvents, "audit"
	case r.rest == ReportPath && r.version == "" && method == http.MethodGet:
		r.kind, r.class = auditReport, "audit"
	case parts[0] == "containers":
		return classifyContainer(method, parts, r)
	case parts[0] == "exec" && len(parts) == 3:
		r.class, r.id, r.object = "exec", parts[1], "exec"
		switch {
		case method == http.MethodPost && parts[2] == "start":
			r.kind = startExec
		case method == http.MethodPost && parts[2] == "resize", method == http.MethodGet && parts[2] == "json":
			r.kind = onExec
		default:
			return r, "exec endpoint " + method + " " + r.rest + " is not allowed"
		}
	case parts[0] == "images":
		r.class = "image"
		last := parts[len(parts)-1]
		switch {
		case r.rest == "/images/prune":
			r.kind = adminOnly
		case method == http.MethodGet && (r.rest == "/images/get" || len(parts) > 2 && last == "get"):
			r.kind = onImage // save: the caller's own or shared images only
		case method == http.MethodGet, method == http.MethodHead:
			r.kind = pass // list, inspect, history, search: names are not secret
		case method == http.MethodPost && (r.rest == "/images/create" || r.rest == "/images/load" || len(parts) > 2 && (last == "tag" || last == "push")):
			r.kind = onImage // pull, import, load, tag, push: names checked (images.go)
		case method == http.MethodDelete && len(parts) > 1:
			r.kind = onImage // the caller's own names only; force is for admins
		default:
			return r, "image endpoint " + method + " " + r.rest + " is not allowed"
		}
	case r.rest == "/commit" && method == http.MethodPost:
		r.kind, r.class = commitImage, "image" // one of the caller's containers, onto a name of their own
	case r.rest == "/build" && method == http.MethodPost:
		r.kind, r.class = build, "build"
	case r.rest == "/events" && method == http.MethodGet:
		r.kind, r.class = events, "events"
	case parts[0] == "distribution" && method == http.MethodGet:
		r.kind, r.class = pass, "image"
	case parts[0] == "networks" || parts[0] == "volumes":
		return classifyOwned(method, parts, r)
	default:
		r.kind, r.class = adminOnly, "other" // swarm, plugins, system df, prune, session, …
	}
	return r, ""
}

func classifyContainer(method string, parts []string, r route) (route, string) {
	r.class = "container"
	switch {
	case len(parts) == 2 && parts[1] == "json" && method == http.MethodGet:
		r.kind, r.class = listContainer, "list"
	case len(parts) == 2 && parts[1] == "create" && method == http.MethodPost:
		r.kind, r.class = createContainer, "create"
	case len(parts) == 2 && parts[1] == "prune":
		r.kind = adminOnly
	case len(parts) == 2 && method == http.MethodDelete:
		r.kind, r.id, r.object, r.write = onContainer, parts[1], "container", true
	case len(parts) == 3 && method == http.MethodDelete:
		// A legacy link's removal (docker rm --link PARENT/ALIAS): the parent must be the caller's.
		r.kind, r.id, r.object, r.write, r.link = onContainer, parts[1], "container", true, parts[2]
	case len(parts) == 3:
		write, ok := containerOps[method][parts[2]]
		if !ok {
			return r, "container endpoint " + method + " " + r.rest + " is not allowed"
		}
		r.kind, r.id, r.object, r.write = onContainer, parts[1], "container", write
		switch parts[2] {
		case "attach":
			r.kind = attachContainer
		case "exec":
			r.kind, r.class = createExec, "exec"
		}
	default:
		return r, "container endpoint " + method + " " + r.rest + " is not allowed"
	}
	return r, ""
}

func classifyOwned(method string, parts []string, r route) (route, string) {
	r.class, r.object = strings.TrimSuffix(parts[0], "s"), strings.TrimSuffix(parts[0], "s")
	switch {
	case len(parts) == 1 && method == http.MethodGet:
		r.kind = listNetworks
		if parts[0] == "volumes" {
			r.kind = listVolumes
		}
	case len(parts) == 2 && parts[1] == "create" && method == http.MethodPost:
		r.kind = createOwned
	case len(parts) == 2 && parts[1] == "prune":
		r.kind = adminOnly
	case len(parts) == 2 && method == http.MethodGet:
		r.kind, r.id = onOwned, parts[1]
	case len(parts) == 2 && method == http.MethodDelete,
		len(parts) == 3 && method == http.MethodPost && (parts[2] == "connect" || parts[2] == "disconnect"):
		r.kind, r.id, r.write = onOwned, parts[1], true
	default:
		return r, r.class + " endpoint " + method + " " + r.rest + " is not allowed"
	}
	return r, ""
}

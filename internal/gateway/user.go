package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
)

// Who a container runs as. Container root is host root unless the engine remaps user
// namespaces, so a user's containers and execs run as the caller's own uid, gid and
// supplementary groups, with no-new-privileges so that no setuid binary climbs back to root:
// what the container can reach on the host (bind mounts) is what their shell reaches. Any
// user inside the container is allowed only where that is no more than their shell:
//   - the engine remaps user namespaces (userns-remap: container root is an unprivileged host
//     uid), or
//   - the caller is in the admin's root group (--gateway-root-group), which the docs call what
//     it is: membership of the docker group.

// noNewPrivileges is the security option every user's container gets.
const noNewPrivileges = "no-new-privileges"

// anyUser tells whether the caller may run containers as any user, root included.
func (s *Server) anyUser(ctx context.Context, c Caller) bool {
	if c.Admin || s.inRootGroup(c) {
		return true
	}
	return s.engine.remapsUsers(ctx, s.up)
}

// inRootGroup tells whether the caller is in the group opted into root containers.
func (s *Server) inRootGroup(c Caller) bool {
	if s.RootGroup == "" {
		return false
	}
	g, err := user.LookupGroup(s.RootGroup)
	if err != nil {
		return false
	}
	gid, err := strconv.Atoi(g.Gid)
	return err == nil && (c.GID == gid || slices.Contains(c.Groups, gid))
}

// ownIDs is the caller's uid:gid as the container's User.
func ownIDs(c Caller) string { return fmt.Sprintf("%d:%d", c.UID, c.GID) }

// checkUser decides who a create's or an exec's process runs as: empty is the caller's own
// uid:gid; the caller's uid (with their own gid or one of their groups) is kept; anything else
// is refused, saying what to do instead. It returns the User to send.
func (s *Server) checkUser(ctx context.Context, c Caller, asked, what string) (string, error) {
	if s.anyUser(ctx, c) {
		return asked, nil
	}
	if asked == "" {
		return ownIDs(c), nil
	}
	u, g, hasGroup := strings.Cut(asked, ":")
	uid, err := strconv.Atoi(u)
	ok := err == nil && uid == c.UID
	if ok && hasGroup {
		gid, err := strconv.Atoi(g)
		ok = err == nil && (gid == c.GID || slices.Contains(c.Groups, gid))
	}
	if !ok {
		return "", refused("%s as user %q is refused: containers run as your own uid and gid (%s), because root in a container is root on this host; drop --user (or give --user %s), and see the user guide for images that expect root", what, asked, ownIDs(c), ownIDs(c))
	}
	if !hasGroup {
		return asked + ":" + strconv.Itoa(c.GID), nil
	}
	return asked, nil
}

// forceUser makes a non-admin's create run as the caller (unless they may run as anyone):
// their uid and gid, their supplementary groups, no-new-privileges, and HOME and USER set
// where the create sets neither.
func (s *Server) forceUser(ctx context.Context, c Caller, cfg *container.Config, hc *container.HostConfig) error {
	u, err := s.checkUser(ctx, c, cfg.User, "a container")
	if err != nil {
		return err
	}
	cfg.User = u
	groups, err := ownGroups(c, hc.GroupAdd)
	if err != nil {
		return err
	}
	hc.GroupAdd = groups
	hc.SecurityOpt = []string{noNewPrivileges}
	if s.anyUser(ctx, c) {
		return nil
	}
	if _, ok := env(cfg, "HOME"); !ok {
		// The image's HOME (often /root) is not the caller's to write; their home directory
		// where they mounted it at its own path, else a writable /tmp.
		home := "/tmp"
		for _, t := range mountTargets(hc) {
			if c.Home != "" && t == c.Home {
				home = c.Home
			}
		}
		setEnv(cfg, "HOME", home)
	}
	if _, ok := env(cfg, "USER"); !ok {
		setEnv(cfg, "USER", c.Name)
	}
	return nil
}

// ownGroups checks GroupAdd (only the caller's own groups, by number or host name) and adds
// every supplementary group of the caller's, so that group-shared files stay reachable.
func ownGroups(c Caller, asked []string) ([]string, error) {
	mine := append([]int{c.GID}, c.Groups...)
	var out []string
	add := func(gid int) {
		if s := strconv.Itoa(gid); !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	for _, g := range asked {
		gid, err := strconv.Atoi(g)
		if err != nil {
			grp, lerr := user.LookupGroup(g)
			if lerr == nil {
				gid, err = strconv.Atoi(grp.Gid)
			}
		}
		if err != nil || !slices.Contains(mine, gid) {
			return nil, refused("--group-add %s is refused: only groups you are in may be added (yours: %s)", g, joinInts(mine))
		}
		add(gid)
	}
	for _, g := range c.Groups {
		if g != c.GID {
			add(g)
		}
	}
	return out, nil
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}

// mountTargets are the container paths a create mounts something at.
func mountTargets(hc *container.HostConfig) []string {
	var out []string
	for _, b := range hc.Binds {
		if _, rest, ok := strings.Cut(b, ":"); ok {
			t, _, _ := strings.Cut(rest, ":")
			out = append(out, t)
		}
	}
	for _, m := range hc.Mounts {
		out = append(out, m.Target)
	}
	return out
}

// engineInfo caches what the engine says of itself that the gateway's rules depend on.
type engineInfo struct {
	mu      sync.Mutex
	read    time.Time
	userns  bool
	runtime string
}

// engineInfoTTL is how long the engine's /info is trusted: a reconfigured engine is seen
// within it.
const engineInfoTTL = time.Minute

func (e *engineInfo) get(ctx context.Context, up *upstream) (userns bool, defaultRuntime string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if time.Since(e.read) < engineInfoTTL {
		return e.userns, e.runtime
	}
	resp, err := up.get(ctx, "/info")
	if err != nil {
		return false, ""
	}
	defer resp.Body.Close()
	var info struct {
		SecurityOptions []string
		DefaultRuntime  string
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&info) != nil {
		return false, "" // unknown: the stricter rules apply
	}
	e.userns = slices.ContainsFunc(info.SecurityOptions, func(o string) bool { return strings.Contains(o, "name=userns") })
	e.runtime, e.read = info.DefaultRuntime, time.Now()
	return e.userns, e.runtime
}

// remapsUsers tells whether the engine remaps user namespaces (container root is then an
// unprivileged host uid).
func (e *engineInfo) remapsUsers(ctx context.Context, up *upstream) bool {
	userns, _ := e.get(ctx, up)
	return userns
}

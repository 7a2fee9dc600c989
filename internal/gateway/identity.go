package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/user"
	"slices"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Caller is who is at the other end of a connection, as the kernel says at connect(2).
type Caller struct {
	UID, GID int
	// PID is the calling process at connect(2): its resource limits bound a create's ulimits.
	PID int
	// Groups are the caller's supplementary group IDs (SO_PEERGROUPS).
	Groups []int
	// Name is the login name of UID; Home its home directory.
	Name, Home string
	// Admin: root, or a member of the gateway's admin group.
	Admin bool
}

// Kind is the caller's kind for the metrics: admin or user.
func (c Caller) Kind() string {
	if c.Admin {
		return "admin"
	}
	return "user"
}

type callerKey struct{}

func callerOf(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// peer reads the caller of a Unix connection from the kernel, once.
func peer(conn net.Conn, adminGroup string) (Caller, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return Caller{}, errors.New("not a Unix socket connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Caller{}, err
	}
	var cred *unix.Ucred
	var groups []int
	var opErr error
	if err := raw.Control(func(fd uintptr) {
		cred, opErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if opErr == nil {
			groups, opErr = peerGroups(int(fd))
		}
	}); err != nil {
		return Caller{}, err
	}
	if opErr != nil {
		return Caller{}, fmt.Errorf("reading the peer's credentials: %w", opErr)
	}
	c := Caller{UID: int(cred.Uid), GID: int(cred.Gid), PID: int(cred.Pid), Groups: groups}
	u, err := user.LookupId(strconv.Itoa(c.UID))
	if err != nil {
		return Caller{}, fmt.Errorf("uid %d has no login name: %w", c.UID, err)
	}
	c.Name, c.Home = u.Username, u.HomeDir
	c.Admin = c.UID == 0
	if !c.Admin && adminGroup != "" {
		if g, err := user.LookupGroup(adminGroup); err == nil {
			c.Admin = inAdminGroup(u, g.Gid, c.GID, c.Groups)
		}
	}
	return c, nil
}

// inAdminGroup reports whether a caller is an admin by group: their process holds the
// group (its gid or a supplementary group, as at connect) and the host's group database
// still names them in it. A process keeps its groups after its user leaves the group
// (gpasswd -d): admin rights follow the group, not a shell that was started in it.
func inAdminGroup(u *user.User, adminGID string, procGID int, procGroups []int) bool {
	gid, err := strconv.Atoi(adminGID)
	if err != nil || procGID != gid && !slices.Contains(procGroups, gid) {
		return false
	}
	if u.Gid == adminGID {
		return true
	}
	ids, err := u.GroupIds()
	return err == nil && slices.Contains(ids, adminGID)
}

// peerGroups reads SO_PEERGROUPS: the supplementary groups of the peer at connect time.
func peerGroups(fd int) ([]int, error) {
	buf := make([]uint32, 64)
	for {
		size := uint32(len(buf) * 4)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		if errno == unix.ERANGE {
			buf = make([]uint32, size/4+1)
			continue
		}
		if errno != 0 {
			return nil, errno
		}
		out := make([]int, size/4)
		for i := range out {
			out[i] = int(buf[i])
		}
		return out, nil
	}
}

package gateway

import (
	"os/user"
	"strconv"
	"testing"
)

// TestAdminByGroupNeedsTheGroupDatabase: a process holding the admin group is an admin only
// while the host's group database still names its user in the group.
func TestAdminByGroupNeedsTheGroupDatabase(t *testing.T) {
	root, err := user.Lookup("root")
	if err != nil {
		t.Skipf("no root user: %v", err)
	}
	rootGroup, err := user.LookupGroupId(root.Gid)
	if err != nil {
		t.Skipf("no group of root: %v", err)
	}
	gid, err := strconv.Atoi(rootGroup.Gid)
	if err != nil {
		t.Fatal(err)
	}
	if !inAdminGroup(root, rootGroup.Gid, 1000, []int{gid}) {
		t.Error("a process holding a group the database gives its user is not an admin")
	}
	if inAdminGroup(root, rootGroup.Gid, 1000, []int{4242}) {
		t.Error("a process that does not hold the admin group is an admin")
	}
	// A gid the process holds but the database does not give the user (they left the group
	// after the process started): not an admin.
	stale := &user.User{Username: "nobody-gpuwarden", Uid: "65533", Gid: "65533"}
	if inAdminGroup(stale, "4242", 65533, []int{4242}) {
		t.Error("a process holding a group its user has left is an admin")
	}
}

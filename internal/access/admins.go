package access

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// AdminsBinding is the ClusterRoleBinding that makes the host's admins cluster-admins: its
// subjects are the users the host's admin group holds now, by name, kept so by Admins.
// Certificates carry no admin group: admin rights follow the group, not the certificate.
const AdminsBinding = "gpuwarden-admins"

// DefaultAdminSyncInterval is how often the admin group is read again in full; a change of
// GroupFile is noticed within a second.
const DefaultAdminSyncInterval = 30 * time.Second

// GroupFile is the host's group file: when it changes (gpasswd, usermod, groupmod), the
// admins are read again at once.
const GroupFile = "/etc/group"

// Membership answers who the host's group database says is in a group.
type Membership interface {
	// Members lists the users the group's entry names (its member list; users whose
	// primary group it is are not listed there).
	Members(group string) ([]string, error)
	// IsMember reports whether user is in group now, as a member or by primary group; a
	// user or group the host does not know is not.
	IsMember(name, group string) (bool, error)
}

// HostMembership reads the host's group database through NSS (files, LDAP, …).
type HostMembership struct{}

// Members implements Membership with getent (NSS), or the group file where getent is missing.
func (HostMembership) Members(group string) ([]string, error) {
	out, err := exec.Command("getent", "group", group).Output()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit) && exit.ExitCode() == 2: // no such group
		return nil, nil
	case errors.Is(err, exec.ErrNotFound):
		return fileMembers(GroupFile, group)
	case err != nil:
		return nil, fmt.Errorf("getent group %s: %w", group, err)
	}
	return entryMembers(strings.TrimSpace(string(out)), group), nil
}

// fileMembers reads group's member list from a group(5) file.
func fileMembers(path, group string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if m := entryMembers(sc.Text(), group); m != nil {
			return m, nil
		}
	}
	return nil, nil
}

// entryMembers is the member list of a group(5) line for group; nil if it is another's.
func entryMembers(line, group string) []string {
	f := strings.Split(line, ":")
	if len(f) != 4 || f[0] != group {
		return nil
	}
	out := []string{}
	for _, m := range strings.Split(f[3], ",") {
		if m = strings.TrimSpace(m); m != "" {
			out = append(out, m)
		}
	}
	return out
}

// IsMember implements Membership through os/user (getgrouplist: supplementary and primary).
func (HostMembership) IsMember(name, group string) (bool, error) {
	g, err := user.LookupGroup(group)
	var unknownGroup user.UnknownGroupError
	if errors.As(err, &unknownGroup) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("looking up group %s: %w", group, err)
	}
	u, err := user.Lookup(name)
	var unknownUser user.UnknownUserError
	if errors.As(err, &unknownUser) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("looking up user %s: %w", name, err)
	}
	if u.Gid == g.Gid {
		return true, nil
	}
	ids, err := u.GroupIds()
	if err != nil {
		return false, fmt.Errorf("looking up the groups of %s: %w", name, err)
	}
	return slices.Contains(ids, g.Gid), nil
}

// Admins keeps AdminsBinding's subjects equal to the users in the host's admin group (and
// root): a user added to the group is an admin at the next pass, or at once when they ask
// for a kubeconfig (Confirm); a user removed from it loses cluster-admin at the next pass,
// within Interval (or within a second of a change of GroupFile), whatever certificate they
// hold.
type Admins struct {
	Client client.Client
	// Group is the host's admin group (--gateway-admin-group).
	Group string
	// Interval is how often the group is read again in full; 0 is DefaultAdminSyncInterval.
	Interval time.Duration
	// Watch is a file whose change triggers a pass at once (GroupFile); "" watches none.
	Watch string
	// Hosts answers membership; nil is HostMembership.
	Hosts Membership
	Clock clock.WithTicker
	Log   logr.Logger

	mu sync.Mutex
	// asked are users who asked for a kubeconfig as admins: candidates the group's member
	// list may not name (the group is their primary group).
	asked map[string]bool
}

// NeedLeaderElection: the binding is the one API server's; every replica may keep it.
func (a *Admins) NeedLeaderElection() bool { return false }

func (a *Admins) hosts() Membership {
	if a.Hosts == nil {
		return HostMembership{}
	}
	return a.Hosts
}

func (a *Admins) clock() clock.WithTicker {
	if a.Clock == nil {
		return clock.RealClock{}
	}
	return a.Clock
}

// Start passes at once, then every Interval and whenever Watch changes, until ctx ends.
func (a *Admins) Start(ctx context.Context) error {
	interval := a.Interval
	if interval <= 0 {
		interval = DefaultAdminSyncInterval
	}
	pass := func() {
		if err := a.Sync(ctx); err != nil && ctx.Err() == nil {
			a.Log.Error(err, "Reconciling the admins from the host's group; retrying", "group", a.Group)
		}
	}
	// Stamped before the first pass: a change made while it runs is seen by the next poll,
	// not taken for the state the pass read.
	stamp := a.stamp()
	pass()
	full := a.clock().NewTicker(interval)
	defer full.Stop()
	poll := a.clock().NewTicker(time.Second)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-full.C():
			pass()
		case <-poll.C():
			if s := a.stamp(); s != stamp {
				stamp = s
				pass()
			}
		}
	}
}

// stamp is Watch's modification time and size; "" without Watch or when it cannot be read.
func (a *Admins) stamp() string {
	if a.Watch == "" {
		return ""
	}
	fi, err := os.Stat(a.Watch)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%d/%d", fi.ModTime().UnixNano(), fi.Size())
}

// Confirm makes user an admin now if the host's admin group holds them (root always is),
// and remembers them as a candidate for later passes; it reports whether they are one.
// The gateway calls it when an admin asks for a kubeconfig, so that it works at once.
func (a *Admins) Confirm(ctx context.Context, name string) (bool, error) {
	a.mu.Lock()
	if a.asked == nil {
		a.asked = map[string]bool{}
	}
	a.asked[name] = true
	a.mu.Unlock()
	ok, err := a.isAdmin(name)
	if err != nil || !ok {
		return false, err
	}
	return true, a.Sync(ctx)
}

func (a *Admins) isAdmin(name string) (bool, error) {
	if name == "root" {
		return true, nil
	}
	if a.Group == "" {
		return false, nil
	}
	return a.hosts().IsMember(name, a.Group)
}

// Sync writes AdminsBinding with the users who are admins now: root, the group's listed
// members, and every user already bound or who asked, each checked against the group.
func (a *Admins) Sync(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var existing rbacv1.ClusterRoleBinding
	err := a.Client.Get(ctx, client.ObjectKey{Name: AdminsBinding}, &existing)
	found := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading ClusterRoleBinding %s: %w", AdminsBinding, err)
	}
	candidates := map[string]bool{"root": true}
	for n := range a.asked {
		candidates[n] = true
	}
	for _, s := range existing.Subjects {
		if s.Kind == rbacv1.UserKind {
			candidates[s.Name] = true
		}
	}
	if a.Group != "" {
		members, err := a.hosts().Members(a.Group)
		if err != nil {
			return err
		}
		for _, m := range members {
			candidates[m] = true
		}
	}
	var admins []string
	for n := range candidates {
		ok, err := a.isAdmin(n)
		if err != nil {
			// Not known to be an admin now: no rights (a lookup that fails is no proof).
			a.Log.Error(err, "Checking whether a user is an admin; treating them as not one", "user", n)
			continue
		}
		if ok {
			admins = append(admins, n)
		}
	}
	slices.Sort(admins)
	want := adminsBinding(admins)
	switch {
	case !found:
		if err := a.Client.Create(ctx, want); err != nil {
			return fmt.Errorf("creating ClusterRoleBinding %s: %w", AdminsBinding, err)
		}
	case existing.RoleRef != want.RoleRef:
		// The role of a binding cannot change: a binding to another role is replaced.
		if err := a.Client.Delete(ctx, &existing); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("replacing ClusterRoleBinding %s: %w", AdminsBinding, err)
		}
		if err := a.Client.Create(ctx, want); err != nil {
			return fmt.Errorf("replacing ClusterRoleBinding %s: %w", AdminsBinding, err)
		}
	case !slices.Equal(existing.Subjects, want.Subjects):
		removed := removedUsers(existing.Subjects, admins)
		existing.Subjects = want.Subjects
		if err := a.Client.Update(ctx, &existing); err != nil {
			return fmt.Errorf("updating ClusterRoleBinding %s: %w", AdminsBinding, err)
		}
		if len(removed) > 0 {
			a.Log.Info("Users no longer in the admin group lost cluster-admin", "group", a.Group, "users", removed)
		}
	}
	return nil
}

// adminsBinding binds cluster-admin to users, by name.
func adminsBinding(users []string) *rbacv1.ClusterRoleBinding {
	subjects := []rbacv1.Subject{}
	for _, u := range users {
		subjects = append(subjects, rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: u})
	}
	return &rbacv1.ClusterRoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: AdminsBinding},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   subjects,
	}
}

func removedUsers(had []rbacv1.Subject, now []string) []string {
	var out []string
	for _, s := range had {
		if s.Kind != rbacv1.UserKind || !slices.Contains(now, s.Name) {
			out = append(out, s.Kind+" "+s.Name)
		}
	}
	return out
}

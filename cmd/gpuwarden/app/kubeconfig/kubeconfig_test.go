package kubeconfig

import (
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

func uidOf(t *testing.T, p string) int {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Sys().(*syscall.Stat_t).Uid)
}

// `sudo gpuwarden kubeconfig --user alice -o /home/alice/.kube/config` leaves alice a file
// and a directory of her own; into somewhere else, root's unless --chown says otherwise;
// a link alice planted at the file is replaced, not followed.
func TestKubeconfigWrittenByRootIntoAHomeIsTheUsers(t *testing.T) {
	testutil.Require(t, os.Geteuid() == 0, "root, to write a file for another user")
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(base, "home", "alice")
	if err := os.MkdirAll(home, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, 54321, 54321); err != nil {
		t.Fatal(err)
	}
	lookup := func(name string) (*user.User, error) {
		if name != "alice" {
			return nil, user.UnknownUserError(name)
		}
		return &user.User{Username: "alice", Uid: "54321", Gid: "54321", HomeDir: home}, nil
	}
	write := func(o Options) error {
		o.lookup = lookup
		return o.Write([]byte("apiVersion: v1\n"))
	}

	p := filepath.Join(home, ".kube", "config")
	if err := write(Options{User: "alice", Output: p}); err != nil {
		t.Fatal(err)
	}
	if uidOf(t, p) != 54321 || uidOf(t, filepath.Dir(p)) != 54321 {
		t.Errorf("%s: uid %d, its directory uid %d; want alice's (54321)", p, uidOf(t, p), uidOf(t, filepath.Dir(p)))
	}
	if fi, _ := os.Stat(p); fi.Mode() != 0o600 {
		t.Errorf("%s: %v, want 0600", p, fi.Mode())
	}

	// A link alice planted at the file, to a file of root's.
	secret := filepath.Join(base, "secret")
	if err := os.WriteFile(secret, []byte("root's"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(home, "k")
	if err := os.Symlink(secret, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, 54321, 54321); err != nil {
		t.Fatal(err)
	}
	if err := write(Options{User: "alice", Output: link}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(secret); string(b) != "root's" || uidOf(t, secret) != 0 {
		t.Errorf("root's file behind alice's link: %q, uid %d", b, uidOf(t, secret))
	}

	// Outside her home: root's, unless asked.
	out := filepath.Join(base, "issued", "alice.kubeconfig")
	if err := write(Options{User: "alice", Output: out}); err != nil {
		t.Fatal(err)
	}
	if uidOf(t, out) != 0 {
		t.Errorf("%s outside alice's home was given to uid %d", out, uidOf(t, out))
	}
	if err := write(Options{User: "alice", Output: out, Chown: true}); err != nil {
		t.Fatal(err)
	}
	if uidOf(t, out) != 54321 {
		t.Errorf("%s with --chown: uid %d", out, uidOf(t, out))
	}

	// A user without a local account: the file stays root's; --chown says why it cannot.
	nobody := filepath.Join(base, "remote")
	if err := write(Options{User: "remote-user", Output: nobody}); err != nil || uidOf(t, nobody) != 0 {
		t.Errorf("a user without an account: %v", err)
	}
	var unknown user.UnknownUserError
	if err := write(Options{User: "remote-user", Output: nobody, Chown: true}); !errors.As(err, &unknown) {
		t.Errorf("--chown to a user without an account: %v", err)
	}
	// Not root: the caller's own file; --chown is refused.
	if err := write(Options{User: "alice", Output: nobody, Chown: true, euid: func() int { return 1000 }}); err == nil || !strings.Contains(err.Error(), "--chown needs root") {
		t.Errorf("--chown not as root: %v", err)
	}
	if err := write(Options{Output: nobody, Chown: true}); err == nil || !strings.Contains(err.Error(), "--chown needs --user") {
		t.Errorf("--chown without --user: %v", err)
	}

	// A home another account owns (shared, a system one) gets nothing given in it.
	shared := filepath.Join(base, "shared")
	if err := os.MkdirAll(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	lookupShared := func(string) (*user.User, error) {
		return &user.User{Uid: "54321", Gid: "54321", HomeDir: shared}, nil
	}
	o := Options{User: "alice", Output: filepath.Join(shared, "k"), lookup: lookupShared}
	if err := o.Write([]byte("x")); err != nil || uidOf(t, filepath.Join(shared, "k")) != 0 {
		t.Errorf("a home root owns: %v, uid %d", err, uidOf(t, filepath.Join(shared, "k")))
	}
}

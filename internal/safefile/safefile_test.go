package safefile

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

const uid, gid = 54321, 54322

// world is a home of uid's, inside a directory of root's, and a victim file and directory
// of root's beside it that a planted link points at.
type world struct {
	base, home, victim, victimDir string
	own                           *Owner
}

func newWorld(t *testing.T) world {
	t.Helper()
	testutil.Require(t, os.Geteuid() == 0, "root, to write files for another user")
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w := world{base: base, home: filepath.Join(base, "home", "alice"), victim: filepath.Join(base, "shadow"), victimDir: filepath.Join(base, "etc")}
	for _, d := range []string{w.home, w.victimDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(w.home, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(w.victim, []byte("root's secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	w.own = &Owner{UID: uid, GID: gid, Home: w.home}
	return w
}

// plant makes a link as the user would (owned by them, in directories of theirs).
func (w world) plant(t *testing.T, target, at string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(at), 0o755); err != nil {
		t.Fatal(err)
	}
	for d := filepath.Dir(at); d != w.home; d = filepath.Dir(d) {
		if err := os.Chown(d, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(target, at); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(at, uid, gid); err != nil {
		t.Fatal(err)
	}
}

// untouched checks the victims are as they were: root's, unchanged, nothing added.
func (w world) untouched(t *testing.T) {
	t.Helper()
	if b, err := os.ReadFile(w.victim); err != nil || string(b) != "root's secret" {
		t.Errorf("the victim file holds %q (%v)", b, err)
	}
	for _, p := range []string{w.victim, w.victimDir} {
		if o := owner(t, p); o != 0 {
			t.Errorf("%s was given to uid %d", p, o)
		}
	}
	if names, _ := os.ReadDir(w.victimDir); len(names) != 0 {
		t.Errorf("written into the victim directory: %v", names)
	}
}

func owner(t *testing.T, p string) int {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Sys().(*syscall.Stat_t).Uid)
}

func mode(t *testing.T, p string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

// noLeftovers checks no temporary file stayed behind.
func noLeftovers(t *testing.T, dir string) {
	t.Helper()
	names, _ := os.ReadDir(dir)
	for _, n := range names {
		if strings.Contains(n.Name(), ".tmp-") {
			t.Errorf("left behind: %s", filepath.Join(dir, n.Name()))
		}
	}
}

// Written into the user's home, the file and the directories made for it are the user's;
// the file is 0600, the directories 0700.
func TestWriteIntoAHomeGivesFileAndMadeDirectories(t *testing.T) {
	w := newWorld(t)
	p := filepath.Join(w.home, ".kube", "sub", "config")
	if err := Write(p, []byte("kubeconfig"), 0o600, w.own); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "kubeconfig" {
		t.Errorf("wrote %q", b)
	}
	for _, d := range []string{filepath.Join(w.home, ".kube"), filepath.Join(w.home, ".kube", "sub")} {
		if owner(t, d) != uid || mode(t, d).Perm() != 0o700 || !mode(t, d).IsDir() {
			t.Errorf("%s: uid %d, %v; want the user's, 0700", d, owner(t, d), mode(t, d))
		}
	}
	if owner(t, p) != uid || mode(t, p) != 0o600 {
		t.Errorf("%s: uid %d, %v; want the user's, 0600", p, owner(t, p), mode(t, p))
	}
	// A file root left there before is replaced, and given.
	if err := os.WriteFile(filepath.Join(w.home, "old"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(filepath.Join(w.home, "old"), []byte("new"), 0o600, w.own); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(w.home, "old")); string(b) != "new" || owner(t, filepath.Join(w.home, "old")) != uid {
		t.Errorf("the old file: %q, uid %d", b, owner(t, filepath.Join(w.home, "old")))
	}
	noLeftovers(t, filepath.Join(w.home, ".kube", "sub"))
	noLeftovers(t, w.home)
}

// Outside the home nothing is given: root asked for a file of its own there.
func TestWriteOutsideTheHomeStaysRoots(t *testing.T) {
	w := newWorld(t)
	p := filepath.Join(w.base, "kubeconfigs", "alice")
	if err := Write(p, []byte("k"), 0o600, w.own); err != nil {
		t.Fatal(err)
	}
	if owner(t, p) != 0 || owner(t, filepath.Dir(p)) != 0 || mode(t, p) != 0o600 {
		t.Errorf("%s: uid %d (dir %d), %v; want root's, 0600", p, owner(t, p), owner(t, filepath.Dir(p)), mode(t, p))
	}
	// A directory beside the home whose name begins like it is not in it.
	p = w.home + "-other/config"
	if err := Write(p, []byte("k"), 0o600, w.own); err != nil {
		t.Fatal(err)
	}
	if owner(t, p) != 0 {
		t.Errorf("%s was given away", p)
	}
	// Without a home, the gift is wherever root asked for it.
	p = filepath.Join(w.base, "asked", "config")
	if err := Write(p, []byte("k"), 0o600, &Owner{UID: uid, GID: gid}); err != nil {
		t.Fatal(err)
	}
	if owner(t, p) != uid || owner(t, filepath.Dir(p)) != uid {
		t.Errorf("%s asked to be given: uid %d", p, owner(t, p))
	}
}

// Links the user plants never make root write, chmod or chown anything but the file it
// made: a link at the file is replaced, a link on the way is refused.
func TestLinksPlantedByTheUser(t *testing.T) {
	for _, tc := range []struct {
		name     string
		plant    func(w world) (target, at string)
		path     string // under the home
		refusal  string // "" when the write succeeds
		replaced string // the link replaced by the file, under the home
	}{
		{name: "a link at the file to root's secret", path: ".kube/config",
			plant:    func(w world) (string, string) { return w.victim, filepath.Join(w.home, ".kube", "config") },
			replaced: ".kube/config"},
		{name: "a relative link at the file", path: "config",
			plant:    func(w world) (string, string) { return "../../shadow", filepath.Join(w.home, "config") },
			replaced: "config"},
		{name: "a dangling link at the file", path: ".kube/config",
			plant: func(w world) (string, string) {
				return filepath.Join(w.victimDir, "new"), filepath.Join(w.home, ".kube", "config")
			},
			replaced: ".kube/config"},
		{name: "the directory is a link to root's", path: ".kube/config",
			plant:   func(w world) (string, string) { return w.victimDir, filepath.Join(w.home, ".kube") },
			refusal: "is a symbolic link in a directory uid 54321 can change: not followed"},
		{name: "a link to / on the way", path: "a/etc/shadow",
			plant:   func(w world) (string, string) { return "/", filepath.Join(w.home, "a") },
			refusal: "not followed"},
		{name: "a link deeper than the directories made", path: "a/b/c/config",
			plant:   func(w world) (string, string) { return w.victimDir, filepath.Join(w.home, "a", "b") },
			refusal: "not followed"},
		{name: "a link to a file where a directory goes", path: "f/config",
			plant:   func(w world) (string, string) { return w.victim, filepath.Join(w.home, "f") },
			refusal: "not followed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			target, at := tc.plant(w)
			w.plant(t, target, at)
			err := Write(filepath.Join(w.home, tc.path), []byte("kubeconfig"), 0o600, w.own)
			switch {
			case tc.refusal == "" && err != nil:
				t.Fatalf("write: %v", err)
			case tc.refusal != "" && (err == nil || !strings.Contains(err.Error(), tc.refusal)):
				t.Fatalf("write: %v; want a refusal saying %q", err, tc.refusal)
			}
			w.untouched(t)
			if tc.replaced != "" {
				p := filepath.Join(w.home, tc.replaced)
				if m := mode(t, p); !m.IsRegular() || m.Perm() != 0o600 || owner(t, p) != uid {
					t.Errorf("%s: %v, uid %d; want the user's regular 0600 file in place of the link", p, m, owner(t, p))
				}
			}
		})
	}
}

// A link root made in a directory only root can change is followed, and what it leads into
// is judged where it really lies.
func TestRootsOwnLinksAreFollowed(t *testing.T) {
	w := newWorld(t)
	// /…/users → /…/home (root's): the home reached through the link is still the home.
	if err := os.Symlink(filepath.Join(w.base, "home"), filepath.Join(w.base, "users")); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(w.base, "users", "alice", ".kube", "config")
	if err := Write(p, []byte("k"), 0o600, w.own); err != nil {
		t.Fatal(err)
	}
	real := filepath.Join(w.home, ".kube", "config")
	if owner(t, real) != uid || owner(t, filepath.Dir(real)) != uid {
		t.Errorf("%s through root's link: uid %d; want the user's", real, owner(t, real))
	}
	// The owner's home named through the link: the same.
	own := &Owner{UID: uid, GID: gid, Home: filepath.Join(w.base, "users", "alice")}
	if err := Write(filepath.Join(w.home, "k2"), []byte("k"), 0o600, own); err != nil {
		t.Fatal(err)
	}
	if owner(t, filepath.Join(w.home, "k2")) != uid {
		t.Errorf("a home named through a link: the file is not given")
	}
	// A link in a directory others may write is refused, even one root owns.
	open := filepath.Join(w.base, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o1777); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(w.victimDir, filepath.Join(open, "l")); err != nil {
		t.Fatal(err)
	}
	if err := Write(filepath.Join(open, "l", "x"), []byte("k"), 0o600, nil); err == nil || !strings.Contains(err.Error(), "everyone can change") {
		t.Errorf("a link in a world-writable directory: %v", err)
	}
	w.untouched(t)
}

// A directory where the file goes is refused; so is a path naming no file.
func TestWriteRefusals(t *testing.T) {
	w := newWorld(t)
	if err := os.Mkdir(filepath.Join(w.home, "d"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Write(filepath.Join(w.home, "d"), []byte("k"), 0o600, w.own); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("over a directory: %v", err)
	}
	noLeftovers(t, w.home)
	if err := Write(w.home+"/", []byte("k"), 0o600, w.own); err == nil {
		t.Error("a path ending in / was written")
	}
	if err := os.WriteFile(filepath.Join(w.home, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(filepath.Join(w.home, "file", "x"), []byte("k"), 0o600, w.own); err == nil || !strings.Contains(err.Error(), "is not a directory") {
		t.Errorf("under a file: %v", err)
	}
}

// Package safefile writes a file for someone else, as root, into a place they can change
// (their home): the path is walked one directory at a time through file descriptors, a
// symbolic link is followed only where no one but root can have put it, the file is made
// under a fresh name with O_EXCL and renamed into place, and what is given to the owner is
// given by descriptor. Nothing a user plants on the way (a link at the file, a link in a
// directory, a directory swapped for a link while the walk goes on) makes root write,
// chmod or chown anything but the file it made.
package safefile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/gpuwarden/gpuwarden/internal/hostpath"
)

// Owner is whom a written file, and the directories made for it, are given to.
type Owner struct {
	UID, GID int
	// Home bounds the gift: only what lies in Home (or is Home) is given; "" gives
	// wherever the file is.
	Home string
}

// maxLinks bounds the symbolic links one walk follows, as the kernel does (ELOOP).
const maxLinks = 40

// Write writes data to path with mode, making the missing directories (0700). With owner,
// the file and the directories made are given to it where they lie in owner.Home. It
// replaces what stands at path (a link there is replaced, never followed).
func Write(path string, data []byte, mode fs.FileMode, owner *Owner) error {
	if err := write(path, data, mode, owner); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func write(path string, data []byte, mode fs.FileMode, owner *Owner) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	if strings.HasSuffix(path, "/") || filepath.Base(abs) == "/" {
		return errors.New("a file name is needed, not a directory")
	}
	home := ""
	if owner != nil && owner.Home != "" {
		home = hostpath.Resolve(filepath.Clean(owner.Home))
	}
	w := &walker{owner: owner, home: home}
	defer w.close()
	if err := w.walk(filepath.Dir(abs)); err != nil {
		return err
	}
	return w.writeFile(filepath.Base(abs), data, mode)
}

// walker holds the directories of the path walked so far, each open, and their real paths.
type walker struct {
	owner *Owner
	home  string
	fds   []int
	real  []string
}

func (w *walker) top() int        { return w.fds[len(w.fds)-1] }
func (w *walker) topPath() string { return w.real[len(w.real)-1] }

func (w *walker) push(fd int, path string) { w.fds, w.real = append(w.fds, fd), append(w.real, path) }

func (w *walker) close() {
	for _, fd := range w.fds {
		unix.Close(fd)
	}
	w.fds, w.real = nil, nil
}

// gives reports whether what lies at p is given to the owner.
func (w *walker) gives(p string) bool {
	if w.owner == nil {
		return false
	}
	return w.home == "" || p == w.home || strings.HasPrefix(p, strings.TrimSuffix(w.home, "/")+"/")
}

// walk opens every directory of dir from /, making those missing.
func (w *walker) walk(dir string) error {
	root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	w.push(root, "/")
	todo := split(dir)
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(w.fds) > 1 {
				unix.Close(w.top())
				w.fds, w.real = w.fds[:len(w.fds)-1], w.real[:len(w.real)-1]
			}
			continue
		}
		here := filepath.Join(w.topPath(), c)
		var st unix.Stat_t
		err := unix.Fstatat(w.top(), c, &st, unix.AT_SYMLINK_NOFOLLOW)
		made := false
		switch {
		case errors.Is(err, unix.ENOENT):
			if err := unix.Mkdirat(w.top(), c, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("making %s: %w", here, err)
			} else if err == nil {
				made = true
			}
		case err != nil:
			return fmt.Errorf("%s: %w", here, err)
		case st.Mode&unix.S_IFMT == unix.S_IFLNK:
			if links++; links > maxLinks {
				return fmt.Errorf("%s: too many symbolic links", here)
			}
			if who := w.changeableBy(); who != "" {
				return fmt.Errorf("%s is a symbolic link in a directory %s can change: not followed (name the path it points to, if that is meant)", here, who)
			}
			target, err := readlinkat(w.top(), c)
			if err != nil {
				return fmt.Errorf("%s: %w", here, err)
			}
			if filepath.IsAbs(target) {
				for len(w.fds) > 1 {
					unix.Close(w.top())
					w.fds, w.real = w.fds[:len(w.fds)-1], w.real[:len(w.real)-1]
				}
			}
			todo = append(split(target), todo...)
			continue
		case st.Mode&unix.S_IFMT != unix.S_IFDIR:
			return fmt.Errorf("%s is not a directory", here)
		}
		// O_PATH: a directory one may pass through (x) but not list (r) is walked as the
		// kernel would walk it.
		fd, err := unix.Openat(w.top(), c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			// Swapped for a link or a file since it was looked at: someone is at work in
			// the directory; nothing is done.
			return fmt.Errorf("opening %s: %w (did it change while being written?)", here, err)
		}
		w.push(fd, here)
		if made && w.gives(here) {
			if err := w.giveMadeDir(fd, here); err != nil {
				return err
			}
		}
	}
	return nil
}

// changeableBy names who besides root (and the caller) can change the directory on top,
// or is "" when no one can: a link there was put by root.
func (w *walker) changeableBy() string {
	var st unix.Stat_t
	if err := unix.Fstat(w.top(), &st); err != nil {
		return "someone"
	}
	switch {
	case st.Uid != 0 && int(st.Uid) != os.Geteuid():
		return fmt.Sprintf("uid %d", st.Uid)
	case st.Mode&0o002 != 0:
		return "everyone"
	case st.Mode&0o020 != 0:
		return fmt.Sprintf("group %d", st.Gid)
	}
	return ""
}

// giveMadeDir gives a directory just made to the owner, once it is sure the directory is
// the one made: the caller's, still empty (a directory swapped in under the name since
// would be given with what it holds).
func (w *walker) giveMadeDir(pathFD int, path string) error {
	// The directory itself, opened through the walk's descriptor of it (no name looked up
	// again), to be read and chowned.
	fd, err := unix.Openat(pathFD, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s changed while being made (now uid %d's): not given away", path, st.Uid)
	}
	empty, err := isEmpty(fd)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if !empty {
		return fmt.Errorf("%s changed while being made (it holds files now): not given away", path)
	}
	if err := unix.Fchown(fd, w.owner.UID, w.owner.GID); err != nil {
		return fmt.Errorf("giving %s to uid %d: %w", path, w.owner.UID, err)
	}
	return nil
}

// writeFile makes the file under a fresh name beside its place, writes it, gives it, and
// renames it into place.
func (w *walker) writeFile(name string, data []byte, mode fs.FileMode) error {
	dir := w.top()
	place := filepath.Join(w.topPath(), name)
	var tmp string
	fd := -1
	for range 10 {
		suffix := make([]byte, 8)
		_, _ = rand.Read(suffix)
		tmp = "." + name + ".tmp-" + hex.EncodeToString(suffix)
		var err error
		fd, err = unix.Openat(dir, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(mode.Perm()))
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("making a file in %s: %w", w.topPath(), err)
		}
	}
	if fd < 0 {
		return fmt.Errorf("making a file in %s: every name tried was taken", w.topPath())
	}
	f := os.NewFile(uintptr(fd), filepath.Join(w.topPath(), tmp))
	err := func() error {
		defer f.Close()
		if err := f.Chmod(mode.Perm()); err != nil { // the umask took some
			return err
		}
		if _, err := f.Write(data); err != nil {
			return err
		}
		if w.gives(w.topPath()) {
			if err := f.Chown(w.owner.UID, w.owner.GID); err != nil {
				return fmt.Errorf("giving it to uid %d: %w", w.owner.UID, err)
			}
		}
		return f.Sync()
	}()
	if err == nil {
		err = unix.Renameat(dir, tmp, dir, name)
		if errors.Is(err, unix.EISDIR) || errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
			err = fmt.Errorf("%s is a directory", place)
		}
	}
	if err != nil {
		_ = unix.Unlinkat(dir, tmp, 0)
		return err
	}
	if d, err := unix.Openat(dir, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
		_ = unix.Fsync(d) // the rename lasts a crash; a directory one may not read is left to the kernel
		unix.Close(d)
	}
	return nil
}

func split(p string) []string {
	var out []string
	if filepath.IsAbs(p) {
		p = strings.TrimLeft(p, "/")
	}
	for _, c := range strings.Split(p, "/") {
		if c != "" {
			out = append(out, c)
		}
	}
	return out
}

func readlinkat(dir int, name string) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Readlinkat(dir, name, buf)
	if err != nil {
		return "", err
	}
	if n >= len(buf) {
		return "", errors.New("a symbolic link too long")
	}
	return string(buf[:n]), nil
}

// isEmpty reports whether the open directory holds nothing.
func isEmpty(fd int) (bool, error) {
	dup, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	f := os.NewFile(uintptr(dup), ".")
	defer f.Close()
	names, err := f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return len(names) == 0, err
}

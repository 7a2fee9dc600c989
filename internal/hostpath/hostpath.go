// Package hostpath resolves host paths as the Docker engine will when it mounts them, so that
// a bind mount is checked at what it reaches, not at the name it was given.
package hostpath

import (
	"os"
	"path/filepath"
)

// Resolve resolves the symbolic links of the longest part of p that exists; a dangling link
// stays as it stands.
func Resolve(p string) string {
	rest := ""
	for cur := p; ; {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			return filepath.Join(r, rest)
		}
		if _, err := os.Lstat(cur); err == nil {
			return filepath.Join(cur, rest)
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return p
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}

// Moved tells whether a path that was resolved when a mount was declared resolves anywhere
// else now (a directory replaced by a symbolic link since), and where.
func Moved(resolvedThen string) (string, bool) {
	clean := filepath.Clean(resolvedThen)
	now := Resolve(clean)
	return now, now != clean
}

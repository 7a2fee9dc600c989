package hostpath

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMoved(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d := filepath.Join(dir, "d")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if to, moved := Moved(d); moved {
		t.Errorf("a directory: moved to %s", to)
	}
	if to, moved := Moved(filepath.Join(d, "not-yet")); moved {
		t.Errorf("a path not made yet: moved to %s", to)
	}
	if err := os.Remove(d); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/", d); err != nil {
		t.Fatal(err)
	}
	if to, moved := Moved(d); !moved || to != "/" {
		t.Errorf("a directory swapped for a link to /: %s %v", to, moved)
	}
	if to, moved := Moved(filepath.Join(d, "etc")); !moved || to != "/etc" {
		t.Errorf("below the link: %s %v", to, moved)
	}
}

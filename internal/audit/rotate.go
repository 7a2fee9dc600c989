package audit

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// rotatedTimeFormat names rotated files so that they sort by time.
const rotatedTimeFormat = "20060102T150405.000Z"

// rotatedName is events-20261122T051500.000Z.jsonl for events.jsonl.
func rotatedName(path string, t time.Time) string {
	ext := filepath.Ext(path)
	return fmt.Sprintf("%s-%s%s", strings.TrimSuffix(path, ext), t.UTC().Format(rotatedTimeFormat), ext)
}

// rotate renames the live file aside and opens a new one; compression and retention run in
// the background. Only whole lines are ever in the renamed file, so no line is lost or split.
func (w *Writer) rotate() error {
	now := w.o.Clock.Now()
	name := rotatedName(w.o.Path, now)
	for i := 1; exists(name) || exists(name+".gz"); i++ {
		name = rotatedName(w.o.Path, now.Add(time.Duration(i)*time.Millisecond))
	}
	if err := os.Rename(w.o.Path, name); err != nil {
		return fmt.Errorf("rotating %s: %w", w.o.Path, err)
	}
	w.f.Close()
	w.f = nil
	w.rotations.Add(1)
	w.bg.Add(1)
	go func() {
		defer w.bg.Done()
		if err := compress(name, w.o.FileMode); err != nil {
			w.report(err)
		}
		if err := prune(w.o.Path, w.o.MaxBackups); err != nil {
			w.report(err)
		}
	}()
	return w.openLive()
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// compress writes name.gz and then removes name. The .gz appears under its final name
// only when complete, and until name is removed readers skip it.
func compress(name string, mode os.FileMode) (err error) {
	in, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("compressing %s: %w", name, err)
	}
	defer in.Close()
	tmp := name + ".gz.tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|syscall.O_NOFOLLOW, mode)
	if err != nil {
		return fmt.Errorf("compressing %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			out.Close()
			os.Remove(tmp)
		}
	}()
	zw := gzip.NewWriter(out)
	if _, err = io.Copy(zw, in); err != nil {
		return fmt.Errorf("compressing %s: %w", name, err)
	}
	if err = zw.Close(); err != nil {
		return fmt.Errorf("compressing %s: %w", name, err)
	}
	if err = out.Sync(); err != nil {
		return fmt.Errorf("compressing %s: %w", name, err)
	}
	if err = out.Close(); err != nil {
		return fmt.Errorf("compressing %s: %w", name, err)
	}
	if err = os.Rename(tmp, name+".gz"); err != nil {
		return fmt.Errorf("compressing %s: %w", name, err)
	}
	return os.Remove(name)
}

// prune keeps the keep newest rotated files of path.
func prune(path string, keep int) error {
	rotated, err := rotatedFiles(path)
	if err != nil {
		return err
	}
	for len(rotated) > keep {
		if err := os.Remove(rotated[0]); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("removing old audit log %s: %w", rotated[0], err)
		}
		rotated = rotated[1:]
	}
	return nil
}

// rotatedFiles lists path's rotated files, oldest first. When both name and name.gz exist
// (compression has not finished removing name), only name is listed.
func rotatedFiles(path string) ([]string, error) {
	ext := filepath.Ext(path)
	pattern := strings.TrimSuffix(path, ext) + "-*" + ext
	plain, err := filepath.Glob(pattern)
	if err != nil {
		return nil, err
	}
	gz, err := filepath.Glob(pattern + ".gz")
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, p := range plain {
		seen[p] = true
	}
	out := plain
	for _, g := range gz {
		if !seen[strings.TrimSuffix(g, ".gz")] {
			out = append(out, g)
		}
	}
	sort.Slice(out, func(i, j int) bool { return strings.TrimSuffix(out[i], ".gz") < strings.TrimSuffix(out[j], ".gz") })
	return out, nil
}

// firstEventTime reads the first line's timestamp, or returns fallback.
func firstEventTime(path string, fallback time.Time) time.Time {
	f, err := os.Open(path)
	if err != nil {
		return fallback
	}
	defer f.Close()
	line, err := bufio.NewReaderSize(f, 4096).ReadSlice('\n')
	if err != nil && len(line) == 0 {
		return fallback
	}
	if e, ok := parseLine(line); ok && !e.Time.IsZero() {
		return e.Time
	}
	return fallback
}

// endsMidLine reports whether the file's last byte is not a newline.
func endsMidLine(path string, size int64) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, size-1); err != nil {
		return false
	}
	return b[0] != '\n'
}

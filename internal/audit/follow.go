package audit

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Follower reads the live file as it grows and carries on in the new live file after a
// rotation, so no line is missed or read twice.
type Follower struct {
	path    string
	m       *matcher
	f       *os.File
	r       *bufio.Reader
	partial []byte
	firstID string // of the open file, to find it again once rotated and compressed
	// lastFirst is the first event ID of the last rotated file read to its end.
	lastFirst string
	// Stats counts what was read.
	Stats ReadStats
}

// NewFollower follows the live file at path from its beginning; it need not exist yet.
func NewFollower(path string, f Filter) *Follower {
	return &Follower{path: path, m: f.matcher()}
}

// Open opens the live file now, if it exists, so that lines written from here on are
// read even if the file is rotated before the first Poll.
func (fo *Follower) Open() error {
	if fo.f != nil {
		return nil
	}
	f, err := os.Open(fo.path)
	if os.IsNotExist(err) {
		return nil // not written yet, or between rename and reopen
	}
	if err != nil {
		return fmt.Errorf("following %s: %w", fo.path, err)
	}
	fo.f, fo.r, fo.partial, fo.firstID = f, bufio.NewReaderSize(f, 1<<16), nil, ""
	return nil
}

// Poll reads every complete line available now and calls fn for each matching event.
func (fo *Follower) Poll(fn func(*Event) error) error {
	for {
		if fo.f == nil {
			if err := fo.Open(); err != nil {
				return err
			}
			// Files rotated since the last one read to its end come first.
			if err := fo.readRotatedAfter(fn); err != nil || fo.f == nil {
				return err
			}
		}
		if err := fo.drain(fn); err != nil {
			return err
		}
		if !fo.rotated() {
			return nil
		}
		// The writer renamed the file between two batches, perhaps several times since the
		// last poll: finish the old file; the next turn reads the files rotated after it,
		// then the live file.
		if err := fo.drain(fn); err != nil {
			return err
		}
		if fo.firstID != "" {
			fo.lastFirst = fo.firstID
		}
		fo.f.Close()
		fo.f = nil
	}
}

// readRotatedAfter reads the rotated files that came after the one that began with the
// event lastFirst, up to the file now open. Files are known by their first event's ID,
// which survives renaming and compression.
func (fo *Follower) readRotatedAfter(fn func(*Event) error) error {
	if fo.lastFirst == "" {
		return nil
	}
	files, err := rotatedFiles(fo.path)
	if err != nil {
		return err
	}
	current := ""
	if fo.f != nil {
		current = firstEventID(io.NewSectionReader(fo.f, 0, 1<<20), false)
	}
	ids := make([]string, len(files))
	start := -1
	for i, name := range files {
		ids[i] = firstEventIDOfFile(name)
		if ids[i] == fo.lastFirst {
			start = i + 1
		}
	}
	if start < 0 {
		return nil // the last file read is gone (retention): nothing to catch up from
	}
	for i, name := range files[start:] {
		if current != "" && ids[start+i] == current {
			break // rotated after we opened it: the handle reads it
		}
		if err := readFile(context.Background(), name, fo.m, &fo.Stats, fn); err != nil {
			return err
		}
		if ids[start+i] != "" {
			fo.lastFirst = ids[start+i]
		}
	}
	return nil
}

// firstEventIDOfFile returns the ID of the first event of a plain or gzip log file, looking
// for the .gz when the plain file has been compressed away.
func firstEventIDOfFile(name string) string {
	f, err := os.Open(name)
	if os.IsNotExist(err) && !strings.HasSuffix(name, ".gz") {
		name += ".gz"
		f, err = os.Open(name)
	}
	if err != nil {
		return ""
	}
	defer f.Close()
	return firstEventID(f, strings.HasSuffix(name, ".gz"))
}

func firstEventID(r io.Reader, gz bool) string {
	if gz {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return ""
		}
		defer zr.Close()
		r = zr
	}
	line, _ := bufio.NewReader(r).ReadBytes('\n')
	e, _ := parseLine(bytes.TrimSpace(line))
	return e.ID
}

// Close releases the file.
func (fo *Follower) Close() error {
	if fo.f == nil {
		return nil
	}
	return fo.f.Close()
}

func (fo *Follower) drain(fn func(*Event) error) error {
	for {
		chunk, err := fo.r.ReadSlice('\n')
		if len(chunk) > 0 {
			if err == nil {
				line := chunk
				if len(fo.partial) > 0 {
					line = append(fo.partial, chunk...)
					fo.partial = nil
				}
				if ferr := fo.handle(bytes.TrimSuffix(line, []byte{'\n'}), fn); ferr != nil {
					return ferr
				}
			} else {
				fo.partial = append(fo.partial, chunk...) // an incomplete line: wait for the rest
			}
		}
		switch {
		case err == nil:
		case err == bufio.ErrBufferFull:
		case err == io.EOF:
			return nil
		default:
			return fmt.Errorf("following %s: %w", fo.path, err)
		}
	}
}

func (fo *Follower) handle(line []byte, fn func(*Event) error) error {
	if len(bytes.TrimSpace(line)) == 0 {
		return nil
	}
	if fo.firstID == "" {
		e, _ := parseLine(line)
		fo.firstID = e.ID
	}
	fo.Stats.Lines++
	if len(line) > MaxLineSize {
		fo.Stats.TooLong++
		return nil
	}
	if fo.m.cannotMatch(line) {
		return nil
	}
	e, ok := parseLine(line)
	if !ok {
		fo.Stats.Malformed++
		return nil
	}
	if fo.m.match(&e) {
		return fn(&e)
	}
	return nil
}

// rotated reports whether the path now names another file than the one being read.
func (fo *Follower) rotated() bool {
	open, err := fo.f.Stat()
	if err != nil {
		return true
	}
	onDisk, err := os.Stat(fo.path)
	return err == nil && !os.SameFile(open, onDisk)
}

// Follow passes out the last events of the log at path that f matches, as last keeps them
// (NewLast), then, every poll, the new ones as they are written, across rotations, until ctx
// ends (nil) or out fails. The live file is opened before the rotated files are listed, so a
// rotation in between loses nothing; the events it would pass twice are recognised by their
// IDs, and so is a decision recorded again by a restarted server. out is called every poll,
// with no events when nothing new came; the stats say what was skipped.
func Follow(ctx context.Context, path string, f Filter, last *Last, poll time.Duration, out func([]Event) error) (ReadStats, error) {
	fo := NewFollower(path, f)
	defer fo.Close()
	if err := fo.Open(); err != nil {
		return fo.Stats, err
	}
	files, err := Files(path)
	if err != nil {
		return fo.Stats, err
	}
	seen := map[string]bool{}
	decisions := NewDecisions(FollowedDecisions)
	var rotated []string
	for _, name := range files {
		if name != path {
			rotated = append(rotated, name)
		}
	}
	st, err := Read(ctx, rotated, f, func(e *Event) error {
		decisions.Again(e)
		last.Add(*e)
		if e.ID != "" {
			seen[e.ID] = true
		}
		return nil
	})
	stats := func() ReadStats {
		return ReadStats{Lines: st.Lines + fo.Stats.Lines, Malformed: st.Malformed + fo.Stats.Malformed,
			TooLong: st.TooLong + fo.Stats.TooLong, Duplicates: st.Duplicates}
	}
	if err != nil {
		return stats(), err
	}
	first := true
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		var batch []Event
		err := fo.Poll(func(e *Event) error {
			if first && seen[e.ID] || decisions.Again(e) {
				return nil
			}
			batch = append(batch, *e)
			return nil
		})
		if err != nil {
			return stats(), err
		}
		if first {
			for _, e := range batch {
				last.Add(e)
			}
			batch, seen, first = last.Events(), nil, false
		}
		if err := out(batch); err != nil {
			return stats(), err
		}
		select {
		case <-ctx.Done():
			return stats(), nil
		case <-t.C:
		}
	}
}

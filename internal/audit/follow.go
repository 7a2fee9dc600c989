package audit

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
)

// Follower reads the live file as it grows and carries on in the new live file after a
// rotation, so no line is missed or read twice.
type Follower struct {
	path    string
	m       *matcher
	f       *os.File
	r       *bufio.Reader
	partial []byte
	// Stats counts what was read.
	Stats ReadStats
}

// NewFollower follows the live file at path from its beginning; it need not exist yet.
func NewFollower(path string, f Filter) *Follower {
	return &Follower{path: path, m: f.matcher()}
}

// Poll reads every complete line available now and calls fn for each matching event.
func (fo *Follower) Poll(fn func(*Event) error) error {
	for {
		if fo.f == nil {
			f, err := os.Open(fo.path)
			if os.IsNotExist(err) {
				return nil // not written yet, or between rename and reopen
			}
			if err != nil {
				return fmt.Errorf("following %s: %w", fo.path, err)
			}
			fo.f, fo.r, fo.partial = f, bufio.NewReaderSize(f, 1<<16), nil
		}
		if err := fo.drain(fn); err != nil {
			return err
		}
		if !fo.rotated() {
			return nil
		}
		// The writer renamed the file between two batches: what it wrote before is read
		// now, then the new live file from its start.
		if err := fo.drain(fn); err != nil {
			return err
		}
		fo.f.Close()
		fo.f = nil
	}
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
	fo.Stats.Lines++
	if len(line) > 1<<20 {
		fo.Stats.Malformed++
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

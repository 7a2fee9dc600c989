package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"
)

// Exec implements Engine: the command gets no terminal, no standard input and no
// privileges beyond the container's own, and runs as the container's configured user.
func (c *Client) Exec(ctx context.Context, id string, cmd []string, timeout time.Duration) (ExecResult, error) {
	created, err := c.api.ExecCreate(ctx, id, client.ExecCreateOptions{AttachStdout: true, AttachStderr: true, Cmd: cmd})
	if err != nil {
		return ExecResult{}, c.wrap("running a command in", id, err)
	}
	att, err := c.api.ExecAttach(ctx, created.ID, client.ExecAttachOptions{})
	if err != nil {
		return ExecResult{}, c.wrap("running a command in", id, err)
	}
	out := &Tail{Max: ExecOutputMax}
	done := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(out, out, att.Reader)
		done <- err
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	var res ExecResult
	select {
	case err = <-done:
	case <-t.C:
		res.Running = true
	case <-ctx.Done():
		res.Running = true
	}
	att.Close() // ends the copy where the time ran out; the command itself runs on
	if res.Running {
		<-done
		res.Output = out.String()
		return res, nil
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return ExecResult{}, fmt.Errorf("reading the output of a command in container %s: %w", ShortID(id), err)
	}
	// The stream ends when the process does; its exit code follows shortly after.
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for {
		in, err := c.api.ExecInspect(ictx, created.ID, client.ExecInspectOptions{})
		if err != nil {
			return ExecResult{}, c.wrap("inspecting a command in", id, err)
		}
		if !in.Running {
			return ExecResult{ExitCode: in.ExitCode, Output: out.String()}, nil
		}
		select {
		case <-ictx.Done():
			return ExecResult{Running: true, Output: out.String()}, nil
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Tail is an io.Writer that keeps the last Max bytes written to it.
type Tail struct {
	Max int
	buf []byte
	cut bool
}

// Write implements io.Writer; it never fails.
func (t *Tail) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) >= t.Max {
		t.cut = t.cut || len(p) > t.Max || len(t.buf) > 0
		t.buf = append(t.buf[:0], p[len(p)-t.Max:]...)
		return n, nil
	}
	if over := len(t.buf) + len(p) - t.Max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
		t.cut = true
	}
	t.buf = append(t.buf, p...)
	return n, nil
}

// String is what was kept, marked "…" at the start when earlier bytes were dropped.
func (t *Tail) String() string {
	if t.cut {
		return "…" + string(t.buf)
	}
	return string(t.buf)
}

// Package dockertest is an in-memory docker.Engine for unit tests, safe for concurrent use:
// containers are put in by the test, stopping and removing them changes their state and
// emits the events a real engine would, and every call that acts is recorded.
package dockertest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	pathpkg "path"
	"slices"
	"sync"
	"time"

	"github.com/gpuwarden/gpuwarden/internal/docker"
)

// Engine is a fake Docker engine.
type Engine struct {
	mu         sync.Mutex
	containers map[string]docker.Container
	subs       map[int]chan docker.Event
	nextSub    int
	calls      []string
	files      map[string]file // by container ID and path
	noDirs     map[string]bool // directories missing, by container ID and path
	stats      map[string]docker.Stats
	exec       func(id string, cmd []string) docker.ExecResult
	// Now stamps events and state changes; time.Now when nil.
	Now func() time.Time
	// ListErr, when set, fails List (an engine that is down); SetListErr changes it later.
	ListErr error
}

// SetListErr makes List fail with err (nil: work again), safe while the engine is in use.
func (e *Engine) SetListErr(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ListErr = err
}

var _ docker.Engine = (*Engine)(nil)

// New returns an engine holding containers.
func New(containers ...docker.Container) *Engine {
	e := &Engine{containers: map[string]docker.Container{}, subs: map[int]chan docker.Event{}, files: map[string]file{}, stats: map[string]docker.Stats{}}
	for _, c := range containers {
		e.containers[c.ID] = c
	}
	return e
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

// Put adds or replaces a container and emits action (e.g. "create", "start") for it.
func (e *Engine) Put(c docker.Container, action string) {
	e.mu.Lock()
	e.containers[c.ID] = c
	e.mu.Unlock()
	if action != "" {
		e.Emit(docker.Event{Action: action, ID: c.ID, Time: e.now()})
	}
}

// Emit sends an event to every open Events stream (dropped for a stream that is full).
func (e *Engine) Emit(ev docker.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ch := range e.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

// Calls returns the acting calls made so far ("stop ID 1s", "remove ID", "kill ID SIGKILL").
func (e *Engine) Calls() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.calls)
}

// Container returns a container's current state.
func (e *Engine) Container(id string) (docker.Container, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.containers[id]
	return c, ok
}

// List returns every container, in ID order.
func (e *Engine) List(context.Context) ([]docker.Container, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ListErr != nil {
		return nil, e.ListErr
	}
	var out []docker.Container
	for _, id := range slices.Sorted(maps.Keys(e.containers)) {
		out = append(out, e.containers[id])
	}
	return out, nil
}

// Ping answers like an engine that is up.
func (e *Engine) Ping(context.Context) error { return nil }

// Inspect returns one container.
func (e *Engine) Inspect(_ context.Context, id string) (docker.Container, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.containers[id]
	if !ok {
		return docker.Container{}, fmt.Errorf("container %s: %w", id, docker.ErrNotFound)
	}
	return c, nil
}

// Stop stops a container: it exits, and "stop" and "die" are emitted.
func (e *Engine) Stop(_ context.Context, id string, grace time.Duration) error {
	if err := e.act(id, fmt.Sprintf("stop %s %s", id, grace), func(c *docker.Container) {
		c.State, c.FinishedAt, c.PID = docker.StateExited, e.now(), 0
	}); err != nil {
		return err
	}
	e.Emit(docker.Event{Action: "stop", ID: id, Time: e.now()})
	e.Emit(docker.Event{Action: "die", ID: id, Time: e.now()})
	return nil
}

// Kill sends a signal; SIGKILL (or KILL) stops the container.
func (e *Engine) Kill(_ context.Context, id, signal string) error {
	stops := signal == "SIGKILL" || signal == "KILL" || signal == ""
	if err := e.act(id, fmt.Sprintf("kill %s %s", id, signal), func(c *docker.Container) {
		if stops {
			c.State, c.FinishedAt, c.PID = docker.StateExited, e.now(), 0
		}
	}); err != nil {
		return err
	}
	if stops {
		e.Emit(docker.Event{Action: "die", ID: id, Time: e.now()})
	}
	return nil
}

// Remove deletes a container (a running one only with force) and emits "destroy".
func (e *Engine) Remove(_ context.Context, id string, force bool) error {
	e.mu.Lock()
	c, ok := e.containers[id]
	e.calls = append(e.calls, fmt.Sprintf("remove %s", id))
	switch {
	case !ok:
		e.mu.Unlock()
		return fmt.Errorf("container %s: %w", id, docker.ErrNotFound)
	case c.State == docker.StateRunning && !force:
		e.mu.Unlock()
		return errors.New("cannot remove a running container without force")
	}
	delete(e.containers, id)
	e.mu.Unlock()
	e.Emit(docker.Event{Action: "destroy", ID: id, Time: e.now(), Attributes: map[string]string{"name": c.Name}})
	return nil
}

// Events streams events until ctx ends.
func (e *Engine) Events(ctx context.Context) (<-chan docker.Event, <-chan error, error) {
	ch := make(chan docker.Event, 256)
	errs := make(chan error, 1)
	e.mu.Lock()
	id := e.nextSub
	e.nextSub++
	e.subs[id] = ch
	e.mu.Unlock()
	go func() {
		<-ctx.Done()
		e.mu.Lock()
		delete(e.subs, id)
		e.mu.Unlock()
		errs <- ctx.Err()
	}()
	return ch, errs, nil
}

// Stats returns the counters SetStats gave the container (zero ones otherwise), stamped now.
func (e *Engine) Stats(_ context.Context, id string) (docker.Stats, error) {
	if _, err := e.Inspect(context.Background(), id); err != nil {
		return docker.Stats{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.stats[id]
	s.Read = e.now()
	return s, nil
}

// SetStats sets the cumulative counters Stats reports for a container.
func (e *Engine) SetStats(id string, s docker.Stats) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stats[id] = s
}

type file struct {
	content  []byte
	modified time.Time
	uid, gid int
}

// Touch creates or modifies a file inside a container at the given time.
func (e *Engine) Touch(id, path string, at time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f := e.files[id+":"+path]
	f.modified = at
	e.files[id+":"+path] = f
}

// File returns a file's content inside a container, false when it was never written.
func (e *Engine) File(id, path string) ([]byte, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f, ok := e.files[id+":"+path]
	return f.content, ok
}

// ModTime implements docker.Engine.
func (e *Engine) ModTime(_ context.Context, id, path string) (time.Time, error) {
	if _, err := e.Inspect(context.Background(), id); err != nil {
		return time.Time{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	f, ok := e.files[id+":"+path]
	if !ok {
		return time.Time{}, fmt.Errorf("%s in container %s: %w", path, id, docker.ErrNoFile)
	}
	return f.modified, nil
}

// NoDir makes a directory missing in a container: writing a file into it fails.
func (e *Engine) NoDir(id, dir string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.noDirs == nil {
		e.noDirs = map[string]bool{}
	}
	e.noDirs[id+":"+dir] = true
}

// WriteFile implements docker.Engine.
func (e *Engine) WriteFile(_ context.Context, id, path string, content []byte, uid, gid int) error {
	e.mu.Lock()
	missing := e.noDirs[id+":"+pathpkg.Dir(path)]
	e.mu.Unlock()
	if missing {
		if _, err := e.Inspect(context.Background(), id); err != nil {
			return err
		}
		return fmt.Errorf("%s in container %s: %w", pathpkg.Dir(path), id, docker.ErrNoFile)
	}
	return e.act(id, "write "+id+" "+path, func(*docker.Container) {
		e.files[id+":"+path] = file{content: append([]byte(nil), content...), modified: e.now(), uid: uid, gid: gid}
	})
}

func (e *Engine) act(id, call string, change func(*docker.Container)) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls = append(e.calls, call)
	c, ok := e.containers[id]
	if !ok {
		return fmt.Errorf("container %s: %w", id, docker.ErrNotFound)
	}
	change(&c)
	e.containers[id] = c
	return nil
}

// SetExec makes f what a command run in a container does; Exec records every call and,
// without f, answers exit code 0.
func (e *Engine) SetExec(f func(id string, cmd []string) docker.ExecResult) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.exec = f
}

// Exec implements docker.Engine.
func (e *Engine) Exec(_ context.Context, id string, cmd []string, _ time.Duration) (docker.ExecResult, error) {
	var res docker.ExecResult
	err := e.act(id, fmt.Sprintf("exec %s %q", id, cmd), func(c *docker.Container) {
		if e.exec != nil {
			res = e.exec(id, cmd)
		}
	})
	return res, err
}

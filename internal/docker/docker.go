// Package docker is gpuwarden's view of a Docker engine: a small consumer-shaped interface
// with domain structs in and out, and an adapter over the Docker Engine Go client. No Docker
// API type leaks past this package.
package docker

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound says the container does not exist (any more).
var ErrNotFound = errors.New("no such container")

// ErrNoFile says a file inside a container that exists does not exist.
var ErrNoFile = errors.New("no such file in the container")

// State is a container's state as the engine reports it.
type State string

// Container states.
const (
	StateCreated    State = "created"
	StateRunning    State = "running"
	StatePaused     State = "paused"
	StateRestarting State = "restarting"
	StateRemoving   State = "removing"
	StateExited     State = "exited"
	StateDead       State = "dead"
)

// Stopped reports whether a container in this state has run and is no longer running.
func (s State) Stopped() bool { return s == StateExited || s == StateDead }

// Container is what gpuwarden needs to know about one container.
type Container struct {
	ID     string
	Name   string
	Image  string
	Labels map[string]string
	State  State
	// Created, StartedAt and FinishedAt are zero when they have not happened.
	Created, StartedAt, FinishedAt time.Time
	// PID is the main process's host PID while running.
	PID int
	// GPUs are the GPUs the container asks the engine for.
	GPUs GPURequest
	// CgroupParent is the container's parent cgroup, when set.
	CgroupParent string
	// BindSources are the host paths its bind mounts name (BindSources).
	BindSources []string
}

// NeverStarted reports whether the container was created and never started.
func (c Container) NeverStarted() bool { return c.State == StateCreated && c.StartedAt.IsZero() }

// ShortID is a container ID as Docker shows it: its first 12 characters.
func ShortID(id string) string { return id[:min(12, len(id))] }

// StartStamp names the container's last start (its start time in UTC to the nanosecond;
// the zero time's for a container never started), as recorded on what was decided for it.
func (c Container) StartStamp() string { return c.StartedAt.UTC().Format(time.RFC3339Nano) }

// GPURequest is how a container asks for GPUs: by device request (`--gpus`) or by
// NVIDIA_VISIBLE_DEVICES with the nvidia runtime.
type GPURequest struct {
	// All: every GPU of the host (`--gpus all`, NVIDIA_VISIBLE_DEVICES=all).
	All bool
	// Count: the first Count GPUs (`--gpus 2`), as the engine's nvidia driver gives them.
	Count int
	// Devices: GPU or MIG UUIDs, or indices ("0", "1:2").
	Devices []string
}

// Any reports whether GPUs are asked for at all.
func (g GPURequest) Any() bool { return g.All || g.Count > 0 || len(g.Devices) > 0 }

// Event is one container event from the engine's stream.
type Event struct {
	// Action is the engine's action: create, start, stop, die, destroy, …
	Action string
	ID     string
	Time   time.Time
	// Attributes are the container's labels plus name, image and exitCode.
	Attributes map[string]string
}

// Stats is one sample of a container's resource use.
type Stats struct {
	Read time.Time
	// CPUNanos is the container's cumulative CPU time; SystemNanos the host's.
	CPUNanos, SystemNanos uint64
	OnlineCPUs            uint32
	// NetworkRxBytes and NetworkTxBytes are cumulative over every interface.
	NetworkRxBytes, NetworkTxBytes uint64
}

// Engine is a Docker engine.
type Engine interface {
	// List returns every container, in any state, fully inspected.
	List(ctx context.Context) ([]Container, error)
	// Inspect returns one container, or ErrNotFound.
	Inspect(ctx context.Context, id string) (Container, error)
	// Stop sends SIGTERM, then SIGKILL after grace.
	Stop(ctx context.Context, id string, grace time.Duration) error
	// Kill sends a signal (SIGKILL when empty).
	Kill(ctx context.Context, id, signal string) error
	// Remove removes a container that is not running (running ones only when force).
	Remove(ctx context.Context, id string, force bool) error
	// Events streams container events until ctx ends or the stream breaks; the error
	// channel then receives why. The stream is open when Events returns without error.
	Events(ctx context.Context) (<-chan Event, <-chan error, error)
	// Stats returns one sample of a running container's resource use, without the
	// engine's wait for a second sample.
	Stats(ctx context.Context, id string) (Stats, error)
	// ModTime returns when a file inside a container was last modified (ErrNoFile when the
	// container has no such file, ErrNotFound when the container does not exist), through
	// the engine's archive API: the container needs no tools.
	ModTime(ctx context.Context, id, path string) (time.Time, error)
	// WriteFile writes a file inside a container (mode 0644, owned by uid:gid), through
	// the engine's archive API; its directory must exist (ErrNoFile when it does not).
	WriteFile(ctx context.Context, id, path string, content []byte, uid, gid int) error
	// Exec runs cmd inside a running container as the container's own user, without a
	// terminal or privileges beyond the container's, and waits for it at most timeout: a
	// command still running then is left to the stop that follows (Running). ErrNotFound
	// when the container does not exist; an error when the engine could not start it.
	Exec(ctx context.Context, id string, cmd []string, timeout time.Duration) (ExecResult, error)
	// Ping asks the engine whether it answers.
	Ping(ctx context.Context) error
}

// ExecOutputMax is how much of an exec's output is kept: its last bytes.
const ExecOutputMax = 4096

// ExecResult is how a command run inside a container ended.
type ExecResult struct {
	// ExitCode is its exit status (meaningless while Running).
	ExitCode int
	// Running says it had not ended when its time was up.
	Running bool
	// Output is the tail of its standard output and error together, at most
	// ExecOutputMax bytes.
	Output string
}

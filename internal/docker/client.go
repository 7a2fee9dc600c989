package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	pathpkg "path"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"
)

// Client is an Engine over the Docker Engine API.
type Client struct {
	api *client.Client
}

var _ Engine = (*Client)(nil)

// New connects to the engine at Host(host) (unix:///var/run/docker.sock, tcp://…): an
// empty host means $DOCKER_HOST, else the standard socket. The rest of the environment
// ($DOCKER_TLS_VERIFY, $DOCKER_CERT_PATH, $DOCKER_API_VERSION) still applies. The API version
// is negotiated on first use, so engines from API 1.40 up work.
func New(host string) (*Client, error) {
	api, err := client.New(client.FromEnv, client.WithHost(Host(host)))
	if err != nil {
		return nil, fmt.Errorf("configuring the Docker client for %q: %w", host, err)
	}
	return &Client{api: api}, nil
}

// Close releases the client's connections.
func (c *Client) Close() error { return c.api.Close() }

// Ping asks the engine whether it answers.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.api.Ping(ctx, client.PingOptions{})
	return err
}

// List returns every container, fully inspected. A container removed between the list and
// its inspection is left out.
func (c *Client) List(ctx context.Context) ([]Container, error) {
	res, err := c.api.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return nil, fmt.Errorf("listing containers: %w", err)
	}
	out := make([]Container, 0, len(res.Items))
	for _, s := range res.Items {
		ct, err := c.Inspect(ctx, s.ID)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, ct)
	}
	return out, nil
}

// Inspect returns one container.
func (c *Client) Inspect(ctx context.Context, id string) (Container, error) {
	res, err := c.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return Container{}, c.wrap("inspecting", id, err)
	}
	return fromInspect(res.Container), nil
}

// Stop stops a container, waiting grace before SIGKILL.
func (c *Client) Stop(ctx context.Context, id string, grace time.Duration) error {
	secs := int(grace.Round(time.Second) / time.Second)
	_, err := c.api.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &secs})
	return c.wrap("stopping", id, err)
}

// Kill sends a signal.
func (c *Client) Kill(ctx context.Context, id, signal string) error {
	_, err := c.api.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: signal})
	return c.wrap("killing", id, err)
}

// Remove removes a container; volumes are kept.
func (c *Client) Remove(ctx context.Context, id string, force bool) error {
	_, err := c.api.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: force})
	return c.wrap("removing", id, err)
}

func (c *Client) wrap(verb, id string, err error) error {
	switch {
	case err == nil:
		return nil
	case cerrdefs.IsNotFound(err):
		return ErrNotFound
	default:
		return fmt.Errorf("%s container %s: %w", verb, ShortID(id), err)
	}
}

// wrapPath translates the error of a call on a path inside a container: the engine says
// 404 for a missing container and a missing path alike, and only a container that still
// exists has no such path (ErrNoFile).
func (c *Client) wrapPath(ctx context.Context, verb, id, path string, err error) error {
	err = c.wrap(verb, id, err)
	if !errors.Is(err, ErrNotFound) {
		return err
	}
	if _, ierr := c.Inspect(ctx, id); ierr != nil {
		return ierr
	}
	return fmt.Errorf("%s in container %s: %w", path, ShortID(id), ErrNoFile)
}

// Events streams container events.
func (c *Client) Events(ctx context.Context) (<-chan Event, <-chan error, error) {
	// Ping first: the client's event call reports a refused connection only through the
	// error channel, and the caller needs to know the stream really opened.
	if _, err := c.api.Ping(ctx, client.PingOptions{}); err != nil {
		return nil, nil, fmt.Errorf("reaching the Docker engine: %w", err)
	}
	res := c.api.Events(ctx, client.EventsListOptions{Filters: make(client.Filters).Add("type", string(events.ContainerEventType))})
	out := make(chan Event, 64)
	errs := make(chan error, 1)
	go func() {
		defer close(out)
		for {
			select {
			case m, ok := <-res.Messages:
				if !ok {
					errs <- fmt.Errorf("the Docker events stream ended")
					return
				}
				e := Event{Action: string(m.Action), ID: m.Actor.ID, Attributes: m.Actor.Attributes, Time: time.Unix(0, m.TimeNano)}
				if m.TimeNano == 0 {
					e.Time = time.Unix(m.Time, 0)
				}
				// Health checks report as "exec_start: …" and "health_status: …".
				e.Action, _, _ = strings.Cut(e.Action, ":")
				select {
				case out <- e:
				case <-ctx.Done():
					errs <- ctx.Err()
					return
				}
			case err := <-res.Err:
				if err == nil {
					err = fmt.Errorf("the Docker events stream ended")
				}
				errs <- fmt.Errorf("reading Docker events: %w", err)
				return
			}
		}
	}()
	return out, errs, nil
}

// Stats samples a container once.
func (c *Client) Stats(ctx context.Context, id string) (Stats, error) {
	res, err := c.api.ContainerStats(ctx, id, client.ContainerStatsOptions{Stream: false, IncludePreviousSample: false})
	if err != nil {
		return Stats{}, c.wrap("sampling", id, err)
	}
	defer res.Body.Close()
	var s container.StatsResponse
	if err := json.NewDecoder(res.Body).Decode(&s); err != nil {
		return Stats{}, fmt.Errorf("decoding stats of container %s: %w", ShortID(id), err)
	}
	out := Stats{Read: s.Read, CPUNanos: s.CPUStats.CPUUsage.TotalUsage, SystemNanos: s.CPUStats.SystemUsage, OnlineCPUs: s.CPUStats.OnlineCPUs}
	for _, n := range s.Networks {
		out.NetworkRxBytes += n.RxBytes
		out.NetworkTxBytes += n.TxBytes
	}
	return out, nil
}

// ModTime implements Engine.
func (c *Client) ModTime(ctx context.Context, id, path string) (time.Time, error) {
	res, err := c.api.ContainerStatPath(ctx, id, client.ContainerStatPathOptions{Path: path})
	if err != nil {
		return time.Time{}, c.wrapPath(ctx, "reading "+path+" of", id, path, err)
	}
	return res.Stat.Mtime, nil
}

// WriteFile implements Engine.
func (c *Client) WriteFile(ctx context.Context, id, path string, content []byte, uid, gid int) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{Name: pathpkg.Base(path), Mode: 0o644, Size: int64(len(content)), Uid: uid, Gid: gid, ModTime: time.Now(), Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("packing %s: %w", path, err)
	}
	if _, err := tw.Write(content); err != nil {
		return fmt.Errorf("packing %s: %w", path, err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("packing %s: %w", path, err)
	}
	_, err := c.api.CopyToContainer(ctx, id, client.CopyToContainerOptions{DestinationPath: pathpkg.Dir(path), Content: &buf, CopyUIDGID: true})
	return c.wrapPath(ctx, "writing "+path+" into", id, pathpkg.Dir(path), err)
}

// fromInspect translates the engine's answer.
func fromInspect(r container.InspectResponse) Container {
	c := Container{ID: r.ID, Name: strings.TrimPrefix(r.Name, "/"), Created: parseTime(r.Created)}
	if r.Config != nil {
		c.Image, c.Labels = r.Config.Image, r.Config.Labels
	}
	if r.State != nil {
		c.State, c.PID = State(r.State.Status), r.State.Pid
		c.StartedAt, c.FinishedAt = parseTime(r.State.StartedAt), parseTime(r.State.FinishedAt)
	}
	if r.HostConfig != nil {
		c.CgroupParent = r.HostConfig.CgroupParent
		c.BindSources = BindSources(r.HostConfig, r.Mounts)
		for _, d := range r.HostConfig.DeviceRequests {
			if !isGPURequest(d) {
				continue
			}
			switch {
			case len(d.DeviceIDs) > 0:
				for _, id := range d.DeviceIDs {
					c.GPUs.Devices = append(c.GPUs.Devices, splitList(id)...)
				}
			case d.Count < 0:
				c.GPUs.All = true
			default:
				c.GPUs.Count += d.Count
			}
		}
		if strings.Contains(r.HostConfig.Runtime, "nvidia") && r.Config != nil && !c.GPUs.Any() {
			c.GPUs = visibleDevices(r.Config.Env)
		}
	}
	if c.Labels == nil {
		c.Labels = map[string]string{}
	}
	return c
}

// BindSources are the host paths a container's bind mounts name: Binds with an absolute
// source, Mounts of type bind, and the bind mount points it has (those it took with
// --volumes-from among them).
func BindSources(hc *container.HostConfig, points []container.MountPoint) []string {
	var out []string
	add := func(src string) {
		if !slices.Contains(out, src) {
			out = append(out, src)
		}
	}
	for _, b := range hc.Binds {
		if src, _, _ := strings.Cut(b, ":"); strings.HasPrefix(src, "/") {
			add(src)
		}
	}
	for _, m := range hc.Mounts {
		if m.Type == mount.TypeBind {
			add(m.Source)
		}
	}
	for _, p := range points {
		if p.Type == mount.TypeBind {
			add(p.Source)
		}
	}
	return out
}

func isGPURequest(d container.DeviceRequest) bool {
	if d.Driver == "nvidia" {
		return true
	}
	for _, and := range d.Capabilities {
		for _, cap := range and {
			if cap == "gpu" || cap == "nvidia" {
				return true
			}
		}
	}
	return false
}

// visibleDevices reads NVIDIA_VISIBLE_DEVICES from a container's environment.
func visibleDevices(env []string) GPURequest {
	for _, kv := range env {
		v, ok := strings.CutPrefix(kv, "NVIDIA_VISIBLE_DEVICES=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(v) {
		case "", "none", "void":
			return GPURequest{}
		case "all":
			return GPURequest{All: true}
		default:
			return GPURequest{Devices: splitList(v)}
		}
	}
	return GPURequest{}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// parseTime reads the engine's timestamps; Go's zero time (never happened) stays zero.
func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() <= 1 {
		return time.Time{}
	}
	return t
}

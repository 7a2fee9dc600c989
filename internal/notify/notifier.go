// Package notify delivers what gpuwarden tells a container's owner besides the Event and
// the audit record: a file written into the container and a JSON POST to a webhook, checked
// against addresses notices must not reach.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/user"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/docker"
	"github.com/gpuwarden/gpuwarden/internal/message"
	"github.com/gpuwarden/gpuwarden/internal/metrics"
	"github.com/gpuwarden/gpuwarden/internal/resolve"
)

// Notice is what a warning or a stop tells a container's owner, besides the Event and the
// audit record: a file written into the container and a JSON POST to the policy's webhook.
type Notice struct {
	// Type is the audit record's type, e.g. lifecycle.idle_warning.
	Type        string     `json:"type"`
	Node        string     `json:"node"`
	User        string     `json:"user"`
	Container   string     `json:"container"`
	ContainerID string     `json:"containerID"`
	Allocation  string     `json:"allocation"`
	Policy      string     `json:"policy,omitempty"`
	Mode        string     `json:"mode"`
	Message     string     `json:"message"`
	StopAt      *time.Time `json:"stopAt,omitempty"`
	Time        time.Time  `json:"time"`
	// KeepAlive is the file that keeps an idle container alive, when the policy has one.
	KeepAlive string `json:"keepAlive,omitempty"`

	// File is the path inside the container the notice is written to; none when empty.
	File string `json:"-"`
	// Webhook is the URL the notice is posted to; none when empty.
	Webhook string `json:"-"`
	// Title heads the notice file: WARNING, NOTICE, STOPPED or WOULD STOP.
	Title string `json:"-"`
}

// Types of the notices that announce an action before it happens. They are not audit
// records: the removal and the release are recorded when they happen.
const (
	TypeRemoveWarning  = "lifecycle.remove_warning"
	TypeReleaseWarning = "lifecycle.release_warning"
)

// For is a notice to user about container c, held through allocation (empty when none),
// under policy p: what the policy says of where notices go, and who and what it is about.
func For(c docker.Container, user, allocation string, p resolve.Policy, node string, now time.Time) Notice {
	return Notice{Node: node, User: user, Container: message.ContainerName(c), ContainerID: c.ID, Allocation: allocation,
		Mode: string(p.Mode()), Time: now.UTC(), File: p.String("notify.file", ""), Webhook: p.String("notify.webhookURL", "")}
}

// Text is the notice as the file inside the container says it.
func (n Notice) Text() string {
	var b strings.Builder
	title := n.Title
	fmt.Fprintf(&b, "--- gpuwarden %s %s ---\n", title, n.Time.Format(time.RFC3339))
	if n.Container == "" && n.ContainerID == "" { // about an allocation no container uses
		fmt.Fprintf(&b, "Allocation %s of %s (node %s)\n%s\n", n.Allocation, n.User, n.Node, n.Message)
	} else {
		fmt.Fprintf(&b, "Container %s of %s (allocation %s, node %s)\n%s\n", n.Container, n.User, n.Allocation, n.Node, n.Message)
	}
	if n.StopAt != nil && title == "WARNING" {
		fmt.Fprintf(&b, "It will be stopped at %s.\n", n.StopAt.Format(time.RFC3339))
	}
	if n.KeepAlive != "" && title == "WARNING" {
		fmt.Fprintf(&b, "To keep it running, make it busy or touch %s.\n", n.KeepAlive)
	}
	if n.Mode != string(gpuwardenv1alpha1.ModeEnforce) {
		fmt.Fprintf(&b, "(Policy mode %s: nothing is stopped.)\n", n.Mode)
	}
	return b.String()
}

// webhookQueue bounds the notices waiting to be posted; beyond it they are dropped (and
// logged), never waited for.
const webhookQueue = 1024

// Notifier delivers notices: the file through the engine's archive API at once, the
// webhook from a queue with a short timeout and retries, so that neither a slow endpoint
// nor a full queue ever blocks a reconcile.
type Notifier struct {
	Engine docker.Engine
	// HTTP posts webhooks; one with a 5 s timeout when nil.
	HTTP *http.Client
	// AllowLocal lets webhooks target loopback and link-local addresses.
	AllowLocal bool
	Resolver   Resolver
	// Attempts is how many times a webhook is tried (3 when 0), Backoff the first wait
	// between tries (1 s when 0), doubling.
	Attempts int
	Backoff  time.Duration

	once  sync.Once
	queue chan Notice
}

// init fills in the defaults, once: Start and Tell may come first, side by side.
func (n *Notifier) init() { n.once.Do(n.defaults) }

func (n *Notifier) defaults() {
	if n.queue == nil {
		n.queue = make(chan Notice, webhookQueue)
	}
	if n.HTTP == nil {
		// Redirects are not followed: one could lead to an address notices must not reach.
		n.HTTP = &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if n.Attempts == 0 {
		n.Attempts = 3
	}
	if n.Backoff == 0 {
		n.Backoff = time.Second
	}
}

// Tell delivers a notice.
func (n *Notifier) Tell(ctx context.Context, notice Notice) {
	n.init()
	log := ctrl.LoggerFrom(ctx)
	if notice.File != "" {
		n.writeFile(ctx, notice)
	}
	if notice.Webhook == "" {
		return
	}
	select {
	case n.queue <- notice:
	default:
		log.Info("Too many notices waiting for their webhook; this one is dropped", "webhook", notice.Webhook, "type", notice.Type)
	}
}

// FallbackDir holds the notice file of a container whose image lacks the directory the
// policy names (an image without /workspace): every image has /tmp.
const FallbackDir = "/tmp"

// writeFile writes the notice file into the container, in FallbackDir when the policy's
// directory does not exist there.
func (n *Notifier) writeFile(ctx context.Context, notice Notice) {
	log := ctrl.LoggerFrom(ctx)
	uid, gid := ids(notice.User)
	text := []byte(notice.Text())
	write := func(path string) error {
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return n.Engine.WriteFile(fctx, notice.ContainerID, path, text, uid, gid)
	}
	err := write(notice.File)
	if errors.Is(err, docker.ErrNoFile) && path.Dir(notice.File) != FallbackDir {
		fallback := path.Join(FallbackDir, path.Base(notice.File))
		if err = write(fallback); err == nil {
			log.V(1).Info("The notice file's directory is not in the container; written beside it in "+FallbackDir, "file", notice.File, "written", fallback)
			return
		}
	}
	if err != nil {
		log.Info("Writing the notice file into the container", "file", notice.File, "error", err.Error())
	}
}

// ids are a login's user and group IDs, root's when it has none here.
func ids(login string) (int, int) {
	u, err := user.Lookup(login)
	if err != nil {
		return 0, 0
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid
}

// NeedLeaderElection: it only drains what the active controller queued.
func (n *Notifier) NeedLeaderElection() bool { return false }

// Start posts queued webhooks until ctx ends.
func (n *Notifier) Start(ctx context.Context) error {
	n.init()
	for {
		select {
		case <-ctx.Done():
			return nil
		case notice := <-n.queue:
			n.post(ctx, notice)
		}
	}
}

func (n *Notifier) post(ctx context.Context, notice Notice) {
	log := ctrl.LoggerFrom(ctx).WithName("notifier").WithValues("webhook", notice.Webhook, "type", notice.Type, "container", notice.Container)
	if !n.AllowLocal {
		if err := WebhookProblem(ctx, notice.Webhook, n.Resolver); err != nil {
			log.Info("Not posting the notice", "reason", err.Error())
			return
		}
	}
	body, err := json.Marshal(notice)
	if err != nil {
		return
	}
	wait := n.Backoff
	for attempt := 1; ; attempt++ {
		err := n.postOnce(ctx, notice.Webhook, body)
		if err == nil {
			metrics.WebhookPosts.WithLabelValues("ok").Inc()
			return
		}
		if attempt >= n.Attempts {
			metrics.WebhookPosts.WithLabelValues("failed").Inc()
			log.Info("Posting the notice failed; given up", "attempts", attempt, "error", err.Error())
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait *= 2
	}
}

func (n *Notifier) postOnce(ctx context.Context, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "gpuwarden")
	res, err := n.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode >= 300 {
		return fmt.Errorf("%s answered %s", url, res.Status)
	}
	return nil
}

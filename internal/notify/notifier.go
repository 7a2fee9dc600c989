// Package notify delivers what gpuwarden tells a container's owner besides the Event and
// the audit record: a file written into the container and a JSON POST to a webhook, checked
// against addresses notices must not reach.
package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
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

// Types of the notices about a request that waited for GPUs: it got them (its container is
// being created), or its create stopped waiting. The decisions themselves are recorded as
// gpu.allocate and gpu.reject.
const (
	TypeQueueStarted = "queue.started"
	TypeQueueGaveUp  = "queue.gave_up"
	// TypeQueueDigest is the daily notice of a user's requests still waiting.
	TypeQueueDigest = "queue.digest"
)

// Types of the notices about a user's GPU-hour budget: 80 % of it used, all of it used.
const (
	TypeBudgetWarning   = "budget.warning"
	TypeBudgetExhausted = "budget.exhausted"
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
	switch {
	case n.Container == "" && n.ContainerID == "" && n.Allocation == "": // about the user
		fmt.Fprintf(&b, "For %s\n%s\n", n.User, n.Message)
	case n.Container == "" && n.ContainerID == "": // about an allocation no container uses
		fmt.Fprintf(&b, "Allocation %s of %s (node %s)\n%s\n", n.Allocation, n.User, n.Node, n.Message)
	default:
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

// deliveryQueue bounds the deliveries waiting for a webhook or a mail server; beyond it
// they are dropped (counted and logged), never waited for.
const deliveryQueue = 1024

// workers post and mail side by side, so that a user's endpoint that never answers (each
// try bounded by the client's timeout) holds a few of them, not everyone's notices.
const workers = 16

// Notifier delivers notices: the file through the engine's archive API at once; the
// policy's webhook, the user's chat webhooks and their e-mail from a queue with short
// timeouts and retries, so that neither a slow endpoint nor a full queue ever blocks a
// reconcile.
type Notifier struct {
	Engine docker.Engine
	// HTTP posts webhooks; one with a 5 s timeout that dials no loopback or link-local
	// address (unless AllowLocal) when nil.
	HTTP *http.Client
	// AllowLocal lets webhooks target loopback and link-local addresses.
	AllowLocal bool
	Resolver   Resolver
	// Directory says where each user's notices go besides the container; none when nil.
	Directory Directory
	// Mail sends e-mail; none is sent when nil.
	Mail Mailer
	// Attempts is how many times a delivery is tried (3 when 0), Backoff the first wait
	// between tries (1 s when 0), doubling.
	Attempts int
	Backoff  time.Duration

	once  sync.Once
	queue chan delivery
	// queued counts each user's deliveries waiting in queue: one user's flood of notices
	// (and their endpoints that never answer) must not crowd out everyone else's.
	queuedMu sync.Mutex
	queued   map[string]int
}

// perUserQueue bounds the deliveries of one user waiting at once.
const perUserQueue = 32

// delivery is one notice on its way through one channel.
type delivery struct {
	notice  Notice
	channel string
	// to is the webhook's URL or the mail address.
	to     string
	format gpuwardenv1alpha1.ChatFormat
}

// The channels deliveries are counted by.
const (
	ChannelFile    = "file"
	ChannelWebhook = "webhook"
	ChannelChat    = "chat"
	ChannelEmail   = "email"
)

// init fills in the defaults, once: Start and Tell may come first, side by side.
func (n *Notifier) init() { n.once.Do(n.defaults) }

func (n *Notifier) defaults() {
	if n.queue == nil {
		n.queue = make(chan delivery, deliveryQueue)
	}
	if n.HTTP == nil {
		n.HTTP = webhookClient(n.AllowLocal)
	}
	if n.Attempts == 0 {
		n.Attempts = 3
	}
	if n.Backoff == 0 {
		n.Backoff = time.Second
	}
}

// Tell delivers a notice: the file at once, every other channel from the queue.
func (n *Notifier) Tell(ctx context.Context, notice Notice) {
	n.init()
	if notice.File != "" && n.Engine != nil {
		n.writeFile(ctx, notice)
	}
	if notice.Webhook != "" {
		n.enqueue(ctx, delivery{notice: notice, channel: ChannelWebhook, to: notice.Webhook, format: gpuwardenv1alpha1.ChatJSON})
	}
	if n.Directory == nil || notice.User == "" {
		return
	}
	ch, err := n.Directory.Channels(ctx, notice.User)
	if err != nil {
		ctrl.LoggerFrom(ctx).Info("Reading where the user's notices go; only the container and the policy's webhook are told", "user", notice.User, "error", err.Error())
		return
	}
	for _, w := range ch.Webhooks {
		if w.URL == notice.Webhook && w.Format == gpuwardenv1alpha1.ChatJSON {
			continue
		}
		n.enqueue(ctx, delivery{notice: notice, channel: ChannelChat, to: w.URL, format: w.Format})
	}
	if ch.Email != "" && n.Mail != nil {
		n.enqueue(ctx, delivery{notice: notice, channel: ChannelEmail, to: ch.Email})
	}
}

func (n *Notifier) enqueue(ctx context.Context, d delivery) {
	user := d.notice.User
	n.queuedMu.Lock()
	if n.queued == nil {
		n.queued = map[string]int{}
	}
	full := n.queued[user] >= perUserQueue
	if !full {
		n.queued[user]++
	}
	n.queuedMu.Unlock()
	if full {
		metrics.NoticeDeliveries.WithLabelValues(d.channel, "dropped").Inc()
		ctrl.LoggerFrom(ctx).Info("Too many of this user's notices waiting for delivery; this one is dropped", "channel", d.channel, "type", d.notice.Type, "user", user)
		return
	}
	select {
	case n.queue <- d:
	default:
		n.dequeued(user)
		metrics.NoticeDeliveries.WithLabelValues(d.channel, "dropped").Inc()
		ctrl.LoggerFrom(ctx).Info("Too many notices waiting for delivery; this one is dropped", "channel", d.channel, "type", d.notice.Type, "user", user)
	}
}

// dequeued counts one of user's deliveries out of the queue.
func (n *Notifier) dequeued(user string) {
	n.queuedMu.Lock()
	defer n.queuedMu.Unlock()
	if n.queued[user]--; n.queued[user] <= 0 {
		delete(n.queued, user)
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
		}
	}
	if err != nil {
		metrics.NoticeDeliveries.WithLabelValues(ChannelFile, "failed").Inc()
		log.Info("Writing the notice file into the container", "file", notice.File, "error", err.Error())
		return
	}
	metrics.NoticeDeliveries.WithLabelValues(ChannelFile, "ok").Inc()
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

// Start delivers queued notices until ctx ends.
func (n *Notifier) Start(ctx context.Context) error {
	n.init()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case d := <-n.queue:
					n.deliver(ctx, d)
					n.dequeued(d.notice.User)
				}
			}
		})
	}
	wg.Wait()
	return nil
}

// deliver tries a delivery Attempts times with a doubling wait, and counts how it ended.
func (n *Notifier) deliver(ctx context.Context, d delivery) {
	log := ctrl.LoggerFrom(ctx).WithName("notifier").WithValues("channel", d.channel, "type", d.notice.Type, "user", d.notice.User, "container", d.notice.Container)
	send, err := n.sender(ctx, d)
	if err != nil {
		metrics.NoticeDeliveries.WithLabelValues(d.channel, "refused").Inc()
		log.Info("Not delivering the notice", "reason", err.Error())
		return
	}
	wait := n.Backoff
	for attempt := 1; ; attempt++ {
		err := send(ctx)
		if err == nil {
			metrics.NoticeDeliveries.WithLabelValues(d.channel, "ok").Inc()
			return
		}
		if attempt >= n.Attempts || ctx.Err() != nil {
			metrics.NoticeDeliveries.WithLabelValues(d.channel, "failed").Inc()
			log.Info("Delivering the notice failed; given up", "attempts", attempt, "error", err.Error())
			return
		}
		select {
		case <-ctx.Done():
			metrics.NoticeDeliveries.WithLabelValues(d.channel, "failed").Inc()
			return
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// sender is the one try of a delivery, or why it must not be tried at all.
func (n *Notifier) sender(ctx context.Context, d delivery) (func(context.Context) error, error) {
	if d.channel == ChannelEmail {
		msg, err := Mail(d.notice, d.to)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) error { return n.Mail.Send(ctx, d.to, msg) }, nil
	}
	if !n.AllowLocal {
		if err := WebhookProblem(ctx, d.to, n.Resolver); err != nil {
			return nil, err
		}
	}
	body, err := ChatBody(d.notice, d.format)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error { return n.postOnce(ctx, d.to, body) }, nil
}

func (n *Notifier) postOnce(ctx context.Context, url string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "gpuwarden")
	res, err := n.HTTP.Do(req)
	if err != nil {
		var ue *neturl.Error
		if errors.As(err, &ue) {
			return fmt.Errorf("%s %s: %w", ue.Op, redact(url), ue.Err)
		}
		return err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	if res.StatusCode >= 300 {
		return fmt.Errorf("%s answered %s", redact(url), res.Status)
	}
	return nil
}

// TryNow delivers a notice through each of the channels once, now, and says how each
// took it (a test notice: the user waits for the answer).
func (n *Notifier) TryNow(ctx context.Context, notice Notice, ch Channels) []Result {
	n.init()
	var ds []delivery
	for _, w := range ch.Webhooks {
		ds = append(ds, delivery{notice: notice, channel: ChannelChat, to: w.URL, format: w.Format})
	}
	if ch.Email != "" && n.Mail != nil {
		ds = append(ds, delivery{notice: notice, channel: ChannelEmail, to: ch.Email})
	}
	out := make([]Result, 0, len(ds))
	for _, d := range ds {
		r := Result{Channel: d.channel, To: d.to}
		if d.channel != ChannelEmail {
			r.To = string(d.format) + " " + redact(d.to)
		}
		send, err := n.sender(ctx, d)
		if err == nil {
			err = send(ctx)
		}
		result := "ok"
		if err != nil {
			r.Error, result = err.Error(), "failed"
		}
		metrics.NoticeDeliveries.WithLabelValues(d.channel, result).Inc()
		out = append(out, r)
	}
	return out
}

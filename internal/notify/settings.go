package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

// Settings are where one user's notices go, as they read and set them through the gateway.
type Settings struct {
	// Email, DisableEmail and Webhooks are the user's own profile.
	Email        string                      `json:"email,omitempty"`
	DisableEmail bool                        `json:"disableEmail,omitempty"`
	Webhooks     []gpuwardenv1alpha1.Webhook `json:"webhooks,omitempty"`
	// QueueDigest asks for a daily notice of the user's requests still waiting.
	QueueDigest bool `json:"queueDigest,omitempty"`

	// In force, read only: the address mail goes to (theirs, else the admin's template),
	// whether the server sends mail at all, and every webhook of every profile of the
	// user (an admin may have written one too), their URLs cut after the host.
	EffectiveEmail string   `json:"effectiveEmail,omitempty"`
	MailServer     bool     `json:"mailServer"`
	Profiles       []string `json:"profiles,omitempty"`
	InForce        []string `json:"webhooksInForce,omitempty"`
}

// Result is how one channel took a test notice.
type Result struct {
	Channel string `json:"channel"`
	To      string `json:"to"`
	Error   string `json:"error,omitempty"`
}

// TestInterval is how often a user may send themselves a test notice.
const TestInterval = time.Minute

// Store reads and writes users' own NotificationProfiles and sends them test notices. The
// gateway calls it with the login the kernel gave: a user reaches only their own.
type Store struct {
	// Client writes profiles; Directory reads them, uncached (the API server's word: what
	// a user just set is what they read back).
	Client    client.Client
	Directory Profiles
	Notifier  *Notifier
	Clock     clock.PassiveClock
	// Node names the node in a test notice.
	Node string

	mu       sync.Mutex
	lastTest map[string]time.Time
}

// NameFor is the name of user's own profile: the login where it is a valid object name,
// else a name made of it that is.
func NameFor(user string) string {
	if len(validation.IsDNS1123Subdomain(user)) == 0 {
		return user
	}
	sum := sha256.Sum256([]byte(user))
	keep := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r - 'A' + 'a'
		}
		return '-'
	}, user)
	if len(keep) > 40 {
		keep = keep[:40]
	}
	return strings.Trim(keep, "-") + "-" + hex.EncodeToString(sum[:4])
}

// Get is user's settings, as the gateway serves them.
func (s *Store) Get(ctx context.Context, user string) (any, error) { return s.get(ctx, user) }

// Set reads Settings from body and stores them, as the gateway takes them.
func (s *Store) Set(ctx context.Context, user string, body io.Reader) (any, error) {
	var in Settings
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return nil, &Invalid{Msg: "reading the settings: " + err.Error()}
	}
	return s.Put(ctx, user, in)
}

// get is user's settings.
func (s *Store) get(ctx context.Context, user string) (Settings, error) {
	var list gpuwardenv1alpha1.NotificationProfileList
	if err := s.Directory.Reader.List(ctx, &list); err != nil {
		return Settings{}, fmt.Errorf("listing NotificationProfiles: %w", err)
	}
	out := Settings{MailServer: s.Notifier != nil && s.Notifier.Mail != nil}
	for _, np := range list.Items {
		if np.Spec.User != user {
			continue
		}
		out.Profiles = append(out.Profiles, np.Name)
		if np.Name == NameFor(user) {
			out.Email, out.DisableEmail, out.Webhooks, out.QueueDigest = np.Spec.Email, np.Spec.DisableEmail, np.Spec.Webhooks, np.Spec.QueueDigest
		}
		for _, w := range np.Spec.Webhooks {
			out.InForce = append(out.InForce, string(w.Format)+" "+redact(w.URL))
		}
	}
	ch, err := s.Directory.Channels(ctx, user)
	if err != nil {
		return Settings{}, err
	}
	out.EffectiveEmail = ch.Email
	return out, nil
}

// Put makes in the user's own profile exactly what in says (its read-only fields
// ignored), and returns the settings then in force.
func (s *Store) Put(ctx context.Context, user string, in Settings) (Settings, error) {
	if err := s.check(ctx, in); err != nil {
		return Settings{}, err
	}
	spec := gpuwardenv1alpha1.NotificationProfileSpec{User: user, Email: in.Email, DisableEmail: in.DisableEmail, Webhooks: in.Webhooks, QueueDigest: in.QueueDigest}
	for i := range spec.Webhooks {
		if spec.Webhooks[i].Format == "" {
			spec.Webhooks[i].Format = gpuwardenv1alpha1.ChatJSON
		}
	}
	np := &gpuwardenv1alpha1.NotificationProfile{}
	err := s.Directory.Reader.Get(ctx, client.ObjectKey{Name: NameFor(user)}, np)
	switch {
	case apierrors.IsNotFound(err):
		np = &gpuwardenv1alpha1.NotificationProfile{ObjectMeta: metav1.ObjectMeta{Name: NameFor(user)}, Spec: spec}
		err = s.Client.Create(ctx, np)
	case err == nil && np.Spec.User != user:
		return Settings{}, fmt.Errorf("NotificationProfile %s is another user's (%s); ask an admin to rename it", np.Name, np.Spec.User)
	case err == nil:
		np.Spec = spec
		err = s.Client.Update(ctx, np)
	}
	if apierrors.IsInvalid(err) {
		var st apierrors.APIStatus
		if errors.As(err, &st) {
			return Settings{}, &Invalid{Msg: strings.ReplaceAll(st.Status().Message, "NotificationProfile.gpuwarden.io \""+NameFor(user)+"\" is invalid: ", "")}
		}
	}
	if err != nil {
		return Settings{}, fmt.Errorf("writing NotificationProfile %s: %w", NameFor(user), err)
	}
	return s.get(ctx, user)
}

// Invalid is a setting that cannot be stored, and why.
type Invalid struct{ Msg string }

func (e *Invalid) Error() string { return e.Msg }

// BadRequest says the caller is to fix it.
func (e *Invalid) BadRequest() bool { return true }

// check refuses what no notice could use: an address that is none, a webhook notices must
// not reach (unless the server allows local ones), an unknown format.
func (s *Store) check(ctx context.Context, in Settings) error {
	if in.Email != "" {
		if a, err := mail.ParseAddress(in.Email); err != nil || a.Address != in.Email {
			return &Invalid{Msg: fmt.Sprintf("email %q is not a plain e-mail address (user@example.org)", in.Email)}
		}
	}
	for _, w := range in.Webhooks {
		if _, err := ChatBody(Notice{}, w.Format); err != nil {
			return &Invalid{Msg: err.Error()}
		}
		if s.Notifier != nil && s.Notifier.AllowLocal {
			continue
		}
		var r Resolver
		if s.Notifier != nil {
			r = s.Notifier.Resolver
		}
		lookup, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := WebhookProblem(lookup, w.URL, r)
		cancel()
		if err != nil {
			return &Invalid{Msg: err.Error()}
		}
	}
	return nil
}

// Test sends user a test notice through each of their channels now, once, and says how
// each took it; at most once per TestInterval.
func (s *Store) Test(ctx context.Context, user string) (any, error) {
	now := s.Clock.Now()
	s.mu.Lock()
	if last, ok := s.lastTest[user]; ok && now.Sub(last) < TestInterval {
		s.mu.Unlock()
		return nil, &Invalid{Msg: fmt.Sprintf("a test notice was sent at %s; one a minute", last.UTC().Format(time.RFC3339))}
	}
	if s.lastTest == nil {
		s.lastTest = map[string]time.Time{}
	}
	s.lastTest[user] = now
	s.mu.Unlock()
	ch, err := s.Directory.Channels(ctx, user)
	if err != nil {
		return nil, err
	}
	n := Notice{Type: TypeTest, Node: s.Node, User: user, Title: "TEST", Time: now.UTC(),
		Message: "A test notice: gpuwarden's warnings and stops of your containers reach you here."}
	return s.Notifier.TryNow(ctx, n, ch), nil
}

// TypeTest is the type of a test notice a user sends themselves.
const TypeTest = "notice.test"

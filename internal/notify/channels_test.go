package notify

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/scheme"
	"github.com/gpuwarden/gpuwarden/internal/testutil"
)

var when = time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)

func warning() Notice {
	stop := when.Add(6 * time.Minute)
	return Notice{Type: "lifecycle.idle_warning", Node: "gpu01", User: "alice", Container: "nb-<!channel>", ContainerID: "c1",
		Allocation: "alice-nb", Mode: "Enforce", Title: "WARNING", Message: "Idle for 24m of 30m @here", StopAt: &stop, Time: when}
}

// TestChatBodies: each format is the body its service takes, and nothing a notice quotes
// mentions a channel.
func TestChatBodies(t *testing.T) {
	n := warning()
	for _, tc := range []struct {
		format gpuwardenv1alpha1.ChatFormat
		check  func(map[string]any) string
	}{
		{gpuwardenv1alpha1.ChatSlack, func(m map[string]any) string {
			text, _ := m["text"].(string)
			if !strings.Contains(text, "will be stopped at 2026-12-03T14:06:00Z") || strings.Contains(text, "<!channel>") || !strings.Contains(text, "&lt;!channel&gt;") {
				return "text " + text
			}
			return ""
		}},
		{gpuwardenv1alpha1.ChatMattermost, func(m map[string]any) string {
			text, _ := m["text"].(string)
			if m["username"] != "gpuwarden" || strings.Contains(text, "@here") || !strings.Contains(text, "Idle for 24m of 30m") {
				return "text " + text
			}
			return ""
		}},
		{gpuwardenv1alpha1.ChatTeams, func(m map[string]any) string {
			atts, _ := m["attachments"].([]any)
			if m["type"] != "message" || len(atts) != 1 {
				return "not a message with one attachment"
			}
			att := atts[0].(map[string]any)
			card, _ := att["content"].(map[string]any)
			if att["contentType"] != "application/vnd.microsoft.card.adaptive" || card["type"] != "AdaptiveCard" {
				return "not an Adaptive Card"
			}
			body, _ := json.Marshal(card["body"])
			if !strings.Contains(string(body), "Idle for 24m of 30m") {
				return "card body " + string(body)
			}
			return ""
		}},
		{gpuwardenv1alpha1.ChatJSON, func(m map[string]any) string {
			if m["type"] != "lifecycle.idle_warning" || m["user"] != "alice" || m["stopAt"] != "2026-12-03T14:06:00Z" {
				return "notice fields"
			}
			return ""
		}},
	} {
		t.Run(string(tc.format), func(t *testing.T) {
			data, err := ChatBody(n, tc.format)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(data, &m); err != nil {
				t.Fatal(err)
			}
			if why := tc.check(m); why != "" {
				t.Errorf("%s: %s\n%s", tc.format, why, data)
			}
		})
	}
	if _, err := ChatBody(n, "IRC"); err == nil || !strings.Contains(err.Error(), "Slack, Mattermost, Teams or JSON") {
		t.Errorf("an unknown format: %v", err)
	}
}

// TestMailIsOneMessage: the subject is one line whatever the notice says, the body is the
// notice with CRLF line ends, and the address must be one.
func TestMailIsOneMessage(t *testing.T) {
	n := warning()
	n.Container = "nb\r\nBcc: victim@example.org"
	msg, err := Mail(n, "alice@lab.example.org")
	if err != nil {
		t.Fatal(err)
	}
	head, body, ok := strings.Cut(string(msg), "\r\n\r\n")
	if !ok {
		t.Fatalf("no header end:\n%s", msg)
	}
	for _, line := range strings.Split(head, "\r\n") {
		if strings.HasPrefix(line, "Bcc:") {
			t.Errorf("a header line came from the notice: %q", line)
		}
	}
	for _, want := range []string{"To: <alice@lab.example.org>", "Subject: gpuwarden WARNING: container nb  Bcc: victim@example.org on gpu01 will be stopped at 2026-12-03T14:06:00Z", "Content-Type: text/plain; charset=utf-8"} {
		if !strings.Contains(head, want) {
			t.Errorf("header lacks %q:\n%s", want, head)
		}
	}
	if !strings.Contains(body, "Idle for 24m of 30m @here\r\nIt will be stopped at") {
		t.Errorf("body:\n%s", body)
	}
	if _, err := Mail(n, "not an address"); err == nil {
		t.Error("mail to a string that is no address")
	}
}

func profiles(objs ...client.Object) client.Client {
	return fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(objs...).WithStatusSubresource(objs...).Build()
}

func profile(name, user string, spec gpuwardenv1alpha1.NotificationProfileSpec) *gpuwardenv1alpha1.NotificationProfile {
	spec.User = user
	return &gpuwardenv1alpha1.NotificationProfile{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
}

// TestChannelsOfAUser: a user's own address beats the admin's rule, a profile that turns
// mail off wins, webhooks of every profile of the user count, and nobody else's.
func TestChannelsOfAUser(t *testing.T) {
	hook := gpuwardenv1alpha1.Webhook{URL: "https://chat.example.org/hooks/a", Format: gpuwardenv1alpha1.ChatMattermost}
	c := profiles(
		profile("alice", "alice", gpuwardenv1alpha1.NotificationProfileSpec{Email: "a@home.example.org", Webhooks: []gpuwardenv1alpha1.Webhook{hook}}),
		profile("alice-by-admin", "alice", gpuwardenv1alpha1.NotificationProfileSpec{Webhooks: []gpuwardenv1alpha1.Webhook{{URL: "https://hooks.slack.com/x", Format: gpuwardenv1alpha1.ChatSlack}}}),
		profile("bob", "bob", gpuwardenv1alpha1.NotificationProfileSpec{DisableEmail: true, Webhooks: []gpuwardenv1alpha1.Webhook{{URL: "https://bob.example.org/h"}}}),
	)
	d := Profiles{Reader: c, EmailTemplate: "{user}@lab.example.org"}
	for _, tc := range []struct {
		user      string
		wantEmail string
		wantHooks int
	}{
		{"alice", "a@home.example.org", 2},
		{"bob", "", 1},
		{"carol", "carol@lab.example.org", 0},
	} {
		ch, err := d.Channels(context.Background(), tc.user)
		if err != nil {
			t.Fatal(err)
		}
		if ch.Email != tc.wantEmail || len(ch.Webhooks) != tc.wantHooks {
			t.Errorf("%s: email %q, %d webhooks; want %q, %d", tc.user, ch.Email, len(ch.Webhooks), tc.wantEmail, tc.wantHooks)
		}
	}
	if err := CheckEmailTemplate("lab.example.org"); err == nil || !strings.Contains(err.Error(), "{user}") {
		t.Errorf("a template without {user}: %v", err)
	}
}

type mailbox struct {
	mu   sync.Mutex
	to   []string
	fail int
}

func (m *mailbox) Send(_ context.Context, to string, _ []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail > 0 {
		m.fail--
		return io.ErrUnexpectedEOF
	}
	m.to = append(m.to, to)
	return nil
}

func (m *mailbox) got() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.to...)
}

// TestEveryNoticeReachesTheUsersChannels: a notice goes to the policy's webhook and to each
// of the user's channels, a failing one is retried, and none blocks Tell.
func TestEveryNoticeReachesTheUsersChannels(t *testing.T) {
	var mu sync.Mutex
	bodies := map[string][]string{}
	failures := 1
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path == "/slack" && failures > 0 {
			failures--
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		bodies[r.URL.Path] = append(bodies[r.URL.Path], string(b))
	}))
	defer srv.Close()
	c := profiles(profile("alice", "alice", gpuwardenv1alpha1.NotificationProfileSpec{Webhooks: []gpuwardenv1alpha1.Webhook{
		{URL: srv.URL + "/slack", Format: gpuwardenv1alpha1.ChatSlack}, {URL: srv.URL + "/teams", Format: gpuwardenv1alpha1.ChatTeams}}}))
	mails := &mailbox{fail: 1}
	n := &Notifier{AllowLocal: true, Directory: Profiles{Reader: c, EmailTemplate: "{user}@lab.example.org"}, Mail: mails, Backoff: time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = n.Start(ctx) }()
	w := warning()
	w.Webhook = srv.URL + "/policy"
	n.Tell(ctx, w)
	testutil.Eventually(t, 10*time.Second, "the policy's webhook, both chat webhooks and the mail", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		got := mails.got()
		return len(bodies["/policy"]) == 1 && len(bodies["/slack"]) == 1 && len(bodies["/teams"]) == 1 && len(got) == 1 && got[0] == "alice@lab.example.org",
			strings.Join(got, ",") + " " + strings.Join(keys(bodies), ",")
	})
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(bodies["/slack"][0], `"text"`) || !strings.Contains(bodies["/teams"][0], "AdaptiveCard") || !strings.Contains(bodies["/policy"][0], `"containerID":"c1"`) {
		t.Errorf("bodies: %v", bodies)
	}
}

func keys(m map[string][]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"×"+string(rune('0'+len(v))))
	}
	return out
}

// TestAWebhookNeverDialsThisMachine: without --allow-local-webhooks, the client that posts
// refuses a loopback address when it connects, whatever a name said when it was checked.
func TestAWebhookNeverDialsThisMachine(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	_, err := webhookClient(false).Post(srv.URL, "application/json", strings.NewReader("{}"))
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("posting to %s: %v; want a refusal naming loopback", srv.URL, err)
	}
	if _, err := webhookClient(true).Post(srv.URL, "application/json", strings.NewReader("{}")); err != nil {
		t.Errorf("with local webhooks allowed: %v", err)
	}
}

// TestAUserSetsOnlyTheirOwn: Put writes the caller's own profile, refuses what no notice
// could use with a message naming it, and a test notice goes at most once a minute.
func TestAUserSetsOnlyTheirOwn(t *testing.T) {
	c := profiles(profile("alice", "bob", gpuwardenv1alpha1.NotificationProfileSpec{}))
	clk := clocktesting.NewFakeClock(when)
	s := &Store{Client: c, Directory: Profiles{Reader: c}, Notifier: &Notifier{Resolver: nil}, Clock: clk, Node: "gpu01"}
	ctx := context.Background()
	if _, err := s.Put(ctx, "carol", Settings{Email: "carol@lab.example.org"}); err != nil {
		t.Fatal(err)
	}
	np := &gpuwardenv1alpha1.NotificationProfile{}
	if err := c.Get(ctx, client.ObjectKey{Name: "carol"}, np); err != nil || np.Spec.User != "carol" || np.Spec.Email != "carol@lab.example.org" {
		t.Fatalf("carol's profile: %v %+v", err, np.Spec)
	}
	// The daily digest of waiting requests is hers to ask for, and is what the directory says.
	got, err := s.Set(ctx, "carol", strings.NewReader(`{"email":"carol@lab.example.org","queueDigest":true}`))
	if err != nil || !got.(Settings).QueueDigest {
		t.Fatalf("carol asks for the queue digest: %v %+v", err, got)
	}
	if ch, err := (Profiles{Reader: c}).Channels(ctx, "carol"); err != nil || !ch.QueueDigest || ch.Email != "carol@lab.example.org" {
		t.Errorf("carol's channels: %v %+v; want the digest and her address", err, ch)
	}
	if _, err := s.Put(ctx, "alice", Settings{Email: "a@x.example.org"}); err == nil || !strings.Contains(err.Error(), "another user's (bob)") {
		t.Errorf("alice writing the profile named alice that is bob's: %v", err)
	}
	for _, bad := range []Settings{
		{Email: "carol@lab.example.org\r\nBcc: x@y.example.org"},
		{Webhooks: []gpuwardenv1alpha1.Webhook{{URL: "http://127.0.0.1:6443/api", Format: gpuwardenv1alpha1.ChatJSON}}},
		{Webhooks: []gpuwardenv1alpha1.Webhook{{URL: "http://169.254.169.254/latest/meta-data", Format: gpuwardenv1alpha1.ChatSlack}}},
		{Webhooks: []gpuwardenv1alpha1.Webhook{{URL: "https://chat.example.org/h", Format: "IRC"}}},
	} {
		_, err := s.Put(ctx, "carol", bad)
		var inv *Invalid
		if err == nil || !errors.As(err, &inv) {
			t.Errorf("settings %+v: %v; want a refusal the caller reads", bad, err)
		}
	}
	if _, err := s.Set(ctx, "carol", strings.NewReader(`{"email":"c@lab.example.org","user":"alice"}`)); err == nil || !strings.Contains(err.Error(), `unknown field "user"`) {
		t.Errorf("a body naming another user: %v", err)
	}
	if _, err := s.Test(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Test(ctx, "carol"); err == nil || !strings.Contains(err.Error(), "one a minute") {
		t.Errorf("a second test at once: %v", err)
	}
	clk.Step(TestInterval)
	if _, err := s.Test(ctx, "carol"); err != nil {
		t.Errorf("a test a minute later: %v", err)
	}
}

func TestNameFor(t *testing.T) {
	for user, want := range map[string]string{"alice": "alice", "j.doe": "j.doe"} {
		if got := NameFor(user); got != want {
			t.Errorf("NameFor(%q) = %q, want %q", user, got, want)
		}
	}
	for _, user := range []string{"J_Doe", "Alice", "x$"} {
		if got := NameFor(user); got == user || len(validation.IsDNS1123Subdomain(got)) > 0 {
			t.Errorf("NameFor(%q) = %q: not a valid name", user, got)
		}
	}
	if NameFor("J_Doe") == NameFor("j_doe") || NameFor("Alice") == NameFor("alice") {
		t.Error("two logins share a profile name")
	}
}

// TestOneUsersFloodLeavesRoomForOthers: a user's deliveries waiting at once are bounded, so
// that another user's notice still finds room in the queue.
func TestOneUsersFloodLeavesRoomForOthers(t *testing.T) {
	n := &Notifier{}
	n.init()
	for range perUserQueue + 10 {
		n.enqueue(context.Background(), delivery{notice: Notice{User: "mallory"}, channel: ChannelChat})
	}
	n.enqueue(context.Background(), delivery{notice: Notice{User: "alice"}, channel: ChannelChat})
	if got := len(n.queue); got != perUserQueue+1 {
		t.Fatalf("%d deliveries queued, want mallory's %d and alice's one", got, perUserQueue)
	}
	// As they are delivered, room comes back.
	d := <-n.queue
	n.dequeued(d.notice.User)
	n.enqueue(context.Background(), delivery{notice: Notice{User: "mallory"}, channel: ChannelChat})
	if got := len(n.queue); got != perUserQueue+1 {
		t.Errorf("after one delivered: %d queued, want %d", got, perUserQueue+1)
	}
}

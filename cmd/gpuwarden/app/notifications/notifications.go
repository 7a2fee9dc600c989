// Package notifications is the `gpuwarden notifications` command: where a user's own
// notices go (e-mail, chat webhooks), read and set through the gateway, which knows who
// is asking from the kernel.
package notifications

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
	"github.com/gpuwarden/gpuwarden/internal/gateway"
	"github.com/gpuwarden/gpuwarden/internal/notify"
)

// options are the flags every subcommand shares.
type options struct {
	Socket string
}

// NewCommand returns `gpuwarden notifications`.
func NewCommand() *cobra.Command {
	o := &options{}
	cmd := &cobra.Command{
		Use:     "notifications",
		Aliases: []string{"notification", "notify"},
		Short:   "Show or set where your own notices go: e-mail and chat webhooks",
		Long: `gpuwarden tells you before it stops, removes or gives back the GPUs of your containers,
and when it does: in the container (a notice file), in Events and the audit log, and through
the channels this command sets: an e-mail address (when your admin runs a mail relay) and up
to four chat webhooks in Slack, Mattermost or Microsoft Teams format, or plain JSON.

You set only your own: the gateway knows who you are from the kernel. Without a setting of
your own, mail goes to the address your admin's rule makes of your login.`,
		Example: `  gpuwarden notifications
  gpuwarden notifications set --email alice@lab.example.org
  gpuwarden notifications set --webhook Slack=https://hooks.slack.com/services/T0/B0/XXXX
  gpuwarden notifications set --no-email --clear-webhooks
  gpuwarden notifications test`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var s notify.Settings
			if err := o.ask(cmd.Context(), http.MethodGet, gateway.NotificationsPath, nil, &s); err != nil {
				return err
			}
			return show(cmd.OutOrStdout(), s)
		},
	}
	cmd.PersistentFlags().StringVar(&o.Socket, "gateway-socket", "", "the gateway's socket (default: $DOCKER_HOST when it is unix://…, as the profile script sets it, else "+gateway.DefaultSocket+")")
	cmd.AddCommand(o.setCommand(), o.testCommand())
	return cmd
}

func (o *options) setCommand() *cobra.Command {
	var (
		email                 string
		noEmail, defaultEmail bool
		webhooks              []string
		clearWebhooks         bool
		digest                bool
	)
	cmd := &cobra.Command{
		Use:   "set",
		Short: "Change where your notices go (what you do not name stays as it is)",
		Example: `  gpuwarden notifications set --email alice@lab.example.org
  gpuwarden notifications set --webhook Mattermost=https://chat.lab.example.org/hooks/abc123
  gpuwarden notifications set --clear-webhooks --webhook Teams=https://example.webhook.office.com/…
  gpuwarden notifications set --default-email
  gpuwarden notifications set --queue-digest`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var s notify.Settings
			if err := o.ask(cmd.Context(), http.MethodGet, gateway.NotificationsPath, nil, &s); err != nil {
				return err
			}
			switch {
			case email != "":
				s.Email, s.DisableEmail = email, false
			case defaultEmail:
				s.Email, s.DisableEmail = "", false
			case noEmail:
				s.DisableEmail = true
			}
			if clearWebhooks {
				s.Webhooks = nil
			}
			for _, w := range webhooks {
				hook, err := parseWebhook(w)
				if err != nil {
					return err
				}
				s.Webhooks = append(s.Webhooks, hook)
			}
			if cmd.Flags().Changed("queue-digest") {
				s.QueueDigest = digest
			}
			in := notify.Settings{Email: s.Email, DisableEmail: s.DisableEmail, Webhooks: s.Webhooks, QueueDigest: s.QueueDigest}
			var out notify.Settings
			if err := o.ask(cmd.Context(), http.MethodPut, gateway.NotificationsPath, in, &out); err != nil {
				return err
			}
			return show(cmd.OutOrStdout(), out)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&email, "email", "", "mail your notices to this address")
	fs.BoolVar(&noEmail, "no-email", false, "send you no mail")
	fs.BoolVar(&defaultEmail, "default-email", false, "mail the address your admin's rule makes of your login")
	fs.StringArrayVar(&webhooks, "webhook", nil, "add a chat webhook, FORMAT=URL (FORMAT: Slack, Mattermost, Teams or JSON); repeatable, at most 4 in all")
	fs.BoolVar(&clearWebhooks, "clear-webhooks", false, "remove your webhooks (before adding those given with --webhook)")
	fs.BoolVar(&digest, "queue-digest", false, "a notice once a day for each day a request of yours still waits for GPUs (--queue-digest=false: none)")
	cmd.MarkFlagsMutuallyExclusive("email", "no-email", "default-email")
	return cmd
}

func (o *options) testCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "test",
		Short: "Send yourself a test notice through each channel now, and say how each took it (once a minute)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var rs []notify.Result
			if err := o.ask(cmd.Context(), http.MethodPost, gateway.NotificationsTestPath, nil, &rs); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if len(rs) == 0 {
				fmt.Fprintln(out, "You have no e-mail address or webhook that gpuwarden sends to; see `gpuwarden notifications set --help`.")
				return nil
			}
			failed := 0
			for _, r := range rs {
				if r.Error != "" {
					failed++
					fmt.Fprintf(out, "%-7s %s: FAILED: %s\n", r.Channel, r.To, r.Error)
					continue
				}
				fmt.Fprintf(out, "%-7s %s: sent\n", r.Channel, r.To)
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d channels did not take the test notice", failed, len(rs))
			}
			return nil
		},
	}
}

// parseWebhook reads FORMAT=URL.
func parseWebhook(s string) (gpuwardenv1alpha1.Webhook, error) {
	f, u, ok := strings.Cut(s, "=")
	if !ok || !strings.Contains(u, "://") {
		return gpuwardenv1alpha1.Webhook{}, fmt.Errorf("--webhook %q: want FORMAT=URL, e.g. Slack=https://hooks.slack.com/services/…", s)
	}
	for _, known := range []gpuwardenv1alpha1.ChatFormat{gpuwardenv1alpha1.ChatSlack, gpuwardenv1alpha1.ChatMattermost, gpuwardenv1alpha1.ChatTeams, gpuwardenv1alpha1.ChatJSON} {
		if strings.EqualFold(f, string(known)) {
			return gpuwardenv1alpha1.Webhook{URL: u, Format: known}, nil
		}
	}
	return gpuwardenv1alpha1.Webhook{}, fmt.Errorf("--webhook %q: format %q is none of Slack, Mattermost, Teams, JSON", s, f)
}

// show prints the settings in force.
func show(w io.Writer, s notify.Settings) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	mail := s.EffectiveEmail
	switch {
	case s.DisableEmail || mail == "":
		mail = "none"
	case s.Email == "":
		mail += " (your admin's rule)"
	}
	if !s.MailServer {
		mail += " (this gpuwarden sends no mail: no --smtp-server)"
	}
	fmt.Fprintf(tw, "E-MAIL\t%s\n", mail)
	if len(s.InForce) == 0 {
		fmt.Fprintf(tw, "WEBHOOKS\tnone\n")
	}
	for i, h := range s.InForce {
		head := ""
		if i == 0 {
			head = "WEBHOOKS"
		}
		fmt.Fprintf(tw, "%s\t%s\n", head, h)
	}
	digest := "none"
	if s.QueueDigest {
		digest = "daily, for each day a request of yours still waits"
	}
	fmt.Fprintf(tw, "DIGEST\t%s\n", digest)
	return tw.Flush()
}

// ask sends a request to the gateway and decodes its JSON answer into out.
func (o *options) ask(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	socket := gateway.ClientSocket(o.Socket)
	var d net.Dialer
	hc := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, "unix", socket) },
	}}
	req, err := http.NewRequestWithContext(ctx, method, "http://gpuwarden"+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("asking gpuwarden at %s: %w", socket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("reading gpuwarden's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Message string }
		if json.Unmarshal(data, &e) == nil && e.Message != "" {
			return fmt.Errorf("%s", e.Message)
		}
		return fmt.Errorf("gpuwarden at %s answered %s: %s", socket, resp.Status, data)
	}
	return json.Unmarshal(data, out)
}

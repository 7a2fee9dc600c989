package notify

import (
	"context"
	"fmt"
	"net/mail"
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/client"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

// Channels are where one user's notices go besides the container and the policy's webhook.
type Channels struct {
	// Email is the address notices are mailed to; none when empty.
	Email    string
	Webhooks []gpuwardenv1alpha1.Webhook
	// QueueDigest: the user asked for a daily notice of their requests still waiting.
	QueueDigest bool
}

// Directory says where a user's notices go.
type Directory interface {
	Channels(ctx context.Context, user string) (Channels, error)
}

// Profiles is the Directory of the NotificationProfiles, with the admin's rule for an
// address when a user sets none (--notify-email-template, {user} the login).
type Profiles struct {
	Reader client.Reader
	// EmailTemplate makes a user's address of their login: "{user}@example.org". No mail
	// for users without their own address when empty.
	EmailTemplate string
}

// Channels are the channels of every profile of user: their address (a profile's, else
// the template's; none when a profile disables mail) and their webhooks.
func (p Profiles) Channels(ctx context.Context, user string) (Channels, error) {
	var list gpuwardenv1alpha1.NotificationProfileList
	if err := p.Reader.List(ctx, &list); err != nil {
		return Channels{}, fmt.Errorf("listing NotificationProfiles: %w", err)
	}
	var ch Channels
	disabled := false
	for _, np := range list.Items {
		if np.Spec.User != user {
			continue
		}
		if np.Spec.Email != "" && ch.Email == "" {
			ch.Email = np.Spec.Email
		}
		disabled = disabled || np.Spec.DisableEmail
		ch.QueueDigest = ch.QueueDigest || np.Spec.QueueDigest
		ch.Webhooks = append(ch.Webhooks, np.Spec.Webhooks...)
	}
	if ch.Email == "" {
		ch.Email = EmailOf(p.EmailTemplate, user)
	}
	if disabled {
		ch.Email = ""
	}
	return ch, nil
}

// EmailOf is the address the template makes of a login; empty when there is no template
// or it makes no address.
func EmailOf(template, user string) string {
	if template == "" {
		return ""
	}
	a, err := mail.ParseAddress(strings.ReplaceAll(template, "{user}", user))
	if err != nil {
		return ""
	}
	return a.Address
}

// CheckEmailTemplate says what is wrong with an --notify-email-template.
func CheckEmailTemplate(template string) error {
	if template == "" {
		return nil
	}
	if !strings.Contains(template, "{user}") {
		return fmt.Errorf("--notify-email-template %q: it must contain {user}, the login (e.g. '{user}@example.org')", template)
	}
	if EmailOf(template, "alice") == "" {
		return fmt.Errorf("--notify-email-template %q: %q is not an e-mail address", template, strings.ReplaceAll(template, "{user}", "alice"))
	}
	return nil
}

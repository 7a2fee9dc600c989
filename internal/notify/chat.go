package notify

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	gpuwardenv1alpha1 "github.com/gpuwarden/gpuwarden/api/v1alpha1"
)

// Summary is the notice in one line: what happened to which container, for a chat
// message's head and an e-mail's subject.
func (n Notice) Summary() string {
	title := n.Title
	if title == "" {
		title = "NOTICE"
	}
	s := fmt.Sprintf("gpuwarden %s: container %s on %s", title, n.Container, n.Node)
	switch {
	case n.Container == "" && n.Allocation == "": // about the user, not one container
		s = fmt.Sprintf("gpuwarden %s: %s", title, n.User)
	case n.Container == "":
		s = fmt.Sprintf("gpuwarden %s: allocation %s on %s", title, n.Allocation, n.Node)
	}
	if n.StopAt != nil && title == "WARNING" {
		s += " will be stopped at " + n.StopAt.UTC().Format(time.RFC3339)
	}
	return oneLine(s)
}

// oneLine replaces control characters (a line break would start a new mail header) by
// spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// ChatBody is the notice as a webhook of the format takes it: Slack's and Mattermost's
// {"text": …}, an Adaptive Card for Microsoft Teams, the notice itself for JSON.
func ChatBody(n Notice, f gpuwardenv1alpha1.ChatFormat) ([]byte, error) {
	switch f {
	case gpuwardenv1alpha1.ChatSlack:
		// Slack reads <…> as links and mentions (<!channel>) and & as an entity: escaped,
		// nothing a container's name or a message carries can mention anyone.
		return json.Marshal(map[string]string{"text": "*" + slackEscape(n.Summary()) + "*\n" + slackEscape(n.body())})
	case gpuwardenv1alpha1.ChatMattermost:
		return json.Marshal(map[string]string{"text": "**" + markdownEscape(n.Summary()) + "**\n" + markdownEscape(n.body()), "username": "gpuwarden"})
	case gpuwardenv1alpha1.ChatTeams:
		card := map[string]any{
			"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
			"type":    "AdaptiveCard",
			"version": "1.4",
			"body": []map[string]any{
				{"type": "TextBlock", "text": n.Summary(), "weight": "Bolder", "size": "Medium", "wrap": true},
				{"type": "TextBlock", "text": n.body(), "wrap": true},
			},
		}
		return json.Marshal(map[string]any{"type": "message", "attachments": []map[string]any{{
			"contentType": "application/vnd.microsoft.card.adaptive", "content": card,
		}}})
	case gpuwardenv1alpha1.ChatJSON, "":
		return json.Marshal(n)
	}
	return nil, fmt.Errorf("webhook format %q: gpuwarden posts Slack, Mattermost, Teams or JSON", f)
}

// body is the notice's text without its file's head line.
func (n Notice) body() string {
	_, rest, _ := strings.Cut(n.Text(), "\n")
	return strings.TrimRight(rest, "\n")
}

func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// markdownEscape keeps Mattermost from reading a mention (@channel, @all) in what a notice
// quotes: a zero-width space after each @.
func markdownEscape(s string) string {
	return strings.ReplaceAll(s, "@", "@\u200b")
}

// redact is a webhook's URL without what follows its host: a chat webhook's path is its
// secret, and logs and errors are read by others.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "a webhook"
	}
	return u.Scheme + "://" + u.Host + "/…"
}

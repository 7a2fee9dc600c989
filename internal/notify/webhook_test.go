package notify

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := f[host]; ok {
		return a, nil
	}
	return nil, errors.New("no such host")
}

func TestWebhookProblem(t *testing.T) {
	r := fakeResolver{
		"chat.example":   {netip.MustParseAddr("203.0.113.7")},
		"sneaky.example": {netip.MustParseAddr("203.0.113.8"), netip.MustParseAddr("127.0.0.1")},
		"meta.example":   {netip.MustParseAddr("169.254.169.254")},
	}
	for url, want := range map[string]string{
		"https://chat.example/hook":            "",
		"https://unknown.example/hook":         "",
		"https://10.0.0.5/hook":                "",
		"http://127.0.0.1:8080/hook":           "loopback",
		"http://127.9.9.9/hook":                "loopback",
		"http://[::1]/hook":                    "loopback",
		"http://[::ffff:127.0.0.1]/hook":       "loopback",
		"http://0.0.0.0/hook":                  "loopback",
		"http://localhost/hook":                "this machine itself",
		"http://LocalHost./hook":               "this machine itself",
		"http://api.localhost/hook":            "this machine itself",
		"http://169.254.169.254/latest":        "link-local",
		"http://[fe80::1]/hook":                "link-local",
		"https://sneaky.example/hook":          "loopback",
		"https://meta.example/computeMetadata": "link-local",
	} {
		err := WebhookProblem(context.Background(), url, r)
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v, want allowed", url, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: %v, want refused as %s", url, err, want)
		}
	}
}

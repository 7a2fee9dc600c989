package notify

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// Resolver looks host names up; net.DefaultResolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// WebhookProblem says why notices must not be posted to rawURL: it targets a loopback or
// link-local address (the machine itself, or cloud metadata services at 169.254.169.254),
// by literal address, by name (localhost) or by what the name resolves to. nil when it may
// be used; a name that does not resolve is not a problem here (sending fails later, and
// says so). r may be nil to skip the lookup.
func WebhookProblem(ctx context.Context, rawURL string, r Resolver) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("webhookURL %q: %w", rawURL, err)
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return fmt.Errorf("webhookURL %q targets %s, this machine itself", rawURL, host)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return localAddress(rawURL, host, a)
	}
	if r == nil {
		return nil
	}
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if err := localAddress(rawURL, host, a); err != nil {
			return err
		}
	}
	return nil
}

func localAddress(rawURL, host string, a netip.Addr) error {
	a = a.Unmap()
	switch {
	case a.IsLoopback(), a.IsUnspecified():
		return fmt.Errorf("webhookURL %q targets %s (%s), a loopback address of this machine", rawURL, host, a)
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast():
		return fmt.Errorf("webhookURL %q targets %s (%s), a link-local address (such as a cloud metadata service)", rawURL, host, a)
	}
	return nil
}

var _ Resolver = net.DefaultResolver

// webhookClient posts webhooks: a 5 s timeout, no redirects (one could lead to an address
// notices must not reach), and, unless allowLocal, a dialer that refuses a loopback or
// link-local address when it connects, whatever a name resolved to when it was checked.
func webhookClient(allowLocal bool) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if !allowLocal {
		d.Control = func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			a, err := netip.ParseAddr(host)
			if err != nil {
				return fmt.Errorf("dialing %s: not an IP address", address)
			}
			return localAddress("the webhook", host, a)
		}
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.DialContext = d.DialContext
	return &http.Client{Timeout: 5 * time.Second, Transport: t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

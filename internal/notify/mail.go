package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"mime"
	"net"
	"net/mail"
	"net/smtp"
	"strings"
	"time"
)

// Mailer sends one message to one address.
type Mailer interface {
	Send(ctx context.Context, to string, msg []byte) error
}

// SMTP sends mail through the admin's relay (--smtp-server HOST:PORT), from --smtp-from,
// without authentication (a relay that trusts the machine), upgrading to TLS when the
// relay offers STARTTLS.
type SMTP struct {
	// Server is HOST:PORT.
	Server string
	// From is the envelope sender and the From header.
	From string
	// Timeout bounds one whole conversation; 30 s when 0.
	Timeout time.Duration
}

// ParseSMTP checks the relay's address and the sender, as the server's flags give them.
func ParseSMTP(server, from string) (*SMTP, error) {
	if _, port, err := net.SplitHostPort(server); err != nil || port == "" {
		return nil, fmt.Errorf("--smtp-server %q: want HOST:PORT, e.g. mail.example.org:25", server)
	}
	if from == "" {
		return nil, fmt.Errorf("--smtp-from is required with --smtp-server: the address notices are sent from")
	}
	a, err := mail.ParseAddress(from)
	if err != nil {
		return nil, fmt.Errorf("--smtp-from %q: %w", from, err)
	}
	return &SMTP{Server: server, From: a.Address}, nil
}

// Send delivers msg to to through the relay.
func (s *SMTP) Send(ctx context.Context, to string, msg []byte) error {
	timeout := s.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.Server)
	if err != nil {
		return fmt.Errorf("reaching the mail relay: %w", err)
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	host, _, _ := net.SplitHostPort(s.Server)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return fmt.Errorf("greeting the mail relay %s: %w", s.Server, err)
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); ok {
		if err := c.StartTLS(&tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}); err != nil {
			return fmt.Errorf("starting TLS with the mail relay %s: %w", s.Server, err)
		}
	}
	if err := c.Mail(s.From); err != nil {
		return fmt.Errorf("mail relay %s refused the sender %s: %w", s.Server, s.From, err)
	}
	if err := c.Rcpt(to); err != nil {
		return fmt.Errorf("mail relay %s refused the recipient %s: %w", s.Server, to, err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("mail relay %s: %w", s.Server, err)
	}
	if _, err := w.Write(withHeader(msg, "From", s.From)); err != nil {
		return fmt.Errorf("sending to the mail relay %s: %w", s.Server, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("mail relay %s did not take the message: %w", s.Server, err)
	}
	return c.Quit()
}

// withHeader puts a header line in front of a message.
func withHeader(msg []byte, key, value string) []byte {
	return append([]byte(key+": "+value+"\r\n"), msg...)
}

// Mail is the notice as an e-mail to to, without its From header (the Mailer adds it):
// plain UTF-8 text, the subject one line.
func Mail(n Notice, to string) ([]byte, error) {
	a, err := mail.ParseAddress(to)
	if err != nil {
		return nil, fmt.Errorf("e-mail address %q: %w", to, err)
	}
	id := make([]byte, 12)
	_, _ = rand.Read(id)
	var b bytes.Buffer
	header := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	header("To", a.String())
	header("Subject", mime.QEncoding.Encode("utf-8", n.Summary()))
	header("Date", n.Time.Format(time.RFC1123Z))
	header("Message-ID", "<"+hex.EncodeToString(id)+".gpuwarden@"+oneLine(strings.ReplaceAll(n.Node, " ", ""))+">")
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "8bit")
	header("Auto-Submitted", "auto-generated")
	b.WriteString("\r\n")
	b.WriteString(strings.ReplaceAll(n.Text(), "\n", "\r\n"))
	return b.Bytes(), nil
}

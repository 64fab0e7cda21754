package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"mime"
	"net"
	"net/smtp"
	"os/exec"
	"strings"
	"time"
)

// mailer sends a Notification as a plain-text mail, through an SMTP relay
// (STARTTLS whenever the relay offers it) or, with no relay, the local
// sendmail program.
type mailer struct {
	to, from string
	smtp     string // host:port; "": sendmail
	sendmail string
}

func (m *mailer) String() string {
	if m.smtp == "" {
		return fmt.Sprintf("mail to %s by %s", m.to, m.sendmail)
	}
	return fmt.Sprintf("mail to %s by %s", m.to, m.smtp)
}

// message is n as an RFC 5322 message with CRLF line ends.
func (m *mailer) message(n *Notification) []byte {
	var b bytes.Buffer
	hdr := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	hdr("From", m.from)
	hdr("To", m.to)
	hdr("Subject", mime.QEncoding.Encode("utf-8", fmt.Sprintf("[recall] %s: %s", n.Host, n.Summary)))
	hdr("Date", n.Time.Format(time.RFC1123Z))
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "8bit")
	hdr("X-Recall-Event", n.Event)
	b.WriteString("\r\n")
	// No dot-stuffing here: SMTP's DATA writer adds it, and sendmail -i
	// needs none.
	for _, l := range strings.Split(strings.TrimRight(n.text(), "\n"), "\n") {
		b.WriteString(l + "\r\n")
	}
	return b.Bytes()
}

func (m *mailer) send(ctx context.Context, n *Notification) error {
	if m.smtp == "" {
		return m.sendLocal(ctx, n)
	}
	if err := m.sendSMTP(ctx, n); err != nil {
		return fmt.Errorf("mail to %s by %s: %w", m.to, m.smtp, err)
	}
	return nil
}

func (m *mailer) sendSMTP(ctx context.Context, n *Notification) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", m.smtp)
	if err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	host, _, _ := net.SplitHostPort(m.smtp)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return err
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); ok {
		if err := c.StartTLS(&tls.Config{ServerName: host}); err != nil {
			return fmt.Errorf("STARTTLS: %w", err)
		}
	}
	if err := c.Mail(m.from); err != nil {
		return err
	}
	if err := c.Rcpt(m.to); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(m.message(n)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func (m *mailer) sendLocal(ctx context.Context, n *Notification) error {
	// -i: a line of one dot does not end the message; the recipient is
	// given as an argument, not read from the headers.
	cmd := exec.CommandContext(ctx, m.sendmail, "-i", "-f", m.from, "--", m.to)
	cmd.Stdin = bytes.NewReader(bytes.ReplaceAll(m.message(n), []byte("\r\n"), []byte("\n")))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("mail to %s by %s: %w: %s (install a mail transfer agent or set smtp in [[notify.mail]])", m.to, m.sendmail, err, bytes.TrimSpace(out))
	}
	return nil
}

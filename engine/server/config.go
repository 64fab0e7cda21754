package server

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/recall-backup/recall/engine"
	"github.com/recall-backup/recall/internal/tomlmsg"
)

// DefaultConfigPath is where recall serve looks for its configuration
// when neither --config nor RECALL_CONFIG names one.
const DefaultConfigPath = "/etc/recall/recall.toml"

// Defaults of the configuration.
const (
	DefaultHome   = "/var/lib/recall"
	DefaultSocket = "/run/recall/recall.sock"
)

// ErrBadConfig marks a configuration that cannot be used; the message
// names the file, the line and the allowed values.
var ErrBadConfig = errors.New("invalid configuration")

// Config is recall.toml. Every key is read and checked now; home and
// concurrency act, the others are for the socket API, notifications,
// metrics and mounts.
type Config struct {
	Home        string `toml:"home"`
	Socket      string `toml:"socket"`
	Concurrency int    `toml:"concurrency"` // 0: one job per core
	// SmbConf is the Samba configuration beside which recall keeps its
	// shares: a retention prune names the recovery shares of the points
	// it forgets.
	SmbConf string `toml:"smb_conf"`
	Metrics struct {
		Listen string `toml:"listen"` // "": no endpoint
		// Textfile is a node_exporter textfile collector file, written
		// after each job ("": none).
		Textfile string `toml:"textfile"`
	} `toml:"metrics"`
	Notify struct {
		Webhook []WebhookTarget `toml:"webhook"`
		Mail    []MailTarget    `toml:"mail"`
	} `toml:"notify"`
	Mount []MountConfig `toml:"mount"`

	// Path is the file the configuration was read from ("" for the
	// defaults).
	Path string `toml:"-"`
}

// WebhookTarget is one [[notify.webhook]].
type WebhookTarget struct {
	URL string   `toml:"url"`
	On  []string `toml:"on"`
}

// MailTarget is one [[notify.mail]].
type MailTarget struct {
	To   string   `toml:"to"`
	SMTP string   `toml:"smtp"` // host:port; "": the local sendmail
	From string   `toml:"from"`
	On   []string `toml:"on"`
}

// MountConfig is one [[mount]].
type MountConfig struct {
	Path       string `toml:"path"`
	AllowOther bool   `toml:"allow_other"`
}

// NotifyEvents are the values of a target's "on".
var NotifyEvents = []string{"failure", "alert", "alert-cleared", "success"}

const maxConcurrency = 256

// DefaultConfig is the configuration with no file.
func DefaultConfig() *Config {
	return &Config{Home: DefaultHome, Socket: DefaultSocket, Concurrency: runtime.NumCPU(), SmbConf: engine.DefaultSmbConf}
}

// LoadConfig reads and checks the configuration at path. When path is ""
// the default file is read if it exists, and the defaults used if not; a
// file named explicitly must exist.
func LoadConfig(path string) (*Config, error) {
	explicit := path != ""
	if !explicit {
		path = DefaultConfigPath
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !explicit {
		return DefaultConfig(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w (give another with --config FILE or RECALL_CONFIG)", err)
	}
	return ParseConfig(path, data)
}

// ParseConfig parses and checks data, the content of the file at path.
func ParseConfig(path string, data []byte) (*Config, error) {
	c := DefaultConfig()
	c.Concurrency = 0
	md, err := toml.Decode(string(data), c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%w: %s:%d: %s", ErrBadConfig, path, pe.Position.Line, pe.Message)
		}
		// A type mismatch: worded for the file's writer, with its line.
		if line, msg := tomlmsg.Describe(err); line > 0 {
			return nil, fmt.Errorf("%w: %s:%d: %s", ErrBadConfig, path, line, msg)
		}
		return nil, fmt.Errorf("%w: %s: %s", ErrBadConfig, path, tomlmsg.Message(err))
	}
	c.Path = path
	bad := func(table string, index int, key, value, allowed string) error {
		return fmt.Errorf("%w: %s:%d: %s %q: allowed: %s", ErrBadConfig, path, lineOf(data, table, index, key), strings.TrimPrefix(table+"."+key, "."), value, allowed)
	}
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0]
		table, key := strings.Join(k[:len(k)-1], "."), k[len(k)-1]
		return nil, fmt.Errorf("%w: %s:%d: unknown key %q: allowed: %s", ErrBadConfig, path, lineOf(data, table, -1, key), k.String(), allowedKeys(table))
	}
	if !filepath.IsAbs(c.Home) {
		return nil, bad("", 0, "home", c.Home, "an absolute path")
	}
	if !filepath.IsAbs(c.Socket) {
		return nil, bad("", 0, "socket", c.Socket, "an absolute path")
	}
	if len(c.Socket) > maxSocketPath {
		// bind(2) said only "invalid argument".
		return nil, bad("", 0, "socket", c.Socket, fmt.Sprintf("a path of at most %d bytes (a Unix socket's limit; this one has %d)", maxSocketPath, len(c.Socket)))
	}
	if !filepath.IsAbs(c.SmbConf) {
		return nil, bad("", 0, "smb_conf", c.SmbConf, "an absolute path")
	}
	switch {
	case !md.IsDefined("concurrency"):
		c.Concurrency = runtime.NumCPU()
	case c.Concurrency < 1 || c.Concurrency > maxConcurrency:
		return nil, bad("", 0, "concurrency", fmt.Sprint(c.Concurrency), fmt.Sprintf("1 to %d jobs at once (absent: one per core)", maxConcurrency))
	}
	if l := c.Metrics.Listen; l != "" {
		if _, port, err := net.SplitHostPort(l); err != nil || port == "" || func() bool { _, err := net.LookupPort("tcp", port); return err != nil }() {
			return nil, bad("metrics", 0, "listen", l, "host:port, like 127.0.0.1:9745")
		}
	}
	if f := c.Metrics.Textfile; f != "" && (!filepath.IsAbs(f) || !strings.HasSuffix(f, ".prom")) {
		return nil, bad("metrics", 0, "textfile", f, "an absolute path ending in .prom, like /var/lib/node_exporter/recall.prom")
	}
	for i, w := range c.Notify.Webhook {
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, bad("notify.webhook", i, "url", w.URL, "an http:// or https:// URL")
		}
		if err := checkOn(w.On); err != "" {
			return nil, bad("notify.webhook", i, "on", err, strings.Join(NotifyEvents, ", "))
		}
	}
	for i, m := range c.Notify.Mail {
		if !strings.Contains(m.To, "@") {
			return nil, bad("notify.mail", i, "to", m.To, "a mail address, like backup-admins@example.org")
		}
		if m.SMTP != "" {
			if _, port, err := net.SplitHostPort(m.SMTP); err != nil || port == "" {
				return nil, bad("notify.mail", i, "smtp", m.SMTP, "host:port, like mail.example.org:587 (absent: the local sendmail)")
			}
		}
		if err := checkOn(m.On); err != "" {
			return nil, bad("notify.mail", i, "on", err, strings.Join(NotifyEvents, ", "))
		}
	}
	for i, m := range c.Mount {
		if !filepath.IsAbs(m.Path) {
			return nil, bad("mount", i, "path", m.Path, "an absolute path")
		}
		// Two servers on one path would take turns failing, each
		// detaching the other's mount, with an alert forever.
		for j, o := range c.Mount[:i] {
			if filepath.Clean(o.Path) == filepath.Clean(m.Path) {
				return nil, fmt.Errorf("%w: %s:%d: mount.path %q: the same path as the [[mount]] at line %d: allowed: each path in one [[mount]] only",
					ErrBadConfig, path, lineOf(data, "mount", i, "path"), m.Path, lineOf(data, "mount", j, "path"))
			}
		}
	}
	return c, nil
}

func checkOn(on []string) string {
	for _, e := range on {
		if !slices.Contains(NotifyEvents, e) {
			return e
		}
	}
	return ""
}

func allowedKeys(table string) string {
	switch table {
	case "":
		return "home, socket, concurrency, smb_conf, [metrics], [[notify.webhook]], [[notify.mail]], [[mount]]"
	case "metrics":
		return "listen, textfile"
	case "notify":
		return "[[notify.webhook]], [[notify.mail]]"
	case "notify.webhook":
		return "url, on"
	case "notify.mail":
		return "to, smtp, from, on"
	case "mount":
		return "path, allow_other"
	}
	return "none here: the tables are [metrics], [[notify.webhook]], [[notify.mail]], [[mount]]"
}

// lineOf finds the line of key in table ("" for the top level) of a TOML
// file, in the index-th of its array tables (-1: any), for messages:
// the toml package reports where a key is only for syntax errors. A key
// the table lacks (a required one left out) gives the line of the
// table's header, the [[mount]] that has no path; a key in dotted or
// inline form it does not find, or one missing at the top level, gives
// line 0.
// maxSocketPath is the longest path a Unix socket's address holds
// (sun_path is 108 bytes on Linux, its last a NUL).
const maxSocketPath = 107

func lineOf(data []byte, table string, index int, key string) int {
	cur, seen, header := "", -1, 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "[") {
			name := strings.TrimSpace(strings.Trim(l, "[] \t"))
			if i := strings.Index(name, "#"); i >= 0 {
				name = strings.TrimSpace(strings.TrimRight(name[:i], "] \t"))
			}
			if full := strings.TrimPrefix(table+"."+key, "."); name == full && index < 0 {
				return n // the unknown key is a table
			}
			cur = name
			if cur == table {
				seen++
				if header == 0 && (index < 0 || seen == index) {
					header = n
				}
			}
			continue
		}
		k, _, ok := strings.Cut(l, "=")
		if ok && cur == table && strings.Trim(strings.TrimSpace(k), `"`) == key && (index < 0 || seen == index || table == "") {
			return n
		}
	}
	return header
}

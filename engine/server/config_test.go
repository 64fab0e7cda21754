package server

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const fullConfig = `home = "/var/lib/recall"
socket = "/run/recall/recall.sock"
concurrency = 2

[metrics]
listen = "127.0.0.1:9745"          # absent: no endpoint

[[notify.webhook]]
url = "https://hooks.example/recall"
on = ["failure", "alert"]          # also "success", "alert-cleared"

[[notify.mail]]
to = "backup-admins@example.org"
smtp = "mail.example.org:587"      # absent: the local sendmail
on = ["failure", "alert"]

[[mount]]
path = "/srv/recall"
allow_other = true
`

func TestParseConfigIssueExample(t *testing.T) {
	c, err := ParseConfig("recall.toml", []byte(fullConfig))
	if err != nil {
		t.Fatal(err)
	}
	if c.Home != "/var/lib/recall" || c.Socket != "/run/recall/recall.sock" || c.Concurrency != 2 || c.Metrics.Listen != "127.0.0.1:9745" {
		t.Errorf("top level: %+v", c)
	}
	if len(c.Notify.Webhook) != 1 || c.Notify.Webhook[0].URL != "https://hooks.example/recall" || strings.Join(c.Notify.Webhook[0].On, ",") != "failure,alert" {
		t.Errorf("webhook: %+v", c.Notify.Webhook)
	}
	if len(c.Notify.Mail) != 1 || c.Notify.Mail[0].To != "backup-admins@example.org" || c.Notify.Mail[0].SMTP != "mail.example.org:587" {
		t.Errorf("mail: %+v", c.Notify.Mail)
	}
	if len(c.Mount) != 1 || c.Mount[0].Path != "/srv/recall" || !c.Mount[0].AllowOther {
		t.Errorf("mount: %+v", c.Mount)
	}
}

func TestParseConfigDefaults(t *testing.T) {
	c, err := ParseConfig("recall.toml", []byte("# nothing set\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Home != DefaultHome || c.Socket != DefaultSocket || c.Concurrency != runtime.NumCPU() || c.Metrics.Listen != "" {
		t.Errorf("defaults: %+v", c)
	}
}

func TestParseConfigRefused(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"syntax", "home = \"/x\"\nconcurrency = \n", "f.toml:2:"},
		{"type", "concurrency = \"two\"\n", "f.toml:1: concurrency takes a whole number, not a quoted string"},
		{"unknown top key", "home = \"/x\"\nhoem = \"/y\"\n", `f.toml:2: unknown key "hoem": allowed: home, socket, concurrency`},
		{"unknown table", "[metric]\nlisten = \"x:1\"\n", `f.toml:1: unknown key "metric": allowed: home, socket, concurrency, smb_conf, [metrics]`},
		{"unknown key in array table", "[[mount]]\npath = \"/a\"\n[[mount]]\npath = \"/b\"\nallow = true\n", `f.toml:5: unknown key "mount.allow": allowed: path, allow_other`},
		{"relative home", "home = \"var/lib\"\n", `f.toml:1: home "var/lib": allowed: an absolute path`},
		{"relative socket", "\nsocket = \"x.sock\"\n", `f.toml:2: socket "x.sock": allowed: an absolute path`},
		{"relative smb_conf", "smb_conf = \"smb.conf\"\n", `f.toml:1: smb_conf "smb.conf": allowed: an absolute path`},
		{"concurrency 0", "concurrency = 0\n", `f.toml:1: concurrency "0": allowed: 1 to 256`},
		{"concurrency too many", "concurrency = 1000\n", `concurrency "1000": allowed: 1 to 256`},
		{"metrics listen", "[metrics]\nlisten = \"9745\"\n", `f.toml:2: metrics.listen "9745": allowed: host:port`},
		{"metrics port out of range", "[metrics]\nlisten = \":99999\"\n", `f.toml:2: metrics.listen ":99999": allowed: host:port`},
		{"metrics textfile relative", "[metrics]\ntextfile = \"recall.prom\"\n", `f.toml:2: metrics.textfile "recall.prom": allowed: an absolute path ending in .prom`},
		{"metrics textfile not .prom", "[metrics]\nlisten = \"127.0.0.1:9745\"\ntextfile = \"/var/lib/node_exporter/recall.txt\"\n", `f.toml:3: metrics.textfile "/var/lib/node_exporter/recall.txt": allowed:`},
		{"webhook url", "[[notify.webhook]]\nurl = \"ftp://x\"\n", `f.toml:2: notify.webhook.url "ftp://x": allowed: an http:// or https:// URL`},
		{"second webhook's on", "[[notify.webhook]]\nurl = \"http://a\"\non = [\"failure\"]\n[[notify.webhook]]\nurl = \"http://b\"\non = [\"fail\"]\n", `f.toml:6: notify.webhook.on "fail": allowed: failure, alert, alert-cleared, success`},
		{"mail to", "[[notify.mail]]\nto = \"nobody\"\n", `f.toml:2: notify.mail.to "nobody": allowed: a mail address`},
		{"mail smtp", "[[notify.mail]]\nto = \"a@b\"\nsmtp = \"mail.example.org\"\n", `f.toml:3: notify.mail.smtp "mail.example.org": allowed: host:port`},
		{"mount path", "[[mount]]\npath = \"srv\"\n", `f.toml:2: mount.path "srv": allowed: an absolute path`},
		{"mount path twice", "[[mount]]\npath = \"/srv/recall\"\n\n[[mount]]\npath = \"/srv/recall/\"\nallow_other = true\n", `f.toml:5: mount.path "/srv/recall/": the same path as the [[mount]] at line 2: allowed: each path in one [[mount]] only`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig("f.toml", []byte(tt.text))
			if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want ErrBadConfig with %q", err, tt.want)
			}
		})
	}
}

func TestLoadConfigFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadConfig(filepath.Join(dir, "absent.toml")); err == nil || !strings.Contains(err.Error(), "absent.toml") {
		t.Errorf("a named file that is absent: %v, want an error naming it", err)
	}
	p := filepath.Join(dir, "recall.toml")
	must(t, os.WriteFile(p, []byte("home = \"/srv/recall-home\"\nconcurrency = 3\n"), 0o644))
	c, err := LoadConfig(p)
	if err != nil || c.Home != "/srv/recall-home" || c.Concurrency != 3 || c.Path != p {
		t.Errorf("LoadConfig: %+v, %v", c, err)
	}
}

// A socket path longer than a Unix socket's address holds is a
// configuration error naming the limit: bind(2) said only "invalid
// argument", after the server had made the socket's directory.
func TestConfigSocketTooLong(t *testing.T) {
	long := "/run/" + strings.Repeat("x", maxSocketPath-len("/run/")+1)
	_, err := ParseConfig("recall.toml", []byte("socket = \""+long+"\"\n"))
	if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), "at most 107 bytes") || !strings.Contains(err.Error(), "recall.toml:1") {
		t.Errorf("socket of %d bytes: %v, want a configuration error naming the limit and the line", len(long), err)
	}
	ok := long[:maxSocketPath]
	if _, err := ParseConfig("recall.toml", []byte("socket = \""+ok+"\"\n")); err != nil {
		t.Errorf("socket of %d bytes: %v", len(ok), err)
	}
}

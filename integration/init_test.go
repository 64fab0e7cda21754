package integration

import (
	"strings"
	"testing"
)

// init with a passphrase set up but without --encrypt makes the store it
// was asked for, unencrypted, and says so loudly: restic and borg encrypt
// by default, and a passphrase in the environment most likely meant it.
// (Fix: "created unencrypted store", exit 0, nothing else.)
func TestInitPassphraseWithoutEncrypt(t *testing.T) {
	e := newEnv(t)
	e.vars = []string{"RECALL_PASSWORD=secret"}
	r := e.run("init")
	if r.code != 0 || !strings.Contains(r.stderr, "a passphrase was given (RECALL_PASSWORD) but not --encrypt") || !strings.Contains(r.stdout, "created unencrypted store") {
		t.Errorf("init with RECALL_PASSWORD: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	e2 := newEnv(t)
	if r := e2.run("init"); r.code != 0 || strings.Contains(r.stderr, "passphrase") {
		t.Errorf("init without a passphrase: exit %d\n%s", r.code, r.stderr)
	}
}

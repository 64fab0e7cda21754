package cephtest

import (
	"net/http"
	"strings"
	"testing"
)

// A cluster answers S3 requests, refuses an unknown user, and leaves no
// daemon behind when stopped.
func TestStartStop(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"memstore", Options{}},
		{"bluestore", Options{Bluestore: true, BluestoreSize: 1 << 30}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Start(t, tc.opts)
			t.Logf("%s: ready in %v", tc.name, c.StartTime)
			resp, err := http.Get(c.Endpoint + "/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("anonymous GET /: %s", resp.Status)
			}
			if env := c.Env(); len(env) != 2 || env[0] != "AWS_ACCESS_KEY_ID="+c.AccessKey || env[1] != "AWS_SECRET_ACCESS_KEY="+c.SecretKey {
				t.Errorf("Env: %q", env)
			}
			out, err := c.Admin("user", "info", "--uid", "recall")
			if err != nil || !strings.Contains(string(out), c.AccessKey) {
				t.Fatalf("user info: %s, %v", out, err)
			}
			c.StopGateway()
			if _, err := http.Get(c.Endpoint + "/"); err == nil {
				t.Fatal("the gateway answers after StopGateway")
			}
			if err := c.StartGateway(); err != nil {
				t.Fatal(err)
			}
			var pids []int
			c.mu.Lock()
			for _, cmd := range c.procs {
				pids = append(pids, cmd.Process.Pid)
			}
			c.mu.Unlock()
			if len(pids) != 3 {
				t.Fatalf("%d daemons, want 3", len(pids))
			}
			c.Stop()
			for _, pid := range pids {
				if alive(pid) {
					t.Errorf("daemon %d runs after Stop", pid)
				}
			}
		})
	}
}

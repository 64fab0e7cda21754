package main

import (
	"strings"
	"testing"
)

// A negative duration given to any command is refused with exit 2 and one
// line naming the flag, before anything runs; zero is still taken. (Fix:
// nonNegative, through checkUsage; before, 'gc --index-grace -1h' and 'gc
// --wait -1s' ran and exited 0.)
func TestNegativeDurationsRefused(t *testing.T) {
	home, _, run := cliHome(t)
	run("init")
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"gc", "--index-grace", "-1h"}, "--index-grace"},
		{[]string{"gc", "--wait", "-1s"}, "--wait"},
		{[]string{"gc", "--lock-wait", "-1m"}, "--lock-wait"},
		{[]string{"--progress-interval", "-1s", "gc"}, "--progress-interval"},
		{[]string{"prune", "--dry-run", "--lock-wait", "-1s"}, "--lock-wait"},
		{[]string{"forget", "--lock-wait", "-1s", "latest"}, "--lock-wait"},
		{[]string{"--s3-lock-stale", "-1m", "serve", "--config", "/nonexistent"}, "--s3-lock-stale"},
		{[]string{"backup", "--lock-wait", "-1s", "/nonexistent"}, "--lock-wait"},
		{[]string{"backup", "--settle", "-1s", "/nonexistent"}, "--settle"},
		{[]string{"repair", "index", "--lock-wait", "-1s"}, "--lock-wait"},
		{[]string{"key", "passwd", "--lock-wait", "-1s"}, "--lock-wait"},
		{[]string{"points", "--progress-interval", "-1s"}, "--progress-interval"},
		// An interval of 0 is refused by every command alike.
		{[]string{"points", "--progress-interval", "0"}, "--progress-interval"},
		{[]string{"verify", "--progress-interval", "0"}, "--progress-interval"},
		{[]string{"--connections", "0", "points"}, "--connections"},
		{[]string{"points", "--connections", "-5"}, "--connections"},
	} {
		line := strings.Join(tc.args, " ")
		_, err := runRecall(t, append([]string{"--home", home}, tc.args...)...)
		if exitCode(err) != exitUsage || !strings.Contains(err.Error(), tc.flag) || !strings.Contains(err.Error(), "negative") && !strings.Contains(err.Error(), "positive") && !strings.Contains(err.Error(), "1 or more") || strings.Contains(err.Error(), "\n") {
			t.Errorf("recall %s: %v (exit %d), want exit 2 and one line naming %s", line, err, exitCode(err), tc.flag)
		}
	}
	run("gc", "--index-grace", "0", "--wait", "0s")
}

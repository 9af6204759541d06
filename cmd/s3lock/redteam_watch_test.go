package main

import (
	"strings"
	"syscall"
	"testing"
)

// TestRedteamWatchTelemetryFlags: issue 18 says `s3lock run` and `watch`
// gain --log-format text|json and --stats. watch (merged with the
// election at the same time) has neither: it refuses the flags as
// unknown (exit 2) instead of following the lock and printing its stats
// line at exit.
func TestRedteamWatchTelemetryFlags(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	if r := h.run(nil, "watch", "--log-format", "json", "--stats", "--interval", "50ms", "--help"); r.code != 0 {
		t.Fatalf("watch --log-format json --stats --help: exit code %d (stderr: %s)", r.code, r.stderr)
	}
	b := h.start(nil, "watch", "--log-format", "json", "--stats", "--interval", "50ms", h.url("leaders/redteam-watch"))
	waitLines(t, b, 1)
	if err := b.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	r := b.wait()
	if r.code != 0 || !strings.Contains(r.stderr, "stats") {
		t.Errorf("watch --log-format json --stats: exit code %d, stderr %q; want 0 and a stats record", r.code, r.stderr)
	}
}

package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRunStats: --stats prints one line at exit whose request counts are
// those the server saw, with the renewals made while the command ran.
func TestRunStats(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	before := h.srv.Stats().Snapshot()
	r := h.run(nil, "run", "--stats", "--ttl", "1s", "--renew-interval", "100ms", h.url("locks/stats"), "-c", "sleep 0.4")
	if r.code != 0 {
		t.Fatalf("exit code = %d; want 0 (stderr: %s)", r.code, r.stderr)
	}
	// The stats come last. (Before them, a renewal in flight when the
	// command exits is cut short by the release, and logged.)
	ls := lines(r.stderr)
	if len(ls) == 0 || !strings.HasPrefix(ls[len(ls)-1], "s3lock run: stats: ") || strings.Count(r.stderr, "s3lock run: stats:") != 1 {
		t.Fatalf("stderr = %q; want one stats line, last", r.stderr)
	}
	ls = ls[len(ls)-1:]
	var waited, held time.Duration
	var renewals, renewFailed, requests, gets, puts, refused, failed int
	var ws, hs string
	if _, err := fmt.Sscanf(strings.TrimPrefix(ls[0], "s3lock run: stats: "),
		"waited %s held %s renewals %d (%d failed), requests %d (%d GET, %d PUT; %d refused, %d failed)",
		&ws, &hs, &renewals, &renewFailed, &requests, &gets, &puts, &refused, &failed); err != nil {
		t.Fatalf("stats line %q: %v", ls[0], err)
	}
	waited, _ = time.ParseDuration(strings.TrimSuffix(ws, ","))
	held, _ = time.ParseDuration(strings.TrimSuffix(hs, ","))
	d := h.srv.Stats().Snapshot().Sub(before)
	// A request cut short may never have reached the server.
	if sp := d.Method(http.MethodPut); int64(gets) != d.Method(http.MethodGet) || sp > int64(puts) || sp < int64(puts-failed) || requests != gets+puts {
		t.Errorf("stats: %d requests, %d GET, %d PUT; the server saw %d GET, %d PUT", requests, gets, puts, d.Method(http.MethodGet), d.Method(http.MethodPut))
	}
	// Acquire (GET 404 + PUT), renewals (a PUT each), release (PUT);
	// the only failure can be a renewal the release cut short, whose PUT
	// may have landed: the release then meets a 412 and reads.
	if renewals < 2 || renewFailed > 1 || failed != renewFailed || puts != renewals+2+refused {
		t.Errorf("stats line %q: want at least 2 renewals, at most one failed (cut short at exit), a PUT each plus 2 and one per refusal", ls[0])
	}
	if held < 400*time.Millisecond || waited <= 0 || waited > held {
		t.Errorf("stats: waited %v, held %v; want held at least 400ms and a shorter positive wait", waited, held)
	}
}

// TestRunLogFormatJSON: with --log-format json every line on stderr is a
// JSON record, the --stats summary included.
func TestRunLogFormatJSON(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.run(nil, "run", "--log-format", "json", "--stats", "-v", h.url("locks/json"), "-c", "true")
	if r.code != 0 {
		t.Fatalf("exit code = %d; want 0 (stderr: %s)", r.code, r.stderr)
	}
	ls := lines(r.stderr)
	if len(ls) < 3 {
		t.Fatalf("stderr = %q; want the writes logged and the stats", r.stderr)
	}
	var wrote int
	var last map[string]any
	for _, l := range ls {
		last = nil
		if err := json.Unmarshal([]byte(l), &last); err != nil {
			t.Fatalf("stderr line %q is not JSON: %v", l, err)
		}
		if last["msg"] == "s3lock: wrote" {
			wrote++
		}
	}
	if wrote != 2 {
		t.Errorf("%d \"s3lock: wrote\" records; want 2 (acquire, release)", wrote)
	}
	if last["msg"] != "s3lock run: stats" || last["put"] != 2.0 || last["get"] != 1.0 || last["requests"] != 3.0 {
		t.Errorf("last record = %v; want the stats with 1 GET, 2 PUT, 3 requests", last)
	}

	// An unknown format is a usage error, and nothing runs.
	r = h.run(nil, "run", "--log-format", "xml", h.url("locks/json"), "-c", "true")
	if r.code != exitUsage || !strings.Contains(r.stderr, "--log-format") {
		t.Errorf("--log-format xml: exit code %d, stderr %q; want %d naming the flag", r.code, r.stderr, exitUsage)
	}
}

// --stats reports the wait and the hold of a semaphore slot and of a
// shared hold, as of an exclusive one.
func TestRunStatsShared(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, mode := range [][]string{{"--slots", "2"}, {"--shared"}} {
		args := append([]string{"run", "--stats"}, mode...)
		args = append(args, h.url("locks/stats-shared-"+strings.TrimPrefix(mode[0], "--")), "-c", "sleep 0.3")
		r := h.run(nil, args...)
		if r.code != 0 {
			t.Fatalf("%v: exit code = %d; want 0 (stderr: %s)", mode, r.code, r.stderr)
		}
		ls := lines(r.stderr)
		var ws, hs string
		if len(ls) == 0 {
			t.Fatalf("%v: no stats line", mode)
		}
		if _, err := fmt.Sscanf(strings.TrimPrefix(ls[len(ls)-1], "s3lock run: stats: "), "waited %s held %s", &ws, &hs); err != nil {
			t.Fatalf("%v: stats line %q: %v", mode, ls[len(ls)-1], err)
		}
		waited, _ := time.ParseDuration(strings.TrimSuffix(ws, ","))
		held, _ := time.ParseDuration(strings.TrimSuffix(hs, ","))
		if held < 300*time.Millisecond || waited <= 0 {
			t.Errorf("%v: stats: waited %v, held %v; want a positive wait and a hold of at least 300ms", mode, waited, held)
		}
	}
}

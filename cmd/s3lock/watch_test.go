package main

import (
	"context"
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/s3lock/s3lock"
)

// waitLines waits up to 20 s for b to have printed n lines on stdout.
func waitLines(t *testing.T, b *background, n int) []string {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if ls := lines(readFile(b.outF)); len(ls) >= n {
			return ls
		}
	}
	t.Fatalf("watch printed %q; want %d lines (stderr: %s)", readFile(b.outF), n, b.stderr())
	return nil
}

// TestWatch: watch --json prints the current state, then one line per
// change (a leader, its new value, the release), and exits 0 on SIGINT.
func TestWatch(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	key := "leaders/watch"
	b := h.start(nil, "watch", "--json", "--interval", "50ms", h.url(key))
	waitLines(t, b, 1)
	e, err := s3lock.NewElection(h.srv.Client(), h.srv.Bucket(), key, s3lock.WithOwner("replica-1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Campaign(ctx, "10.0.0.1:8080"); err != nil {
		t.Fatal(err)
	}
	waitLines(t, b, 2)
	if err := e.Proclaim(ctx, "10.0.0.1:9090"); err != nil {
		t.Fatal(err)
	}
	waitLines(t, b, 3)
	if err := e.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	ls := waitLines(t, b, 4)
	if err := b.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if r := b.wait(); r.code != 0 {
		t.Errorf("watch after SIGINT: exit code %d; want 0 (stderr: %s)", r.code, r.stderr)
	}
	want := []watchJSON{
		{State: "free"},
		{State: "held", Owner: "replica-1", Value: "10.0.0.1:8080", Generation: 1},
		{State: "held", Owner: "replica-1", Value: "10.0.0.1:9090", Generation: 1},
		{State: "free", Generation: 1},
	}
	for i, l := range ls[:4] {
		var got watchJSON
		dec := json.NewDecoder(strings.NewReader(l))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("line %d %q: %v", i+1, l, err)
		}
		if got.State != want[i].State || got.Owner != want[i].Owner || got.Value != want[i].Value || got.Generation != want[i].Generation || got.Time.IsZero() {
			t.Errorf("line %d = %s; want %+v", i+1, l, want[i])
		}
	}
}

// TestWatchHuman: without --json, one readable line per state; a hold
// whose holder stopped renewing is reported expired once it is.
func TestWatchHuman(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	key := "leaders/watch-human"
	b := h.start(nil, "watch", "--interval", "50ms", h.url(key))
	waitLines(t, b, 1)
	m, err := s3lock.New(h.srv.Client(), h.srv.Bucket(), key, s3lock.WithOwner("job"), s3lock.WithValue("batch 7"),
		s3lock.WithTTL(time.Second), s3lock.WithExpiryMargin(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	ls := waitLines(t, b, 3) // held, then expired: m does not renew
	_ = m.Unlock(ctx)
	_ = b.cmd.Process.Signal(syscall.SIGINT)
	b.wait()
	if !strings.Contains(ls[0], " free (generation 0)") || !strings.Contains(ls[1], ` held by job (generation 1), value "batch 7"`) ||
		!strings.Contains(ls[2], " expired: job stopped renewing (generation 1)") {
		t.Errorf("watch printed:\n%s\nwant free, held by job with its value, expired", strings.Join(ls, "\n"))
	}
}

// TestRunValueInStatus: run --value publishes the text with the hold;
// status (run as the command under the lock) shows it.
func TestRunValueInStatus(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	key := "locks/run-value"
	inner := []string{binPath, "status", "--endpoint-url", h.endpoint, "--path-style", "--region", "us-east-1", "--json", h.url(key)}
	r := h.run(nil, append([]string{"run", "--value", "host-a:4242", h.url(key), "--"}, inner...)...)
	if r.code != 0 {
		t.Fatalf("run --value -- status --json: exit code %d (stderr: %s)", r.code, r.stderr)
	}
	var j statusJSON
	if err := json.Unmarshal([]byte(r.stdout), &j); err != nil {
		t.Fatalf("status output %q: %v", r.stdout, err)
	}
	if j.State != "held" || j.Value != "host-a:4242" {
		t.Errorf("status --json under run --value = %+v; want held with value host-a:4242", j)
	}
	if j := statusJSONOf(t, h, key); j.State != "free" || j.Value != "" {
		t.Errorf("status --json after run = %+v; want free without a value", j)
	}
	long := strings.Repeat("x", s3lock.MaxValueLen+1)
	if r := h.run(nil, "run", "--value", long, h.url(key), "--", "true"); r.code != exitUsage {
		t.Errorf("run --value (too long): exit code %d; want %d (stderr: %s)", r.code, exitUsage, r.stderr)
	}
}

package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

// TestRedteamWatchVacancyNotNewLeader: when Observe reports a vacancy,
// watch reads the object once more (Inspect) to tell a release from an
// expiry. If a new leader took the office in between, that read finds
// its fresh, live hold, and watch prints it as "expired" (its holder
// "stopped renewing"), which never happened: the line must say "free"
// (or "vacant"), never name a live leader as expired.
func TestRedteamWatchVacancyNotNewLeader(t *testing.T) {
	t.Parallel()
	const key = "leaders/redteam-vacancy"
	var (
		armed atomic.Bool
		b     atomic.Pointer[s3lock.Election]
	)
	mw := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// watch's Inspect after the vacancy: the first GET of the key
			// without If-None-Match once armed. Let b take the office first.
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/"+key) && r.Header.Get("If-None-Match") == "" && armed.CompareAndSwap(true, false) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				if err := b.Load().Campaign(ctx, "10.0.0.2:8080"); err != nil {
					t.Errorf("b.Campaign() = %v", err)
				}
				cancel()
			}
			next.ServeHTTP(w, r)
		})
	}
	srv := s3locktest.New(t, s3locktest.WithMiddleware(mw))
	h := &harness{t: t, srv: srv, dir: t.TempDir(), endpoint: srv.URL()}
	ctx := context.Background()
	eb, err := s3lock.NewElection(srv.Client(), srv.Bucket(), key, s3lock.WithOwner("replica-2"))
	if err != nil {
		t.Fatal(err)
	}
	b.Store(eb)
	defer func() { _ = eb.Resign(ctx) }()
	a, err := s3lock.NewElection(srv.Client(), srv.Bucket(), key, s3lock.WithOwner("replica-1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Campaign(ctx, "10.0.0.1:8080"); err != nil {
		t.Fatal(err)
	}
	bg := h.start(nil, "watch", "--json", "--interval", "50ms", h.url(key))
	waitLines(t, bg, 1)
	armed.Store(true)
	if err := a.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	ls := waitLines(t, bg, 2)
	if err := bg.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	bg.wait()
	var got watchJSON
	if err := json.Unmarshal([]byte(ls[1]), &got); err != nil {
		t.Fatalf("line 2 %q: %v", ls[1], err)
	}
	if got.State == "expired" && got.Owner == "replica-2" {
		t.Errorf("watch printed %s after replica-1 resigned: replica-2, which had just taken the office and renews, reported as expired", ls[1])
	}
}

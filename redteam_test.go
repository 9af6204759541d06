package s3lock_test

// Adversarial tests of issue 14's fixes: whose clock is trusted, releases
// and reservations.

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

// readsDatedAhead is server middleware that dates the answers to GETs d
// ahead of the store's clock and leaves the answers to PUTs alone: a
// gateway whose read path (another host, a read tier) has a broken clock.
func readsDatedAhead(d time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet {
				w.Header().Set("Date", time.Now().Add(d).UTC().Format(http.TimeFormat))
			}
			next.ServeHTTP(w, r)
		})
	}
}

// TestRedteamDateAheadOnReadsOnly: the clock check compares the Date of a
// PUT's answer with the Last-Modified a GET reports, but the expiry rule
// then uses the Date of GET answers. When only the reads are dated an hour
// ahead, the check passes and every hold looks an hour old: a fresh
// contender takes a hold acquired a moment ago with a 20 s TTL. Issue 14's
// item 6 threat (a Date not from the clock that stamps Last-Modified)
// with the bad clock on the read path only. Severity: safety (two
// holders), on a store whose reads and writes are dated by different
// clocks.
func TestRedteamDateAheadOnReadsOnly(t *testing.T) {
	srv := s3locktest.New(t, s3locktest.WithMiddleware(readsDatedAhead(time.Hour)))
	key := "locks/redteam-reads-ahead"
	ctx := context.Background()
	holder := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithTTL(20*time.Second))
	if err := holder.TryLock(ctx); err != nil {
		t.Fatalf("holder TryLock() = %v", err)
	}
	defer holder.Unlock(ctx)
	contender := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithTTL(20*time.Second))
	err := contender.TryLock(ctx)
	if err == nil {
		contender.Unlock(ctx)
		t.Fatalf("two holders: a fresh contender took a live 20s hold at once (holder's hold: %v)", context.Cause(holder.Context()))
	}
	var le *s3lock.LockedError
	if !errors.As(err, &le) {
		t.Fatalf("contender TryLock() = %v; want a *LockedError", err)
	}
}

// TestRedteamDateStepsAheadWhileTrusted: S3's clock is trusted for 15
// minutes after one agreement, with no further look at the Dates it then
// acts on. A contender that checked the clock (taking over a long-dead
// hold) keeps trusting it after the gateway's Date steps an hour ahead (an
// NTP step, or a request now routed to another front end); a contender
// that only reads makes no write that could show the disagreement, and
// takes a live 20 s hold at once. Severity: safety (two holders) on a
// store whose Date goes wrong after the check.
func TestRedteamDateStepsAheadWhileTrusted(t *testing.T) {
	var ahead atomic.Int64
	srv := s3locktest.New(t, s3locktest.WithMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Date", time.Now().Add(time.Duration(ahead.Load())).UTC().Format(http.TimeFormat))
			next.ServeHTTP(w, r)
		})
	}))
	key := "locks/redteam-date-steps"
	ctx := context.Background()
	if err := srv.PutObject(ctx, key, []byte(`{"s3lock":1,"state":"held","owner":"dead","nonce":"dead1","generation":1,"ttl_ms":1000,"written_at":"2025-01-01T00:00:00Z"}`)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second + s3lock.DefaultExpiryMargin + 2*time.Second)
	contender := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithTTL(time.Second))
	if err := contender.TryLock(ctx); err != nil {
		t.Fatalf("TryLock() of a hold dead for 4s with a 1s TTL, Date in step = %v; want the lock (clock check)", err)
	}
	if err := contender.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	holder := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithTTL(20*time.Second))
	if err := holder.TryLock(ctx); err != nil {
		t.Fatalf("holder TryLock() = %v", err)
	}
	defer holder.Unlock(ctx)
	ahead.Store(int64(time.Hour))
	err := contender.TryLock(ctx)
	if err == nil {
		contender.Unlock(ctx)
		t.Fatalf("two holders: after S3's Date stepped an hour ahead, a contender that had checked it earlier took a live 20s hold at once")
	}
	var le *s3lock.LockedError
	if !errors.As(err, &le) {
		t.Fatalf("contender TryLock() = %v; want a *LockedError", err)
	}
}

// TestRedteamCancelledClockCheckNotHeldAgainst: a clock check cut short by
// the caller's own deadline says nothing about S3's clock, but it is
// counted as a failed check and none is made for a minute: the same
// process's next TryLock, with time to spare and S3's clock in step, then
// waits one TTL + margin on its own clock before it takes over a hold
// abandoned long ago. Severity: liveness (slower takeover for a minute).
func TestRedteamCancelledClockCheckNotHeldAgainst(t *testing.T) {
	var slow atomic.Bool
	srv := s3locktest.New(t, s3locktest.WithMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if slow.Load() && r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, ".s3lock-clock") {
				time.Sleep(500 * time.Millisecond)
			}
			next.ServeHTTP(w, r)
		})
	}))
	key := "locks/redteam-cancelled-check"
	ctx := context.Background()
	if err := srv.PutObject(ctx, key, []byte(`{"s3lock":1,"state":"held","owner":"dead","nonce":"dead1","generation":1,"ttl_ms":1000,"written_at":"2025-01-01T00:00:00Z"}`)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second + s3lock.DefaultExpiryMargin + 2*time.Second)
	m := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithTTL(time.Second))
	slow.Store(true)
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err := m.TryLock(short)
	cancel()
	if err == nil {
		m.Unlock(ctx)
		t.Skip("the first TryLock took the lock: the check was not cut short")
	}
	t.Logf("TryLock() with a 200ms deadline during the clock check = %v", err)
	slow.Store(false)
	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("TryLock() with time to spare of a hold dead for 4s (1s TTL), S3's clock in step = %v; want the lock: the check the caller's deadline cut short is held against it", err)
	}
	m.Unlock(ctx)
}

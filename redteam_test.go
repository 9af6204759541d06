package s3lock_test

// Adversarial tests of issue 14's fixes: whose clock is trusted, releases
// and reservations.

import (
	"context"
	"errors"
	"net/http"
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

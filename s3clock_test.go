package s3lock_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

// Tests of whose clock is trusted: S3's Date only once a contender has seen
// it agree with the Last-Modified the store stamps on writes.

// dateAhead is server middleware that dates every answer d ahead of the
// store's clock, as a gateway with its own clock in front of the store
// does.
func dateAhead(d time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Date", time.Now().Add(d).UTC().Format(http.TimeFormat))
			next.ServeHTTP(w, r)
		})
	}
}

// heldRecord is a held record of generation gen and the given TTL, as a
// holder that died right after writing it left it.
func heldRecord(gen uint64, ttl time.Duration) []byte {
	return fmt.Appendf(nil, `{"s3lock":1,"state":"held","owner":"dead-holder","nonce":"dead%d","generation":%d,"ttl_ms":%d,"written_at":"2025-01-01T00:00:00Z"}`,
		gen, gen, ttl.Milliseconds())
}

// TestDateAheadNoEarlyTakeover: behind a gateway whose Date runs an hour
// ahead, every object looks an hour old. A fresh contender must not take
// a live hold over: the old code trusted Date − Last-Modified from its
// first read and took a hold acquired 0 s earlier with a 20 s TTL at once.
func TestDateAheadNoEarlyTakeover(t *testing.T) {
	srv := s3locktest.New(t, s3locktest.WithMiddleware(dateAhead(time.Hour)))
	key := "locks/date-ahead"
	ctx := context.Background()
	holder := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithTTL(20*time.Second))
	if err := holder.TryLock(ctx); err != nil {
		t.Fatalf("holder TryLock() = %v", err)
	}
	defer holder.Unlock(ctx)
	contender := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithTTL(20*time.Second))
	err := contender.TryLock(ctx)
	var le *s3lock.LockedError
	if !errors.As(err, &le) {
		contender.Unlock(ctx)
		t.Fatalf("fresh contender's TryLock() = %v on a live 20s hold; want a *LockedError", err)
	}
	// Judged by the contender's own clock: one TTL + margin from now.
	if le.RetryAfter < 15*time.Second {
		t.Errorf("RetryAfter = %v; want about TTL + margin (21s), judged without S3's Date", le.RetryAfter)
	}
	if err := holder.Context().Err(); err != nil {
		t.Fatalf("holder's hold ended: %v", context.Cause(holder.Context()))
	}
}

// TestProbeReportsDateAhead: a store that honours conditional writes but
// whose Date runs ahead of its Last-Modified is reported by Probe as a
// *ClockSkewError (s3lock is safe there, but slower to take over a dead
// holder's lock); with its Date in step the probe passes.
func TestProbeReportsDateAhead(t *testing.T) {
	ctx := context.Background()
	srv := s3locktest.New(t, s3locktest.WithMiddleware(dateAhead(time.Hour)))
	err := s3lock.Probe(ctx, srv.Client(), srv.Bucket(), "probes/")
	var ce *s3lock.ClockSkewError
	if !errors.As(err, &ce) || !errors.Is(err, s3lock.ErrClockSkew) {
		t.Fatalf("Probe() with Date an hour ahead = %v; want a *ClockSkewError matching ErrClockSkew", err)
	}
	if errors.Is(err, s3lock.ErrConditionalWritesUnsupported) {
		t.Errorf("Probe() = %v matches ErrConditionalWritesUnsupported; the store honours conditional writes", err)
	}
	if skew := ce.Date.Sub(ce.LastModified); skew < 59*time.Minute || skew > 61*time.Minute {
		t.Errorf("reported Date − Last-Modified = %v; want about 1h", skew)
	}
	if !strings.Contains(err.Error(), "Last-Modified") {
		t.Errorf("error %q does not name what disagrees", err)
	}
	// WithProbe accepts the store: s3lock is safe on it.
	m := newMutex(t, srv.Client(), srv.Bucket(), "locks/probe-skew", s3lock.WithProbe())
	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("TryLock() with WithProbe on a store with its Date ahead = %v; want nil", err)
	}
	m.Unlock(ctx)
}

// TestTakeoverOfAbandonedLock: a fresh process finds a hold abandoned
// longer ago than its TTL + margins. Where S3's Date checks out against
// the store's own stamps, it takes the lock in its first attempt (after one
// PUT and one GET of the clock-check object); where the Date runs an hour
// ahead, it waits one TTL + margin on its own clock, and never less.
func TestTakeoverOfAbandonedLock(t *testing.T) {
	const ttl = time.Second
	for _, tc := range []struct {
		name  string
		ahead time.Duration
	}{
		{"clock checks out", 0},
		{"Date an hour ahead", time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := s3locktest.New(t, s3locktest.WithMiddleware(dateAhead(tc.ahead)))
			key := "locks/abandoned"
			ctx := context.Background()
			if err := srv.PutObject(ctx, key, heldRecord(7, ttl)); err != nil {
				t.Fatal(err)
			}
			// By S3's clock the hold must look older than TTL + margin + 1 s
			// (the headers are truncated to the second).
			time.Sleep(ttl + s3lock.DefaultExpiryMargin + 2*time.Second)
			m := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithTTL(ttl))
			start := time.Now()
			err := m.TryLock(ctx)
			switch {
			case tc.ahead == 0 && err != nil:
				t.Fatalf("TryLock() of a hold abandoned %v ago = %v; want the lock at once", ttl+3*time.Second, err)
			case tc.ahead != 0 && err == nil:
				t.Fatal("TryLock() behind a gateway dating an hour ahead took the lock without waiting out the TTL on its own clock")
			case tc.ahead != 0:
				var le *s3lock.LockedError
				if !errors.As(err, &le) || le.RetryAfter < ttl {
					t.Fatalf("TryLock() = %v; want a *LockedError with RetryAfter about TTL + margin", err)
				}
				if err := m.Lock(ctx); err != nil {
					t.Fatalf("Lock() = %v", err)
				}
				if waited := time.Since(start); waited < ttl+s3lock.DefaultExpiryMargin {
					t.Fatalf("took over after %v; want at least TTL + margin on the contender's clock", waited)
				}
			}
			t.Logf("fresh process took the abandoned lock after %v (TTL %v)", time.Since(start).Round(time.Millisecond), ttl)
			if got := m.Token(); got != 8 {
				t.Errorf("Token() = %d; want 8, one more than the abandoned hold", got)
			}
			m.Unlock(ctx)
		})
	}
}

// TestDateAheadOnReadsOnly: a gateway that dates only its GET answers an
// hour ahead (its PUT answers agree with Last-Modified) must not win a
// contender's trust either: the clock check compares the read's Date too.
func TestDateAheadOnReadsOnly(t *testing.T) {
	readsAhead := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet {
				w.Header().Set("Date", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
			}
			next.ServeHTTP(w, r)
		})
	}
	srv := s3locktest.New(t, s3locktest.WithMiddleware(readsAhead))
	key := "locks/reads-ahead"
	ctx := context.Background()
	holder := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithTTL(20*time.Second))
	if err := holder.TryLock(ctx); err != nil {
		t.Fatalf("holder TryLock() = %v", err)
	}
	defer holder.Unlock(ctx)
	contender := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithTTL(20*time.Second))
	if err := contender.TryLock(ctx); !errors.Is(err, s3lock.ErrLocked) {
		if err == nil {
			contender.Unlock(ctx)
		}
		t.Fatalf("fresh contender's TryLock() behind a gateway dating reads an hour ahead = %v; want ErrLocked", err)
	}
}

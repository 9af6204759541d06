package s3lock_test

// Holds that are not renewed end after their TTL: contenders take them
// over then and never before, whatever the clients' wall clocks say.

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

// TestExpiryTakeover: a hold that is never unlocked blocks others for its
// TTL and is taken over after it, never before, whatever the clients'
// wall clocks say.
func TestExpiryTakeover(t *testing.T) {
	const ttl = time.Second
	for _, tc := range []struct {
		name               string
		holderSkew, contSk time.Duration
	}{
		{"no skew", 0, 0},
		{"holder +1h", time.Hour, 0},
		{"holder -1h", -time.Hour, 0},
		{"contender +1h", 0, time.Hour},
		{"contender -1h", 0, -time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := s3locktest.New(t)
			ctx := context.Background()
			key := "locks/expiry"
			holder := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithTTL(ttl), s3lock.WithOwner("holder"), s3lock.WithClock(s3locktest.SkewedClock{Skew: tc.holderSkew}))
			cont := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithTTL(ttl), s3lock.WithOwner("contender"),
				s3lock.WithClock(s3locktest.SkewedClock{Skew: tc.contSk}), s3lock.WithRetryInterval(50*time.Millisecond))
			if err := holder.TryLock(ctx); err != nil {
				t.Fatalf("holder.TryLock() = %v", err)
			}
			acquired := time.Now()
			// Abandoned: the holder never unlocks. Until the TTL is over,
			// every attempt fails.
			for time.Since(acquired) < ttl*8/10 {
				err := cont.TryLock(ctx)
				if time.Since(acquired) < ttl && err == nil {
					t.Fatalf("contender acquired %v after the hold began; TTL is %v", time.Since(acquired), ttl)
				}
				wantLocked(t, err)
				time.Sleep(100 * time.Millisecond)
			}
			lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := cont.Lock(lctx); err != nil {
				t.Fatalf("contender.Lock() = %v; want takeover after the TTL", err)
			}
			gap := time.Since(acquired)
			if gap < ttl {
				t.Fatalf("takeover %v after acquire; want ≥ TTL %v", gap, ttl)
			}
			t.Logf("takeover after %v (TTL %v)", gap.Round(time.Millisecond), ttl)
			if got := cont.Token(); got != 2 {
				t.Errorf("contender Token() = %d; want 2", got)
			}
			// The old holder finds its lease lost.
			if err := holder.Unlock(ctx); !errors.Is(err, s3lock.ErrLeaseLost) {
				t.Errorf("holder.Unlock() after takeover = %v; want ErrLeaseLost", err)
			}
			if err := cont.Unlock(ctx); err != nil {
				t.Errorf("contender.Unlock() = %v", err)
			}
		})
	}
}

// TestHoldEndsBeforeTakeover: without renewal, a holder that never unlocks
// sees its hold context cancelled with ErrLeaseLost before a contender
// even sends its takeover write.
func TestHoldEndsBeforeTakeover(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "locks/no-renew"
	a := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("a"), s3lock.WithTTL(renewTTL))
	bc, blog := loggedClient(srv)
	b := newMutex(t, bc, srv.Bucket(), key, s3lock.WithOwner("b"), s3lock.WithRetryInterval(50*time.Millisecond))

	if err := a.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	hold := a.Context()
	lost := make(chan time.Time, 1)
	stop := context.AfterFunc(hold, func() { lost <- time.Now() })
	defer stop()

	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := b.Lock(lctx); err != nil {
		t.Fatalf("b.Lock() = %v; want nil after a's TTL", err)
	}
	var cancelledAt time.Time
	select {
	case cancelledAt = <-lost:
	default:
		t.Fatal("b took the lock over while a's hold context was still alive")
	}
	if !errors.Is(context.Cause(hold), s3lock.ErrLeaseLost) {
		t.Errorf("cause = %v; want ErrLeaseLost", context.Cause(hold))
	}
	if w := blog.first(); !cancelledAt.Before(w) {
		t.Errorf("a's hold ended at %v, after b sent its takeover write at %v", cancelledAt, w)
	}
	if b.Token() <= 1 {
		t.Errorf("b.Token() = %d; want > 1", b.Token())
	}
	if err := a.Unlock(ctx); !errors.Is(err, s3lock.ErrLeaseLost) {
		t.Errorf("a.Unlock() after takeover = %v; want ErrLeaseLost", err)
	}
	_ = b.Unlock(ctx)
}

// TestClockSkew: clients whose wall clocks are an hour ahead or behind
// neither take a hold over early nor leave the lock stuck.
func TestClockSkew(t *testing.T) {
	const ttl, margin = renewTTL, time.Second
	for _, tc := range []struct {
		name                 string
		holderSkew, contSkew time.Duration
		renew                bool
	}{
		{"holder +1h, contender -1h", time.Hour, -time.Hour, false},
		{"holder -1h, contender +1h", -time.Hour, time.Hour, false},
		{"renewing holder -1h, contender +1h", -time.Hour, time.Hour, true},
		{"renewing holder +1h, contender -1h", time.Hour, -time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := s3locktest.New(t)
			ctx := context.Background()
			const key = "locks/skew"
			opts := []s3lock.Option{s3lock.WithOwner("holder"), s3lock.WithTTL(ttl),
				s3lock.WithClock(s3locktest.SkewedClock{Skew: tc.holderSkew})}
			if tc.renew {
				opts = append(opts, s3lock.WithAutoRenew(renewInterval))
			}
			holder := newMutex(t, srv.Client(), srv.Bucket(), key, opts...)
			cc, clog := loggedClient(srv)
			cont := newMutex(t, cc, srv.Bucket(), key, s3lock.WithOwner("contender"), s3lock.WithTTL(ttl),
				s3lock.WithExpiryMargin(margin), s3lock.WithRetryInterval(50*time.Millisecond),
				s3lock.WithClock(s3locktest.SkewedClock{Skew: tc.contSkew}))

			start := time.Now()
			if err := holder.TryLock(ctx); err != nil {
				t.Fatal(err)
			}
			st := lockState(t, srv, key)
			if d := time.Until(st.AcquiredAt) - tc.holderSkew; d < -time.Minute || d > time.Minute {
				t.Fatalf("record's acquired_at = %v; want about now %+v (the skewed clock is not in use)", st.AcquiredAt, tc.holderSkew)
			}
			wantLocked(t, cont.TryLock(ctx))

			if tc.renew {
				// A renewing holder keeps the lock for several TTLs.
				end := time.Now().Add(2 * ttl)
				for time.Now().Before(end) {
					wantLocked(t, cont.TryLock(ctx))
					time.Sleep(100 * time.Millisecond)
				}
				if err := holder.Context().Err(); err != nil {
					t.Fatalf("renewing holder lost its hold: %v", context.Cause(holder.Context()))
				}
				// Released: the contender gets it at once.
				handOver(t, ctx, holder, cont, 0)
				return
			}

			// The holder stops without releasing: the contender waits out
			// the TTL, no less, and then gets the lock (not stuck).
			lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if err := cont.Lock(lctx); err != nil {
				t.Fatalf("contender Lock() = %v; want nil after the TTL", err)
			}
			if w := clog.first(); w.Sub(start) < ttl+margin {
				t.Errorf("contender wrote %v after the holder's acquire; want >= TTL+margin (%v)", w.Sub(start), ttl+margin)
			}
			if holder.Context().Err() == nil {
				t.Error("holder's hold context alive after the takeover")
			}
			if got := cont.Token(); got != 2 {
				t.Errorf("contender Token() = %d; want 2", got)
			}
			if err := holder.Unlock(ctx); !errors.Is(err, s3lock.ErrLeaseLost) {
				t.Errorf("holder.Unlock() = %v; want ErrLeaseLost", err)
			}
			handOver(t, ctx, cont, holder, 3)
		})
	}
}

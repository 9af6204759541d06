package s3lock

// Adversarial white-box tests of issue 17 (shared records, schema 3).

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/s3lock/s3lock/s3locktest"
)

// TestRedteamSharedDeadReservationBlocksLong attacks promise 4: a reserved
// waiter that died (killed before it could withdraw) blocks the others
// about reservationTTL (2 s) only. reservedAway starts the 2 s only once
// the reserved units are free (free >= need); a reservation for the whole
// lock (a writer, NextUnits 0) or for more units than are free is never
// stale while one holder stays. So a writer that died while waiting keeps
// every new reader out for as long as any old reader holds (an hour-long
// backup: an hour), and a dead large semaphore request does the same to
// every new holder.
func TestRedteamSharedDeadReservationBlocksLong(t *testing.T) {
	const wait = reservationStale + 2*time.Second // the documented bound, and slack for a busy machine
	srv := s3locktest.New(t)
	ctx := context.Background()
	t.Run("dead writer, readers", func(t *testing.T) {
		key := "redteam/dead-writer"
		r1, err := NewRWMutex(srv.Client(), srv.Bucket(), key)
		if err != nil {
			t.Fatal(err)
		}
		if err := r1.RLock(ctx); err != nil {
			t.Fatal(err)
		}
		defer r1.RUnlock(ctx)
		s, err := r1.r.lm.read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// What a waiting writer writes (wait.go reserve), before it is killed.
		if !r1.r.lm.reserveTurn(ctx, s, "dead-writer-0001", 1, 0) {
			t.Fatal("the reservation did not land")
		}
		r2, err := NewRWMutex(srv.Client(), srv.Bucket(), key)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var last error
		for time.Since(start) < wait {
			if last = r2.TryRLock(ctx); last == nil {
				_ = r2.RUnlock(ctx)
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("TryRLock() still = %v %v after a writer that died reserved the turn (reservationStale %v)", last, wait, reservationStale)
	})
	t.Run("dead large request, semaphore", func(t *testing.T) {
		key := "redteam/dead-large"
		a, err := NewSemaphore(srv.Client(), srv.Bucket(), key, 3)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.TryAcquire(ctx, 1); err != nil {
			t.Fatal(err)
		}
		defer a.Release(ctx)
		s, err := a.sl.lm.read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !a.sl.lm.reserveTurn(ctx, s, "dead-waiter-0001", 1, 3) {
			t.Fatal("the reservation did not land")
		}
		b, err := NewSemaphore(srv.Client(), srv.Bucket(), key, 3)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var last error
		for time.Since(start) < wait {
			if last = b.TryAcquire(ctx, 1); last == nil {
				_ = b.Release(ctx)
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("TryAcquire(1) still = %v %v after a waiter for 3 units that died reserved the turn, 2 units free (reservationStale %v)", last, wait, reservationStale)
	})
}

// TestRedteamSharedOwnOrphanOvertakesWriter attacks promise 4: once a
// writer waits, new readers wait behind it. judgeShared returns "take"
// as soon as no live entry but ours is listed (shared.go, len(live) == 0)
// before it looks at the reservation, so a reader whose earlier release
// failed (its old entry is still listed, the writer waits for it) takes a
// new read hold over the waiting writer's reservation.
func TestRedteamSharedOwnOrphanOvertakesWriter(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	key := "redteam/own-orphan"
	sc := &scripted{next: srv.Client()}
	v, err := NewRWMutex(sc, srv.Bucket(), key, WithReleaseTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.RLock(ctx); err != nil {
		t.Fatal(err)
	}
	sc.mu.Lock()
	sc.onPut = func(ctx context.Context, in *s3.PutObjectInput, body []byte) (bool, *s3.PutObjectOutput, error) {
		return true, nil, &smithy.GenericAPIError{Code: "AccessDenied", Message: "injected: release refused"}
	}
	sc.mu.Unlock()
	if err := v.RUnlock(ctx); err == nil {
		t.Fatal("RUnlock() = nil; want the injected failure")
	}
	sc.mu.Lock()
	sc.onPut = nil
	sc.mu.Unlock()
	// A writer waits for the old entry, reserving the next turn.
	w, err := NewRWMutex(srv.Client(), srv.Bucket(), key, WithRetryInterval(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Lock(wctx) }()
	defer func() {
		cancel()
		if err := <-done; err == nil {
			_ = w.Unlock(ctx)
		}
	}()
	for {
		s, err := v.r.lm.read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s.rec != nil && s.rec.Next != "" {
			break
		}
		if wctx.Err() != nil {
			t.Fatal("the writer never reserved its turn")
		}
		time.Sleep(20 * time.Millisecond)
	}
	err = v.TryRLock(ctx)
	if err == nil {
		_ = v.RUnlock(ctx)
		t.Fatal("TryRLock() = nil while a writer waits with the next turn reserved; want ErrLocked (new readers wait behind a waiting writer)")
	}
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("TryRLock() = %v; want ErrLocked", err)
	}
}

// TestRedteamSharedSuspendEndsHold attacks promise 1 with a suspend: time
// the system spent suspended counts against a shared hold's lease, with
// and without renewal, for a semaphore holder and a reader, so a suspend
// longer than the lease ends the hold soon after resume. Guard: it passes.
func TestRedteamSharedSuspendEndsHold(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts []Option
	}{
		{"no renewal", []Option{WithTTL(30 * time.Second)}},
		{"renewal", []Option{WithTTL(30 * time.Second), WithAutoRenew(10 * time.Second)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ahead := simulateSuspend(t)
			srv := s3locktest.New(t)
			ctx := context.Background()
			s, err := NewSemaphore(srv.Client(), srv.Bucket(), "redteam/suspend-sem", 2, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			rw, err := NewRWMutex(srv.Client(), srv.Bucket(), "redteam/suspend-rw", tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.TryAcquire(ctx, 1); err != nil {
				t.Fatal(err)
			}
			defer s.Release(ctx)
			if err := rw.TryRLock(ctx); err != nil {
				t.Fatal(err)
			}
			defer rw.RUnlock(ctx)
			ahead.Store(int64(5 * time.Second))
			time.Sleep(1500 * time.Millisecond)
			if s.Context().Err() != nil || rw.Context().Err() != nil {
				t.Fatalf("a 5s suspend ended a 30s lease: %v, %v", context.Cause(s.Context()), context.Cause(rw.Context()))
			}
			ahead.Store(int64(time.Minute))
			for name, hold := range map[string]context.Context{"semaphore": s.Context(), "reader": rw.Context()} {
				select {
				case <-hold.Done():
					if cause := context.Cause(hold); !errors.Is(cause, ErrLeaseLost) {
						t.Errorf("%s: hold ended with cause %v; want ErrLeaseLost", name, cause)
					}
				case <-time.After(5 * time.Second):
					t.Errorf("%s: hold still on 5s after a suspend longer than its lease", name)
				}
			}
		})
	}
}

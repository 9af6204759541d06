package s3lock_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

// fencedResource is a resource that accepts a write only with a fencing
// token at least as large as every token it has seen.
type fencedResource struct {
	mu  sync.Mutex
	max uint64
}

var errStaleToken = errors.New("stale fencing token")

func (r *fencedResource) write(token uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if token < r.max {
		return fmt.Errorf("%w: %d < %d", errStaleToken, token, r.max)
	}
	r.max = token
	return nil
}

func TestWithAutoRenewValidation(t *testing.T) {
	srv := s3locktest.New(t)
	tests := []struct {
		name     string
		interval time.Duration
		wantErr  bool
	}{
		{"TTL/3", renewTTL / 3, false},
		{"below TTL/3", renewTTL / 10, false},
		{"zero (off)", 0, false},
		{"above TTL/3", renewTTL/3 + time.Nanosecond, true},
		{"TTL", renewTTL, true},
		{"negative", -time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s3lock.New(srv.Client(), srv.Bucket(), "k", s3lock.WithTTL(renewTTL), s3lock.WithAutoRenew(tt.interval))
			if got := errors.Is(err, s3lock.ErrInvalidArgument); got != tt.wantErr || (!tt.wantErr && err != nil) {
				t.Errorf("New(WithAutoRenew(%v)) = %v; want error: %v", tt.interval, err, tt.wantErr)
			}
		})
	}
}

// TestWithAutoRenewMinimum: renewal intervals below
// MinAutoRenewInterval, which would be a tight loop of PUTs, are refused.
func TestWithAutoRenewMinimum(t *testing.T) {
	srv := s3locktest.New(t)
	for _, tc := range []struct {
		name     string
		interval time.Duration
		wantErr  bool
	}{
		{"1ns", time.Nanosecond, true},
		{"1ms", time.Millisecond, true},
		{"just below the minimum", s3lock.MinAutoRenewInterval - 1, true},
		{"the minimum", s3lock.MinAutoRenewInterval, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s3lock.New(srv.Client(), srv.Bucket(), "locks/min-renew",
				s3lock.WithTTL(time.Second), s3lock.WithAutoRenew(tc.interval))
			switch {
			case tc.wantErr && !errors.Is(err, s3lock.ErrInvalidArgument):
				t.Errorf("New(WithAutoRenew(%v)) = %v; want ErrInvalidArgument", tc.interval, err)
			case !tc.wantErr && err != nil:
				t.Errorf("New(WithAutoRenew(%v)) = %v; want nil", tc.interval, err)
			}
		})
	}
}

// TestAutoRenewOutlivesTTL: with renewal, WithLock's fn runs for more
// than two TTLs, keeps the lock the whole time, and its context has no
// deadline of its own.
func TestAutoRenewOutlivesTTL(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "locks/renew-long"
	a := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("a"), s3lock.WithTTL(renewTTL), s3lock.WithAutoRenew(renewInterval))
	b := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("b"), s3lock.WithTTL(renewTTL))

	var polls int
	err := a.WithLock(ctx, func(ctx context.Context) error {
		if d, ok := ctx.Deadline(); ok {
			t.Errorf("fn's ctx has deadline %v; want none with renewal", d)
		}
		wantRenewers(t, 1)
		first := a.SafeUntil()
		end := time.Now().Add(2*renewTTL + renewTTL/2)
		for time.Now().Before(end) {
			le := wantLocked(t, b.TryLock(ctx))
			if le.Owner != "a" || le.Generation != 1 {
				t.Errorf("b.TryLock() = %+v; want held by a, generation 1", le)
			}
			polls++
			time.Sleep(100 * time.Millisecond)
		}
		if err := ctx.Err(); err != nil {
			t.Errorf("fn's ctx ended after %v: %v (cause %v); want alive", 2*renewTTL+renewTTL/2, err, context.Cause(ctx))
		}
		if last := a.SafeUntil(); !last.After(first.Add(renewTTL)) {
			t.Errorf("SafeUntil moved from %v to %v; want it extended by renewals past one TTL", first, last)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("WithLock() = %v; want nil", err)
	}
	wantRenewers(t, 0)
	if polls < 5 {
		t.Errorf("b polled %d times; want many", polls)
	}
	if err := b.TryLock(ctx); err != nil {
		t.Fatalf("b.TryLock() after WithLock = %v; want nil", err)
	}
	if got := b.Token(); got != 2 {
		t.Errorf("b.Token() = %d; want 2", got)
	}
	_ = b.Unlock(ctx)
}

// TestRenewalPartition cuts the renewing holder off from S3. Its hold
// context must be cancelled with ErrLeaseLost before the contender sends
// its takeover write; the contender's token is larger, and a fenced
// resource refuses the cut-off holder's late write.
func TestRenewalPartition(t *testing.T) {
	for _, mode := range []string{"refused", "blackhole"} {
		t.Run(mode, func(t *testing.T) {
			srv := s3locktest.New(t)
			ctx := context.Background()
			const key = "locks/partition"
			fa := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
			a := newMutex(t, srv.FaultyClient(fa), srv.Bucket(), key,
				s3lock.WithOwner("a"), s3lock.WithTTL(renewTTL), s3lock.WithAutoRenew(renewInterval))
			bc, blog := loggedClient(srv)
			b := newMutex(t, bc, srv.Bucket(), key, s3lock.WithOwner("b"), s3lock.WithRetryInterval(50*time.Millisecond))
			res := &fencedResource{}

			if err := a.Lock(ctx); err != nil {
				t.Fatal(err)
			}
			tokA := a.Token()
			if err := res.write(tokA); err != nil {
				t.Fatal(err)
			}
			hold := a.Context()
			lost := make(chan time.Time, 1)
			stop := context.AfterFunc(hold, func() { lost <- time.Now() })
			defer stop()

			before := srv.Stats().Snapshot()
			bDone := make(chan error, 1)
			lctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			go func() { bDone <- b.Lock(lctx) }()

			// Renewal keeps a's hold alive past its TTL while b waits.
			waitForGets(t, srv, before, 1)
			time.Sleep(renewTTL + renewInterval)
			select {
			case err := <-bDone:
				t.Fatalf("b.Lock() returned %v while a was renewing", err)
			default:
			}
			if err := hold.Err(); err != nil {
				t.Fatalf("a's hold ended before the partition: %v", context.Cause(hold))
			}

			cutAt := time.Now()
			if mode == "refused" {
				fa.Partition(time.Hour)
			} else {
				fa.Blackhole(time.Hour)
			}
			var cancelledAt time.Time
			select {
			case cancelledAt = <-lost:
			case <-time.After(30 * time.Second):
				t.Fatal("a's hold context not cancelled 30s after the partition")
			}
			if !errors.Is(context.Cause(hold), s3lock.ErrLeaseLost) {
				t.Errorf("cause = %v; want ErrLeaseLost", context.Cause(hold))
			}
			if err := <-bDone; err != nil {
				t.Fatalf("b.Lock() = %v; want nil", err)
			}
			w := blog.first()
			if !cancelledAt.Before(w) {
				t.Errorf("a's hold ended at %v, after b sent its takeover write at %v", cancelledAt, w)
			}
			t.Logf("partition at +0; a's hold cancelled at +%v; b's first write at +%v; faults on a: %v",
				cancelledAt.Sub(cutAt).Round(time.Millisecond), w.Sub(cutAt).Round(time.Millisecond), fa.Counts())
			tokB := b.Token()
			if tokB <= tokA {
				t.Errorf("b's token %d is not larger than a's %d", tokB, tokA)
			}
			if err := res.write(tokB); err != nil {
				t.Errorf("resource refused b's write: %v", err)
			}
			if err := res.write(tokA); !errors.Is(err, errStaleToken) {
				t.Errorf("resource accepted a's late write with token %d: %v; want errStaleToken", tokA, err)
			}
			wantRenewers(t, 0) // a's renewer has given up on its own

			fa.Heal()
			if err := a.Unlock(ctx); !errors.Is(err, s3lock.ErrLeaseLost) {
				t.Errorf("a.Unlock() after the takeover = %v; want ErrLeaseLost", err)
			}
			if err := b.Unlock(ctx); err != nil {
				t.Errorf("b.Unlock() = %v", err)
			}
		})
	}
}

// TestUnlockAfterLostLease: once the hold context has been cancelled with
// ErrLeaseLost, Unlock reports ErrLeaseLost, whether or not someone took
// the lock over and whether or not S3 is reachable again.
func TestUnlockAfterLostLease(t *testing.T) {
	for _, tc := range []struct {
		name string
		heal bool
	}{
		{"still partitioned", false},
		{"healed, nobody took over", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := s3locktest.New(t)
			ctx := context.Background()
			fa := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
			a := newMutex(t, srv.FaultyClient(fa), srv.Bucket(), "locks/lost",
				s3lock.WithTTL(renewTTL), s3lock.WithAutoRenew(renewInterval), s3lock.WithReleaseTimeout(2*time.Second))
			if err := a.Lock(ctx); err != nil {
				t.Fatal(err)
			}
			fa.Partition(time.Hour)
			select {
			case <-a.Context().Done():
			case <-time.After(30 * time.Second):
				t.Fatal("hold not lost 30s into the partition")
			}
			if tc.heal {
				fa.Heal()
			}
			uctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			err := a.Unlock(uctx)
			if !errors.Is(err, s3lock.ErrLeaseLost) {
				t.Errorf("Unlock() after the hold context was cancelled with ErrLeaseLost = %v; want ErrLeaseLost", err)
			}
			wantRenewers(t, 0)
			fa.Heal()
			// The lock is not stranded for this Mutex.
			if err := a.TryLock(ctx); err != nil {
				t.Fatalf("TryLock() after the partition = %v; want nil", err)
			}
			if err := a.Unlock(ctx); err != nil {
				t.Fatalf("Unlock() = %v", err)
			}
		})
	}
}

// TestRenewalFindsForeignRecord: a renewal that finds the lock object no
// longer ours cancels the hold with ErrLeaseLost.
func TestRenewalFindsForeignRecord(t *testing.T) {
	tests := []struct {
		name  string
		steal func(t *testing.T, srv *s3locktest.Server, key string) *s3lock.Mutex // returns the new holder, if any
	}{
		{"force-unlocked and taken", func(t *testing.T, srv *s3locktest.Server, key string) *s3lock.Mutex {
			ctx := context.Background()
			for {
				st, err := s3lock.Inspect(ctx, srv.Client(), srv.Bucket(), key)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := s3lock.ForceUnlock(ctx, srv.Client(), srv.Bucket(), key, st.ETag); err == nil {
					break
				} else if !errors.Is(err, s3lock.ErrChanged) {
					t.Fatal(err)
				}
				// A renewal came in between: inspect again.
			}
			c := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("c"))
			if err := c.TryLock(ctx); err != nil {
				t.Fatalf("c.TryLock() after ForceUnlock = %v", err)
			}
			return c
		}},
		{"deleted", func(t *testing.T, srv *s3locktest.Server, key string) *s3lock.Mutex {
			_, err := srv.Client().DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(srv.Bucket()), Key: aws.String(key)})
			if err != nil {
				t.Fatal(err)
			}
			return nil
		}},
		{"overwritten by garbage", func(t *testing.T, srv *s3locktest.Server, key string) *s3lock.Mutex {
			if err := srv.PutObject(context.Background(), key, []byte("not a lock")); err != nil {
				t.Fatal(err)
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := s3locktest.New(t)
			ctx := context.Background()
			const key = "locks/stolen"
			a := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("a"), s3lock.WithTTL(renewTTL), s3lock.WithAutoRenew(renewInterval))
			if err := a.Lock(ctx); err != nil {
				t.Fatal(err)
			}
			tokA := a.Token()
			c := tt.steal(t, srv, key)
			select {
			case <-a.Context().Done():
			case <-time.After(renewTTL):
				t.Fatalf("hold not cancelled within one TTL of the lock object changing")
			}
			if cause := context.Cause(a.Context()); !errors.Is(cause, s3lock.ErrLeaseLost) {
				t.Errorf("cause = %v; want ErrLeaseLost", cause)
			}
			wantRenewers(t, 0)
			if err := a.Unlock(ctx); !errors.Is(err, s3lock.ErrLeaseLost) {
				t.Errorf("a.Unlock() = %v; want ErrLeaseLost", err)
			}
			if c != nil {
				if c.Token() <= tokA {
					t.Errorf("c.Token() = %d; want > a's %d", c.Token(), tokA)
				}
				if err := c.Unlock(ctx); err != nil {
					t.Errorf("c.Unlock() = %v", err)
				}
			}
		})
	}
}

// TestRenewerStops checks every way a hold ends: no renewer goroutine is
// left behind, and the lock is free afterwards.
func TestRenewerStops(t *testing.T) {
	errFn := errors.New("fn failed")
	tests := []struct {
		name string
		run  func(t *testing.T, m *s3lock.Mutex)
	}{
		{"Lock then Unlock", func(t *testing.T, m *s3lock.Mutex) {
			if err := m.Lock(context.Background()); err != nil {
				t.Fatal(err)
			}
			wantRenewers(t, 1)
			if err := m.Unlock(context.Background()); err != nil {
				t.Fatal(err)
			}
		}},
		{"TryLock then Unlock with a cancelled ctx", func(t *testing.T, m *s3lock.Mutex) {
			if err := m.TryLock(context.Background()); err != nil {
				t.Fatal(err)
			}
			wantRenewers(t, 1)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := m.Unlock(ctx); err != nil {
				t.Fatalf("Unlock(cancelled ctx) = %v; want nil (the release goes on)", err)
			}
		}},
		{"WithLock, fn returns an error", func(t *testing.T, m *s3lock.Mutex) {
			err := m.WithLock(context.Background(), func(context.Context) error {
				wantRenewers(t, 1)
				return errFn
			})
			if !errors.Is(err, errFn) {
				t.Fatalf("WithLock() = %v; want errFn", err)
			}
		}},
		{"WithLock, fn panics", func(t *testing.T, m *s3lock.Mutex) {
			defer func() {
				if r := recover(); r != errFn {
					t.Fatalf("recovered %v; want errFn", r)
				}
			}()
			_ = m.WithLock(context.Background(), func(context.Context) error {
				wantRenewers(t, 1)
				panic(errFn)
			})
		}},
		{"WithLock, caller ctx cancelled during fn", func(t *testing.T, m *s3lock.Mutex) {
			ctx, cancel := context.WithCancel(context.Background())
			err := m.WithLock(ctx, func(fctx context.Context) error {
				wantRenewers(t, 1)
				cancel()
				<-fctx.Done()
				return fctx.Err()
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("WithLock() = %v; want context.Canceled", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := s3locktest.New(t)
			m := newMutex(t, srv.Client(), srv.Bucket(), "locks/stop", s3lock.WithTTL(renewTTL), s3lock.WithAutoRenew(renewInterval))
			tt.run(t, m)
			wantRenewers(t, 0)
			other := newMutex(t, srv.Client(), srv.Bucket(), "locks/stop")
			if err := other.TryLock(context.Background()); err != nil {
				t.Fatalf("other.TryLock() afterwards = %v; want nil (released)", err)
			}
			_ = other.Unlock(context.Background())
		})
	}
}

// TestRenewalUnderFaults: a renewing holder whose client meets the
// hammer's fault mix keeps its hold for several TTLs; nobody else gets in.
func TestRenewalUnderFaults(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "locks/renew-faults"
	fa := s3locktest.NewFaults(seedFor(t), hammerFaults)
	a := newMutex(t, srv.FaultyClient(fa), srv.Bucket(), key, s3lock.WithOwner("a"),
		s3lock.WithTTL(renewTTL), s3lock.WithAutoRenew(renewInterval/2))
	b := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("b"))
	if err := a.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(4 * renewTTL)
	polls := 0
	for time.Now().Before(end) {
		wantLocked(t, b.TryLock(ctx))
		polls++
		time.Sleep(50 * time.Millisecond)
	}
	if err := a.Context().Err(); err != nil {
		t.Fatalf("hold lost under faults: %v", context.Cause(a.Context()))
	}
	c := fa.Counts()
	t.Logf("%d requests through faults, %d faults (%v), %d polls by b, all refused", fa.Requests(), c.Failures(), c, polls)
	uctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	handOver(t, uctx, a, b, 0)
}

package s3lock

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3lock/s3lock/s3locktest"
)

// simulateSuspend makes bootClock run ahead of the monotonic clock by
// whatever the returned value holds, as it does after a suspend.
func simulateSuspend(t *testing.T) *atomic.Int64 {
	if readBootClock() == 0 {
		t.Skip("this system has no boot clock: s3lock cannot see a suspend here")
	}
	t.Cleanup(func() { bootSkew.Store(0) })
	return &bootSkew
}

// TestSuspendEndsLease: time the system spent suspended counts against a
// hold's lease, with and without renewal: SafeUntil moves back by it, and
// a suspend longer than the lease ends the hold (cause ErrLeaseLost) soon
// after resume, although the monotonic clock did not see the time pass.
func TestSuspendEndsLease(t *testing.T) {
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
			m, err := New(srv.Client(), srv.Bucket(), "locks/suspend", tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.TryLock(ctx); err != nil {
				t.Fatalf("TryLock() = %v", err)
			}
			defer m.Unlock(ctx)
			before := m.SafeUntil()
			ahead.Store(int64(5 * time.Second))
			if got := before.Sub(m.SafeUntil()); got < 4900*time.Millisecond || got > 5100*time.Millisecond {
				t.Errorf("after a 5s suspend SafeUntil moved back by %v; want 5s", got)
			}
			if err := m.Context().Err(); err != nil {
				t.Fatalf("a 5s suspend ended a 30s lease: %v", err)
			}
			ahead.Store(int64(time.Minute))
			select {
			case <-m.Context().Done():
				if cause := context.Cause(m.Context()); !errors.Is(cause, ErrLeaseLost) {
					t.Errorf("hold ended with cause %v; want ErrLeaseLost", cause)
				}
			case <-time.After(5 * time.Second): // both look at least every second
				t.Fatalf("hold still on 10s after a suspend longer than its lease (SafeUntil in %v)", time.Until(m.SafeUntil()))
			}
		})
	}
}

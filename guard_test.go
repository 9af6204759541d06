package s3lock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

func TestWithLockRunsAndReleases(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	m := newMutex(t, srv.Client(), srv.Bucket(), "locks/guard")
	other := newMutex(t, srv.Client(), srv.Bucket(), "locks/guard")
	ran := false
	err := m.WithLock(ctx, func(ctx context.Context) error {
		ran = true
		if m.Token() == 0 {
			t.Error("Token() inside WithLock = 0; want the hold's generation")
		}
		wantLocked(t, other.TryLock(ctx))
		return nil
	})
	if err != nil || !ran {
		t.Fatalf("WithLock() = %v, ran = %v; want nil, true", err, ran)
	}
	if err := other.TryLock(ctx); err != nil {
		t.Fatalf("TryLock() after WithLock = %v; want nil (released)", err)
	}
	_ = other.Unlock(ctx)
}

func TestWithLockDeadlineIsTTL(t *testing.T) {
	srv := s3locktest.New(t)
	const ttl = 800 * time.Millisecond
	m := newMutex(t, srv.Client(), srv.Bucket(), "locks/guard-deadline", s3lock.WithTTL(ttl))
	var deadline time.Time
	var cause error
	var entered time.Time
	err := m.WithLock(context.Background(), func(ctx context.Context) error {
		// The lease began before fn was called: its end is less than one
		// TTL after this.
		entered = time.Now()
		var ok bool
		deadline, ok = ctx.Deadline()
		if !ok {
			t.Error("fn's context has no deadline; want the lease's end")
		}
		<-ctx.Done()
		cause = context.Cause(ctx)
		return ctx.Err()
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WithLock() = %v; want fn's DeadlineExceeded", err)
	}
	if !errors.Is(cause, s3lock.ErrLeaseLost) {
		t.Errorf("context.Cause = %v; want ErrLeaseLost", cause)
	}
	if d := deadline.Sub(entered); d > ttl || d <= 0 {
		t.Errorf("deadline %v after fn was called; want at most the TTL %v", d, ttl)
	}
}

func TestWithLockKeepsCallerDeadline(t *testing.T) {
	srv := s3locktest.New(t)
	m := newMutex(t, srv.Client(), srv.Bucket(), "locks/guard-caller-deadline", s3lock.WithTTL(time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	want, _ := ctx.Deadline()
	err := m.WithLock(ctx, func(fnCtx context.Context) error {
		got, ok := fnCtx.Deadline()
		if !ok || !got.Equal(want) {
			t.Errorf("fn deadline = %v, %v; want the caller's %v", got, ok, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

var errBoom = errors.New("boom")

func TestWithLockReturnsFnError(t *testing.T) {
	srv := s3locktest.New(t)
	m := newMutex(t, srv.Client(), srv.Bucket(), "locks/guard-err")
	err := m.WithLock(context.Background(), func(context.Context) error { return errBoom })
	if !errors.Is(err, errBoom) {
		t.Fatalf("WithLock() = %v; want errBoom", err)
	}
	if err := newMutex(t, srv.Client(), srv.Bucket(), "locks/guard-err").TryLock(context.Background()); err != nil {
		t.Fatalf("lock not released after fn error: %v", err)
	}
}

func TestWithLockReleasesOnPanic(t *testing.T) {
	srv := s3locktest.New(t)
	m := newMutex(t, srv.Client(), srv.Bucket(), "locks/guard-panic")
	func() {
		defer func() {
			if r := recover(); r != "kaboom" {
				t.Errorf("recovered %v; want the original panic value", r)
			}
		}()
		_ = m.WithLock(context.Background(), func(context.Context) error { panic("kaboom") })
	}()
	if m.Token() != 0 {
		t.Error("Mutex still holds after a panic in fn")
	}
	other := newMutex(t, srv.Client(), srv.Bucket(), "locks/guard-panic")
	if err := other.TryLock(context.Background()); err != nil {
		t.Fatalf("lock not released after panic: %v", err)
	}
	_ = other.Unlock(context.Background())
}

// TestWithLockReleasesAfterCallerCancel: the caller's context is cancelled
// while fn runs; the release must still happen.
func TestWithLockReleasesAfterCallerCancel(t *testing.T) {
	srv := s3locktest.New(t)
	m := newMutex(t, srv.Client(), srv.Bucket(), "locks/guard-cancel")
	ctx, cancel := context.WithCancel(context.Background())
	err := m.WithLock(ctx, func(fnCtx context.Context) error {
		cancel()
		<-fnCtx.Done()
		return fnCtx.Err()
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("WithLock() = %v; want context.Canceled from fn", err)
	}
	other := newMutex(t, srv.Client(), srv.Bucket(), "locks/guard-cancel")
	if err := other.TryLock(context.Background()); err != nil {
		t.Fatalf("lock not released after the caller's cancel: %v", err)
	}
	_ = other.Unlock(context.Background())
}

func TestWithLockCancelledBeforeAcquire(t *testing.T) {
	srv := s3locktest.New(t)
	m := newMutex(t, srv.Client(), srv.Bucket(), "locks/guard-precancel")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	err := m.WithLock(ctx, func(context.Context) error { ran = true; return nil })
	if !errors.Is(err, context.Canceled) || ran {
		t.Errorf("WithLock(cancelled) = %v, ran = %v; want context.Canceled, fn not run", err, ran)
	}
}

// TestWithLockReportsLostLease: fn outlives the lease and someone else
// takes the lock; WithLock must say so even though fn returned nil.
func TestWithLockReportsLostLease(t *testing.T) {
	srv := s3locktest.New(t)
	const ttl = 500 * time.Millisecond
	m := newMutex(t, srv.Client(), srv.Bucket(), "locks/guard-lost", s3lock.WithTTL(ttl))
	other := newMutex(t, srv.Client(), srv.Bucket(), "locks/guard-lost", s3lock.WithRetryInterval(50*time.Millisecond))
	err := m.WithLock(context.Background(), func(ctx context.Context) error {
		lctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := other.Lock(lctx); err != nil { // waits out the TTL, then takes over
			t.Errorf("other.Lock() = %v", err)
		}
		if !errors.Is(context.Cause(ctx), s3lock.ErrLeaseLost) {
			t.Errorf("fn context cause = %v; want ErrLeaseLost", context.Cause(ctx))
		}
		return nil // ignores its context: WithLock must still report the loss
	})
	if !errors.Is(err, s3lock.ErrLeaseLost) {
		t.Fatalf("WithLock() = %v; want ErrLeaseLost", err)
	}
	_ = other.Unlock(context.Background())
}

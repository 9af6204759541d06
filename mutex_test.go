package s3lock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newMutex returns a Mutex on srv with its own client.
func newMutex(t *testing.T, srv *s3locktest.Server, key string, opts ...s3lock.Option) *s3lock.Mutex {
	t.Helper()
	m, err := s3lock.New(srv.Client(), srv.Bucket(), key, opts...)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	return m
}

func TestTryLockUnlockCycle(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	a := newMutex(t, srv, "locks/cycle", s3lock.WithOwner("a"))
	b := newMutex(t, srv, "locks/cycle", s3lock.WithOwner("b"))

	if err := a.TryLock(ctx); err != nil {
		t.Fatalf("a.TryLock() = %v; want nil", err)
	}
	if got := a.Token(); got != 1 {
		t.Errorf("a.Token() = %d; want 1", got)
	}
	err := b.TryLock(ctx)
	var le *s3lock.LockedError
	if !errors.As(err, &le) || !errors.Is(err, s3lock.ErrLocked) {
		t.Fatalf("b.TryLock() = %v; want *LockedError", err)
	}
	if le.Owner != "a" || le.Generation != 1 || le.Until.IsZero() {
		t.Errorf("LockedError = %+v; want owner a, generation 1, Until set", le)
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatalf("a.Unlock() = %v", err)
	}
	if err := b.TryLock(ctx); err != nil {
		t.Fatalf("b.TryLock() after release = %v; want nil", err)
	}
	if got := b.Token(); got != 2 {
		t.Errorf("b.Token() = %d; want 2", got)
	}
	if err := b.Unlock(ctx); err != nil {
		t.Fatalf("b.Unlock() = %v", err)
	}
	_ = time.Second
}

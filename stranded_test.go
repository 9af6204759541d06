package s3lock_test

// Stranded holds: a Mutex whose release (or renewal) could not reach S3
// keeps its record as its own, takes it back at once, and a take-back is a
// new version of the record to everyone else.

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/internal/s3http"
	"github.com/s3lock/s3lock/s3locktest"
)

// strand makes m hold the lock, then fail its Unlock (S3 unreachable), so
// m keeps its record as an orphan (lease.orphan: cond = {etag: own ETag}).
func strand(t *testing.T, srv *s3locktest.Server, key string, opts ...s3lock.Option) (*s3lock.Mutex, *s3locktest.Faults) {
	fa := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
	m := newMutex(t, srv.FaultyClient(fa), srv.Bucket(), key, opts...)
	if err := m.TryLock(context.Background()); err != nil {
		t.Fatal(err)
	}
	fa.Partition(time.Hour)
	if err := m.Unlock(context.Background()); err == nil {
		t.Fatal("Unlock while partitioned = nil")
	}
	fa.Heal()
	return m, fa
}

// TestStrandedHoldAfterLongPartition: a renewing holder is cut off from
// S3 for more than 16 failed renewals, loses its lease, and fails to
// Unlock. The record stays held for everyone else, but once S3 is back
// the same Mutex takes its own stranded hold back at once, as Unlock's
// doc promises. (TestFailedRenewalsKeepMemoryBounded checks what the
// Mutex remembers in the same scenario.)
func TestStrandedHoldAfterLongPartition(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "locks/stranded"
	fa := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
	writes := &s3http.WriteCounter{}
	// One attempt per request: each failed renewal is quick, so the
	// partition makes dozens of them before the lease runs out.
	client := srv.FaultyClient(fa, func(o *s3.Options) { o.RetryMaxAttempts = 1 }, writes.Install)
	m := newMutex(t, client, srv.Bucket(), key, s3lock.WithOwner("m"),
		s3lock.WithTTL(1500*time.Millisecond), s3lock.WithAutoRenew(100*time.Millisecond))
	other := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("other"))

	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("TryLock() = %v; want nil", err)
	}
	hold := m.Context()
	fa.Partition(time.Hour)
	before := writes.Writes()
	waitDone(t, hold, 20*time.Second, "the partitioned hold's context")
	if cause := context.Cause(hold); !errors.Is(cause, s3lock.ErrLeaseLost) {
		t.Errorf("hold ended with cause %v; want ErrLeaseLost", cause)
	}
	wantRenewers(t, 0)
	failed := writes.Writes() - before
	if failed <= 16 {
		t.Fatalf("%d renewal writes failed during the partition; want more than 16", failed)
	}
	if err := m.Unlock(ctx); err == nil {
		t.Fatal("Unlock() while partitioned = nil; want an error")
	}

	// The record is still held in S3: nobody else may take it yet.
	le := wantLocked(t, other.TryLock(ctx))
	if le.Owner != "m" || le.Generation != 1 {
		t.Errorf("other.TryLock() = %v; want locked by m at generation 1", le)
	}

	fa.Heal()
	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("TryLock() after %d failed renewals and a failed Unlock = %v; want nil (its own stranded hold)", failed, err)
	}
	if got := m.Token(); got != 2 {
		t.Errorf("Token() = %d; want 2", got)
	}
	wantLocked(t, other.TryLock(ctx))
	if err := m.Unlock(ctx); err != nil {
		t.Errorf("Unlock() = %v; want nil", err)
	}
}

// A Mutex taking back its own stranded record writes a fresh nonce: a
// take-back PUT that was not applied must not read back as applied (it
// did when the take-back reused the stranded record's nonce).
func TestTakeBackRefusedIsNotReadAsApplied(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "locks/repro1"
	m, fa := strand(t, srv, key, s3lock.WithOwner("m"), s3lock.WithTTL(time.Minute))
	before := lockState(t, srv, key)
	fa.Inject(s3locktest.FaultInternalError, 3, s3http.IsConditionalWrite) // not applied, every SDK attempt
	err := m.TryLock(ctx)
	after := lockState(t, srv, key)
	t.Logf("TryLock() = %v; Token() = %d; S3: generation %d, ETag changed: %v", err, m.Token(), after.Generation, after.ETag != before.ETag)
	if err == nil && after.ETag == before.ETag {
		t.Errorf("TryLock() = nil with Token() %d although its write was refused; S3 still has generation %d written at %v", m.Token(), after.Generation, after.LastModified)
	}
	_ = m.Unlock(ctx)
}

// A take-back must look like a new version to a contender that has been
// watching the stranded record (its monotonic expiry rule is keyed by the
// nonce), or the contender takes over by its first sighting of the old
// record while the take-back lease still runs.
func TestTakeBackRestartsContendersWatch(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "locks/repro2"
	const ttl = 2 * time.Second
	other := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("other"), s3lock.WithTTL(ttl))
	m, _ := strand(t, srv, key, s3lock.WithOwner("m"), s3lock.WithTTL(ttl))
	wantLocked(t, other.TryLock(ctx)) // other starts watching the stranded record
	time.Sleep(ttl)                   // stranded record nearly expired (TTL + 1s margin)
	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("m.TryLock() take-back = %v", err)
	}
	t.Logf("m took back at generation %d; SafeUntil in %v", m.Token(), time.Until(m.SafeUntil()).Round(time.Millisecond))
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if err := other.TryLock(ctx); err == nil {
			left := time.Until(m.SafeUntil())
			t.Logf("other took over at generation %d; m's hold: ctx err %v, SafeUntil in %v", other.Token(), m.Context().Err(), left.Round(time.Millisecond))
			if left > 0 && m.Context().Err() == nil {
				t.Errorf("two holders: other holds generation %d while m's hold (generation %d) is safe for another %v", other.Token(), m.Token(), left.Round(time.Millisecond))
			}
			_ = other.Unlock(ctx)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = m.Unlock(ctx)
}

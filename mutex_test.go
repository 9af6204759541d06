package s3lock_test

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/cenkalti/backoff/v4"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

func TestTryLockUnlockCycle(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	a := newMutex(t, srv.Client(), srv.Bucket(), "locks/cycle", s3lock.WithOwner("a"))
	b := newMutex(t, srv.Client(), srv.Bucket(), "locks/cycle", s3lock.WithOwner("b"))

	if err := a.TryLock(ctx); err != nil {
		t.Fatalf("a.TryLock() = %v; want nil", err)
	}
	if got := a.Token(); got != 1 {
		t.Errorf("a.Token() = %d; want 1", got)
	}
	le := wantLocked(t, b.TryLock(ctx))
	if le.Owner != "a" || le.Generation != 1 || le.Until.IsZero() || le.Local {
		t.Errorf("LockedError = %+v; want owner a, generation 1, Until set, not local", le)
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatalf("a.Unlock() = %v", err)
	}
	if got := a.Token(); got != 0 {
		t.Errorf("a.Token() after Unlock = %d; want 0", got)
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
	// The release left a free record, not a deleted object.
	st, err := s3lock.Inspect(ctx, srv.Client(), srv.Bucket(), "locks/cycle")
	if err != nil {
		t.Fatalf("Inspect() = %v", err)
	}
	if !st.Exists || st.Held || st.Generation != 2 {
		t.Errorf("Inspect() = %+v; want an existing free record of generation 2", st)
	}
}

func TestUnlockErrors(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	a := newMutex(t, srv.Client(), srv.Bucket(), "locks/unlock")
	if err := a.Unlock(ctx); !errors.Is(err, s3lock.ErrNotHeld) {
		t.Errorf("Unlock() never locked = %v; want ErrNotHeld", err)
	}
	if err := a.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	b := newMutex(t, srv.Client(), srv.Bucket(), "locks/unlock")
	if err := b.Unlock(ctx); !errors.Is(err, s3lock.ErrNotHeld) {
		t.Errorf("Unlock() by non-holder = %v; want ErrNotHeld", err)
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatalf("Unlock() = %v", err)
	}
	if err := a.Unlock(ctx); !errors.Is(err, s3lock.ErrNotHeld) {
		t.Errorf("second Unlock() = %v; want ErrNotHeld", err)
	}
}

// TestUnlockAfterForcedBreak: the hold was broken and taken by another;
// the old holder's Unlock reports ErrLeaseLost and does not free the new
// holder's lock.
func TestUnlockAfterForcedBreak(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	a := newMutex(t, srv.Client(), srv.Bucket(), "locks/broken", s3lock.WithOwner("a"))
	b := newMutex(t, srv.Client(), srv.Bucket(), "locks/broken", s3lock.WithOwner("b"))
	if err := a.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := s3lock.Inspect(ctx, srv.Client(), srv.Bucket(), "locks/broken")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s3lock.ForceUnlock(ctx, srv.Client(), srv.Bucket(), "locks/broken", st.ETag); err != nil {
		t.Fatalf("ForceUnlock() = %v", err)
	}
	if err := b.TryLock(ctx); err != nil {
		t.Fatalf("b.TryLock() after break = %v", err)
	}
	if a.Token() >= b.Token() {
		t.Errorf("tokens a=%d b=%d; want a < b", a.Token(), b.Token())
	}
	if err := a.Unlock(ctx); !errors.Is(err, s3lock.ErrLeaseLost) {
		t.Errorf("a.Unlock() = %v; want ErrLeaseLost", err)
	}
	if cause := context.Cause(a.Context()); !errors.Is(cause, s3lock.ErrNotHeld) {
		t.Errorf("a.Context() cause after Unlock = %v; want ErrNotHeld", cause)
	}
	wantLocked(t, newMutex(t, srv.Client(), srv.Bucket(), "locks/broken").TryLock(ctx))
	if err := b.Unlock(ctx); err != nil {
		t.Errorf("b.Unlock() = %v", err)
	}
}

// TestUnlockRacingLock: an Unlock from another goroutine that runs as
// soon as Lock has published the hold must stop everything the hold
// started, and must not block. Once Unlock returns, the lock is free,
// stays free, and no renewer runs; under -race, no data race between
// starting the hold and stopping it.
func TestUnlockRacingLock(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "locks/unlock-racing-lock"
	m := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("m"),
		s3lock.WithTTL(time.Second), s3lock.WithAutoRenew(s3lock.MinAutoRenewInterval))
	const rounds = 100
	for round := range rounds {
		lockErr := make(chan error, 1)
		go func() { lockErr <- m.Lock(ctx) }()
		// A shutdown hook in its own goroutine: unlock as soon as a hold
		// shows, possibly before Lock has started the renewer.
		lockFailed := make(chan struct{})
		unlockErr := make(chan error, 1)
		go func() {
			for m.Token() == 0 {
				select {
				case <-lockFailed:
					return
				default:
					runtime.Gosched()
				}
			}
			unlockErr <- m.Unlock(ctx)
		}()
		if err := <-lockErr; err != nil {
			close(lockFailed)
			t.Fatalf("round %d: Lock() = %v; want nil", round, err)
		}
		select {
		case err := <-unlockErr:
			if err != nil {
				t.Fatalf("round %d: Unlock() = %v; want nil", round, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: Unlock() racing Lock has not returned after 10s", round)
		}
		if st := lockState(t, srv, key); st.Held {
			t.Fatalf("round %d: after Unlock, the lock is held (%+v); want free", round, st)
		}
		wantRenewers(t, 0)
	}
	// Nothing keeps writing the lock once Unlock has returned.
	before := lockState(t, srv, key)
	time.Sleep(5 * s3lock.MinAutoRenewInterval)
	after := lockState(t, srv, key)
	if after.Held || after.ETag != before.ETag {
		t.Errorf("lock %s (held %v) %v after the last Unlock; want unchanged free record %s",
			after.ETag, after.Held, 5*s3lock.MinAutoRenewInterval, before.ETag)
	}
	wantRenewers(t, 0)
}

// TestLocalExclusion: goroutines sharing one Mutex exclude each other
// without S3 traffic while they wait.
func TestLocalExclusion(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	m := newMutex(t, srv.Client(), srv.Bucket(), "locks/local")
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	le := wantLocked(t, m.TryLock(ctx))
	if !le.Local {
		t.Errorf("TryLock() on a held Mutex: Local = false; want true")
	}
	before := srv.Stats().Snapshot()
	got := make(chan error, 1)
	go func() { got <- m.Lock(ctx) }()
	select {
	case err := <-got:
		t.Fatalf("second Lock() returned %v while the first holds", err)
	case <-time.After(300 * time.Millisecond):
	}
	if n := srv.Stats().Snapshot().Sub(before).Total(); n != 0 {
		t.Errorf("waiting in-process made %d S3 requests; want 0", n)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("second Lock() = %v", err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestLockHonoursContext(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	a := newMutex(t, srv.Client(), srv.Bucket(), "locks/ctx")
	b := newMutex(t, srv.Client(), srv.Bucket(), "locks/ctx", s3lock.WithRetryInterval(20*time.Millisecond))
	if err := a.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	defer a.Unlock(ctx)

	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	err := b.Lock(cctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock() = %v; want it to wrap context.DeadlineExceeded", err)
	}
	if b.Token() != 0 {
		t.Errorf("Token() after failed Lock = %d; want 0", b.Token())
	}
	// Already-cancelled context: no attempt at all.
	cancelled, cancel2 := context.WithCancel(ctx)
	cancel2()
	if err := b.Lock(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("Lock(cancelled) = %v; want context.Canceled", err)
	}
	if err := b.TryLock(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("TryLock(cancelled) = %v; want context.Canceled", err)
	}
}

// TestLockWaitsForRelease: Lock returns soon after the holder unlocks.
func TestLockWaitsForRelease(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	a := newMutex(t, srv.Client(), srv.Bucket(), "locks/wait")
	b := newMutex(t, srv.Client(), srv.Bucket(), "locks/wait", s3lock.WithRetryInterval(20*time.Millisecond))
	if err := a.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	before := srv.Stats().Snapshot()
	got := make(chan error, 1)
	go func() { got <- b.Lock(ctx) }()
	// b has read the held lock and polled it again.
	waitForGets(t, srv, before, 2)
	select {
	case err := <-got:
		t.Fatalf("b.Lock() = %v while a holds", err)
	default:
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("b.Lock() = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("b.Lock() still waiting 10s after the release")
	}
	if err := b.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestRequestsPerOperation(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	m := newMutex(t, srv.Client(), srv.Bucket(), "locks/cost")

	count := func(f func() error) (gets, puts, total int64) {
		t.Helper()
		before := srv.Stats().Snapshot()
		if err := f(); err != nil {
			t.Fatal(err)
		}
		d := srv.Stats().Snapshot().Sub(before)
		return d.Method(http.MethodGet), d.Method(http.MethodPut), d.Total()
	}
	// First acquire of a lock that does not exist yet: GET (404) + PUT.
	if g, p, n := count(func() error { return m.TryLock(ctx) }); g != 1 || p != 1 || n != 2 {
		t.Errorf("first acquire: %d GET, %d PUT, %d total; want 1, 1, 2", g, p, n)
	}
	if g, p, n := count(func() error { return m.Unlock(ctx) }); g != 0 || p != 1 || n != 1 {
		t.Errorf("release: %d GET, %d PUT, %d total; want 0, 1, 1", g, p, n)
	}
	// Warm cycle: one conditional PUT each way.
	for i := range 5 {
		_, p, n := count(func() error {
			if err := m.TryLock(ctx); err != nil {
				return err
			}
			return m.Unlock(ctx)
		})
		if p != 2 || n != 2 {
			t.Errorf("warm cycle %d: %d PUT, %d total; want 2, 2", i, p, n)
		}
	}
	// A fresh Mutex on an existing free lock: GET + PUT.
	fresh := newMutex(t, srv.Client(), srv.Bucket(), "locks/cost")
	if g, p, n := count(func() error { return fresh.TryLock(ctx) }); g != 1 || p != 1 || n != 2 {
		t.Errorf("first acquire of an existing free lock: %d GET, %d PUT, %d total; want 1, 1, 2", g, p, n)
	}
	_ = fresh.Unlock(ctx)
}

func TestMissingBucket(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	m := newMutex(t, srv.Client(), "no-such-bucket", "locks/x")
	if err := m.TryLock(ctx); !errors.Is(err, s3lock.ErrBucketNotFound) || errors.Is(err, s3lock.ErrLocked) {
		t.Errorf("TryLock() = %v; want ErrBucketNotFound (and not ErrLocked)", err)
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := m.Lock(lctx); !errors.Is(err, s3lock.ErrBucketNotFound) {
		t.Errorf("Lock() = %v; want ErrBucketNotFound at once", err)
	}
}

func TestNewValidates(t *testing.T) {
	srv := s3locktest.New(t)
	c := srv.Client()
	for _, tc := range []struct {
		name        string
		client      s3lock.S3API
		bucket, key string
		opts        []s3lock.Option
	}{
		{"nil client", nil, "b", "k", nil},
		{"empty bucket", c, "", "k", nil},
		{"bucket with slash", c, "a/b", "k", nil},
		{"empty key", c, "b", "", nil},
		{"key too long", c, "b", strings.Repeat("k", 1025), nil},
		{"key not UTF-8", c, "b", "k\xff", nil},
		{"zero TTL", c, "b", "k", []s3lock.Option{s3lock.WithTTL(0)}},
		{"negative TTL", c, "b", "k", []s3lock.Option{s3lock.WithTTL(-time.Second)}},
		{"empty owner", c, "b", "k", []s3lock.Option{s3lock.WithOwner("")}},
		{"zero retry interval", c, "b", "k", []s3lock.Option{s3lock.WithRetryInterval(0)}},
		{"nil backoff", c, "b", "k", []s3lock.Option{s3lock.WithBackoff(nil)}},
		{"renew too slow for TTL", c, "b", "k", []s3lock.Option{s3lock.WithTTL(3 * time.Second), s3lock.WithAutoRenew(2 * time.Second)}},
		{"nil logger", c, "b", "k", []s3lock.Option{s3lock.WithLogger(nil)}},
		{"nil option", c, "b", "k", []s3lock.Option{nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := s3lock.New(tc.client, tc.bucket, tc.key, tc.opts...)
			if !errors.Is(err, s3lock.ErrInvalidArgument) || m != nil {
				t.Errorf("New() = %v, %v; want nil, ErrInvalidArgument", m, err)
			}
		})
	}
	if n := srv.Stats().Snapshot().Total(); n != 0 {
		t.Errorf("New made %d S3 requests; want 0", n)
	}
}

func TestLocker(t *testing.T) {
	srv := s3locktest.New(t)
	m := newMutex(t, srv.Client(), srv.Bucket(), "locks/locker")
	l := m.Locker()
	l.Lock()
	if m.Token() == 0 {
		t.Error("Token() after Locker().Lock() = 0; want the hold's generation")
	}
	l.Unlock()
	defer func() {
		r := recover()
		err, ok := r.(error)
		if !ok || !errors.Is(err, s3lock.ErrNotHeld) {
			t.Errorf("Locker().Unlock() of an unlocked Mutex panicked with %v; want ErrNotHeld", r)
		}
	}()
	l.Unlock()
}

// TestRetryIntervalCapsBackoff: WithRetryInterval and WithBackoff combine,
// the interval capping the backoff's pauses: with a backoff that would
// wait an hour, Lock still sees the release within its context's limit.
func TestRetryIntervalCapsBackoff(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	holder := newMutex(t, srv.Client(), srv.Bucket(), "locks/capped")
	if err := holder.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	m := newMutex(t, srv.Client(), srv.Bucket(), "locks/capped", s3lock.WithRetryInterval(50*time.Millisecond), s3lock.WithBackoff(backoff.NewConstantBackOff(time.Hour)))
	before := srv.Stats().Snapshot()
	done := make(chan error, 1)
	lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	go func() { done <- m.Lock(lctx) }()
	// m has read the held lock and polled again after a pause: the
	// interval capped the backoff's hour.
	waitForGets(t, srv, before, 2)
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Lock() with an hour-long backoff capped at 50ms = %v; want the lock", err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// churnS3 is a real S3 client that lets another Mutex take and release
// the lock right before each of our PutObject calls, so every conditional
// write of ours loses its race and the re-read finds the lock free again.
type churnS3 struct {
	s3lock.S3API
	other *s3lock.Mutex
	t     *testing.T
	puts  int
}

func (c *churnS3) PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	c.puts++
	if err := c.other.TryLock(ctx); err != nil {
		c.t.Errorf("other.TryLock() = %v", err)
	} else if err := c.other.Unlock(ctx); err != nil {
		c.t.Errorf("other.Unlock() = %v", err)
	}
	return c.S3API.PutObject(ctx, in, optFns...)
}

// TestTryLockLosingEveryRaceReportsErrLocked: when TryLock loses every
// conditional write to other owners (each time finding the lock free again
// on re-read), it must still report contention as ErrLocked: TryLock's
// contract is nil, a *LockedError, or an error from S3 or ctx. Under heavy
// churn (seen on moto in TestLinearizability) it instead returns
// "gave up after 5 conflicting writes", which matches no sentinel.
func TestTryLockLosingEveryRaceReportsErrLocked(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "locks/churn"
	other := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("other"))
	// Leave a free record at the key.
	if err := other.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := other.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	churn := &churnS3{S3API: srv.Client(), other: other, t: t}
	m := newMutex(t, churn, srv.Bucket(), key, s3lock.WithOwner("loser"))
	err := m.TryLock(ctx)
	if err == nil {
		t.Fatalf("TryLock() = nil after losing every race; want ErrLocked")
	}
	t.Logf("TryLock() after losing %d races: %v", churn.puts, err)
	if !errors.Is(err, s3lock.ErrLocked) {
		t.Errorf("TryLock() = %v; want an error matching ErrLocked (the lock kept being taken by others)", err)
	}
}

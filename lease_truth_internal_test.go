package s3lock

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/s3lock/s3lock/internal/prevrelease"
	"github.com/s3lock/s3lock/s3locktest"
)

// TestWithLockEndsOnSuspend: without renewal, fn's context must end when
// the lease does, time suspended included. Its deadline counts only the
// monotonic clock, which stops in suspend; the old code left fn's context
// live after a 1 minute suspend on a 30 s lease although the hold's
// context was cancelled.
func TestWithLockEndsOnSuspend(t *testing.T) {
	ahead := simulateSuspend(t)
	srv := s3locktest.New(t)
	m, err := New(srv.Client(), srv.Bucket(), "locks/withlock-suspend", WithTTL(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	err = m.WithLock(context.Background(), func(ctx context.Context) error {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("fn's context has no deadline without renewal; want the end of the lease")
		}
		ahead.Store(int64(time.Minute))
		select {
		case <-ctx.Done():
			if cause := context.Cause(ctx); !errors.Is(cause, ErrLeaseLost) {
				t.Errorf("fn's context ended with cause %v; want ErrLeaseLost", cause)
			}
		case <-time.After(5 * time.Second): // the hold looks every second
			t.Errorf("fn's context still live 5s after a 1 minute suspend of a 30s lease (hold: %v)", context.Cause(m.Context()))
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrLeaseLost) {
		t.Errorf("WithLock() = %v", err)
	}
}

// TestRenewerCatchesUpAfterSuspend: a suspend shorter than the lease
// leaves less than a renewal interval of it. The renewer must renew at
// once on resume rather than at its due time on the monotonic clock,
// which would come after the lease ended (TTL 9 s, renewal every 3 s, a
// 7 s suspend leaves 1.9 s).
func TestRenewerCatchesUpAfterSuspend(t *testing.T) {
	ahead := simulateSuspend(t)
	srv := s3locktest.New(t)
	m, err := New(srv.Client(), srv.Bucket(), "locks/renew-suspend",
		WithTTL(9*time.Second), WithAutoRenew(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("TryLock() = %v", err)
	}
	defer m.Unlock(ctx)
	puts := srv.Stats().Snapshot().Method("PUT")
	ahead.Store(int64(7 * time.Second))
	if left := time.Until(m.SafeUntil()); left > 2*time.Second {
		t.Fatalf("after a 7s suspend %v of a 9s lease left; the suspend was not seen", left)
	}
	// The renewer looks at least every second: within 1.5 s it must have
	// renewed, and the lease must outlast the 1.9 s left at resume.
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) && m.Context().Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	if err := m.Context().Err(); err != nil {
		t.Fatalf("hold lost after a 7s suspend of a 9s lease with S3 reachable: %v (renewal PUTs: %d)",
			context.Cause(m.Context()), srv.Stats().Snapshot().Method("PUT")-puts)
	}
	if n := srv.Stats().Snapshot().Method("PUT") - puts; n < 1 {
		t.Fatalf("%d renewal PUTs after the resume; want at least 1", n)
	}
	if left := time.Until(m.SafeUntil()); left < 4*time.Second {
		t.Fatalf("SafeUntil in %v after the catch-up renewal; want most of a 9s lease", left)
	}
}

// TestReservationKeepsLeaseStart: a waiter's reservation rewrites the held
// record, which moves Last-Modified without extending the lease. The end
// of the lease that LockedError.Until and LockStatus.ExpiresAt report, and
// a fresh contender's judgement by S3's clock, must count from the
// holder's own write: the old code counted from the reservation, telling
// contenders "the lease runs at least until" a time after it had ended,
// and keeping a fresh reader from a dead holder's lock for longer.
func TestReservationKeepsLeaseStart(t *testing.T) {
	const ttl = 3 * time.Second
	srv := s3locktest.New(t)
	ctx := context.Background()
	key := "locks/reserved-lease-start"
	holder, err := New(srv.Client(), srv.Bucket(), key, WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.TryLock(ctx); err != nil {
		t.Fatalf("TryLock() = %v", err)
	}
	defer holder.Unlock(ctx)
	before, err := Inspect(ctx, srv.Client(), srv.Bucket(), key)
	if err != nil {
		t.Fatal(err)
	}
	written := before.LastModified // the holder's write, by S3's clock
	// Reserve while the holder's lease runs, in a later second.
	time.Sleep(time.Until(written.Add(2050 * time.Millisecond)))
	waiter, err := New(srv.Client(), srv.Bucket(), key, WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	s, err := waiter.lm.read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w := waiter.lm.newWaiter(DefaultRetryInterval)
	waiter.lm.reserve(ctx, s, w)
	if !w.reserved {
		t.Fatal("the reservation did not land")
	}
	after, err := Inspect(ctx, srv.Client(), srv.Bucket(), key)
	if err != nil {
		t.Fatal(err)
	}
	if !after.LastModified.After(written) {
		t.Fatalf("Last-Modified %v after the reservation, %v before: the test did not test", after.LastModified, written)
	}
	if !after.ExpiresAt.Equal(written.Add(ttl)) {
		t.Errorf("LockStatus.ExpiresAt = %v after a reservation; want the holder's write + TTL = %v", after.ExpiresAt, written.Add(ttl))
	}
	fresh, err := New(srv.Client(), srv.Bucket(), key, WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	var le *LockedError
	if err := fresh.TryLock(ctx); !errors.As(err, &le) {
		t.Fatalf("TryLock() of a live hold = %v; want a *LockedError", err)
	}
	if !le.Until.Equal(written.Add(ttl)) {
		t.Errorf("LockedError.Until = %v after a reservation; want the holder's write + TTL = %v", le.Until, written.Add(ttl))
	}
	// By S3's clock the holder's write is TTL + margin + 1 s old at
	// written + 5 s (the reservation's is not): a fresh contender that has
	// checked S3's clock takes the dead holder's lock over then.
	time.Sleep(time.Until(written.Add(ttl + DefaultExpiryMargin + time.Second + 50*time.Millisecond)))
	if err := holder.Context().Err(); err == nil {
		t.Fatal("the holder's lease has not ended yet: the test would take over a live hold")
	}
	late, err := New(srv.Client(), srv.Bucket(), key, WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	if err := late.TryLock(ctx); err != nil {
		t.Fatalf("TryLock() at the holder's write + TTL + margins = %v; want the lock, dated from the holder's write", err)
	}
	late.Unlock(ctx)
}

// TestOwnWriteClockEvidence: a read that shows the version our last write
// left is evidence about S3's clock: its Last-Modified against our write's
// answer Date, and the read's own Date against both. A Date ahead on the
// write's answer or on the read's answer withdraws trust.
func TestOwnWriteClockEvidence(t *testing.T) {
	written := time.Now().Truncate(time.Second)
	for _, tc := range []struct {
		name                string
		writeDate, readDate time.Time
		trusted             bool
	}{
		{"one clock", written, written, true},
		{"write answered an hour ahead", written.Add(time.Hour), written.Add(time.Hour), false},
		{"read answered an hour ahead", written, written.Add(time.Hour), false},
		{"Date behind", written.Add(-2 * time.Second), written.Add(-time.Second), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lm := &lockObject{margin: DefaultExpiryMargin, log: slog.New(slog.DiscardHandler)}
			lm.noteWrite(`"ours"`, tc.writeDate)
			lm.checkOwnWrite(&snapshot{exists: true, etag: `"ours"`, lastModified: written, serverDate: tc.readDate, seenAt: time.Now()})
			if got := lm.s3clock.trusted(); got != tc.trusted {
				t.Errorf("trusted() = %v; want %v", got, tc.trusted)
			}
			// A read of another version says nothing.
			other := &lockObject{margin: DefaultExpiryMargin, log: slog.New(slog.DiscardHandler)}
			other.noteWrite(`"ours"`, tc.writeDate)
			other.checkOwnWrite(&snapshot{exists: true, etag: `"theirs"`, lastModified: written, serverDate: tc.readDate, seenAt: time.Now()})
			if other.s3clock.trusted() {
				t.Error("trusted() after reading another version = true; want false")
			}
		})
	}
}

// TestPrevReleaseReadsLeaseStart: a held record that carries lease_start
// (a waiter of this release reserved the next turn) is read by the
// previous release as it was before: held, not taken over while the
// holder's lease runs, and taken over once it ran out with the next
// generation. (It ignores the field and dates the lease from Last-Modified,
// which is later: never earlier.)
func TestPrevReleaseReadsLeaseStart(t *testing.T) {
	const ttl = 2 * time.Second
	srv := s3locktest.New(t)
	ctx := context.Background()
	key := "locks/prev-lease-start"
	holder, err := New(srv.Client(), srv.Bucket(), key, WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.TryLock(ctx); err != nil {
		t.Fatalf("TryLock() = %v", err)
	}
	gen := holder.Token()
	time.Sleep(1100 * time.Millisecond) // reserve in a later second
	waiter, err := New(srv.Client(), srv.Bucket(), key, WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	s, err := waiter.lm.read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w := waiter.lm.newWaiter(DefaultRetryInterval)
	waiter.lm.reserve(ctx, s, w)
	if s2, err := waiter.lm.read(ctx); err != nil || s2.rec == nil || s2.rec.LeaseStart.IsZero() {
		t.Fatalf("record after the reservation: %+v, %v; want lease_start set", s2, err)
	}
	old, err := prevrelease.New(srv.Client(), srv.Bucket(), key, prevrelease.WithTTL(ttl), prevrelease.WithRetryInterval(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if err := old.TryLock(ctx); !errors.Is(err, prevrelease.ErrLocked) {
		t.Fatalf("previous release's TryLock() on a live reserved hold = %v; want ErrLocked", err)
	}
	lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := old.Lock(lctx); err != nil {
		t.Fatalf("previous release's Lock() after the holder stopped renewing = %v", err)
	}
	if holder.Context().Err() == nil {
		t.Error("the previous release took the lock while the holder's lease ran")
	}
	if got := old.Token(); got != gen+1 {
		t.Errorf("previous release's token = %d; want %d", got, gen+1)
	}
	_ = old.Unlock(ctx)
	_ = holder.Unlock(ctx)
}

package s3lock

// Adversarial white-box tests of issue 14's fixes (renewal, reservations,
// lease_start).

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/s3lock/s3lock/s3locktest"
)

// TestRedteamAmbiguousRenewalLeaseStartSticks: a renewal is applied but
// its answer is a 500, and a waiter reserves the next turn over it before
// the holder reads back. The read-back finds the pending renewal (rewritten
// by the reservation, so carrying the waiter's lease_start = the renewal's
// Last-Modified) and adopt() takes that whole record as ours, lease_start
// included. Every later renewal of the holder then writes that old
// lease_start, so readers date the lease from it: a contender that trusts
// S3's clock takes a hold over that the holder is still renewing.
// Severity: safety (two holders).
func TestRedteamAmbiguousRenewalLeaseStartSticks(t *testing.T) {
	const ttl = 3 * time.Second
	srv := s3locktest.New(t)
	ctx := context.Background()
	key := "locks/redteam-lease-start-sticks"
	sc := &scripted{next: srv.Client()}
	m, err := New(sc, srv.Bucket(), key, WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Unlock(ctx)
	l := m.hold
	waiter, err := New(srv.Client(), srv.Bucket(), key, WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	done := false
	sc.mu.Lock()
	sc.onPut = func(ctx context.Context, in *s3.PutObjectInput, body []byte) (bool, *s3.PutObjectOutput, error) {
		if done || aws.ToString(in.IfMatch) == "" {
			return false, nil, nil
		}
		done = true
		// The renewal is applied; its answer is lost to a 500.
		if _, err := sc.next.PutObject(ctx, copyPut(in, body)); err != nil {
			t.Errorf("forwarding the renewal: %v", err)
		}
		// A waiter reserves over the renewal before the holder reads back.
		s, err := waiter.lm.read(ctx)
		if err != nil {
			t.Error(err)
			return true, nil, err
		}
		w := waiter.lm.newWaiter(DefaultRetryInterval)
		waiter.lm.reserve(ctx, s, w)
		if !w.reserved {
			t.Error("the reservation did not land")
		}
		return true, nil, &smithy.GenericAPIError{Code: "InternalError", Message: "injected after applying"}
	}
	sc.mu.Unlock()
	if err := l.renew(ctx); err != nil {
		t.Fatalf("renew() = %v; want nil (the renewal was applied)", err)
	}
	if !done {
		t.Fatal("the scripted renewal did not run: the test did not test")
	}
	// The holder keeps renewing, every second, as WithAutoRenew would.
	// Its own writes must date its lease from themselves.
	for range 2 {
		time.Sleep(1100 * time.Millisecond)
		if err := l.renew(ctx); err != nil {
			t.Fatalf("renew() = %v", err)
		}
	}
	s, err := waiter.lm.read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !s.leaseStart().Equal(s.lastModified) {
		t.Errorf("after two successful renewals of the holder's own, the record dates its lease from %v (lease_start %v), not from its Last-Modified %v: readers see the lease %v older than it is",
			s.leaseStart(), s.rec.LeaseStart, s.lastModified, s.lastModified.Sub(s.leaseStart()))
	}
	// The consequence: a fresh contender that checks S3's clock takes the
	// lock over while the holder's renewed lease runs.
	fresh, err := New(srv.Client(), srv.Bucket(), key, WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(ttl + 3*time.Second)
	for time.Now().Before(deadline) {
		if err := l.renew(ctx); err != nil {
			t.Logf("holder's renewal: %v", err)
			return
		}
		if err := fresh.TryLock(ctx); err == nil {
			live := m.Context().Err() == nil && time.Now().Before(l.safeUntil())
			fresh.Unlock(ctx)
			if live {
				t.Fatalf("two holders: a fresh contender took the lock while the holder's renewed lease runs %v more",
					time.Until(l.safeUntil()))
			}
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestRedteamWithdrawLeavesOthersAlone: a Lock that gave up withdraws its
// reservation only while the record still names it: not after an older
// waiter took the reservation over, and not over a new holder's record
// (a grant since). Passes: withdraw reads first and writes under If-Match.
func TestRedteamWithdrawLeavesOthersAlone(t *testing.T) {
	const ttl = 10 * time.Second
	srv := s3locktest.New(t)
	ctx := context.Background()
	key := "locks/redteam-withdraw"
	holder, err := New(srv.Client(), srv.Bucket(), key, WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	newWaiter := func() (*Mutex, *waiter) {
		m, err := New(srv.Client(), srv.Bucket(), key, WithTTL(ttl))
		if err != nil {
			t.Fatal(err)
		}
		return m, m.lm.newWaiter(DefaultRetryInterval)
	}
	reserve := func(m *Mutex, w *waiter) {
		s, err := m.lm.read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m.lm.reserve(ctx, s, w)
		if !w.reserved {
			t.Fatal("the reservation did not land")
		}
	}
	a, wa := newWaiter()
	b, wb := newWaiter()
	reserve(a, wa)
	reserve(b, wb) // b takes the reservation over
	a.lm.withdraw(ctx, wa)
	s, err := holder.lm.read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.rec.Next != wb.id {
		t.Fatalf("after a's withdrawal next = %q; want b's %q", s.rec.Next, wb.id)
	}
	// The holder releases (keeping b's reservation), b's Lock gives up
	// only after a new holder (c, by TryLock) has taken the lock.
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := New(srv.Client(), srv.Bucket(), key, WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.TryLock(ctx); err != nil {
		t.Fatalf("c's TryLock() of the released lock = %v", err)
	}
	before, err := c.lm.read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b.lm.withdraw(ctx, wb)
	after, err := c.lm.read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.etag != before.etag {
		t.Fatalf("b's withdrawal rewrote the new holder's record: %+v -> %+v", before.rec, after.rec)
	}
	if err := c.Unlock(ctx); err != nil {
		t.Fatalf("new holder's Unlock() = %v", err)
	}
}

// TestRedteamLateRenewalLeaseStartSticks: the same as
// TestRedteamAmbiguousRenewalLeaseStartSticks with no 5xx at all: a
// renewal the client gave up on (its deadline passed) lands late, a
// waiter reserves over it, and the holder's next renewal (412, read back)
// adopts the reserved record, lease_start included, and writes it on in
// every later renewal. Severity: safety (see the other test).
func TestRedteamLateRenewalLeaseStartSticks(t *testing.T) {
	const ttl = 3 * time.Second
	srv := s3locktest.New(t)
	ctx := context.Background()
	key := "locks/redteam-late-renewal"
	sc := &scripted{next: srv.Client()}
	m, err := New(sc, srv.Bucket(), key, WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Unlock(ctx)
	l := m.hold
	waiter, err := New(srv.Client(), srv.Bucket(), key, WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	done := false
	sc.mu.Lock()
	sc.onPut = func(rctx context.Context, in *s3.PutObjectInput, body []byte) (bool, *s3.PutObjectOutput, error) {
		if done || aws.ToString(in.IfMatch) == "" {
			return false, nil, nil
		}
		done = true
		<-rctx.Done() // the client gives up; the request is still on its way
		if _, err := sc.next.PutObject(ctx, copyPut(in, body)); err != nil {
			t.Errorf("the late renewal: %v", err)
		}
		s, err := waiter.lm.read(ctx)
		if err != nil {
			t.Error(err)
			return true, nil, rctx.Err()
		}
		w := waiter.lm.newWaiter(DefaultRetryInterval)
		waiter.lm.reserve(ctx, s, w)
		if !w.reserved {
			t.Error("the reservation did not land")
		}
		return true, nil, rctx.Err()
	}
	sc.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	err = l.renew(rctx)
	cancel()
	t.Logf("renewal the client gave up on: %v", err)
	if !done {
		t.Fatal("the scripted renewal did not run: the test did not test")
	}
	for range 2 {
		time.Sleep(1100 * time.Millisecond)
		if err := l.renew(ctx); err != nil {
			t.Fatalf("renew() = %v", err)
		}
	}
	s, err := waiter.lm.read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !s.leaseStart().Equal(s.lastModified) {
		t.Errorf("after the holder's own renewals the record dates its lease from %v, not from its Last-Modified %v: readers see it %v older than it is",
			s.leaseStart(), s.lastModified, s.lastModified.Sub(s.leaseStart()))
	}
}

package s3lock

// Adversarial tests of the election merge (issue 16), white-box.

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock/s3locktest"
)

// TestRedteamLeaseStartNotKeptAsExtra: "lease_start" is a field this
// version knows (record.LeaseStart), yet it is missing from knownFields, so
// decodeRecord also keeps it in record.extra. A holder that adopts a
// waiter's reservation (lease.adopt copies extra) then writes the waiter's
// lease_start back with every later renewal of its own, so readers keep
// dating the lease from that old Last-Modified.
func TestRedteamLeaseStartNotKeptAsExtra(t *testing.T) {
	body := []byte(`{"s3lock":1,"state":"held","owner":"o","nonce":"n1","generation":3,"ttl_ms":60000,"written_at":"2025-01-01T00:00:00Z","next":"w","lease_start":"2025-01-01T00:00:00Z"}`)
	r, err := decodeRecord(body)
	if err != nil {
		t.Fatal(err)
	}
	if raw, ok := r.extra["lease_start"]; ok {
		t.Errorf("decodeRecord kept lease_start (%s) as an unknown field", raw)
	}
	// The holder's own write (LeaseStart zero) must not carry lease_start.
	own := *r
	own.LeaseStart = time.Time{}
	again, err := decodeRecord(encodeRecord(&own))
	if err != nil {
		t.Fatal(err)
	}
	if !again.LeaseStart.IsZero() {
		t.Errorf("the holder's own write carries lease_start %v: %s", again.LeaseStart, encodeRecord(&own))
	}
}

// TestRedteamRenewingHolderNotTakenOver: end to end, a Mutex renewing its
// hold must not be taken over. A waiter's reservation (written here as
// lockObject.reserve writes it: the held record with next and lease_start
// set, under If-Match) makes the holder's next renewal fail with 412; the
// holder adopts the record, copying its extra fields, which wrongly include
// lease_start. Every later renewal then carries that frozen lease_start, so
// once TTL + margin + 1 s have passed since it by S3's clock (trusted after
// the clock check), a contender judges the hold expired and takes it while
// the holder still renews and believes it holds: two holders (safety).
func TestRedteamRenewingHolderNotTakenOver(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "redteam/lease-start"
	const ttl = 2 * time.Second
	holder, err := New(srv.Client(), srv.Bucket(), key, WithOwner("holder"), WithTTL(ttl), WithAutoRenew(ttl/4))
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = holder.Unlock(ctx) }()
	holder.mu.Lock()
	hl := holder.hold
	holder.mu.Unlock()

	// A waiter's reservation, as lockObject.reserve writes it.
	o := defaultOptions()
	wl, err := newLockObject(srv.Client(), srv.Bucket(), key, &o)
	if err != nil {
		t.Fatal(err)
	}
	for reserved := false; !reserved; {
		s, err := wl.read(ctx)
		if err != nil || s.rec == nil {
			t.Fatalf("read = %+v, %v", s, err)
		}
		rec := *s.rec
		rec.Next, rec.NextWaited = "some-waiter", 1
		rec.LeaseStart = s.leaseStart()
		_, f, err := wl.put(ctx, &rec, condition{etag: s.etag})
		switch f {
		case failNone:
			reserved = true
		case failPrecondition:
		default:
			t.Fatal(err)
		}
	}

	contender, err := New(srv.Client(), srv.Bucket(), key, WithOwner("contender"), WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(4 * ttl); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		err := contender.TryLock(ctx)
		if err == nil {
			at := time.Now()
			holderSafe := hl.safeUntil()
			lost := context.Cause(holder.Context())
			raw := rawFields(t, srv, key)
			_ = contender.Unlock(ctx)
			t.Fatalf("the contender took the lock at %v while the holder, renewing, counted on it until %v (holder's loss: %v; record after the takeover: %v)",
				at.Format(time.StampMilli), holderSafe.Format(time.StampMilli), lost, raw)
		}
		if !errors.Is(err, ErrLocked) {
			t.Fatalf("TryLock = %v; want ErrLocked", err)
		}
	}
	if err := context.Cause(holder.Context()); err != nil {
		t.Errorf("the holder lost its hold while renewing: %v", err)
	}
}

// rawSize is the size of the lock object's body.
func rawSize(t *testing.T, srv *s3locktest.Server, key string) int {
	t.Helper()
	out, err := srv.Client().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(srv.Bucket()), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	body, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return len(body)
}

// TestRedteamReservationKeepsLeaderReadable: a leader's record that fits
// in maxRecordSize (its value escaped by encoding/json: '&' is written
// \u0026) is pushed past it by a waiter's reservation, which adds next,
// next_waited and lease_start with no size check on the record itself.
// The record is then an invalid object: the leader's next renewal reads it
// back, finds no record of its own and gives up its term, and nobody can
// read the office any more.
func TestRedteamReservationKeepsLeaderReadable(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "redteam/reservation-size"
	// The largest record an Election writes: an owner and a value at
	// their limits, of characters JSON escapes (a quote takes 2 bytes).
	e, err := NewElection(srv.Client(), srv.Bucket(), key, WithOwner(strings.Repeat(`"`, 256)), WithTTL(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = e.Resign(ctx) }()
	if err := e.Campaign(ctx, strings.Repeat(`"`, MaxValueLen)); err != nil {
		t.Fatal(err)
	}
	if size := rawSize(t, srv, key); size > maxRecordSize || size < 2*MaxValueLen+2*256 {
		t.Fatalf("setup: leader's record of %d bytes; want the largest an Election writes", size)
	}
	// Values and owners that escape to more are refused up front.
	if err := e.Campaign(ctx, strings.Repeat("\x01", MaxValueLen)); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Campaign(1 KiB of control characters) = %v; want ErrInvalidArgument", err)
	}
	if _, err := e.Leader(ctx); err != nil {
		t.Fatalf("setup: Leader() = %v; want the leader readable", err)
	}

	// A waiter's reservation, as lockObject.reserve writes it.
	o := defaultOptions()
	wl, err := newLockObject(srv.Client(), srv.Bucket(), key, &o)
	if err != nil {
		t.Fatal(err)
	}
	for reserved := false; !reserved; {
		s, err := wl.read(ctx)
		if err != nil || s.rec == nil {
			t.Fatalf("read = %+v, %v", s, err)
		}
		rec := *s.rec
		rec.Next, rec.NextWaited = newNonce()[:16], 1 // an id as newWaiter makes it
		rec.LeaseStart = s.leaseStart()
		_, f, err := wl.put(ctx, &rec, condition{etag: s.etag})
		switch f {
		case failNone:
			reserved = true
		case failPrecondition:
		default:
			t.Fatal(err)
		}
	}
	if ld, err := e.Leader(ctx); err != nil {
		t.Errorf("Leader() after a waiter's reservation = %+v, %v; want the leader (record of %d bytes)", ld, err, rawSize(t, srv, key))
	}
	select {
	case <-e.Context().Done():
		t.Errorf("the leader lost its term after a waiter's reservation: %v", context.Cause(e.Context()))
	case <-time.After(2 * time.Second): // two renewals
	}
}

package s3lock

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock/s3locktest"
)

// reserved returns s with its record naming next as the reserved waiter.
func reserved(s *snapshot, next string, nextWaited uint64) *snapshot {
	r := *s.rec
	r.Next, r.NextWaited = next, nextWaited
	c := *s
	c.rec = &r
	return &c
}

func TestWaiterReservesOncePassedOver(t *testing.T) {
	_, w := queueFixture(10*time.Millisecond, 500*time.Millisecond)
	now := time.Now()
	// First sight of the hold: not passed over yet.
	w.decide(heldSnap("a", 5, 0, now), &LockedError{})
	if w.reserve {
		t.Fatal("decide reserves at first sight of a hold; want it to wait to be passed over")
	}
	// A grant went to someone else, whose record says it waited for
	// nothing: reserve, after a random pause of at most a unit and a
	// second look at the same version, so that waiters that became
	// eligible together do not all write.
	w.decide(heldSnap("b", 6, 0, now.Add(time.Millisecond)), &LockedError{})
	if w.reserve || w.settle > w.unit() {
		t.Fatalf("first decide once passed over: reserve %v, settle %v; want a pause of at most %v first", w.reserve, w.settle, w.unit())
	}
	w.decide(heldSnap("b", 6, 0, now.Add(2*time.Millisecond)), &LockedError{})
	if !w.reserve {
		t.Fatalf("decide after being passed over and settling: reserve = false; want true (age %d)", w.age(6))
	}
	// A holder that waited 3 grants itself: the queue works, no need yet.
	_, w2 := queueFixture(10*time.Millisecond, 500*time.Millisecond)
	w2.decide(heldSnap("a", 5, 3, now), &LockedError{})
	w2.decide(heldSnap("b", 6, 3, now), &LockedError{})
	if w2.reserve {
		t.Error("decide reserves while the holders' own waits show a working queue")
	}
	for g := uint64(7); g <= 9; g++ {
		w2.decide(heldSnap("c", g, 3, now), &LockedError{})
	}
	w2.decide(heldSnap("c", 9, 3, now), &LockedError{})
	if !w2.reserve {
		t.Errorf("decide at age %d with holders that waited 3: reserve = false; want true", w2.age(9))
	}
}

func TestReservationOrder(t *testing.T) {
	_, w := queueFixture(10*time.Millisecond, 500*time.Millisecond)
	now := time.Now()
	w.decide(heldSnap("a", 5, 0, now), &LockedError{})
	// Reserved by a younger waiter (age 1 when it reserved): take it over.
	w.decide(reserved(heldSnap("b", 7, 0, now), "young", 1), &LockedError{})
	if !w.reserve {
		t.Errorf("age %d waiter facing a reservation made at age 1: reserve = false; want true", w.age(7))
	}
	// Reserved by an older one: leave it, and watch every grant.
	w.decide(reserved(heldSnap("c", 7, 0, now), "old", 9), &LockedError{})
	if w.reserve || w.rank != 1 {
		t.Errorf("facing an older reservation: reserve %v, rank %d; want false, 1", w.reserve, w.rank)
	}
	// Our own reservation: next in line.
	w.decide(reserved(heldSnap("d", 7, 0, now), w.id, 3), &LockedError{})
	if !w.reserved || w.rank != 0 || w.reserve {
		t.Errorf("facing our own reservation: reserved %v, rank %d, reserve %v; want true, 0, false", w.reserved, w.rank, w.reserve)
	}
	if p := w.pollIn(time.Minute); p > reservationTTL/4 {
		t.Errorf("reserved waiter polls in %v; want at most reservationTTL/4 = %v", p, reservationTTL/4)
	}
}

func TestReservedFreeRecord(t *testing.T) {
	now := time.Now()
	// Ours: claim at once, however young we are.
	_, w := queueFixture(10*time.Millisecond, 500*time.Millisecond)
	if claim, _ := w.decide(reserved(freeSnap("f", 5, 7, now), w.id, 2), nil); !claim {
		t.Error("decide on a free record reserved for us = no claim; want claim")
	}
	// Someone else's: leave it for reservationTTL from first sight.
	_, w = queueFixture(10*time.Millisecond, 500*time.Millisecond)
	s := reserved(freeSnap("g", 5, 0, now), "other", 2)
	if claim, _ := w.decide(s, nil); claim || !w.deferred || w.deferLeft > reservationTTL {
		t.Errorf("decide on a free record reserved for another: claim %v, deferred %v for %v; want a deferral of at most %v", claim, w.deferred, w.deferLeft, reservationTTL)
	}
	later := *s
	later.seenAt = now.Add(reservationTTL)
	if claim, _ := w.decide(&later, nil); !claim {
		t.Errorf("decide on a reservation seen for %v = no claim; want claim", reservationTTL)
	}
	// Or as soon as S3's clock shows it that old.
	_, w = queueFixture(10*time.Millisecond, 500*time.Millisecond)
	old := *s
	old.serverDate = time.Date(2026, 1, 1, 0, 0, 10, 0, time.UTC)
	old.lastModified = old.serverDate.Add(-reservationTTL)
	if claim, _ := w.decide(&old, nil); !claim {
		t.Error("decide on a reservation S3 shows 2s old = no claim; want claim")
	}
	// The backoff gave up: take any claimable lock.
	_, w = queueFixture(10*time.Millisecond, 500*time.Millisecond)
	w.force = true
	if claim, _ := w.decide(s, nil); !claim {
		t.Error("forced decide on a reserved free record = no claim; want claim")
	}
}

func TestTakeFreeAndReservations(t *testing.T) {
	lm := &lockObject{ttl: time.Minute}
	own := reserved(freeSnap("mine", 3, 0, time.Time{}), "waiter", 1)
	lm.warm.set(own)
	if s := lm.warm.takeFree(nil); s != own {
		t.Errorf("takeFree(TryLock) over a reserved free record = %v; want the warm snapshot (TryLock ignores reservations)", s)
	}
	lm.warm.set(own)
	s := lm.warm.takeFree(lm.newWaiter(time.Second))
	if s == nil || s == own || s.rec.Next != "waiter" {
		t.Errorf("takeFree(Lock) over a reserved free record = %+v; want a copy to poll, not the warm path", s)
	}
}

// TestRenewalOutlastsSeveralReservations: two waiters reserve in turn (a
// younger, then an older one taking the reservation over) while a renewal
// is under way, so the renewal's first two writes meet a 412. renew()
// must not return nil unless the lease was extended.
func TestRenewalOutlastsSeveralReservations(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	key := "locks/renew-two-reservations"
	sc := &scripted{next: srv.Client()}
	m, err := New(sc, srv.Bucket(), key, WithTTL(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	l := m.hold
	waiter := &lockObject{client: srv.Client(), bucket: srv.Bucket(), key: key, ttl: time.Second, margin: time.Second, clock: systemClock{}, log: m.lm.log}
	n := 0
	sc.onPut = func(ctx context.Context, in *s3.PutObjectInput, body []byte) (bool, *s3.PutObjectOutput, error) {
		if aws.ToString(in.IfMatch) == "" || n >= 2 {
			return false, nil, nil
		}
		n++
		// A waiter reserves just before the holder's write arrives.
		s, err := waiter.read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		w := waiter.newWaiter(time.Second)
		w.arrived, w.arrival = true, 0 // old enough to reserve and take over
		waiter.reserve(ctx, s, w)
		return false, nil, nil
	}
	before := l.safeUntil()
	time.Sleep(20 * time.Millisecond)
	err = l.renew(ctx)
	after := l.safeUntil()
	t.Logf("renew() = %v; SafeUntil moved by %v; reservations %d", err, after.Sub(before), n)
	if err == nil && !after.After(before) {
		t.Fatalf("renew() returned nil but the lease was not extended")
	}
}

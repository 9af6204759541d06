package s3lock

import (
	"log/slog"
	"testing"
	"time"
)

// queueFixture is a lock object whose pacing knows the round trip, so a
// waiter's unit of deferral is fixed: fast = min(interval/4, rtt/2). It
// trusts S3's clock (as after a clock check).
func queueFixture(rtt, interval time.Duration) (*lockObject, *waiter) {
	lm := &lockObject{ttl: time.Minute, margin: DefaultExpiryMargin}
	lm.pace.rtt = rtt
	lm.s3clock.trustedAt, lm.s3clock.agreedDate = time.Now(), time.Now().Truncate(time.Second)
	return lm, lm.newWaiter(interval)
}

func freeSnap(etag string, gen, waited uint64, seenAt time.Time) *snapshot {
	return &snapshot{exists: true, etag: etag, seenAt: seenAt,
		rec: &record{Schema: recordSchema, State: stateFree, Nonce: "n-" + etag, Generation: gen, TTLMillis: 60000, Waited: waited}}
}

func heldSnap(etag string, gen, waited uint64, seenAt time.Time) *snapshot {
	return &snapshot{exists: true, etag: etag, seenAt: seenAt,
		rec: &record{Schema: recordSchema, State: stateHeld, Nonce: "n-" + etag, Generation: gen, TTLMillis: 60000, Waited: waited}}
}

func TestWaiterClaimsWhenOldEnough(t *testing.T) {
	_, w := queueFixture(10*time.Millisecond, 20*time.Millisecond)
	t0 := time.Now()
	// Arrives while generation 5 is held; the holder waited 2 grants.
	if claim, _ := w.decide(heldSnap("h5", 5, 2, t0), &LockedError{}); claim {
		t.Fatal("decide(held) = claim; want no claim")
	}
	if w.rank != 1 {
		t.Errorf("rank while 5 is held = %d; want 1 (one older waiter ahead)", w.rank)
	}
	// Generation 5 released: age 1 < Waited 2, so an older waiter goes first.
	if claim, _ := w.decide(freeSnap("f5", 5, 2, t0.Add(time.Millisecond)), nil); claim {
		t.Fatal("decide(free 5, age 1 < waited 2) = claim; want deferral")
	}
	if !w.deferred || w.deferLeft <= 0 {
		t.Errorf("deferred = %v, deferLeft = %v; want a deferral", w.deferred, w.deferLeft)
	}
	// Generation 6 (the older waiter's) released: age 2 >= Waited 2.
	claim, waited := w.decide(freeSnap("f6", 6, 2, t0.Add(50*time.Millisecond)), nil)
	if !claim || waited != 2 {
		t.Errorf("decide(free 6) = %v, waited %d; want claim with waited 2", claim, waited)
	}
}

func TestWaiterDefersThenClaims(t *testing.T) {
	const rtt, interval = 10 * time.Millisecond, 20 * time.Millisecond
	_, w := queueFixture(rtt, interval)
	unit := w.unit() // fast (5ms) + 3 rtt
	if unit != 35*time.Millisecond {
		t.Fatalf("unit = %v; want 35ms", unit)
	}
	t0 := time.Now()
	// Our own free record after a contended hold: we are the youngest.
	if claim, _ := w.decide(freeSnap("mine", 9, 3, t0), nil); claim {
		t.Fatal("decide(own free record, waited 3) = claim; want deferral")
	}
	if got := w.pollIn(interval); got != interval {
		t.Errorf("pollIn = %v; want one retry interval %v (never longer)", got, interval)
	}
	// Still the same free record before 3 units: keep deferring.
	if claim, _ := w.decide(freeSnap("mine", 9, 3, t0.Add(3*unit-time.Millisecond)), nil); claim {
		t.Fatal("decide before 3 units = claim; want deferral")
	}
	if got := w.pollIn(interval); got != time.Millisecond {
		t.Errorf("pollIn = %v; want the 1ms left", got)
	}
	// Nobody older took it: claim, as a waiter that never saw it held.
	claim, waited := w.decide(freeSnap("mine", 9, 3, t0.Add(3*unit)), nil)
	if !claim || waited != 0 {
		t.Errorf("decide after 3 units = %v, waited %d; want claim with waited 0", claim, waited)
	}
}

func TestWaiterClaimsAbsentStaleAndExpired(t *testing.T) {
	_, w := queueFixture(10*time.Millisecond, 20*time.Millisecond)
	now := time.Now()
	if claim, waited := w.decide(&snapshot{seenAt: now}, nil); !claim || waited != 0 {
		t.Errorf("decide(absent) = %v, %d; want claim, 0", claim, waited)
	}
	stale := freeSnap("old", 4, 7, now)
	stale.lastModified = now.Add(-10 * time.Second).Truncate(time.Second)
	stale.serverDate = now.Truncate(time.Second)
	if claim, _ := w.decide(stale, nil); !claim {
		t.Error("decide(free record 10s old, waited 7) = no claim; want claim (its Waited is stale)")
	}
	// By a clock nobody checked, the record's age says nothing.
	lm, w := queueFixture(10*time.Millisecond, 20*time.Millisecond)
	lm.s3clock.trustedAt = time.Time{}
	lm.log = slog.New(slog.DiscardHandler)
	if claim, _ := w.decide(stale, nil); claim {
		t.Error("decide(free record 10s old by an unchecked Date, waited 7) = claim; want deferral")
	}
	// judge found a held record expired (le == nil): never deferred.
	_, w = queueFixture(10*time.Millisecond, 20*time.Millisecond)
	if claim, _ := w.decide(heldSnap("dead", 4, 7, now), nil); !claim {
		t.Error("decide(expired hold) = no claim; want claim")
	}
}

func TestWaiterSawHeldWritesWaitedAtLeastOne(t *testing.T) {
	_, w := queueFixture(time.Millisecond, 10*time.Millisecond)
	now := time.Now()
	w.decide(heldSnap("h1", 1, 0, now), &LockedError{})
	if claim, waited := w.decide(freeSnap("f1", 1, 0, now), nil); !claim || waited != 1 {
		t.Errorf("decide = %v, waited %d; want claim with waited 1", claim, waited)
	}
}

func TestWaiterPollPace(t *testing.T) {
	const rtt, interval = 10 * time.Millisecond, 80 * time.Millisecond
	lm, w := queueFixture(rtt, interval)
	now := time.Now()
	// Two grants behind: poll once per interval.
	w.decide(heldSnap("a", 10, 3, now), &LockedError{})
	if got := w.pollIn(interval); got != interval {
		t.Errorf("pollIn two grants behind = %v; want %v", got, interval)
	}
	// Next in line, with no grant period to aim at: a fast poll (rtt/2),
	// then twice as long each time, up to the retry interval.
	w.decide(heldSnap("b", 12, 3, now), &LockedError{})
	for i, want := range []time.Duration{rtt / 2, rtt, 2 * rtt, 4 * rtt, interval, interval} {
		if got := w.pollIn(interval); got != want {
			t.Fatalf("poll %d of one hold = %v; want %v", i, got, want)
		}
		w.decide(heldSnap("b", 12, 3, now), &LockedError{})
	}
	// One grant behind with a known grant period: about twice per grant.
	lm.pace.period = 50 * time.Millisecond
	_, w2 := lm, lm.newWaiter(interval)
	w2.decide(heldSnap("c", 20, 2, now), &LockedError{})
	if got := w2.pollIn(interval); got != 25*time.Millisecond {
		t.Errorf("pollIn one grant behind = %v; want half the 50ms grant period", got)
	}
}

func TestTakeFreeWarmStreak(t *testing.T) {
	lm := &lockObject{ttl: time.Minute}
	own := freeSnap("mine", 3, 0, time.Time{})
	for i := range warmStreakLimit {
		lm.warm.set(own)
		w := lm.newWaiter(time.Second)
		if s := lm.warm.takeFree(w); s != own {
			t.Fatalf("takeFree #%d = %v; want the warm snapshot", i, s)
		}
	}
	lm.warm.set(own)
	w := lm.newWaiter(time.Second)
	if s := lm.warm.takeFree(w); s != nil {
		t.Errorf("takeFree after %d warm re-acquires = %v; want nil (read first)", warmStreakLimit, s)
	}
	// TryLock never reads first while the hold was uncontended.
	lm.warm.set(own)
	if s := lm.warm.takeFree(nil); s != own {
		t.Errorf("takeFree(TryLock) = %v; want the warm snapshot", s)
	}
	// After a contended hold: TryLock reads first, Lock starts from it.
	contended := freeSnap("mine2", 4, 2, time.Time{})
	lm.warm.set(contended)
	if s := lm.warm.takeFree(nil); s != nil {
		t.Errorf("takeFree(TryLock) after a contended hold = %v; want nil (read first)", s)
	}
	lm.warm.set(contended)
	s := lm.warm.takeFree(lm.newWaiter(time.Second))
	if s == nil || s.etag != "mine2" || s.seenAt.IsZero() {
		t.Errorf("takeFree(Lock) after a contended hold = %+v; want the free record, stamped", s)
	}
}

func TestWaiterDeferralIsBounded(t *testing.T) {
	_, w := queueFixture(10*time.Millisecond, 20*time.Millisecond)
	t0 := time.Now()
	huge := uint64(1) << 62 // a hostile or corrupt Waited
	if claim, _ := w.decide(freeSnap("f", 3, huge, t0), nil); claim {
		t.Fatal("decide(first sight) = claim; want deferral")
	}
	if w.deferLeft <= 0 || w.deferLeft > maxDeferRank*w.unit() {
		t.Errorf("deferLeft = %v; want in (0, %v]", w.deferLeft, maxDeferRank*w.unit())
	}
	if claim, _ := w.decide(freeSnap("f", 3, huge, t0.Add(maxDeferRank*w.unit())), nil); !claim {
		t.Errorf("decide after %d units = no claim; want claim", maxDeferRank)
	}
}

func TestCoolDownAfterContention(t *testing.T) {
	lm, w := queueFixture(time.Millisecond, 10*time.Millisecond)
	now := time.Now()
	w.decide(heldSnap("h", 1, 0, now), &LockedError{})
	if claim, _ := w.decide(freeSnap("f", 1, 0, now), nil); !claim {
		t.Fatal("decide = no claim; want claim")
	}
	own := freeSnap("mine", 2, 0, time.Time{})
	for i := range coolDown {
		lm.warm.set(own)
		if s := lm.warm.takeFree(lm.newWaiter(time.Second)); s != nil {
			t.Fatalf("Lock #%d after contention: takeFree = %v; want nil (read first)", i, s)
		}
	}
	lm.warm.set(own)
	if s := lm.warm.takeFree(lm.newWaiter(time.Second)); s != own {
		t.Errorf("Lock after the cool-down: takeFree = %v; want the warm snapshot", s)
	}
}

func TestWaitedGrowsByOnePerGrant(t *testing.T) {
	_, w := queueFixture(time.Millisecond, 10*time.Millisecond)
	now := time.Now()
	// Arrived at generation 10, kept waiting while a looping Mutex took 5
	// grants that carried Waited 0.
	w.decide(heldSnap("h10", 10, 0, now), &LockedError{})
	claim, waited := w.decide(freeSnap("f15", 15, 0, now), nil)
	if !claim || waited != 1 {
		t.Errorf("decide = %v, waited %d; want claim with waited 1 (0+1), not the age 6", claim, waited)
	}
}

package lastrelease

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// How Lock waits: the waiters of a lock form a queue without any write of
// their own and without talking to each other.
//
// Every record carries the generation of its grant, and a grant's record
// carries Waited: how many grants its holder waited through before it. A
// waiter counts the grants since it arrived (its age, from the generations
// it polls). When it finds the lock free it takes it at once only if it
// has waited at least as long as the last holder did (age >= Waited of the
// free record); younger waiters leave the lock to it for a while, polling
// at most one retry interval apart, and take it only if it is still free
// once they have given every older waiter time to act. With every worker
// looping, ages are distinct, so exactly one waiter writes per grant (no
// herd of PUTs that all fail but one), in the order of arrival (no
// starvation). A Mutex that releases after waiting is the youngest waiter
// of the next round, so it does not take the lock straight back.
//
// Polls are paced to the hand-offs (pollIn). Every poll that sees the
// generation change feeds the grant period, and the start of the hold it
// found is known to within the gap since the poll before. The waiter next
// in line, and the one after it, halve the time to the expected end of the
// current hold (its start plus this Mutex's own holds, or the grant period
// less a hand-off), poll fast (half a round trip apart) around it, and back
// off by half the overdue time after it, at most a quarter of the grant
// period. Waiters further back look again when they expect to be second in
// line. Without an estimate a waiter doubles its pause from a fast poll. So
// hand-offs take a fraction of a round trip more than the writes
// themselves, and nobody sleeps longer than one retry interval between
// polls.
//
// That queue needs no writes, but it cannot see a waiter that polls less
// often than the lock changes hands: a Mutex that unlocks and locks again
// at once takes its own free record back before a waiter polling every
// retry interval has read it, and with long holds the waiter next in line
// can miss the short moment the lock is free. So a waiter that has been
// passed over (it saw more grants go by than the current holder waited
// for itself, see reserveAge) reserves the next turn: one conditional PUT
// that rewrites the held record unchanged but for Next (its random id)
// and NextWaited (its age). The holder's next renewal or release meets a
// 412, reads, finds its own nonce, and writes over the new version
// keeping Next; its free record is then left to that waiter alone for
// reservationTTL, even by the Mutex that released it. An older waiter may
// take a reservation over from a younger one. The reserved waiter paces
// its polls to the expected end of the hold (from the observed grant
// period), so the hand-off costs a fraction of a round trip. TryLock
// ignores reservations: it takes a free lock whenever it finds one, as a
// caller that asks once expects.
//
// None of this decides whether the lock may be taken: that is judge's
// business, and every write stays conditional. A reservation keeps the
// holder's nonce, and the monotonic expiry watch is keyed by nonce, so
// it does not delay the takeover of a dead holder's hold on that rule;
// by S3's clock it can, by at most one TTL + margin after the last
// reservation. A wrong or hostile Waited only makes waiters poll at a
// different pace or leave a free lock alone for at most maxDeferRank units
// of a few round trips (and not at all once the free record is staleFree
// old), polling no less than once per retry interval; a wrong or hostile
// Next keeps a free lock from the others for reservationTTL at most.
//
// Where the turn-taking stops: TryLock ignores reservations; goroutines
// sharing one Mutex queue in memory first, so each also waits out the S3
// waits of the goroutines ahead of it; and a Mutex that locks again at
// once after a critical section shorter than a round trip holds the lock
// so briefly that waiters seldom see it held, so it can take up to
// warmStreakLimit grants in a row before it reads first.

// warmStreakLimit bounds how many times in a row Lock re-acquires with a
// single If-Match PUT over the free record its Mutex just wrote, without
// reading the lock. Such re-acquires cannot see waiters; after this many,
// Lock reads first (one GET more), which gives a waiter that found the
// lock held by a looping Mutex every time a round trip to write first;
// once it has, Waited is set and the queue takes over.
const warmStreakLimit = 16

// coolDown is how many Locks after one that met contention (found the lock
// held, or left it to an older waiter) read the lock first instead of
// writing straight over their own free record. A Mutex that took its own
// free record back because the waiter ahead of it was slow wrote Waited 0,
// and so would otherwise re-acquire blindly for up to warmStreakLimit
// rounds while that waiter loses every race.
const coolDown = 4

// maxDeferRank bounds how many older waiters a waiter leaves a free lock
// to, whatever Waited says: a free lock is taken within maxDeferRank units
// (a few round trips each) even if every older waiter has gone.
const maxDeferRank = 16

// staleFree is how old (by S3's Date − Last-Modified, whole seconds) a free
// record must look before its Waited is ignored: whoever was queued then
// has gone.
const staleFree = 2 * time.Second

// reservationTTL is how long a free record reserved for a waiter is left
// to it (judged on the reader's monotonic clock from when it first saw the
// record, or by S3's clock): the most a reserved waiter that died or a
// hostile Next delays the others.
const reservationTTL = 2 * time.Second

// reserveAge returns the age (grants since arrival, counting the hold in
// progress) at which a waiter that finds the lock held by rec reserves the
// next turn: once it has been passed over one grant more than rec's holder
// waited for its own turn. While the queue works, every holder waited
// about as many grants as there are waiters, so reservations are rare;
// when one Mutex keeps re-taking its own free record, its records say it
// waited for nothing, and the first waiter passed over reserves.
func reserveAge(rec *record) uint64 {
	return 2 + min(rec.Waited, maxQueue)
}

// maxQueue bounds the queue length a record's Waited can make a waiter
// assume before it reserves (a hostile Waited lasts one grant: the next
// holder writes at most one more than it waited itself).
const maxQueue = 64

// waiter is the state of one Lock call while it waits: its place in the
// queue and what its next poll should be.
type waiter struct {
	lm *lockObject
	id string // what this waiter writes as Next
	// pollPlan is when to poll next (pace.go): what the polls have shown of
	// the grants, and what the last decision asks of the next poll.
	pollPlan

	arrived bool   // arrival is known
	arrival uint64 // generation of the first grant this waiter waits out
	sawHeld bool   // a poll found the lock held by someone else
	yielded bool   // this waiter left a free lock to an older one

	// The free record this waiter is leaving to older waiters, and since
	// when (monotonic) it has seen it.
	freeETag  string
	freeSince time.Time

	// The held record the last poll found.
	heldETag string

	force bool // claim any claimable lock (the backoff gave up waiting)

	reserve bool // reserve the next turn in the held record polled
	// A waiter eligible to reserve first waits settle, then (settled)
	// reserves if the held record it finds then names nobody.
	settled bool
}

func (lm *lockObject) newWaiter(interval time.Duration) *waiter {
	return &waiter{lm: lm, id: newNonce()[:16], pollPlan: pollPlan{pace: &lm.pace, interval: interval, rank: 1 << 30}}
}

// warmPath is what a Mutex keeps between a release and its next acquire:
// the free record its release wrote, which the next acquire may write over
// at once, and how often it has done so lately.
type warmPath struct {
	mu   sync.Mutex // protects the fields below
	free *snapshot  // the free record of our last release (nil: none)
	// streak counts consecutive warm re-acquires; cool is how many Locks
	// are left that read first (see coolDown).
	streak, cool int
}

// set remembers the free record a release of ours wrote.
func (wp *warmPath) set(s *snapshot) {
	wp.mu.Lock()
	defer wp.mu.Unlock()
	wp.free = s
}

// coolDown starts the cool-down after a wait that met contention.
func (wp *warmPath) coolDown() {
	wp.mu.Lock()
	defer wp.mu.Unlock()
	wp.cool = coolDown
}

// takeFree returns the snapshot acquire should start from (nil: read the
// lock first). After a release it is the free record we wrote: TryLock
// (w == nil) writes over it at once (the warm path) if the hold was
// uncontended; Lock does too, unless a waiter reserved the next turn, or
// it already did warmStreakLimit times in a row or met contention lately
// (coolDown), in which case it reads first. After a contended or reserved
// hold, Lock takes the free record as its first poll (so it queues behind
// the waiters without a request) and TryLock reads first.
func (wp *warmPath) takeFree(w *waiter) *snapshot {
	wp.mu.Lock()
	defer wp.mu.Unlock()
	s := wp.free
	wp.free = nil
	switch {
	case s == nil:
		wp.streak = 0
		return nil
	case s.rec != nil && s.rec.Waited == 0 && (w == nil || s.rec.Next == "" && wp.streak < warmStreakLimit && wp.cool == 0):
		wp.streak++
		return s
	case s.rec != nil && s.rec.Waited == 0 && s.rec.Next == "":
		// Read first this time: a waiter that polled while the lock was
		// free writes before our GET and PUT are through.
		wp.streak = 0
		wp.cool = max(wp.cool-1, 0)
		return nil
	}
	wp.streak = 0
	if w == nil {
		return nil
	}
	c := *s
	if c.seenAt.IsZero() {
		c.seenAt = time.Now()
	}
	return &c
}

// start begins a decision on a poll's snapshot s: it feeds the pacing and
// clears what the last decision asked of the next poll.
func (w *waiter) start(s *snapshot) uint64 {
	gen := s.generation()
	w.observe(s, gen)
	w.deferred, w.reserve, w.reserved, w.settle = false, false, false, 0
	return gen
}

// decideHeld looks at a poll that found the lock held (judge says it may
// not be taken) and returns whether to reserve the next turn in the held
// record now; pollIn then tells when to poll next.
func (w *waiter) decideHeld(s *snapshot) (reserve bool) {
	gen := w.start(s)
	w.sawHeld = true
	if s.rec == nil {
		w.rank = 1 << 30
		return false
	}
	if !w.arrived || gen+1 < w.arrival {
		w.arrival, w.arrived = gen, true
	}
	if s.etag != w.heldETag {
		w.heldETag, w.fastPolls = s.etag, 0
	}
	age := w.age(gen)
	w.rank = int64(s.rec.Waited) - int64(age)
	if age+1 >= reserveAge(s.rec) {
		// About to reserve: look at every grant from now on.
		w.rank = min(w.rank, 1)
	}
	switch {
	case s.rec.Next == w.id:
		w.reserved, w.rank = true, 0
	case s.rec.Next != "":
		// Another waiter is next; an older one may take its place.
		w.rank = max(w.rank, 1)
		w.reserve = age > s.rec.NextWaited && age >= reserveAge(s.rec)
	case age >= reserveAge(s.rec) && w.settled:
		w.reserve, w.settled = true, false
	case age >= reserveAge(s.rec):
		// Waiters that arrived together become eligible together:
		// look again after a random part of a few round trips, and
		// reserve then only if nobody has, so that one PUT is sent
		// rather than one per waiter.
		w.settled = true
		w.settle = time.Duration(rand.Int64N(int64(w.unit()) + 1))
	}
	return w.reserve
}

// decideFree looks at a poll that found the lock claimable and says
// whether to claim it now, and with what Waited. When it says no (an
// older waiter's turn), pollIn tells when to poll next.
func (w *waiter) decideFree(s *snapshot) (claim bool, waited uint64) {
	gen := w.start(s)
	if w.force || !s.exists || s.rec == nil || s.rec.held() {
		// Absent, invalid and expired, expired, or an orphan of ours.
		return true, w.waited(s)
	}
	if !w.arrived || gen+1 < w.arrival {
		w.arrival, w.arrived = gen+1, true
	}
	if s.etag != w.freeETag {
		w.freeETag, w.freeSince = s.etag, s.seenAt
	}
	s3age := w.lm.trustedAge(s)
	switch {
	case s.rec.Next == w.id:
		return true, w.waited(s)
	case s.rec.Next != "":
		// Reserved for another waiter: leave it alone for reservationTTL.
		left := reservationTTL - s.seenAt.Sub(w.freeSince)
		if s3age > 0 {
			left = min(left, reservationTTL-s3age)
		}
		if left <= 0 {
			return true, w.waited(s)
		}
		// Look again soon: the next hold is the one to reserve in.
		w.deferred, w.deferLeft, w.yielded = true, min(left, w.soon()), true
		return false, 0
	}
	age := w.age(gen)
	if age >= s.rec.Waited || s3age >= staleFree {
		return true, w.waited(s)
	}
	total := time.Duration(min(s.rec.Waited-age, maxDeferRank)) * w.unit()
	left := total - s.seenAt.Sub(w.freeSince)
	if left <= 0 {
		return true, w.waited(s)
	}
	w.deferred, w.deferLeft, w.yielded = true, left, true
	return false, 0
}

// age is how many grants, up to and including generation gen, have been
// given since this waiter arrived.
func (w *waiter) age(gen uint64) uint64 {
	if !w.arrived || gen+1 < w.arrival {
		return 0
	}
	return gen + 1 - w.arrival
}

// waited is the Waited of the record we write when claiming over s: our
// age, at least 1 if we found the lock held, and at most one more than
// s's Waited. Waited estimates how many waiters queue behind a holder; a
// waiter that was kept waiting long while the queue was not working (a
// looping Mutex re-acquiring blindly) must not make the next waiters
// defer to a queue that is not there, and the queue grows by at most one
// waiter per grant. It also starts the cool-down when this wait met
// contention.
func (w *waiter) waited(s *snapshot) uint64 {
	if w.sawHeld || w.yielded {
		w.lm.warm.coolDown()
	}
	var gen uint64
	if s.rec != nil {
		gen = s.rec.Generation
	}
	n := w.age(gen)
	if w.sawHeld {
		n = max(n, 1)
	}
	if s.rec != nil {
		n = min(n, s.rec.Waited+1)
	}
	return n
}

// trustedAge is how old the object in s is by S3's clock (Date −
// Last-Modified, whole seconds), when that clock is trusted (see
// s3clock.go); 0 when it is not, or unknown, or negative.
func (lm *lockObject) trustedAge(s *snapshot) time.Duration {
	if s.serverDate.IsZero() || s.lastModified.IsZero() || !lm.clockTrustedFor(s) {
		return 0
	}
	return max(s.serverDate.Sub(s.lastModified), 0)
}

// reserve writes w's reservation of the next turn into the held record in
// s: the same record with Next and NextWaited set, under If-Match, so it
// lands only over the version w judged. Its outcome needs no resolving:
// the next poll shows whether the record names w.
func (lm *lockObject) reserve(ctx context.Context, s *snapshot, w *waiter) {
	rec := *s.rec
	rec.Next, rec.NextWaited = w.id, w.age(rec.Generation)
	// The rewrite moves Last-Modified, not the holder's lease: record when
	// the holder's own write was made, by S3's clock, for readers to date
	// the lease from (an earlier reservation's copy, if any, is kept).
	rec.LeaseStart = s.leaseStart()
	if _, f, _ := lm.put(ctx, &rec, condition{etag: s.etag}); f == failNone {
		w.reserved, w.rank = true, 0
	}
	lm.hooks.reserve(ctx, lm, s, w.reserved)
}

// withdrawTimeout bounds the withdrawal of a reservation by a Lock that
// gave up.
const withdrawTimeout = time.Second

// withdraw takes back w's reservation of the next turn when its Lock gives
// up: without it, the holder's release would leave the free record to a
// waiter that has gone, keeping it from everyone for reservationTTL. One
// GET, and one conditional PUT of the same record without Next when it
// still names w. Best effort: a failure leaves the reservation to expire.
func (lm *lockObject) withdraw(ctx context.Context, w *waiter) {
	if !w.reserved {
		return
	}
	w.reserved = false
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), withdrawTimeout)
	defer cancel()
	s, err := lm.read(ctx)
	if err != nil || s.rec == nil || s.rec.Next != w.id {
		return
	}
	rec := *s.rec
	rec.Next, rec.NextWaited = "", 0
	if rec.held() {
		rec.LeaseStart = s.leaseStart() // a rewrite that is not the holder's
	}
	lm.put(ctx, &rec, condition{etag: s.etag})
}

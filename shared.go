// Shared holds: several holders in one lock object at once, each with
// some units of a limit (a Semaphore), or any number of readers (an
// RWMutex's read side). This file judges a shared record and claims units
// in it; share.go is the hold itself (renewal, release).

package s3lock

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"
)

// How shared holds work. The record lists its holders (schema 3, see
// shared_record.go), each with its units, its fencing token, its TTL and
// a nonce it renews. A grant is one conditional PUT that adds an entry
// and writes generation + 1, which is the new holder's token; a renewal
// rewrites the holder's own entry; a release removes it (the last one
// writes a free record). Every write carries every other entry unchanged
// but for the Since stamp (when its lease began, by S3's clock), and a
// grant leaves out the entries it judged expired, each judged as the
// Mutex judges a hold (expiry.go). So the units listed never exceed the
// limit, and a holder that stops renewing loses its units TTL + margin
// after its last write, not before.
//
// Exclusive holds (a Mutex, an RWMutex writer) are plain records: a
// shared grant waits for them as for any hold, and they wait until no
// live holder is listed.
//
// Waiting is by polls, as for the Mutex, with the oldest waiter (by
// grants seen since it arrived) reserving the next turn in the record:
// Next, NextWaited and NextUnits, the units it needs (0: the whole lock,
// a Mutex's or writer's reservation). Other grants then leave those units
// free, so a large request is not overtaken forever by small ones, and
// once a writer waits, new readers wait behind it. A reservation is a
// hint: it is ignored once it has had its units free for reservationTTL
// without taking them (its waiter has gone).

// sharedLock is what a Semaphore or the read side of an RWMutex is: one
// holder id, and at most one hold at a time.
type sharedLock struct {
	lm    *lockObject
	opts  options
	limit int64  // units shared; 0 for readers (any number)
	id    string // this value's entry in shared records
	turn  chan struct{}
	probe probeOnce

	mu   sync.Mutex // protects hold and resv
	hold *share
	// resv is the reservation of someone else's last seen (Next#NextSeq),
	// since when (monotonic) it has been seen, and since when with its
	// units free (zero: not free): see reservedAway.
	resv      string
	resvFirst time.Time
	resvFree  time.Time
}

func newSharedLock(client S3API, bucket, key string, limit int64, opts []Option) (*sharedLock, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	if o.value != "" {
		return nil, fmt.Errorf("%w: WithValue is for elections and Mutexes, not shared holds", ErrInvalidArgument)
	}
	lm, err := newLockObject(client, bucket, key, &o)
	if err != nil {
		return nil, err
	}
	return &sharedLock{lm: lm, opts: o, limit: limit, id: newNonce()[:12], turn: make(chan struct{}, 1)}, nil
}

// capacity is how many units the lock has (readers: unbounded).
func (sl *sharedLock) capacity() int64 {
	if sl.limit == 0 {
		return math.MaxInt64
	}
	return sl.limit
}

// verdict is what judging a snapshot for a grant of n units came to.
type verdict struct {
	take bool     // write a grant over the snapshot
	keep []holder // with take: the entries the grant carries on
	// Otherwise: the lock is held, and left is how long until a lease in
	// it may be judged expired (the earliest that could change that).
	left time.Duration
}

// judgeShared decides whether n units can be granted over s. w is the
// waiter of an Acquire (nil for TryAcquire).
func (sl *sharedLock) judgeShared(s *snapshot, n int64, w *sharedWaiter) (verdict, error) {
	lm := sl.lm
	switch {
	case !s.exists:
		return verdict{take: true}, nil
	case s.rec == nil || (s.rec.held() && !s.rec.shared()):
		// An exclusive hold (or an object that counts as one).
		if left := lm.holdLeft(s); left > 0 {
			return verdict{left: left}, nil
		}
		return verdict{take: true}, nil
	case !s.rec.held():
		if sl.reservedAway(s, w, sl.capacity(), n) {
			return verdict{left: 0}, nil
		}
		return verdict{take: true}, nil
	}
	var live []holder
	var used int64
	left := time.Duration(math.MaxInt64)
	for _, l := range s.leases(lm.ttl) {
		if l.h.ID == sl.id {
			continue // an orphan of ours: this value holds nothing now
		}
		ll := lm.leaseLeft(s, l)
		if ll <= 0 {
			continue
		}
		live = append(live, *l.h)
		used += l.h.Units
		left = min(left, ll)
	}
	if len(live) == 0 {
		// Nobody holds anything: as for a free record, a reservation
		// still stands.
		if sl.reservedAway(s, w, sl.capacity(), n) {
			return verdict{left: 0}, nil
		}
		return verdict{take: true}, nil
	}
	if s.rec.Limit != sl.limit {
		return verdict{}, &LimitConflictError{Key: lm.key, Limit: sl.limit, Found: s.rec.Limit}
	}
	free := sl.capacity() - used
	if sl.reservedAway(s, w, free, n) {
		return verdict{left: left}, nil
	}
	if free < n {
		return verdict{left: left}, nil
	}
	return verdict{take: true, keep: live}, nil
}

// reservationRefresh is how often a waiter that stays reserved on a
// shared hold rewrites its reservation (Next, with NextSeq + 1), and
// reservationStale how long a reservation seen unchanged is honoured: a
// reserved waiter that died keeps new shared holds out for about that
// long. (On a free record, and once its units are free, a reservation is
// honoured reservationTTL, as for the Mutex.)
const (
	reservationRefresh = 2 * time.Second
	reservationStale   = 5 * time.Second
)

// reservedAway reports whether a reservation of someone else's in s keeps
// us from taking n of the free units (free: the capacity less the units of
// live holders). A reservation is stale, and ignored, once it has had its
// units free for reservationTTL without its waiter taking them, or has
// been seen unchanged (Next and NextSeq) for reservationStale.
func (sl *sharedLock) reservedAway(s *snapshot, w *sharedWaiter, free, n int64) bool {
	r := s.rec
	if r.Next == "" || (w != nil && r.Next == w.id) {
		return false
	}
	need := r.NextUnits
	if need <= 0 || need > sl.capacity() {
		need = sl.capacity() // the whole lock
	}
	key := reservationKey(r)
	sl.mu.Lock()
	if sl.resv != key {
		sl.resv, sl.resvFirst, sl.resvFree = key, s.seenAt, time.Time{}
	}
	if free < need {
		sl.resvFree = time.Time{} // its units are not free: it cannot have taken them
	} else if sl.resvFree.IsZero() {
		sl.resvFree = s.seenAt
	}
	stale := sl.staleLocked(s.seenAt)
	sl.mu.Unlock()
	if stale || (!r.held() && sl.lm.trustedAge(s) >= reservationTTL) {
		return false
	}
	return free-need < n
}

// claimShared makes one attempt to take n units: it judges the object and
// writes a grant when the units are free, again over what it finds when
// the object changed under the write. On success it returns the new hold;
// when the units are not free, the verdict; otherwise an error.
func (sl *sharedLock) claimShared(ctx context.Context, n int64, w *sharedWaiter) (*share, verdict, *snapshot, error) {
	lm := sl.lm
	var s *snapshot
	var sent []string // nonces of our entry in grants whose outcome is unknown
	var first instant
	for try := 0; ; try++ {
		if s == nil {
			var err error
			if s, err = lm.read(ctx); err != nil {
				return nil, verdict{}, nil, err
			}
		}
		if h := sl.ownEntry(s, sent); h != nil {
			// A grant of ours reported as failed had been applied.
			lm.log.Warn("s3lock: a grant reported as failed had been applied; the units are ours", "key", lm.key)
			sh, err := sl.confirm(ctx, sl.newShare(s.etag, s.rec, h, first))
			return sh, verdict{}, nil, err
		}
		if lm.wantsClockCheck(s) && !lm.checkClock(ctx) && ctx.Err() != nil {
			return nil, verdict{}, nil, fmt.Errorf("s3lock: acquiring %s: checking S3's clock: %w", lm.name(), ctx.Err())
		}
		v, err := sl.judgeShared(s, n, w)
		if err != nil {
			return nil, verdict{}, s, err
		}
		if !v.take {
			if w != nil {
				w.blocked(ctx, s, n)
			}
			return nil, v, s, nil
		}
		if try >= maxRewrites {
			return nil, verdict{left: 0}, s, nil
		}
		rec, mine, err := sl.grantRecord(s, n, v.keep, w)
		if err != nil {
			return nil, verdict{}, s, err
		}
		if rec == nil {
			return nil, verdict{}, s, nil
		}
		start := now()
		if first.mono.IsZero() {
			first = start
		}
		cond := condition{create: !s.exists, etag: s.etag}
		etag, f, err := lm.put(ctx, rec, cond)
		switch f {
		case failNone:
			lm.pace.noteRTT(time.Since(start.mono))
			sh := sl.newShare(etag, rec, mine, start)
			sh.contended = len(rec.Holders) > 1 || rec.Next != "" || (w != nil && w.arrived)
			sh, err := sl.confirm(ctx, sh)
			return sh, verdict{}, nil, err
		case failPermanent:
			return nil, verdict{}, nil, err
		case failPrecondition, failNotFound:
			sent = append(sent, mine.Nonce) // an SDK retry of ours may have landed
			s = nil
			continue
		case failConflict:
			sent = append(sent, mine.Nonce)
			pause(ctx)
			s = nil
			continue
		}
		// The write may or may not have been applied: read back.
		sent = append(sent, mine.Nonce)
		rctx, cancel := resolveContext(ctx, lm.resolveTimeout)
		back, rerr := lm.read(rctx)
		cancel()
		if rerr != nil {
			return nil, verdict{}, nil, errors.Join(err, rerr)
		}
		if h := sl.ownEntry(back, sent); h != nil {
			lm.log.Warn("s3lock: a grant reported as failed had been applied; the units are ours", "key", lm.key, "error", err)
			sh, err := sl.confirm(ctx, sl.newShare(back.etag, back.rec, h, first))
			return sh, verdict{}, nil, err
		}
		if f == failCanceled {
			return nil, verdict{}, nil, err
		}
		s = back
	}
}

// confirm returns sh if its lease still has time left. Learning that a
// grant landed can take longer than the TTL: such a hold is renewed once
// (the renewal lands only if our entry is still listed) and given up if
// that fails, so a caller is never told it holds units whose lease is over.
func (sl *sharedLock) confirm(ctx context.Context, sh *share) (*share, error) {
	if time.Now().Before(sh.safeUntil()) {
		return sh, nil
	}
	rctx, cancel := resolveContext(ctx, sl.lm.resolveTimeout)
	defer cancel()
	err := sh.renew(rctx)
	if err == nil && time.Now().Before(sh.safeUntil()) {
		return sh, nil
	}
	sh.cancel(ErrLeaseLost)
	if err == nil {
		err = fmt.Errorf("%w: renewed, but the TTL (%v) is shorter than S3 takes to answer", ErrLeaseLost, sl.lm.ttl)
	}
	return nil, fmt.Errorf("s3lock: acquiring %s: the hold ran out before it could be confirmed: %w", sl.lm.name(), err)
}

// ownEntry returns our entry in s if it carries one of the nonces sent.
func (sl *sharedLock) ownEntry(s *snapshot, sent []string) *holder {
	if len(sent) == 0 || s.rec == nil || !s.rec.shared() {
		return nil
	}
	for i := range s.rec.Holders {
		h := &s.rec.Holders[i]
		if h.ID == sl.id {
			for _, n := range sent {
				if h.Nonce == n {
					c := *h
					return &c
				}
			}
		}
	}
	return nil
}

// grantRecord builds the record that grants n units over s, carrying on
// the entries in keep. It returns nil when the record would not fit in
// maxRecordSize even with our entry's owner left out.
func (sl *sharedLock) grantRecord(s *snapshot, n int64, keep []holder, w *sharedWaiter) (*record, *holder, error) {
	lm := sl.lm
	gen, err := lm.nextGeneration(s)
	if err != nil {
		return nil, nil, err
	}
	mine := holder{ID: sl.id, Owner: entryOwner(lm.owner), Units: n, Token: gen, TTLMillis: lm.ttl.Milliseconds(), Nonce: newNonce()[:16]}
	rec := &record{
		Schema:     sharedSchema,
		State:      stateHeld,
		Nonce:      newNonce(),
		Generation: gen,
		WrittenAt:  lm.clock.Now(),
		Limit:      sl.limit,
	}
	if len(keep) > 0 {
		// The holds in s go on: so do the fields a later version added.
		rec.keepHints(s.rec)
		alive := make(map[string]bool, len(keep))
		for _, h := range keep {
			alive[h.ID] = true
		}
		rec.Holders = s.stampOthers(func(h *holder) bool { return alive[h.ID] })
	} else if s.rec != nil {
		rec.Next, rec.NextWaited, rec.NextUnits, rec.NextSeq = s.rec.Next, s.rec.NextWaited, s.rec.NextUnits, s.rec.NextSeq
	}
	if w != nil && rec.Next == w.id {
		rec.Next, rec.NextWaited, rec.NextUnits, rec.NextSeq = "", 0, 0, 0
	}
	rec.Holders = append(rec.Holders, mine)
	rec.TTLMillis = maxHolderTTL(rec.Holders)
	if len(rec.Holders) > maxHolders {
		return nil, nil, nil
	}
	// Leave room for what later writes add: a waiter's reservation and
	// the Since stamp of our entry.
	const room = maxRecordSize - 160
	if len(encodeRecord(rec)) > room {
		rec.Holders[len(rec.Holders)-1].Owner, mine.Owner = "", ""
		if len(encodeRecord(rec)) > room {
			lm.log.Warn("s3lock: the lock object has no room for another holder", "key", lm.key, "holders", len(rec.Holders)-1)
			return nil, nil, nil
		}
	}
	return rec, &mine, nil
}

// lockedError describes what kept n units from us, for the caller.
func (sl *sharedLock) lockedError(s *snapshot, v verdict) *LockedError {
	le := &LockedError{Key: sl.lm.key, RetryAfter: max(v.left, 0)}
	if v.left == math.MaxInt64 {
		le.RetryAfter = 0
	}
	if s == nil || !s.exists {
		return le
	}
	le.Invalid = s.invalid
	le.Generation = s.generation()
	switch {
	case s.rec == nil:
		le.Until = s.expiresAt(s.holdTTL(sl.lm.ttl))
	case s.rec.shared():
		le.Owner = holderOwners(s.rec.Holders)
		// The earliest a listed lease can end.
		for _, l := range s.leases(sl.lm.ttl) {
			if end := l.start.Add(l.ttl); !l.start.IsZero() && (le.Until.IsZero() || end.Before(le.Until)) {
				le.Until = end
			}
		}
	case s.rec.held():
		le.Owner, le.Since = s.rec.Owner, s.rec.AcquiredAt
		le.Until = s.expiresAt(s.rec.ttl())
	}
	return le
}

// sharedWaiter is the state of one Acquire (or RLock) while it waits: its
// place in the queue, as the Mutex's waiter counts it (grants seen since
// it arrived), and its reservation.
type sharedWaiter struct {
	sl       *sharedLock
	id       string
	arrived  bool
	arrival  uint64
	reserved bool // the last poll found our reservation in the record
	// reservedAt is when our reservation was last written.
	reservedAt time.Time
	// settleUntil: the last poll found nobody reserved; we reserve if
	// nobody has by then (older waiters sooner), so that one waiter
	// writes a reservation rather than all of them.
	settleUntil time.Time

	// What the polls show of the pace of grants: the generation of the
	// last poll and when the last change of it was seen, the grant period
	// (EWMA), and the round trip of a GET (EWMA).
	lastGen    uint64
	lastChange time.Time
	period     time.Duration
	rtt        time.Duration
}

// observe feeds the pace estimates from a poll.
func (w *sharedWaiter) observe(s *snapshot) {
	gen := s.generation()
	if gen != w.lastGen {
		if !w.lastChange.IsZero() {
			w.period = ewma(w.period, s.seenAt.Sub(w.lastChange))
		}
		w.lastGen, w.lastChange = gen, s.seenAt
	}
	if s.rtt > 0 {
		w.rtt = ewma(w.rtt, s.rtt)
	}
}

// pollIn returns the pause before the next poll, at most pause: soon
// after a settle; for the reserved waiter, a quarter of the grant period
// (at least two round trips), so that it takes its turn soon after the
// units free; for the others, about one grant period.
func (w *sharedWaiter) pollIn(pause time.Duration) time.Duration {
	if left := time.Until(w.settleUntil); left > 0 {
		return max(min(pause, left), minPoll)
	}
	if w.period == 0 {
		if w.reserved {
			return min(pause, reservationTTL/4)
		}
		return pause
	}
	if w.reserved {
		return max(min(pause, reservationTTL/4, w.period/4), 2*w.rtt, minPoll)
	}
	return max(min(pause, w.period), 2*w.rtt, minPoll)
}

// age is how many grants have been made since w arrived, by generation.
func (w *sharedWaiter) age(gen uint64) uint64 {
	if !w.arrived || gen+1 < w.arrival {
		w.arrival, w.arrived = gen, true
	}
	return gen + 1 - w.arrival
}

// blocked looks at a poll that found the units taken and reserves the
// next turn when nobody older has: one conditional PUT of the same record
// with Next, NextWaited and NextUnits set (see reserveTurn).
func (w *sharedWaiter) blocked(ctx context.Context, s *snapshot, n int64) {
	if s.rec == nil {
		w.reserved = false
		return
	}
	w.observe(s)
	age := w.age(s.rec.Generation)
	w.reserved = s.rec.Next == w.id
	if w.reserved {
		if time.Since(w.reservedAt) >= reservationRefresh && s.rec.shared() {
			// Show the other shared contenders that we still wait
			// (only they judge a reservation by next_seq: on a free or
			// exclusive record it lasts reservationTTL once free).
			if w.sl.lm.reserveTurn(ctx, s, w.id, age, n) {
				w.reservedAt = time.Now()
			}
		}
		return
	}
	if s.rec.Next != "" && age <= s.rec.NextWaited && !w.sl.staleReservation(s) {
		w.settleUntil = time.Time{}
		return
	}
	if s.rec.Next == "" {
		switch {
		case w.settleUntil.IsZero():
			// Waiters see the reservation go together (a grant clears
			// it): the older a waiter (in grants since it arrived), the
			// sooner it reserves, two round trips apart per grant of
			// age, so the oldest writes first and the others, polling
			// after its write, see it and write nothing.
			step := max(2*w.rtt, 5*time.Millisecond)
			younger := time.Duration(maxSettleRank - min(age, maxSettleRank))
			w.settleUntil = time.Now().Add(younger*step + rand.N(step))
			return
		case time.Now().Before(w.settleUntil):
			return
		}
	}
	w.settleUntil = time.Time{}
	w.reserved = w.sl.lm.reserveTurn(ctx, s, w.id, age, n)
	if w.reserved {
		w.reservedAt = time.Now()
	}
}

// maxSettleRank bounds the ages by which waiters order their
// reservations (see sharedWaiter.blocked).
const maxSettleRank = 16

// staleReservation reports whether the reservation in s is one
// reservedAway has found stale.
func (sl *sharedLock) staleReservation(s *snapshot) bool {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return sl.resv == reservationKey(s.rec) && sl.staleLocked(s.seenAt)
}

// staleLocked reports whether the reservation tracked in sl.resv is stale
// at seenAt: seen unchanged for reservationStale, or with its units free
// for reservationTTL. sl.mu is held.
func (sl *sharedLock) staleLocked(seenAt time.Time) bool {
	return seenAt.Sub(sl.resvFirst) >= reservationStale ||
		(!sl.resvFree.IsZero() && seenAt.Sub(sl.resvFree) >= reservationTTL)
}

// reservationKey names one writing of the reservation in r.
func reservationKey(r *record) string { return r.Next + "#" + strconv.FormatUint(r.NextSeq, 10) }

// reserveTurn writes a reservation of the next turn for waiter id (age
// grants old, needing units, 0 for the whole lock) into the held record
// in s, under If-Match, keeping everything else; see wait.go. It reports
// whether the write landed.
func (lm *lockObject) reserveTurn(ctx context.Context, s *snapshot, id string, age uint64, units int64) bool {
	rec := *s.rec
	seq := uint64(0)
	if rec.Next == id {
		seq = rec.NextSeq + 1 // a refresh
	}
	rec.Next, rec.NextWaited, rec.NextUnits, rec.NextSeq = id, age, units, seq
	rec.stampFor(s)
	_, f, _ := lm.put(ctx, &rec, condition{etag: s.etag})
	return f == failNone
}

// withdrawShared takes back w's reservation when its Acquire gives up (as
// withdraw does for the Mutex).
func (sl *sharedLock) withdrawShared(ctx context.Context, w *sharedWaiter) {
	if !w.reserved {
		return
	}
	mw := &waiter{lm: sl.lm, id: w.id}
	mw.reserved = true
	sl.lm.withdraw(ctx, mw)
}

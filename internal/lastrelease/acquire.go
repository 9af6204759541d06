// Acquiring: judging a snapshot, claiming it with a conditional write,
// settling writes whose outcome is unknown, and the orphans they leave.

package lastrelease

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// maxWriteAttempts bounds how many conditional writes one acquire or
// release makes when the object keeps changing under it (409 conflicts, or
// a lost race followed by a free lock).
const maxWriteAttempts = 5

// maxRewrites bounds how many times in a row one renewal or release
// writes again over our own record rewritten by waiters reserving the next
// turn. Each rewrite is another waiter's progress; the bound only stops a
// store or writer gone wrong from keeping us busy forever.
const maxRewrites = 64

// judge decides whether s may be claimed: yes for no object, a free
// record, an expired hold, or an orphan of ours. For a hold it may not
// claim, left is how long until the hold may be judged expired.
func (lm *lockObject) judge(s *snapshot) (claimable bool, left time.Duration) {
	if !s.exists {
		return true, 0
	}
	if s.rec != nil && (!s.rec.held() || lm.orphans.has(s.rec.Nonce)) {
		return true, 0
	}
	left = lm.untilExpired(s, s.holdTTL(lm.ttl))
	if left > 0 {
		return false, left
	}
	if s.rec != nil {
		lm.log.Info("s3lock: taking over an expired hold", "key", lm.key, "owner", s.rec.Owner, "generation", s.rec.Generation)
	} else {
		lm.log.Warn("s3lock: taking over an invalid lock object older than the TTL", "key", lm.key, "reason", s.invalid)
	}
	return true, 0
}

// attempt is what an acquire that did not take the lock came to.
type attempt struct {
	// held is the hold found (nil when the attempt yielded), and left how
	// long until it may be judged expired.
	held *snapshot
	left time.Duration
	// raced: every write lost a race, each winner releasing again before
	// we read; held is then the last state seen, free or not.
	raced bool
	// yielded: Lock's waiter left a claimable lock to an older waiter.
	yielded bool
}

// lockedError describes the hold a attempt found, for the caller: who,
// which generation, and until when at least.
func (lm *lockObject) lockedError(a attempt) *LockedError {
	le := &LockedError{Key: lm.key}
	s := a.held
	switch {
	case s == nil:
		return le
	case a.raced:
		if s.rec != nil {
			le.Owner, le.Generation = s.rec.Owner, s.rec.Generation
		}
		return le
	}
	le.RetryAfter, le.Invalid = a.left, s.invalid
	if s.rec != nil {
		le.Owner, le.Generation, le.Since = s.rec.Owner, s.rec.Generation, s.rec.AcquiredAt
	} else if s.salvaged.hasGen {
		le.Generation = s.salvaged.generation
	}
	le.Until = s.expiresAt(s.holdTTL(lm.ttl))
	return le
}

// errGenerationExhausted marks a lock whose generation cannot grow.
var errGenerationExhausted = errors.New("generation exhausted")

// nextGeneration is the generation of a grant or break written over s.
// It refuses a record at the largest generation: the fencing token must
// never wrap or go back.
func (lm *lockObject) nextGeneration(s *snapshot) (uint64, error) {
	g := s.generation()
	if g == math.MaxUint64 {
		return 0, fmt.Errorf("%w: %s is at generation %d, the largest fencing token; it cannot be granted again without the token wrapping (%w)",
			ErrInvalidLockObject, lm.name(), g, errGenerationExhausted)
	}
	return g + 1, nil
}

// resolveContext returns ctx, or, when ctx is already done, a context
// without its cancellation bounded by timeout: finding out what a write did
// must not be skipped because the caller gave up.
func resolveContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if ctx.Err() == nil {
		return ctx, func() {}
	}
	return context.WithTimeout(context.WithoutCancel(ctx), timeout)
}

// acquire makes one attempt to take the lock. On success it returns the
// new lease; when the lock is held by someone else, what it found (see
// attempt); an error when S3 failed. For Lock, w is its waiter: it may
// leave a lock that judge finds claimable to another waiter (see
// wait.go), and the attempt then says it yielded; TryLock passes nil.
func (lm *lockObject) acquire(ctx context.Context, w *waiter) (*lease, attempt, error) {
	s := lm.warm.takeFree(w)
	for try := 0; ; try++ {
		if s == nil {
			var err error
			if s, err = lm.read(ctx); err != nil {
				return nil, attempt{}, err
			}
		}
		if lm.wantsClockCheck(s) && !lm.checkClock(ctx) && ctx.Err() != nil {
			return nil, attempt{}, fmt.Errorf("s3lock: acquiring %s: checking S3's clock: %w", lm.name(), ctx.Err())
		}
		claimable, left := lm.judge(s)
		if !claimable {
			if w != nil && w.decideHeld(s) {
				lm.reserve(ctx, s, w)
			}
			return nil, attempt{held: s, left: left}, nil
		}
		var waited uint64
		if w != nil {
			claim, n := w.decideFree(s)
			if !claim {
				return nil, attempt{yielded: true}, nil
			}
			waited = n
		}
		if try == maxWriteAttempts {
			// Every write lost a race to another writer, each of which
			// released again before we read: the lock is busy, so say
			// so, as TryLock promises (Lock simply polls again).
			return nil, attempt{held: s, raced: true}, nil
		}
		l, next, err := lm.claim(ctx, s, waited)
		if l != nil || err != nil {
			return l, attempt{}, err
		}
		s = next
	}
}

// claim writes a held record over s, with waited as its Waited. It returns
// the lease when the write is ours, or the snapshot to judge next when the
// object changed under us (nil: read it again), or an error.
func (lm *lockObject) claim(ctx context.Context, s *snapshot, waited uint64) (*lease, *snapshot, error) {
	gen, err := lm.nextGeneration(s)
	if err != nil {
		return nil, nil, err
	}
	cond := condition{create: !s.exists, etag: s.etag}
	nonce, first := lm.orphans.claimNonce(cond)
	wall := lm.clock.Now()
	rec := &record{
		Schema:     recordSchema,
		State:      stateHeld,
		Owner:      lm.owner,
		Nonce:      nonce,
		Generation: gen,
		TTLMillis:  lm.ttl.Milliseconds(),
		AcquiredAt: wall,
		WrittenAt:  wall,
		Waited:     waited,
		Value:      lm.value,
	}
	start := now() // the lease counts from before the request is sent
	if first.mono.IsZero() {
		first = start
	}
	etag, f, err := lm.put(ctx, rec, cond)
	switch f {
	case failNone:
		lm.pace.noteRTT(time.Since(start.mono))
		lm.orphans.clear()
		return lm.confirm(ctx, lm.newLease(etag, rec, start))
	case failConflict:
		// Nothing was written by the attempt that got the 409; but when
		// it was an SDK retry, an earlier attempt may have been applied.
		pause(ctx)
	case failPermanent:
		return nil, nil, err
	}
	// 412/404: someone else wrote first, or the SDK retried a write of ours
	// that had been applied. 409s, transport errors, 5xx, cancellation: the
	// write may or may not have been applied. Until a read settles it, the
	// record is an orphan: ours to take back if it turns up.
	lm.orphans.add(orphan{nonce: rec.Nonce, cond: cond, claim: true, start: first})
	rctx, cancel := resolveContext(ctx, lm.resolveTimeout)
	defer cancel()
	now2, rerr := lm.read(rctx)
	if rerr != nil {
		return nil, nil, errors.Join(err, rerr)
	}
	if now2.rec != nil && now2.rec.Nonce == rec.Nonce && now2.rec.held() && now2.rec.Generation == rec.Generation {
		// Which of the writes with this nonce landed is unknown: count
		// the lease from the first.
		lm.log.Warn("s3lock: a write reported as failed had been applied; the lock is ours", "key", lm.key, "error", err)
		lm.orphans.clear()
		// A waiter may have reserved the next turn in our record before
		// this read: keep its reservation in our next writes.
		rec.Next, rec.NextWaited, rec.extra = now2.rec.Next, now2.rec.NextWaited, now2.rec.extra
		return lm.confirm(ctx, lm.newLease(now2.etag, rec, first))
	}
	if f == failCanceled {
		return nil, nil, err
	}
	return nil, now2, nil
}

// confirm returns l if its lease still has time left. Finding out whether
// a write was applied can take longer than the TTL; such a hold is renewed
// once before it is returned (safe: the renewal lands only if nobody wrote
// since our record), and if that fails the hold is given up as an orphan
// this Mutex takes back on its next acquire.
func (lm *lockObject) confirm(ctx context.Context, l *lease) (*lease, *snapshot, error) {
	if time.Now().Before(l.safeUntil()) {
		return l, nil, nil
	}
	lm.log.Warn("s3lock: the hold ran out while its acquisition was being confirmed; renewing it", "key", lm.key)
	rctx, cancel := resolveContext(ctx, lm.resolveTimeout)
	defer cancel()
	err := l.renew(rctx)
	if err == nil && time.Now().Before(l.safeUntil()) {
		return l, nil, nil
	}
	l.orphan()
	l.cancel(ErrLeaseLost)
	if err == nil {
		err = fmt.Errorf("%w: renewed, but the TTL (%v) is shorter than S3 takes to answer", ErrLeaseLost, lm.ttl)
	}
	return nil, nil, fmt.Errorf("s3lock: acquiring %s: the hold ran out before it could be confirmed: %w", lm.name(), err)
}

// pause waits a little (0-20 ms) after a 409 conflict, so the conflicting
// write can finish before we read again.
func pause(ctx context.Context) {
	t := time.NewTimer(time.Duration(rand.Int64N(int64(20 * time.Millisecond))))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

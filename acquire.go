// Acquiring: judging a snapshot, claiming it with a conditional write,
// settling writes whose outcome is unknown, and the orphans they leave.

package s3lock

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// maxWriteAttempts bounds how many conditional writes one acquire or
// release makes when the object keeps changing under it (409 conflicts, or
// a lost race followed by a free lock).
const maxWriteAttempts = 5

// maxOrphans bounds how many unresolved writes a Mutex remembers. Every
// read prunes the writes that can no longer be in S3 nor land there, and
// writes made under the same condition share one nonce, so a Mutex holds
// only a few; the bound is a backstop.
const maxOrphans = 16

// orphan is a held record of ours that no lease holds: nonce is its nonce.
// Either it landed (a lease's last record, in S3 while the object has the
// ETag in cond), or it is a write whose outcome is unknown, made under
// cond (a claim, or a lease's renewal). Such a record can be in S3, or land
// there later, only while the object carries its nonce or still satisfies
// cond; any other read proves it gone for good, since ETags never repeat
// (every body has a fresh nonce).
type orphan struct {
	nonce string
	cond  condition
	// claim marks an unknown claim, first sent at start: the only kind
	// whose nonce a later claim under the same condition may reuse, as
	// both records would be the same grant (same generation).
	claim bool
	start instant
}

// judge decides whether s may be claimed. It returns nil when it may (no
// object, a free record, an expired hold, or an orphan of ours) and a
// *LockedError otherwise.
func (lm *leaseManager) judge(s *snapshot) *LockedError {
	if !s.exists {
		return nil
	}
	if s.rec != nil && (!s.rec.held() || lm.isOrphan(s.rec.Nonce)) {
		return nil
	}
	ttl := s.holdTTL(lm.ttl)
	left := lm.untilExpired(s, ttl)
	if left <= 0 {
		if s.rec != nil {
			lm.log.Info("s3lock: taking over an expired hold", "key", lm.key, "owner", s.rec.Owner, "generation", s.rec.Generation)
		} else {
			lm.log.Warn("s3lock: taking over an invalid lock object older than the TTL", "key", lm.key, "reason", s.invalid)
		}
		return nil
	}
	le := &LockedError{Key: lm.key, RetryAfter: left, Invalid: s.invalid}
	if s.rec != nil {
		le.Owner, le.Generation, le.Since = s.rec.Owner, s.rec.Generation, s.rec.AcquiredAt
	} else if s.salvaged.hasGen {
		le.Generation = s.salvaged.generation
	}
	if !s.lastModified.IsZero() {
		le.Until = s.lastModified.Add(ttl)
	}
	return le
}

// errGenerationExhausted marks a lock whose generation cannot grow.
var errGenerationExhausted = errors.New("generation exhausted")

// nextGeneration is the generation of a grant or break written over s.
// It refuses a record at the largest generation: the fencing token must
// never wrap or go back.
func (lm *leaseManager) nextGeneration(s *snapshot) (uint64, error) {
	g := s.generation()
	if g == math.MaxUint64 {
		return 0, fmt.Errorf("%w: %s is at generation %d, the largest fencing token; it cannot be granted again without the token wrapping (%w)",
			ErrInvalidLockObject, lm.name(), g, errGenerationExhausted)
	}
	return g + 1, nil
}

func (lm *leaseManager) isOrphan(nonce string) bool {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	return slices.ContainsFunc(lm.orphans, func(o orphan) bool { return o.nonce == nonce })
}

// orphanNonce returns the nonce of an unresolved write of ours made under
// cond and when the first write with it was sent, or a fresh nonce and a
// zero instant. Of all claims under one condition at most one can land,
// so they may share a nonce: that keeps one orphan per condition. A
// record that landed, or a renewal, never lends its nonce: a claim over
// it writes another generation, and must be told apart from it by a
// read-back and by contenders' expiry watch.
func (lm *leaseManager) orphanNonce(cond condition) (string, instant) {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	for _, o := range lm.orphans {
		if o.cond == cond && o.claim {
			return o.nonce, o.start
		}
	}
	return newNonce(), instant{}
}

// addOrphans remembers records of ours whose fate is unknown.
func (lm *leaseManager) addOrphans(os ...orphan) {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	for _, o := range os {
		known := slices.ContainsFunc(lm.orphans, func(k orphan) bool { return k.nonce == o.nonce && k.cond == o.cond })
		if o.nonce != "" && !known {
			lm.orphans = append(lm.orphans, o)
		}
	}
	if len(lm.orphans) > maxOrphans {
		lm.orphans = slices.Delete(lm.orphans, 0, len(lm.orphans)-maxOrphans)
	}
}

// pruneOrphans drops the orphans that s proves gone for good: s carries
// another nonce and does not satisfy their condition.
func (lm *leaseManager) pruneOrphans(s *snapshot) {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	lm.orphans = slices.DeleteFunc(lm.orphans, func(o orphan) bool {
		return !(s.rec != nil && s.rec.Nonce == o.nonce) && !o.cond.holds(s)
	})
}

// clearOrphans forgets every orphan: a write of ours has just replaced
// the state they were written over, so none of them can be in S3 or land.
func (lm *leaseManager) clearOrphans() {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	lm.orphans = nil
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
// new lease. When the lock is held by someone else it returns a
// *LockedError; other errors come from S3. For Lock, w is its waiter: it
// may leave a lock that judge finds claimable to another waiter (see
// wait.go), and acquire then returns yielded and no error; TryLock passes
// nil.
func (lm *leaseManager) acquire(ctx context.Context, w *waiter) (l *lease, yielded bool, err error) {
	s := lm.takeFree(w)
	for attempt := 0; ; attempt++ {
		if s == nil {
			if s, err = lm.read(ctx); err != nil {
				return nil, false, err
			}
		}
		le := lm.judge(s)
		var waited uint64
		if w != nil {
			claim, n := w.decide(s, le)
			switch {
			case le != nil && w.reserve:
				lm.reserve(ctx, s, w)
				return nil, false, le
			case le != nil:
				return nil, false, le
			case !claim:
				return nil, true, nil
			}
			waited = n
		} else if le != nil {
			return nil, false, le
		}
		if attempt == maxWriteAttempts {
			// Every write lost a race to another writer, each of which
			// released again before we read: the lock is busy, so say
			// so, as TryLock promises (Lock simply polls again).
			le := &LockedError{Key: lm.key}
			if s.rec != nil {
				le.Owner, le.Generation = s.rec.Owner, s.rec.Generation
			}
			return nil, false, le
		}
		var next *snapshot
		l, next, err = lm.claim(ctx, s, waited)
		if l != nil || err != nil {
			return l, false, err
		}
		s = next
	}
}

// claim writes a held record over s, with waited as its Waited. It returns
// the lease when the write is ours, or the snapshot to judge next when the
// object changed under us (nil: read it again), or an error.
func (lm *leaseManager) claim(ctx context.Context, s *snapshot, waited uint64) (*lease, *snapshot, error) {
	gen, err := lm.nextGeneration(s)
	if err != nil {
		return nil, nil, err
	}
	cond := condition{create: !s.exists, etag: s.etag}
	nonce, first := lm.orphanNonce(cond)
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
		lm.noteRTT(time.Since(start.mono))
		lm.clearOrphans()
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
	lm.addOrphans(orphan{nonce: rec.Nonce, cond: cond, claim: true, start: first})
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
		lm.clearOrphans()
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
func (lm *leaseManager) confirm(ctx context.Context, l *lease) (*lease, *snapshot, error) {
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

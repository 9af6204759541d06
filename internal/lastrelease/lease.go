// The held lease: its deadline, renewal and release.

package lastrelease

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// drift is how much earlier than its TTL a holder considers its lease over,
// for clock-rate differences between it and S3 (as in redsync: 1% + 2 ms).
func drift(ttl time.Duration) time.Duration { return ttl/100 + 2*time.Millisecond }

func (lm *lockObject) newLease(etag string, rec *record, start instant) *lease {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &lease{
		lm:       lm,
		ctx:      ctx,
		cancel:   cancel,
		etag:     etag,
		rec:      *rec,
		deadline: start.mono.Add(lm.ttl - drift(lm.ttl)),
		from:     start,
		began:    start.mono,
	}
}

// lease is one hold of the lock: the record we wrote last, its ETag, and
// when (monotonic) it stops being safe. Its context is cancelled with cause
// ErrLeaseLost at that deadline, or as soon as a renewal finds someone
// else's record; with ErrNotHeld when it is released.
type lease struct {
	lm     *lockObject
	ctx    context.Context
	cancel context.CancelCauseFunc

	mu       sync.Mutex // protects etag, rec, deadline, from, pending, timer, halted
	etag     string
	rec      record
	deadline time.Time // monotonic; less the time suspended since from
	from     instant   // when the write that set the deadline was sent
	began    time.Time // when the write that acquired the lock was sent
	// writeMu serialises renewals: the renewer's and an Election's
	// Proclaim (election.go).
	writeMu sync.Mutex
	// pending is the renewal over etag whose outcome is unknown (zero when
	// none). Every renewal over the same ETag reuses its nonce, since at
	// most one of them can land, and start is that of the first, so the
	// deadline of whichever landed is never overestimated.
	pending renewal

	timer      *time.Timer        // without renewal: cancels ctx at the deadline
	halted     bool               // halt was called
	stopCtx    context.Context    // with renewal: cancelled to stop the renewer
	stopRenew  context.CancelFunc // with renewal: cancels stopCtx
	renewerEnd chan struct{}      // with renewal: closed when the renewer has returned

	lossReported bool // the loss was reported to Hooks.LeaseLost (under mu)
}

// start arms the deadline, and the renewer when interval > 0.
func (l *lease) start(interval time.Duration) {
	if interval <= 0 {
		l.watchDeadline()
		return
	}
	l.stopCtx, l.stopRenew = context.WithCancel(context.Background())
	l.renewerEnd = make(chan struct{})
	go l.renewLoop(interval)
}

// halt stops the deadline timer or the renewer, waiting for the renewer to
// return.
func (l *lease) halt() {
	l.mu.Lock()
	l.halted = true
	if l.timer != nil {
		l.timer.Stop()
	}
	l.mu.Unlock()
	if l.stopRenew != nil {
		l.stopRenew()
		<-l.renewerEnd
	}
}

// watchDeadline cancels the hold's context once the lease has run out,
// looking again at least every suspendCheck in case the system was
// suspended meanwhile.
func (l *lease) watchDeadline() {
	left := time.Until(l.safeUntil())
	if left <= 0 {
		l.lose(ErrLeaseLost)
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.halted {
		l.timer = time.AfterFunc(min(left, suspendCheck), l.watchDeadline)
	}
}

func (l *lease) generation() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rec.Generation
}

// safeUntil returns the end of the lease on the monotonic clock, brought
// forward by the time the system was suspended since it was set.
func (l *lease) safeUntil() time.Time {
	l.mu.Lock()
	d, from := l.deadline, l.from
	l.mu.Unlock()
	return d.Add(-from.suspendedSince())
}

// renewLoop renews every interval until stopped, the lease is lost, or
// its deadline passes without a successful renewal. It uses one timer.
func (l *lease) renewLoop(interval time.Duration) {
	defer close(l.renewerEnd)
	// The timer wakes at least every suspendCheck, so a resume from a
	// suspend longer than the lease ends the hold within that long; it
	// renews only once due.
	due := time.Now().Add(interval)
	timer := time.NewTimer(min(interval, suspendCheck))
	defer timer.Stop()
	var failing failureRun
	for {
		select {
		case <-l.stopCtx.Done():
			return
		case <-timer.C:
		}
		deadline := l.safeUntil()
		if !time.Now().Before(deadline) {
			l.lm.log.Warn("s3lock: lease expired before it could be renewed", "key", l.lm.key)
			l.lose(ErrLeaseLost)
			return
		}
		// A suspend brings the deadline forward but not due, which the
		// monotonic clock counts: renew at once when less than an interval
		// of the lease is left.
		if early := deadline.Add(-interval); early.Before(due) {
			due = early
		}
		if wait := time.Until(due); wait > 0 {
			timer.Reset(min(wait, suspendCheck))
			continue
		}
		rctx, cancel := context.WithDeadline(l.stopCtx, deadline)
		err := l.renewObserved(rctx)
		cancel()
		if errors.Is(err, ErrLeaseLost) || l.stopCtx.Err() != nil {
			// Lost, or stopped by Unlock while the renewal was in flight
			// (its failure then says nothing about S3).
			return
		}
		wait := interval
		if err != nil {
			failing.failed(l.lm.log, l.lm.key, err)
			wait = interval / 4
		} else {
			failing.recovered(l.lm.log, l.lm.key)
		}
		if left := time.Until(l.safeUntil()); left < wait {
			wait = max(left, 0)
		}
		due = time.Now().Add(wait)
		timer.Reset(min(wait, suspendCheck))
	}
}

// renewal is a renewal write: its nonce, the ETag it was conditioned on,
// and when (monotonic) the first attempt was sent.
type renewal struct {
	nonce, etag string
	start       instant
}

// renew rewrites our record with a fresh nonce (or the nonce of an
// unresolved renewal over the same ETag), extending the lease from the
// moment before the request. On ErrLeaseLost the lease's context has been
// cancelled.
func (l *lease) renew(ctx context.Context) error {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	return l.renewLocked(ctx)
}

// renewLocked is renew, with l.writeMu held by the caller.
func (l *lease) renewLocked(ctx context.Context) error {
	for range maxRewrites {
		again, err := l.renewOnce(ctx)
		if !again {
			return err
		}
		// A waiter had reserved the next turn in our record, which our
		// write was not conditioned on: renew over its version.
	}
	return fmt.Errorf("s3lock: renewing %s: the record kept changing under reservations (%d attempts)", l.lm.name(), maxRewrites)
}

// renewOnce makes one renewal write. again reports that it found our
// record unrenewed but rewritten (by a waiter reserving the next turn).
func (l *lease) renewOnce(ctx context.Context) (again bool, err error) {
	start := now()
	l.mu.Lock()
	rec, etag := l.rec, l.etag
	p := l.pending
	if p.nonce == "" || p.etag != etag {
		p = renewal{nonce: newNonce(), etag: etag, start: start}
	}
	l.mu.Unlock()
	rec.Nonce = p.nonce
	rec.WrittenAt = l.lm.clock.Now()
	newETag, f, err := l.lm.put(ctx, &rec, condition{etag: etag})
	if f == failNone {
		l.extend(newETag, &rec, start)
		return false, nil
	}
	// Whatever the error, an earlier attempt of the SDK's may have been
	// applied (a 409 or 412 can answer a retry of an applied write):
	// remember the renewal, so a later read recognizes the record as ours.
	l.mu.Lock()
	l.pending = p
	l.mu.Unlock()
	switch {
	case f == failConflict || f == failPermanent:
		return false, err
	case f != failPrecondition && f != failNotFound && ctx.Err() != nil:
		return false, err
	}
	s, rerr := l.lm.read(ctx)
	if rerr != nil {
		return false, errors.Join(err, rerr)
	}
	unchanged, again := l.ours(s)
	if aerr := l.adopt(s); aerr != nil {
		return false, aerr
	}
	if unchanged && !again {
		// Our last record, as it was: the renewal did not land (yet; it
		// stays pending under the same nonce). The lease was not extended,
		// so this renewal failed.
		return false, err
	}
	return again, nil
}

// ours reports whether s holds our last record (unchanged), and whether a
// waiter's reservation rewrote it since our last write (rewritten).
func (l *lease) ours(s *snapshot) (unchanged, rewritten bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	unchanged = s.rec != nil && s.rec.held() && s.rec.Nonce == l.rec.Nonce
	return unchanged, unchanged && s.etag != l.etag
}

// extend records a successful write of ours.
func (l *lease) extend(etag string, rec *record, start instant) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.etag, l.rec = etag, *rec
	// The record read back may carry a waiter's lease_start (it reserved
	// over our write): our own writes never do, their Last-Modified is the
	// start of the lease. Writing it on would date the next renewals from
	// this one.
	l.rec.LeaseStart = time.Time{}
	if d := start.mono.Add(l.lm.ttl - drift(l.lm.ttl)); d.After(l.deadline) {
		l.deadline, l.from = d, start
	}
	l.pending = renewal{}
}

// adopt takes s as the current state of our hold if it is a record of ours
// (our last one, or a renewal whose answer was lost); otherwise the lease
// is lost.
func (l *lease) adopt(s *snapshot) error {
	l.mu.Lock()
	var ours bool
	var start instant
	if s.rec != nil && s.rec.held() {
		if s.rec.Nonce == l.rec.Nonce {
			ours = true
		} else if s.rec.Nonce == l.pending.nonce {
			ours, start = true, l.pending.start
		}
	}
	l.mu.Unlock()
	if ours {
		if start.mono.IsZero() {
			// Our record, rewritten by a waiter that reserved the next
			// turn: keep the reservation in our next writes.
			l.mu.Lock()
			l.etag = s.etag
			l.rec.Next, l.rec.NextWaited = s.rec.Next, s.rec.NextWaited
			l.rec.extra = s.rec.extra // and what a later version's waiter added
			l.mu.Unlock()
		} else {
			l.extend(s.etag, s.rec, start)
		}
		return nil
	}
	err := l.lostError(s)
	l.lose(err)
	return err
}

func (l *lease) lostError(s *snapshot) error {
	switch {
	case !s.exists:
		return fmt.Errorf("%w: %s was deleted", ErrLeaseLost, l.lm.name())
	case s.rec == nil:
		return fmt.Errorf("%w: %s was overwritten by an invalid object", ErrLeaseLost, l.lm.name())
	case s.rec.held():
		return fmt.Errorf("%w: %s is now held by %q (generation %d)", ErrLeaseLost, l.lm.name(), s.rec.Owner, s.rec.Generation)
	default:
		return fmt.Errorf("%w: %s was released by someone else (generation %d)", ErrLeaseLost, l.lm.name(), s.rec.Generation)
	}
}

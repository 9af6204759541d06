// The held lease: its deadline, renewal and release.

package s3lock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// leaseManager makes every S3 request of one Mutex. It reads the lock
// object, judges whether it may be taken, and writes it only with
// conditional PUTs: If-None-Match: * to create, If-Match: <etag> to
// replace. It never deletes.
type leaseManager struct {
	client      S3API
	bucket, key string
	owner       string
	ttl         time.Duration
	margin      time.Duration
	clock       Clock
	log         *slog.Logger
	// resolveTimeout bounds the read that settles an ambiguous write when
	// the caller's context has already ended.
	resolveTimeout time.Duration

	mu sync.Mutex // protects the fields below
	// free is a free record this Mutex wrote or saw last; when set, the
	// next acquire first tries one If-Match PUT over it (the warm path).
	free *snapshot
	// watchKey and watchSince implement the monotonic expiry rule: the
	// version of the object last seen (see versionKey) and when
	// (monotonic) it was first seen.
	watchKey   string
	watchSince time.Time
	// orphans are held records this Mutex wrote, or may have written,
	// that it no longer holds through a lease: a record carrying one of
	// their nonces is ours to take back.
	orphans []orphan
	// pace is what Lock remembers to pace its polls (see wait.go).
	pace pacing

	// value is the Value of the records claim writes: WithValue's, or an
	// Election's (election.go). Campaign sets it while it holds the
	// Mutex's turn, before it acquires; claim runs only under the turn.
	value string
}

// newLeaseManager checks the lock's location and returns its lease manager
// with the options in o (already validated). On failure the error matches
// [ErrInvalidArgument].
func newLeaseManager(client S3API, bucket, key string, o *options) (*leaseManager, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: nil S3 client", ErrInvalidArgument)
	}
	if err := validateBucket(bucket); err != nil {
		return nil, err
	}
	if err := validateKey(key); err != nil {
		return nil, err
	}
	if err := validateValue(o.value); err != nil {
		return nil, err
	}
	return &leaseManager{
		value:          o.value,
		client:         o.client(client),
		bucket:         bucket,
		key:            key,
		owner:          o.owner,
		ttl:            o.ttl,
		margin:         o.expiryMargin,
		clock:          o.clock,
		log:            o.logger,
		resolveTimeout: o.releaseTimeout,
	}, nil
}

func (lm *leaseManager) name() string { return "s3://" + lm.bucket + "/" + lm.key }

// setFree remembers the free record a release of ours wrote, for the next
// acquire's warm path.
func (lm *leaseManager) setFree(s *snapshot) {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	lm.free = s
}

// drift is how much earlier than its TTL a holder considers its lease over,
// for clock-rate differences between it and S3 (as in redsync: 1% + 2 ms).
func drift(ttl time.Duration) time.Duration { return ttl/100 + 2*time.Millisecond }

func (lm *leaseManager) newLease(etag string, rec *record, start instant) *lease {
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
	lm     *leaseManager
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
		l.cancel(ErrLeaseLost)
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
			l.cancel(ErrLeaseLost)
			return
		}
		if wait := time.Until(due); wait > 0 {
			timer.Reset(min(wait, suspendCheck))
			continue
		}
		rctx, cancel := context.WithDeadline(l.stopCtx, deadline)
		err := l.renew(rctx)
		cancel()
		if errors.Is(err, ErrLeaseLost) {
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
	for range maxWriteAttempts {
		again, err := l.renewOnce(ctx)
		if !again {
			return err
		}
		// A waiter had reserved the next turn in our record, which our
		// write was not conditioned on: renew over its version.
	}
	return fmt.Errorf("s3lock: renewing %s: the record kept changing under reservations (%d attempts)", l.lm.name(), maxWriteAttempts)
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
	l.mu.Lock()
	again = s.rec != nil && s.rec.held() && s.rec.Nonce == l.rec.Nonce && s.etag != l.etag
	l.mu.Unlock()
	return again, l.adopt(s)
}

// extend records a successful write of ours.
func (l *lease) extend(etag string, rec *record, start instant) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.etag, l.rec = etag, *rec
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
	l.cancel(err)
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

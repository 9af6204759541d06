// A shared hold: one holder's entry in a shared record, its lease,
// renewal and release.

package s3lock

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// share is one hold of some units in a shared record. Its context is
// cancelled with cause ErrLeaseLost when its lease runs out or a write
// finds its entry gone, and with ErrNotHeld when it is released.
type share struct {
	sl     *sharedLock
	ctx    context.Context
	cancel context.CancelCauseFunc
	units  int64
	token  uint64
	began  time.Time // when the write that granted the hold was sent

	mu       sync.Mutex // protects the fields below
	nonce    string     // our entry's nonce, as our last write that landed left it
	pending  []string   // nonces of renewals whose outcome is unknown
	pendFrom instant    // when the first of them was sent
	deadline time.Time  // monotonic; less the time suspended since from
	from     instant
	etag     string  // the object as our last write left it ("" when unknown)
	rec      *record // the record of that write
	// readFirst: the last renewal found the object changed since our last
	// write (other holders renew too), so the next one reads before it
	// writes rather than send a PUT bound to fail.
	readFirst bool
	// contended: others were listed or waiting when we were granted, so
	// the object has most likely changed since our last write (a
	// reservation, another holder's renewal): read before writing (a GET
	// costs less than a PUT bound to be refused).
	contended bool

	writeMu    sync.Mutex // serialises renewals and the release
	stopRenew  context.CancelFunc
	renewerEnd chan struct{}
	timer      *time.Timer
	halted     bool
}

func (sl *sharedLock) newShare(etag string, rec *record, h *holder, start instant) *share {
	ctx, cancel := context.WithCancelCause(context.Background())
	ttl := h.ttl()
	return &share{
		sl: sl, ctx: ctx, cancel: cancel, units: h.Units, token: h.Token, began: start.mono,
		nonce: h.Nonce, deadline: start.mono.Add(ttl - drift(ttl)), from: start,
		etag: etag, rec: rec,
	}
}

// safeUntil is the end of the lease on the monotonic clock, brought
// forward by the time the system was suspended since it was set.
func (sh *share) safeUntil() time.Time {
	sh.mu.Lock()
	d, from := sh.deadline, sh.from
	sh.mu.Unlock()
	return d.Add(-from.suspendedSince())
}

// start arms the deadline, and the renewer when interval > 0.
func (sh *share) start(interval time.Duration) {
	if interval <= 0 {
		sh.watchDeadline()
		return
	}
	var stopCtx context.Context
	stopCtx, sh.stopRenew = context.WithCancel(context.Background())
	sh.renewerEnd = make(chan struct{})
	go sh.renewLoop(stopCtx, interval)
}

func (sh *share) watchDeadline() {
	left := time.Until(sh.safeUntil())
	if left <= 0 {
		sh.lose(fmt.Errorf("%w: the lease of %s ran out", ErrLeaseLost, sh.sl.lm.name()))
		return
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if !sh.halted {
		sh.timer = time.AfterFunc(min(left, suspendCheck), sh.watchDeadline)
	}
}

// halt stops the deadline timer or the renewer, waiting for the renewer.
func (sh *share) halt() {
	sh.mu.Lock()
	sh.halted = true
	if sh.timer != nil {
		sh.timer.Stop()
	}
	sh.mu.Unlock()
	if sh.stopRenew != nil {
		sh.stopRenew()
		<-sh.renewerEnd
	}
}

// lose ends the hold with err (matching ErrLeaseLost), and tells the
// LeaseLost hook once.
func (sh *share) lose(err error) {
	first := sh.ctx.Err() == nil
	if first {
		sh.sl.lm.log.Warn("s3lock: shared hold lost", "key", sh.sl.lm.key, "error", err)
	}
	sh.cancel(err)
	lm := sh.sl.lm
	if h := lm.hooks; first && h != nil && h.LeaseLost != nil && errors.Is(context.Cause(sh.ctx), ErrLeaseLost) {
		lm.guard("LeaseLost", func() {
			h.LeaseLost(LeaseLostInfo{Bucket: lm.bucket, Key: lm.key, Token: sh.token, Held: time.Since(sh.began), Cause: context.Cause(sh.ctx)})
		})
	}
}

// renewLoop renews about every interval until stopped or the hold is
// lost. Each wait is cut by a random part of a tenth of the interval, so
// holders that were granted together do not keep renewing together (their
// conditional writes on the one object would collide).
func (sh *share) renewLoop(stop context.Context, interval time.Duration) {
	defer close(sh.renewerEnd)
	jitter := func(d time.Duration) time.Duration { return d - rand.N(d/10+1) }
	due := time.Now().Add(jitter(interval))
	timer := time.NewTimer(min(time.Until(due), suspendCheck))
	defer timer.Stop()
	var failing failureRun
	for {
		select {
		case <-stop.Done():
			return
		case <-timer.C:
		}
		deadline := sh.safeUntil()
		if !time.Now().Before(deadline) {
			sh.lose(fmt.Errorf("%w: the lease of %s ran out before it could be renewed", ErrLeaseLost, sh.sl.lm.name()))
			return
		}
		if early := deadline.Add(-interval); early.Before(due) {
			due = early
		}
		if wait := time.Until(due); wait > 0 {
			timer.Reset(min(wait, suspendCheck))
			continue
		}
		rctx, cancel := context.WithDeadline(stop, deadline)
		err := sh.renew(rctx)
		cancel()
		if errors.Is(err, ErrLeaseLost) || stop.Err() != nil {
			return
		}
		wait := jitter(interval)
		if err != nil {
			failing.failed(sh.sl.lm.log, sh.sl.lm.key, err)
			wait = interval / 4
		} else {
			failing.recovered(sh.sl.lm.log, sh.sl.lm.key)
		}
		if left := time.Until(sh.safeUntil()); left < wait {
			wait = max(left, 0)
		}
		due = time.Now().Add(wait)
		timer.Reset(min(wait, suspendCheck))
	}
}

// find returns our entry in s: one with our id whose nonce is our last
// (recent: false) or a pending renewal's (recent: true, the renewal
// landed). nil when the record does not list us: the hold is lost.
func (sh *share) find(s *snapshot) (h *holder, landed bool) {
	if s.rec == nil || !s.rec.shared() {
		return nil, false
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for i := range s.rec.Holders {
		e := &s.rec.Holders[i]
		if e.ID != sh.sl.id {
			continue
		}
		switch {
		case e.Nonce == sh.nonce:
			return e, false
		case slices.Contains(sh.pending, e.Nonce):
			return e, true
		}
	}
	return nil, false
}

// lostError says why s shows our hold gone.
func (sh *share) lostError(s *snapshot) error {
	name := sh.sl.lm.name()
	switch {
	case !s.exists:
		return fmt.Errorf("%w: %s was deleted", ErrLeaseLost, name)
	case s.rec == nil:
		return fmt.Errorf("%w: %s was overwritten by an invalid object", ErrLeaseLost, name)
	case !s.rec.held():
		return fmt.Errorf("%w: %s was released by someone else (generation %d)", ErrLeaseLost, name, s.rec.Generation)
	case !s.rec.shared():
		return fmt.Errorf("%w: %s is now held exclusively by %q (generation %d)", ErrLeaseLost, name, s.rec.Owner, s.rec.Generation)
	}
	return fmt.Errorf("%w: %s no longer lists this holder (generation %d)", ErrLeaseLost, name, s.rec.Generation)
}

// current returns the object as our last write left it, when known, so
// that a write may try it before reading (nil: read first).
func (sh *share) current() *snapshot {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.etag == "" || sh.rec == nil || sh.readFirst || sh.contended {
		return nil
	}
	return &snapshot{exists: true, etag: sh.etag, rec: sh.rec}
}

// renew rewrites our entry with a fresh nonce, extending the lease from
// the moment before the request. The first try goes over the object as
// our last write left it; when someone has written since (412), it reads
// and writes again over what it found, keeping every other entry. On
// ErrLeaseLost the hold's context has been cancelled.
func (sh *share) renew(ctx context.Context) error {
	sh.writeMu.Lock()
	defer sh.writeMu.Unlock()
	lm := sh.sl.lm
	s := sh.current()
	var lastErr error
	for range maxRewrites {
		if s == nil {
			var err error
			if s, err = lm.read(ctx); err != nil {
				return errors.Join(lastErr, err)
			}
			h, landed := sh.find(s)
			if h == nil {
				err := sh.lostError(s)
				sh.lose(err)
				return err
			}
			if landed {
				sh.mu.Lock()
				sh.extendLocked(s.etag, s.rec, h.Nonce, sh.pendFrom)
				sh.mu.Unlock()
				return nil
			}
		}
		rec, mine := sh.rewrite(s, true)
		if mine == "" {
			// Not listed (cannot happen: s is our last write, or a read
			// that found us): never write a renewal without our entry.
			err := sh.lostError(s)
			sh.lose(err)
			return err
		}
		start := now()
		sh.mu.Lock()
		if len(sh.pending) == 0 {
			sh.pendFrom = start
		}
		sh.mu.Unlock()
		etag, f, err := lm.put(ctx, rec, condition{etag: s.etag})
		sh.mu.Lock()
		if s.seenAt.IsZero() { // the try over our last write
			sh.readFirst = f == failPrecondition
		}
		if f == failNone {
			sh.extendLocked(etag, rec, mine, start)
			sh.mu.Unlock()
			return nil
		}
		// An SDK retry of ours may have landed before the answer we got.
		sh.pending = append(sh.pending, mine)
		sh.etag = ""
		sh.mu.Unlock()
		lastErr = err
		switch {
		case f == failPermanent:
			return err
		case f == failConflict:
			pause(ctx)
		case f != failPrecondition && f != failNotFound && ctx.Err() != nil:
			return err
		}
		s = nil
	}
	return fmt.Errorf("s3lock: renewing %s: the record kept changing (%d attempts): %w", lm.name(), maxRewrites, lastErr)
}

// extendLocked records a write of ours that landed; sh.mu is held.
func (sh *share) extendLocked(etag string, rec *record, nonce string, start instant) {
	sh.etag, sh.rec, sh.nonce, sh.pending = etag, rec, nonce, nil
	ttl := sh.sl.lm.ttl
	if d := start.mono.Add(ttl - drift(ttl)); d.After(sh.deadline) {
		sh.deadline, sh.from = d, start
	}
}

// rewrite returns the record in s with our entry renewed (a fresh nonce,
// no Since; renew) or left out (release), every other entry stamped (see
// holder), and the nonce our entry now has ("" when left out or not
// listed). The entries keep their order.
func (sh *share) rewrite(s *snapshot, renew bool) (*record, string) {
	rec := *s.rec
	rec.Nonce = newNonce()
	rec.WrittenAt = sh.sl.lm.clock.Now()
	var nonce string
	rec.Holders = nil
	for _, h := range s.stampOthers(nil) {
		if h.ID == sh.sl.id {
			if !renew {
				continue
			}
			nonce = newNonce()[:16]
			h.Nonce, h.Since = nonce, 0
		}
		rec.Holders = append(rec.Holders, h)
	}
	rec.TTLMillis = max(maxHolderTTL(rec.Holders), 1)
	return &rec, nonce
}

// release removes our entry, with one conditional PUT when nobody wrote
// since our last write, else a GET and a PUT per change. When no other
// holder is listed it writes a free record (same generation, keeping a
// waiter's reservation). On failure the entry stays until its lease runs
// out.
func (sh *share) release(ctx context.Context) error {
	sh.writeMu.Lock()
	defer sh.writeMu.Unlock()
	lm := sh.sl.lm
	s := sh.current()
	var lastErr error
	uncertain := false
	for range maxRewrites {
		if s == nil {
			var err error
			if s, err = lm.read(ctx); err != nil {
				return errors.Join(lastErr, err)
			}
			if h, _ := sh.find(s); h == nil {
				if uncertain && s.seenAt.Before(sh.safeUntil()) {
					// Our release landed: nobody could have judged our
					// lease expired yet.
					return nil
				}
				return sh.lostError(s)
			}
		}
		rec, _ := sh.rewrite(s, false)
		if len(rec.Holders) == 0 {
			rec.State, rec.Holders, rec.Limit = stateFree, nil, 0
			rec.TTLMillis = max(s.rec.TTLMillis, 1)
		}
		var attempts atomic.Int32
		_, f, err := lm.put(ctx, rec, condition{etag: s.etag}, countAttempts(&attempts))
		if f == failNone {
			return nil
		}
		lastErr = err
		switch f {
		case failPermanent:
			return err
		case failConflict:
			// A plain refusal, unless the SDK had retried.
			uncertain = uncertain || attempts.Load() != 1
			pause(ctx)
		case failPrecondition, failNotFound:
			uncertain = uncertain || attempts.Load() != 1
		default:
			uncertain = true
			if ctx.Err() != nil {
				rctx, cancel := resolveContext(ctx, lm.resolveTimeout)
				back, rerr := lm.read(rctx)
				cancel()
				if rerr == nil {
					if h, _ := sh.find(back); h == nil && back.seenAt.Before(sh.safeUntil()) {
						return nil
					}
				}
				return err
			}
		}
		s = nil
	}
	return fmt.Errorf("s3lock: releasing %s: gave up after %d attempts: %w", lm.name(), maxRewrites, lastErr)
}

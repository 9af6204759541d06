// Releasing a lease, and handing what a failed release may have left in
// S3 to the lease manager.

package lastrelease

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// releaseContext returns the context a release runs under: ctx's values,
// but not its cancellation, so a write in flight when ctx ends is not cut
// short (its outcome would then be unknown) and the attempts after it do
// not go out dead. It ends timeout after ctx does (after now if ctx has
// already ended), or when cancel is called.
func releaseContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var t *time.Timer
	var mu sync.Mutex
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if rctx.Err() == nil {
			t = time.AfterFunc(timeout, cancel)
		}
	})
	return rctx, func() {
		stop()
		cancel() // first: a callback that runs from now on starts no timer
		mu.Lock()
		if t != nil {
			t.Stop()
		}
		mu.Unlock()
	}
}

// release overwrites our record with a free one (same generation, so the
// next holder gets generation+1). On success it returns the free record,
// which the next acquire of this Mutex tries first.
func (l *lease) release(ctx context.Context) (*snapshot, error) {
	var lastErr error
	// sent holds the nonces of the free records this release has tried to
	// write; uncertain is set once one of them may have been applied
	// without our hearing of it (a lost answer, a 5xx, or a 412/409 that
	// came after an SDK retry).
	var sent []string
	uncertain := false
	rewrites := 0
	for attempt := 0; attempt < maxWriteAttempts; attempt++ {
		l.mu.Lock()
		rec, etag := l.rec, l.etag
		l.mu.Unlock()
		rec.State = stateFree
		rec.Nonce = newNonce()
		rec.AcquiredAt = time.Time{}
		rec.WrittenAt = l.lm.clock.Now()
		var attempts atomic.Int32
		if attempt == 0 {
			l.lm.pace.noteHold(time.Since(l.began))
		}
		newETag, f, err := l.lm.put(ctx, &rec, condition{etag: etag}, countAttempts(&attempts))
		sent = append(sent, rec.Nonce)
		switch f {
		case failNone:
			return &snapshot{exists: true, etag: newETag, rec: &rec}, nil
		case failPrecondition, failNotFound, failConflict:
			// A plain refusal, unless the SDK had retried.
			uncertain = uncertain || attempts.Load() != 1
		case failPermanent:
		default:
			uncertain = true
		}
		switch f {
		case failConflict:
			lastErr = err
			pause(ctx)
			continue
		case failPermanent:
			l.orphan()
			return nil, err
		}
		rctx, cancel := resolveContext(ctx, l.lm.resolveTimeout)
		s, rerr := l.lm.read(rctx)
		cancel()
		if rerr != nil {
			l.orphan()
			return nil, errors.Join(err, rerr)
		}
		if s.rec != nil && slices.Contains(sent, s.rec.Nonce) {
			return s, nil
		}
		if uncertain && l.landed(s) {
			l.lm.log.Warn("s3lock: a release reported as failed had been applied; the next holder has moved in", "key", l.lm.key, "error", err)
			return nil, nil
		}
		_, rewritten := l.ours(s)
		if aerr := l.adopt(s); aerr != nil {
			return nil, aerr
		}
		// Our record, rewritten by a waiter reserving the next turn, or a
		// renewal of ours that had been applied after all: release over
		// it. Reservations are the others' progress, not failures of ours:
		// they do not use up the attempts (an older waiter may take a
		// reservation over from a younger one, so several can come in
		// during one release).
		if rewritten && rewrites < maxRewrites {
			rewrites++
			attempt--
		}
		lastErr = err
	}
	l.orphan()
	return nil, fmt.Errorf("s3lock: releasing %s: gave up after %d attempts: %w", l.lm.name(), maxWriteAttempts, lastErr)
}

// orphan hands the held records this lease may have left in S3 (its last
// record, and a renewal whose outcome is unknown) to the lease manager, so
// the next acquire of this Mutex can take its own stranded hold back at
// once instead of waiting out the TTL. The free records a failed release
// may have left need no such care: a free record is anyone's to take.
func (l *lease) orphan() {
	l.mu.Lock()
	os := []orphan{{nonce: l.rec.Nonce, cond: condition{etag: l.etag}}}
	if p := l.pending; p.nonce != "" {
		os = append(os, orphan{nonce: p.nonce, cond: condition{etag: p.etag}})
	}
	l.mu.Unlock()
	l.lm.orphans.add(os...)
}

// landed reports whether s, read back after a release attempt whose
// outcome is unknown, proves that the release was applied: the object
// carries a later generation than ours, and was read before our lease
// could have expired, so no contender can have taken our hold over by
// expiry; only our release let the later holders in. (An operator's
// ForceUnlock racing the release would look the same; the release is then
// reported done.)
func (l *lease) landed(s *snapshot) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return s.rec != nil && s.rec.Generation > l.rec.Generation && s.seenAt.Before(l.deadline.Add(-l.from.suspendedSince()))
}

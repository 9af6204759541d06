// How Lock waits: one attempt after another, paced, until it holds the
// lock, ctx ends, S3 fails for too long, or a backoff gives up.

package lastrelease

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// wait runs Lock's attempts.
func (m *Mutex) wait(ctx context.Context) (held *lease, _ error) {
	b := m.opts.backoff
	if b == nil {
		b = backoff.NewConstantBackOff(m.opts.retryInterval)
	}
	b.Reset()
	w := m.lm.newWaiter(m.opts.retryInterval)
	defer func() {
		if held == nil {
			m.lm.withdraw(ctx, w)
		}
	}()
	var failing failureRun
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var last error // the last attempt's error that ctx did not cut short
	for {
		if ctx.Err() != nil {
			return nil, m.gaveUp(ctx, last)
		}
		l, a, err := m.lm.acquire(ctx, w)
		if l != nil {
			failing.recovered(m.lm.log, m.lm.key)
			return l, nil
		}
		if a.held != nil {
			err = m.lm.lockedError(a)
		}
		if ctx.Err() != nil {
			// An attempt ctx cut short says less than the one before.
			return nil, m.gaveUp(ctx, cmp.Or(last, err))
		}
		if err != nil {
			last = err
		}
		if stop := m.failed(&failing, a, err); stop != nil {
			return nil, stop
		}
		pause := b.NextBackOff()
		if pause == backoff.Stop {
			if a.yielded && !w.force {
				// The lock is free: take it rather than give up.
				w.force = true
				continue
			}
			return nil, cmp.Or(last, error(&LockedError{Key: m.lm.key}))
		}
		timer.Reset(m.pause(w, a, pause))
		select {
		case <-timer.C:
		case <-ctx.Done():
			return nil, m.gaveUp(ctx, last)
		}
	}
}

// failed accounts for an attempt's outcome in the run of S3 failures: an
// attempt that reached S3 ends the run; a failure retrying cannot fix, or
// one that ends a run longer than WithFailureTimeout, is returned for Lock
// to give up with.
func (m *Mutex) failed(failing *failureRun, a attempt, err error) error {
	switch {
	case a.held != nil || a.yielded:
		failing.recovered(m.lm.log, m.lm.key)
	case isPermanent(err):
		return err
	default:
		if d := failing.failed(m.lm.log, m.lm.key, err); m.opts.failureTimeout > 0 && d >= m.opts.failureTimeout {
			return fmt.Errorf("s3lock: Lock %s: gave up after S3 failed for %v without a break: %w", m.lm.name(), d.Round(time.Millisecond), err)
		}
	}
	return nil
}

// pause returns how long to wait before the next attempt: what the backoff
// asks, never more than the retry interval, sooner when the waiter's turn
// is near (see pollIn) or the hold found can be judged expired earlier.
func (m *Mutex) pause(w *waiter, a attempt, backoff time.Duration) time.Duration {
	next := min(backoff, m.opts.retryInterval)
	switch {
	case a.yielded:
		next = w.pollIn(next)
	case a.held != nil:
		next = w.pollIn(next)
		if a.left > 0 && a.left < next {
			next = a.left
		}
	}
	return next
}

// gaveUp is Lock's error when ctx ends while it waits. It matches
// ctx.Err() and, when there was one, the last attempt's error: a
// *LockedError naming the holder (so also ErrLocked), or the S3 failure
// (matching ErrUnavailable when S3 could not be reached).
func (m *Mutex) gaveUp(ctx context.Context, last error) error {
	if last == nil {
		return fmt.Errorf("s3lock: Lock %s: %w", m.lm.name(), ctx.Err())
	}
	return fmt.Errorf("s3lock: Lock %s: %w (last attempt: %w)", m.lm.name(), ctx.Err(), last)
}

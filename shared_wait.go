// The calls of a shared hold: one attempt, waiting, release; what
// Semaphore and the read side of RWMutex are made of.

package s3lock

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// checkUnits validates a request for n units.
func (sl *sharedLock) checkUnits(n int64) error {
	if n < 1 || n > sl.capacity() {
		return fmt.Errorf("%w: %d units requested; must be 1..%d", ErrInvalidArgument, n, sl.capacity())
	}
	return nil
}

// tryAcquire makes one attempt to take n units, between the hooks of op.
func (sl *sharedLock) tryAcquire(ctx context.Context, op Op, n int64) error {
	if h := sl.lm.hooks; h != nil {
		return hookAcquire(h, ctx, op, sl.lm, func(ctx context.Context) (*share, error) { return sl.tryAcquireHold(ctx, op, n) })
	}
	_, err := sl.tryAcquireHold(ctx, op, n)
	return err
}

func (sl *sharedLock) tryAcquireHold(ctx context.Context, op Op, n int64) (*share, error) {
	if err := sl.checkUnits(n); err != nil {
		return nil, err
	}
	select {
	case sl.turn <- struct{}{}:
	default:
		return nil, &LockedError{Key: sl.lm.key, Owner: sl.lm.owner, Local: true, Generation: sl.token()}
	}
	if err := ctx.Err(); err != nil {
		<-sl.turn
		return nil, fmt.Errorf("s3lock: %s %s: %w", op, sl.lm.name(), err)
	}
	if sl.opts.probe {
		if err := sl.probe.check(ctx, sl.lm.client, sl.lm.bucket, sl.lm.key); err != nil {
			<-sl.turn
			return nil, err
		}
	}
	sh, v, s, err := sl.claimShared(ctx, n, nil)
	if sh == nil {
		<-sl.turn
		if err == nil {
			err = sl.lockedError(s, v)
		}
		return nil, err
	}
	sl.install(sh)
	return sh, nil
}

// acquire takes n units, waiting until they are free, between the hooks
// of op.
func (sl *sharedLock) acquire(ctx context.Context, op Op, n int64) error {
	if h := sl.lm.hooks; h != nil {
		return hookAcquire(h, ctx, op, sl.lm, func(ctx context.Context) (*share, error) { return sl.acquireHold(ctx, op, n) })
	}
	_, err := sl.acquireHold(ctx, op, n)
	return err
}

func (sl *sharedLock) acquireHold(ctx context.Context, op Op, n int64) (*share, error) {
	if err := sl.checkUnits(n); err != nil {
		return nil, err
	}
	select {
	case sl.turn <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("s3lock: %s %s: %w", op, sl.lm.name(), ctx.Err())
	}
	sh, err := sl.wait(ctx, op, n)
	if err != nil {
		<-sl.turn
		return nil, err
	}
	sl.install(sh)
	return sh, nil
}

// wait runs the attempts of acquire, paced as Mutex.Lock's: never more
// than one retry interval apart (sooner when a lease in the way can be
// judged expired sooner), and at most a quarter of reservationTTL apart
// once this waiter has reserved the next turn.
func (sl *sharedLock) wait(ctx context.Context, op Op, n int64) (held *share, _ error) {
	if sl.opts.probe {
		if err := sl.probe.check(ctx, sl.lm.client, sl.lm.bucket, sl.lm.key); err != nil {
			return nil, err
		}
	}
	b := sl.opts.backoff
	if b == nil {
		b = backoff.NewConstantBackOff(sl.opts.retryInterval)
	}
	b.Reset()
	w := &sharedWaiter{sl: sl, id: newNonce()[:16]}
	defer func() {
		if held == nil {
			sl.withdrawShared(ctx, w)
		}
	}()
	var failing failureRun
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var last error
	gaveUp := func(last error) error {
		if last == nil {
			return fmt.Errorf("s3lock: %s %s: %w", op, sl.lm.name(), ctx.Err())
		}
		return fmt.Errorf("s3lock: %s %s: %w (last attempt: %w)", op, sl.lm.name(), ctx.Err(), last)
	}
	for {
		if ctx.Err() != nil {
			return nil, gaveUp(last)
		}
		sh, v, s, err := sl.claimShared(ctx, n, w)
		if sh != nil {
			failing.recovered(sl.lm.log, sl.lm.key)
			return sh, nil
		}
		if ctx.Err() != nil {
			return nil, gaveUp(cmp.Or(last, err))
		}
		if err == nil {
			err = sl.lockedError(s, v)
			last = err
			failing.recovered(sl.lm.log, sl.lm.key)
		} else {
			last = err
			if isPermanent(err) || errors.Is(err, ErrLimitConflict) {
				return nil, err
			}
			if d := failing.failed(sl.lm.log, sl.lm.key, err); sl.opts.failureTimeout > 0 && d >= sl.opts.failureTimeout {
				return nil, fmt.Errorf("s3lock: %s %s: gave up after S3 failed for %v without a break: %w", op, sl.lm.name(), d.Round(time.Millisecond), err)
			}
		}
		pause := b.NextBackOff()
		if pause == backoff.Stop {
			return nil, last
		}
		pause = w.pollIn(min(pause, sl.opts.retryInterval))
		if v.left > 0 && v.left < pause {
			pause = v.left
		}
		timer.Reset(pause)
		select {
		case <-timer.C:
		case <-ctx.Done():
			return nil, gaveUp(last)
		}
	}
}

// install publishes the hold once its deadline timer or renewer runs.
func (sl *sharedLock) install(sh *share) {
	sh.start(sl.opts.autoRenew)
	sl.mu.Lock()
	sl.hold = sh
	sl.mu.Unlock()
}

// release gives back the units held, between the hooks of op. Whatever
// it returns, nothing is held afterwards and the hold's context is
// cancelled.
func (sl *sharedLock) release(ctx context.Context, op Op) error {
	if h := sl.lm.hooks; h != nil {
		return hookRelease(h, ctx, op, sl.lm, sl.token(), func(ctx context.Context) (*share, error) { return sl.releaseHold(ctx, op) })
	}
	_, err := sl.releaseHold(ctx, op)
	return err
}

func (sl *sharedLock) releaseHold(ctx context.Context, op Op) (*share, error) {
	sl.mu.Lock()
	sh := sl.hold
	sl.hold = nil
	sl.mu.Unlock()
	if sh == nil {
		return nil, fmt.Errorf("s3lock: %s %s: %w", op, sl.lm.name(), ErrNotHeld)
	}
	return sh, sl.finishRelease(ctx, op, sh)
}

// finishRelease releases sh, which the value no longer lists as its hold.
func (sl *sharedLock) finishRelease(ctx context.Context, op Op, sh *share) error {
	defer func() { <-sl.turn }()
	sh.halt()
	var lost error
	if sh.ctx.Err() != nil {
		lost = context.Cause(sh.ctx)
	}
	rctx, cancel := releaseContext(ctx, sl.opts.releaseTimeout)
	defer cancel()
	err := sh.release(rctx)
	if err != nil {
		if errors.Is(err, ErrLeaseLost) {
			sh.lose(err) // the release found the hold gone: a loss
		} else {
			sh.cancel(ErrLeaseLost)
		}
		if lost != nil && !errors.Is(err, ErrLeaseLost) {
			err = errors.Join(lost, err)
		}
		return fmt.Errorf("s3lock: %s %s: %w", op, sl.lm.name(), err)
	}
	sh.cancel(ErrNotHeld)
	if lost != nil {
		return fmt.Errorf("s3lock: %s %s: the hold had ended before (released since): %w", op, sl.lm.name(), lost)
	}
	return nil
}

// context is the current hold's context, or one already cancelled with
// ErrNotHeld.
func (sl *sharedLock) context() context.Context {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.hold == nil {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(ErrNotHeld)
		return ctx
	}
	return sl.hold.ctx
}

// token is the current hold's fencing token, 0 when none.
func (sl *sharedLock) token() uint64 {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.hold == nil {
		return 0
	}
	return sl.hold.token
}

// joinable reports whether another RLock may join the value's read hold:
// one GET, and no reservation of someone else's keeping a unit from new
// shared holds (a waiting writer's).
func (sl *sharedLock) joinable(ctx context.Context) (bool, error) {
	s, err := sl.lm.read(ctx)
	if err != nil {
		return false, err
	}
	if s.rec == nil || !s.rec.shared() {
		return false, nil // our hold is gone; RLock finds it lost
	}
	var used int64
	for _, h := range s.rec.Holders {
		used += h.Units // at most maxHolders units of 1 each
	}
	return !sl.reservedAway(s, nil, sl.capacity()-used, 1), nil
}

// held reports whether the value holds units whose lease is still on.
func (sl *sharedLock) held() bool {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return sl.hold != nil && sl.hold.ctx.Err() == nil
}

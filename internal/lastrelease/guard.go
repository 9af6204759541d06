package lastrelease

import (
	"context"
	"errors"
	"time"
)

// WithLock acquires the lock with [Mutex.Lock], runs fn, and releases the
// lock, whatever fn does.
//
// fn gets a context derived from ctx that is also cancelled, with cause
// [ErrLeaseLost] (see [context.Cause]), when the hold ends before fn
// returns: at the end of the lease, time the machine spent suspended
// included, or when a renewal finds the lock lost. Without
// [WithAutoRenew] its deadline is the end of the lease (one TTL from the
// acquire, less a drift allowance) or ctx's deadline if that is earlier;
// with renewal it has no deadline of its own and is cancelled if renewal
// fails before the lease runs out.
//
// WithLock returns the error of Lock if it could not acquire, else fn's
// error joined with Unlock's (nil when both are nil); both stay matchable
// with errors.Is. If fn panics, the lock is released and the panic goes
// on. If ctx is already done when fn returns, the release still happens,
// bounded by [WithReleaseTimeout].
func (m *Mutex) WithLock(ctx context.Context, fn func(ctx context.Context) error) (err error) {
	if err := m.Lock(ctx); err != nil {
		return err
	}
	// fn's context ends when the hold does: the hold's context is
	// cancelled at the end of the lease (suspended time included, see the
	// package documentation) or when a renewal finds the lock lost.
	// Without renewal, the end of the lease is also fn's deadline, so fn
	// can see it with ctx.Deadline().
	parent, cancelDeadline := ctx, context.CancelFunc(func() {})
	if m.opts.autoRenew <= 0 {
		parent, cancelDeadline = context.WithDeadlineCause(ctx, m.SafeUntil(), ErrLeaseLost)
	}
	hold := m.Context()
	fnCtx, cancelCause := context.WithCancelCause(parent)
	stop := context.AfterFunc(hold, func() {
		cause := context.Cause(hold)
		if !errors.Is(cause, ErrLeaseLost) {
			return
		}
		if dl, ok := parent.Deadline(); ok && !time.Now().Before(dl) {
			// The lease ran out at fn's deadline, which ends fn's
			// context itself (DeadlineExceeded, cause ErrLeaseLost).
			return
		}
		cancelCause(cause)
	})
	cancel := func() { stop(); cancelCause(nil); cancelDeadline() }
	// A deferred call runs on return, on panic (which then goes on with
	// its original stack) and on runtime.Goexit alike.
	defer func() {
		cancel()
		if uerr := m.Unlock(ctx); uerr != nil {
			err = errors.Join(err, uerr)
		}
	}()
	return fn(fnCtx)
}

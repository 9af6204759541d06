package prevrelease

import (
	"context"
	"errors"
)

// WithLock acquires the lock with [Mutex.Lock], runs fn, and releases the
// lock, whatever fn does.
//
// fn gets a context derived from ctx that is also cancelled, with cause
// [ErrLeaseLost] (see [context.Cause]), when the hold ends before fn
// returns. Without [WithAutoRenew] its deadline is the end of the lease
// (one TTL from the acquire, less a drift allowance) or ctx's deadline if
// that is earlier; with renewal it has no deadline of its own and is
// cancelled if renewal fails before the lease runs out.
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
	var fnCtx context.Context
	var cancel context.CancelFunc
	if m.opts.autoRenew <= 0 {
		// The lease ends at SafeUntil unless renewed: that is fn's deadline.
		fnCtx, cancel = context.WithDeadlineCause(ctx, m.SafeUntil(), ErrLeaseLost)
	} else {
		// The renewer cancels the hold's context when the lease is lost.
		hold := m.Context()
		var cancelCause context.CancelCauseFunc
		fnCtx, cancelCause = context.WithCancelCause(ctx)
		stop := context.AfterFunc(hold, func() {
			if cause := context.Cause(hold); errors.Is(cause, ErrLeaseLost) {
				cancelCause(cause)
			}
		})
		cancel = func() { stop(); cancelCause(nil) }
	}
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

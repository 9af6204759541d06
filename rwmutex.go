package s3lock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// RWMutex is a reader/writer lock in one S3 object. Any number of readers
// hold it at once (RLock), each with its own lease, or one writer (Lock)
// does. A writer's hold is a Mutex's: a Mutex and `s3lock run` on the
// same key exclude the writer and the readers alike, and a Mutex finds a
// read-held key held ([ErrLocked]).
//
// As with sync.RWMutex, once a writer waits, new readers wait behind it:
// the waiting writer reserves the next turn in the object, and readers
// do not join a hold while it is reserved (a reservation lasts while its
// waiter polls; it is ignored 2 s after its turn came without being
// taken).
//
// Goroutines that share one RWMutex value share its read hold: the first
// RLock acquires it, later ones join it after one GET shows no writer
// waiting (otherwise they wait for the hold to end, then queue behind the
// writer), and the last RUnlock releases it. A value does not upgrade:
// Lock while the same value holds the read lock waits for that read lock
// too (as sync.RWMutex deadlocks), until ctx ends.
//
// Create it with [NewRWMutex].
type RWMutex struct {
	w *Mutex
	r *sharedLock

	mu        sync.Mutex    // protects the fields below
	readers   int           // RLocks sharing r's hold
	acquiring bool          // an RLock is acquiring r's hold
	closed    bool          // a writer waits: no more RLocks join the hold
	changed   chan struct{} // closed when acquiring or the hold ends
	writers   int           // Lock calls of this value waiting or holding
}

// NewRWMutex returns an RWMutex for the lock object at bucket/key, with
// the options of [New] (WithValue excepted). It makes no S3 request. On
// failure it returns an error matching [ErrInvalidArgument].
func NewRWMutex(client S3API, bucket, key string, opts ...Option) (*RWMutex, error) {
	r, err := newSharedLock(client, bucket, key, 0, opts)
	if err != nil {
		return nil, err
	}
	w, err := New(client, bucket, key, opts...)
	if err != nil {
		return nil, err
	}
	// One owner name for both sides (the default one is random).
	w.lm.owner = r.lm.owner
	return &RWMutex{w: w, r: r, changed: make(chan struct{})}, nil
}

// RLock takes a read hold, waiting while a writer holds the lock or waits
// for it. Errors are those of [Mutex.Lock], and one matching
// [ErrLeaseLost] when the value's read hold, which other goroutines still
// have RLocked, was lost (RUnlock them first).
func (rw *RWMutex) RLock(ctx context.Context) error { return rw.rlock(ctx, true) }

// TryRLock makes one attempt at a read hold: a *LockedError (ErrLocked)
// when a writer holds the lock or waits for it.
func (rw *RWMutex) TryRLock(ctx context.Context) error { return rw.rlock(ctx, false) }

func (rw *RWMutex) rlock(ctx context.Context, wait bool) error {
	op := OpTryRLock
	if wait {
		op = OpRLock
	}
	var failing failureRun
	for {
		rw.mu.Lock()
		switch {
		case rw.readers > 0 && !rw.r.held():
			// The value's read hold was lost (its context says why);
			// its readers must RUnlock it before the value holds again.
			rw.mu.Unlock()
			return fmt.Errorf("s3lock: %s %s: the read hold of this RWMutex was lost and is still RLocked: %w", op, rw.r.lm.name(), context.Cause(rw.r.context()))
		case rw.readers > 0 && rw.writers == 0 && !rw.closed:
			rw.mu.Unlock()
			// Join the value's read hold, unless a writer (or a Mutex)
			// waits for the key: then new readers wait behind it, as
			// with sync.RWMutex, and the hold ends with its last reader.
			ok, err := rw.r.joinable(ctx)
			if err != nil {
				// As Lock does: a waiting RLock retries S3 failures until
				// ctx ends or the failure timeout runs out.
				d := failing.failed(rw.r.lm.log, rw.r.lm.key, err)
				if !wait || isPermanent(err) || ctx.Err() != nil || (rw.r.opts.failureTimeout > 0 && d >= rw.r.opts.failureTimeout) {
					return fmt.Errorf("s3lock: %s %s: %w", op, rw.r.lm.name(), err)
				}
				t := time.NewTimer(rw.r.opts.retryInterval)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return fmt.Errorf("s3lock: %s %s: %w (last attempt: %w)", op, rw.r.lm.name(), ctx.Err(), err)
				}
				continue
			}
			failing.recovered(rw.r.lm.log, rw.r.lm.key)
			rw.mu.Lock()
			if !ok {
				rw.closed = true
			} else if rw.readers > 0 && !rw.closed && rw.r.held() {
				rw.readers++
				rw.mu.Unlock()
				return nil
			}
			rw.mu.Unlock()
			continue
		case rw.readers > 0 || rw.acquiring:
			ch := rw.changed
			rw.mu.Unlock()
			if !wait {
				return &LockedError{Key: rw.r.lm.key, Owner: rw.r.lm.owner, Local: true}
			}
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return fmt.Errorf("s3lock: %s %s: %w", op, rw.r.lm.name(), ctx.Err())
			}
		}
		rw.acquiring = true
		rw.mu.Unlock()
		var err error
		if wait {
			err = rw.r.acquire(ctx, op, 1)
		} else {
			err = rw.r.tryAcquire(ctx, op, 1)
		}
		rw.mu.Lock()
		if err == nil {
			rw.readers, rw.closed = 1, false
		}
		rw.acquiring = false
		rw.notifyLocked()
		rw.mu.Unlock()
		return err
	}
}

// notifyLocked wakes the RLocks waiting for the value's read hold to be
// acquired or to end; rw.mu is held.
func (rw *RWMutex) notifyLocked() {
	close(rw.changed)
	rw.changed = make(chan struct{})
}

// RUnlock ends one RLock; the last one of the value releases its read
// hold. It returns an error matching [ErrNotHeld] without a read hold,
// and errors as [Mutex.Unlock] otherwise.
func (rw *RWMutex) RUnlock(ctx context.Context) error {
	rw.mu.Lock()
	if rw.readers == 0 {
		rw.mu.Unlock()
		return fmt.Errorf("s3lock: RUnlock %s: %w", rw.r.lm.name(), ErrNotHeld)
	}
	rw.readers--
	if rw.readers > 0 {
		rw.mu.Unlock()
		return nil
	}
	// No RLock joins the hold from here on: one that comes now waits for
	// this release (it needs the value's turn) and acquires anew.
	rw.acquiring = true
	rw.mu.Unlock()
	err := rw.r.release(ctx, OpRUnlock)
	rw.mu.Lock()
	rw.acquiring = false
	rw.notifyLocked()
	rw.mu.Unlock()
	return err
}

// Lock takes the write hold, waiting until no reader or writer holds the
// lock; see [Mutex.Lock].
func (rw *RWMutex) Lock(ctx context.Context) error {
	rw.addWriter(1)
	err := rw.w.Lock(ctx)
	if err != nil {
		rw.addWriter(-1)
	}
	return err
}

// TryLock makes one attempt at the write hold; see [Mutex.TryLock].
func (rw *RWMutex) TryLock(ctx context.Context) error {
	rw.addWriter(1)
	err := rw.w.TryLock(ctx)
	if err != nil {
		rw.addWriter(-1)
	}
	return err
}

// Unlock releases the write hold; see [Mutex.Unlock].
func (rw *RWMutex) Unlock(ctx context.Context) error {
	err := rw.w.Unlock(ctx)
	if !errorsIsNotHeldOnly(err) {
		rw.addWriter(-1)
	}
	return err
}

func (rw *RWMutex) addWriter(d int) {
	rw.mu.Lock()
	rw.writers += d
	rw.mu.Unlock()
}

// Owner returns the owner name of rw's holds, as [WithOwner] set it or
// the default.
func (rw *RWMutex) Owner() string { return rw.r.lm.owner }

// HolderID returns the ID of rw's read hold in the lock object, as
// [LockStatus].Holders lists it. It is fixed for the life of rw.
func (rw *RWMutex) HolderID() string { return rw.r.id }

// Context returns the context of the current hold, the write hold's when
// rw holds it, else the read hold's; as [Mutex.Context]. When rw holds
// neither it is already cancelled with cause [ErrNotHeld].
func (rw *RWMutex) Context() context.Context {
	if rw.w.Token() != 0 {
		return rw.w.Context()
	}
	return rw.r.context()
}

// Token returns the fencing token of the current hold (the write hold's,
// else the read hold's), 0 when none.
func (rw *RWMutex) Token() uint64 {
	if t := rw.w.Token(); t != 0 {
		return t
	}
	return rw.r.token()
}

// errorsIsNotHeldOnly reports an Unlock that found no write hold.
func errorsIsNotHeldOnly(err error) bool {
	return err != nil && errors.Is(err, ErrNotHeld) && !errors.Is(err, ErrLeaseLost)
}

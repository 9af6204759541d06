package s3lock

import (
	"context"
	"fmt"
)

// Semaphore is a counting semaphore in one S3 object: at most limit units
// are held at once, across all processes that use the key with the same
// limit. Each holder has its own lease, renewed and judged as a Mutex's
// is: a holder that stops renewing loses its units one TTL (plus the
// margins) after its last write, and not before. Every acquisition gets
// a fencing token (Token) larger than every earlier grant's on the key.
//
// A Semaphore value holds at most one acquisition at a time; Release
// gives back all of it. Goroutines sharing a value take turns, as with a
// Mutex; use one value per concurrent holder.
//
// Waiters are served about in arrival order: the oldest reserves the next
// turn in the object, and the units it needs are then left to it, so a
// large request is not overtaken forever by small ones. Mutexes, the
// writers of an RWMutex and `s3lock run` on the same key are exclusive:
// they wait until no unit is held, and units are granted only when they
// hold nothing.
//
// One object lists every holder, in at most 4 KiB: 27 holders always fit
// (30 with default owner names on a short host name, 33 with owners of a
// few bytes); a grant that would not fit waits (TryAcquire: ErrLocked).
// Every grant, renewal and release is a conditional write on that one
// object, so a key sustains a few dozen of them a second: see
// BENCHMARKS.md and docs/s3-semantics.md.
//
// Create it with [NewSemaphore].
type Semaphore struct {
	sl *sharedLock
}

// NewSemaphore returns a Semaphore of limit units for the lock object at
// bucket/key. It takes the options of [New] (WithValue excepted). It makes
// no S3 request. On failure (a limit ≤ 0, a bad bucket, key or option) it
// returns an error matching [ErrInvalidArgument].
func NewSemaphore(client S3API, bucket, key string, limit int64, opts ...Option) (*Semaphore, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: semaphore limit must be positive, got %d", ErrInvalidArgument, limit)
	}
	sl, err := newSharedLock(client, bucket, key, limit, opts)
	if err != nil {
		return nil, err
	}
	return &Semaphore{sl: sl}, nil
}

// Limit returns the number of units the semaphore shares.
func (s *Semaphore) Limit() int64 { return s.sl.limit }

// Key returns the lock object's key.
func (s *Semaphore) Key() string { return s.sl.lm.key }

// Owner returns the owner name s writes into its entry (cut to 32 bytes
// there), as [WithOwner] set it or the default.
func (s *Semaphore) Owner() string { return s.sl.lm.owner }

// HolderID returns the ID of s's entry in the lock object, as
// [LockStatus].Holders lists it and [ForceUnlockHolder] takes it. It is
// fixed for the life of s.
func (s *Semaphore) HolderID() string { return s.sl.id }

// Acquire takes n units, waiting until they are free. It polls as
// [Mutex.Lock] does (never more than one retry interval apart) and retries
// through S3 failures until ctx ends or [WithFailureTimeout] runs out.
//
// On failure s holds nothing, and the error matches [ErrInvalidArgument]
// for n outside 1..limit; [ErrLimitConflict] (a *LimitConflictError) when
// the object's live holders use another limit (nothing is written);
// ctx.Err() and the last attempt's error when ctx ends; otherwise what
// Mutex.Lock returns for the same failure.
func (s *Semaphore) Acquire(ctx context.Context, n int64) error {
	return s.sl.acquire(ctx, OpAcquire, n)
}

// TryAcquire makes one attempt to take n units. When they are not free
// (or s already holds units, Local), it returns a *LockedError matching
// [ErrLocked]; other errors as for Acquire. A waiter's reservation of the
// next turn is honoured: units it needs are not taken.
func (s *Semaphore) TryAcquire(ctx context.Context, n int64) error {
	return s.sl.tryAcquire(ctx, OpTryAcquire, n)
}

// Release gives back the units s holds, with a conditional PUT (after a
// GET when another holder wrote since). It returns an error matching
// [ErrNotHeld] when s holds nothing, and [ErrLeaseLost] when the hold had
// ended (its lease ran out, or it was broken). Whatever it returns, s
// holds nothing afterwards and its hold context is cancelled. Like
// Unlock, it is not cut short by ctx (see [WithReleaseTimeout]).
func (s *Semaphore) Release(ctx context.Context) error {
	return s.sl.release(ctx, OpRelease)
}

// Context returns a context that is cancelled when the current hold ends,
// as [Mutex.Context]: with cause [ErrLeaseLost] when its lease runs out or
// its entry is found gone, [ErrNotHeld] after Release. When s holds
// nothing it is already cancelled with cause ErrNotHeld.
func (s *Semaphore) Context() context.Context { return s.sl.context() }

// Token returns the fencing token of the current hold (0 when none): the
// generation its grant wrote, larger than that of every earlier grant of
// the key, Mutex grants included.
func (s *Semaphore) Token() uint64 { return s.sl.token() }

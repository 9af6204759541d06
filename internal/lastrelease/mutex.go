package lastrelease

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"
)

// Mutex is a lock kept in one S3 object, excluding every other Mutex on the
// same bucket and key, in this process or any other. Within one process it
// behaves like sync.Mutex: a second goroutine's Lock on the same *Mutex
// waits, without S3 traffic, for the first one's Unlock. Its methods take
// a context, and report failures as errors where sync.Mutex panics.
//
// A Mutex is safe for concurrent use. Create it with [New].
type Mutex struct {
	lm   *lockObject
	opts options
	// turn has capacity 1. A token in it means a goroutine of this process
	// holds the lock through this Mutex or is acquiring it.
	turn chan struct{}

	probe probeOnce // the store probe's verdict, with WithProbe

	mu   sync.Mutex // protects hold
	hold *lease
}

// New returns a Mutex for the lock object at bucket/key. It validates its
// arguments and makes no S3 request. On failure it returns an error that
// matches [ErrInvalidArgument].
func New(client S3API, bucket, key string, opts ...Option) (*Mutex, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if opt == nil {
			return nil, fmt.Errorf("%w: nil Option", ErrInvalidArgument)
		}
		opt(&o)
	}
	if o.ownerSet && o.owner == "" {
		return nil, fmt.Errorf("%w: empty owner", ErrInvalidArgument)
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.owner == "" {
		o.owner = defaultOwner()
	}
	lm, err := newLockObject(client, bucket, key, &o)
	if err != nil {
		return nil, err
	}
	return &Mutex{lm: lm, opts: o, turn: make(chan struct{}, 1)}, nil
}

func validateBucket(bucket string) error {
	switch {
	case bucket == "":
		return fmt.Errorf("%w: empty bucket name", ErrInvalidArgument)
	case len(bucket) > 255:
		return fmt.Errorf("%w: bucket name longer than 255 bytes", ErrInvalidArgument)
	}
	for _, r := range bucket {
		if r == '/' || r <= ' ' || r > '~' {
			return fmt.Errorf("%w: bucket name %q contains %q", ErrInvalidArgument, bucket, r)
		}
	}
	return nil
}

func validateKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty key", ErrInvalidArgument)
	case len(key) > 1024:
		return fmt.Errorf("%w: key longer than 1024 bytes", ErrInvalidArgument)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: key is not valid UTF-8", ErrInvalidArgument)
	}
	return nil
}

// Bucket returns the bucket of the lock object.
func (m *Mutex) Bucket() string { return m.lm.bucket }

// Key returns the key of the lock object.
func (m *Mutex) Key() string { return m.lm.key }

// Owner returns the owner name this Mutex records in the lock object.
func (m *Mutex) Owner() string { return m.lm.owner }

// TTL returns the lease duration of this Mutex's holds.
func (m *Mutex) TTL() time.Duration { return m.lm.ttl }

// TryLock makes one attempt to acquire the lock. It returns nil when the
// lock is now held by m. When someone else holds it, or another goroutine
// holds it through m, it returns a *LockedError matching [ErrLocked].
// Other errors come from S3 (a missing bucket matches [ErrBucketNotFound],
// and so on) or from ctx; after them m does not hold the lock.
//
// When S3's answer to our write is lost, TryLock reads the object back and
// reports the truth: if the write was applied, it returns nil.
func (m *Mutex) TryLock(ctx context.Context) error {
	if h := m.lm.hooks; h != nil {
		return h.acquire(ctx, OpTryLock, m.lm, m.tryLock)
	}
	_, err := m.tryLock(ctx)
	return err
}

func (m *Mutex) tryLock(ctx context.Context) (*lease, error) {
	select {
	case m.turn <- struct{}{}:
	default:
		return nil, &LockedError{Key: m.lm.key, Owner: m.lm.owner, Local: true, Generation: m.Token()}
	}
	if err := ctx.Err(); err != nil {
		<-m.turn
		return nil, fmt.Errorf("s3lock: TryLock %s: %w", m.lm.name(), err)
	}
	if err := m.checkStore(ctx); err != nil {
		<-m.turn
		return nil, err
	}
	l, a, err := m.lm.acquire(ctx, nil)
	if l == nil {
		<-m.turn
		if err == nil {
			err = m.lm.lockedError(a)
		}
		return nil, err
	}
	m.install(l)
	return l, nil
}

// Lock locks m. If the lock is already in use, by another process or
// through another Mutex or another goroutine of this one, Lock waits until
// it is released or its hold expires. Waiters take turns (see the package
// documentation for what is guaranteed). While it waits, Lock polls the
// lock object with GETs, never more than one retry interval apart (see
// [WithRetryInterval] and [WithBackoff]), and writes only to take the lock.
// It retries through S3 failures (network errors, 5xx, throttling) until
// ctx ends or [WithFailureTimeout] runs out.
//
// On failure m does not hold the lock, and the error is one of:
//   - when ctx ends first: an error matching ctx.Err() and also the last
//     attempt's error, which is a *LockedError naming the holder (matching
//     [ErrLocked]) when the lock was held, or the S3 failure (matching
//     [ErrUnavailable]) when S3 could not be reached;
//   - when WithFailureTimeout runs out: the last failure, matching
//     ErrUnavailable;
//   - when a backoff from WithBackoff gives up: the last *LockedError;
//   - an error that retrying cannot fix: a missing bucket
//     ([ErrBucketNotFound]), denied access ([ErrAccessDenied]), a store
//     without conditional writes ([ErrConditionalWritesUnsupported]), a lock
//     whose fencing token cannot grow ([ErrInvalidLockObject]).
func (m *Mutex) Lock(ctx context.Context) error {
	if h := m.lm.hooks; h != nil {
		return h.acquire(ctx, OpLock, m.lm, m.lock)
	}
	_, err := m.lock(ctx)
	return err
}

func (m *Mutex) lock(ctx context.Context) (*lease, error) {
	select {
	case m.turn <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("s3lock: Lock %s: %w", m.lm.name(), ctx.Err())
	}
	if err := m.checkStoreRetrying(ctx); err != nil {
		<-m.turn
		return nil, err
	}
	l, err := m.wait(ctx)
	if err != nil {
		<-m.turn
		return nil, err
	}
	m.install(l)
	return l, nil
}

// checkStore runs the store probe once, with WithProbe.
func (m *Mutex) checkStore(ctx context.Context) error {
	if !m.opts.probe {
		return nil
	}
	return m.probe.check(ctx, m.lm.client, m.lm.bucket, m.lm.key)
}

// checkStoreRetrying is checkStore for Lock: a probe that could not reach a
// verdict is tried again every retry interval until ctx ends (or the
// failure timeout runs out).
func (m *Mutex) checkStoreRetrying(ctx context.Context) error {
	var failing failureRun
	for {
		err := m.checkStore(ctx)
		var pe *ProbeError
		if err == nil || errors.As(err, &pe) || isPermanent(err) {
			failing.recovered(m.lm.log, m.lm.key)
			return err
		}
		if d := failing.failed(m.lm.log, m.lm.key, err); m.opts.failureTimeout > 0 && d >= m.opts.failureTimeout {
			return fmt.Errorf("s3lock: Lock %s: probing the store: gave up after S3 failed for %v without a break: %w", m.lm.name(), d.Round(time.Millisecond), err)
		}
		t := time.NewTimer(m.opts.retryInterval)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("s3lock: Lock %s: probing the store: %w (last attempt: %w)", m.lm.name(), ctx.Err(), err)
		}
	}
}

// install publishes the hold, once its deadline timer or renewer runs: an
// Unlock from another goroutine can only see a lease that has started, so
// it stops what was started and no renewer outlives it.
func (m *Mutex) install(l *lease) {
	l.start(m.opts.autoRenew)
	m.mu.Lock()
	m.hold = l
	m.mu.Unlock()
}

// Unlock releases the lock with one conditional PUT that marks the lock
// object free (it is never deleted, so fencing tokens keep increasing).
// It returns an error matching [ErrNotHeld] if m does not hold the lock,
// and one matching [ErrLeaseLost] if the hold had expired and someone else
// took the lock (or broke it).
//
// Whatever it returns, m no longer holds the lock afterwards, and its hold
// context is cancelled. The release is not cut short by ctx: if ctx ends
// before or during it, Unlock goes on for up to [WithReleaseTimeout] more,
// so a request-scoped deadline does not strand the lock. When the release fails for
// another reason (S3 unreachable), the lock object stays held until its TTL
// runs out, except for this Mutex, whose next acquire takes it back at
// once.
func (m *Mutex) Unlock(ctx context.Context) error {
	if h := m.lm.hooks; h != nil {
		return h.release(ctx, OpUnlock, m.lm, m.Token(), m.unlock)
	}
	_, err := m.unlock(ctx)
	return err
}

// unlock is Unlock; it returns the hold it ended, if any.
func (m *Mutex) unlock(ctx context.Context) (*lease, error) {
	m.mu.Lock()
	l := m.hold
	m.hold = nil
	m.mu.Unlock()
	if l == nil {
		return nil, fmt.Errorf("s3lock: Unlock %s: %w", m.lm.name(), ErrNotHeld)
	}
	defer func() { <-m.turn }()
	l.halt()
	// A hold context already cancelled here was cancelled for a loss.
	var lost error
	if l.ctx.Err() != nil {
		lost = context.Cause(l.ctx)
	}
	rctx, cancel := releaseContext(ctx, m.opts.releaseTimeout)
	defer cancel()
	free, err := l.release(rctx)
	if err != nil {
		l.cancel(ErrLeaseLost)
		if lost != nil && !errors.Is(err, ErrLeaseLost) {
			err = errors.Join(lost, err)
		}
		return l, err
	}
	l.cancel(ErrNotHeld)
	m.lm.warm.set(free)
	if lost != nil {
		return l, fmt.Errorf("s3lock: Unlock %s: the hold had ended before Unlock (released since): %w", m.lm.name(), lost)
	}
	return l, nil
}

// Token returns the fencing token of the current hold: its generation,
// which is larger than that of every earlier hold of this lock. Pass it to
// the resource the lock protects and have the resource refuse smaller
// tokens than the largest it has seen. Token returns 0 when m does not hold
// the lock.
func (m *Mutex) Token() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.hold == nil {
		return 0
	}
	return m.hold.generation()
}

// Context returns a context that is cancelled when the current hold ends:
// with cause [ErrLeaseLost] when the lease runs out (its TTL, or a failed
// renewal, see [WithAutoRenew]) or someone else's record is found, and with
// cause [ErrNotHeld] after Unlock. It is cancelled before any other process
// can take the lock over. When m does not hold the lock, the returned
// context is already cancelled with cause ErrNotHeld.
func (m *Mutex) Context() context.Context {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.hold == nil {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(ErrNotHeld)
		return ctx
	}
	return m.hold.ctx
}

// SafeUntil returns the time (on this process's monotonic clock) up to
// which the current hold is safe: the start of its last successful write
// plus its TTL, less a small drift allowance. It returns the zero time when
// m does not hold the lock.
func (m *Mutex) SafeUntil() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.hold == nil {
		return time.Time{}
	}
	return m.hold.safeUntil()
}

// Locker returns a sync.Locker view of m for code that needs one. Its Lock
// calls m.Lock with context.Background() and so waits for as long as it
// takes; its Unlock calls m.Unlock. Since sync.Locker cannot return errors,
// both panic with the error when the underlying call fails (Lock only fails
// for errors that retrying cannot fix, such as a missing bucket; Unlock
// panics on ErrNotHeld, like sync.Mutex, and on ErrLeaseLost, which means
// the critical section may have overlapped with another holder).
func (m *Mutex) Locker() sync.Locker { return locker{m} }

type locker struct{ m *Mutex }

func (l locker) Lock() {
	if err := l.m.Lock(context.Background()); err != nil {
		panic(err)
	}
}

func (l locker) Unlock() {
	if err := l.m.Unlock(context.Background()); err != nil {
		panic(err)
	}
}

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/s3lock/s3lock"
)

// lockHold is what run holds while the command runs: the Mutex (plain
// run), one unit of a Semaphore (--slots N) or a read hold of an RWMutex
// (--shared). run waits for it, watches it and releases it through this
// one interface, so the three share one code path.
type lockHold interface {
	// acquire waits for the hold until ctx ends; tryAcquire makes one
	// attempt. Both fail with an error matching s3lock.ErrLocked when
	// the lock is not free for this kind of hold.
	acquire(ctx context.Context) error
	tryAcquire(ctx context.Context) error
	// release gives the hold back (s3lock.ErrLeaseLost when it had ended).
	release(ctx context.Context) error
	// Context is cancelled when the hold ends; Token is its fencing token.
	Context() context.Context
	Token() uint64
	// owner is the name recorded in the lock for this hold.
	owner() string
	// busy says, after a URL, why the hold could not be had at once.
	busy() string
}

// newHold returns the hold that run's flags ask for on u, and makes no S3
// request. On failure (a bad option or key) the error matches
// s3lock.ErrInvalidArgument.
func (o *runOpts) newHold(client s3lock.S3API, u s3URL, opts []s3lock.Option) (lockHold, error) {
	switch {
	case o.slotsSet:
		owner := ownerOr(o.owner)
		s, err := s3lock.NewSemaphore(client, u.bucket, u.key, o.slots, append(opts, s3lock.WithOwner(owner))...)
		if err != nil {
			return nil, err
		}
		return &semaphoreHold{s: s, name: owner}, nil
	case o.shared:
		owner := ownerOr(o.owner)
		rw, err := s3lock.NewRWMutex(client, u.bucket, u.key, append(opts, s3lock.WithOwner(owner))...)
		if err != nil {
			return nil, err
		}
		return &readHold{rw: rw, name: owner}, nil
	}
	m, err := s3lock.New(client, u.bucket, u.key, opts...)
	if err != nil {
		return nil, err
	}
	return mutexHold{m}, nil
}

// ownerOr returns owner, or when it is "" a name of the library's default
// form, host:pid:random, which run passes on as S3LOCK_OWNER (Semaphore
// and RWMutex do not report the owner they made up).
func ownerOr(owner string) string {
	if owner != "" {
		return owner
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	var b [4]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return fmt.Sprintf("%s:%d:%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// mutexHold is plain run's exclusive hold.
type mutexHold struct{ *s3lock.Mutex }

func (h mutexHold) acquire(ctx context.Context) error    { return h.Lock(ctx) }
func (h mutexHold) tryAcquire(ctx context.Context) error { return h.TryLock(ctx) }
func (h mutexHold) release(ctx context.Context) error    { return h.Unlock(ctx) }
func (h mutexHold) owner() string                        { return h.Owner() }
func (h mutexHold) busy() string                         { return "is held by someone else" }

// semaphoreHold is run --slots N: one unit of a Semaphore of limit N.
type semaphoreHold struct {
	s    *s3lock.Semaphore
	name string
}

func (h *semaphoreHold) acquire(ctx context.Context) error    { return h.s.Acquire(ctx, 1) }
func (h *semaphoreHold) tryAcquire(ctx context.Context) error { return h.s.TryAcquire(ctx, 1) }
func (h *semaphoreHold) release(ctx context.Context) error    { return h.s.Release(ctx) }
func (h *semaphoreHold) Context() context.Context             { return h.s.Context() }
func (h *semaphoreHold) Token() uint64                        { return h.s.Token() }
func (h *semaphoreHold) owner() string                        { return h.name }
func (h *semaphoreHold) busy() string {
	return fmt.Sprintf("has no free slot of %d (or is held exclusively)", h.s.Limit())
}

// readHold is run --shared: a read hold of an RWMutex.
type readHold struct {
	rw   *s3lock.RWMutex
	name string
}

func (h *readHold) acquire(ctx context.Context) error    { return h.rw.RLock(ctx) }
func (h *readHold) tryAcquire(ctx context.Context) error { return h.rw.TryRLock(ctx) }
func (h *readHold) release(ctx context.Context) error    { return h.rw.RUnlock(ctx) }
func (h *readHold) Context() context.Context             { return h.rw.Context() }
func (h *readHold) Token() uint64                        { return h.rw.Token() }
func (h *readHold) owner() string                        { return h.name }
func (h *readHold) busy() string {
	return "is held exclusively by someone else, or an exclusive holder waits for it"
}

package s3lock_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

// TestLoopingMutexDoesNotStarveWaiter: a Mutex that unlocks and locks
// again at once (the warm path: one PUT, no read) must not keep the lock
// from a waiter for long, and once they contend they take turns.
func TestLoopingMutexDoesNotStarveWaiter(t *testing.T) {
	srv := s3locktest.New(t, s3locktest.WithLatency(2*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	opts := []s3lock.Option{s3lock.WithRetryInterval(10 * time.Millisecond), s3lock.WithTTL(10 * time.Second)}
	a := newMutex(t, srv.Client(), srv.Bucket(), "locks/starve", append(opts, s3lock.WithOwner("a"))...)
	b := newMutex(t, srv.Client(), srv.Bucket(), "locks/starve", append(opts, s3lock.WithOwner("b"))...)

	const maxCycles = 400 // a looping without a break for this long
	if err := a.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	before := srv.Stats().Snapshot()
	var bGot atomic.Bool
	bDone := make(chan error, 1)
	go func() {
		err := b.Lock(ctx)
		bGot.Store(err == nil)
		if err == nil {
			err = b.Unlock(ctx)
		}
		bDone <- err
	}()
	waitForGets(t, srv, before, 2) // b has found the lock held and polls
	cycles := 0
	for ; cycles < maxCycles && !bGot.Load(); cycles++ {
		if err := a.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := a.Lock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-bDone; err != nil {
		t.Fatalf("b: %v", err)
	}
	if !bGot.Load() {
		t.Fatalf("b did not get the lock while a re-locked %d times in a row", cycles)
	}
	t.Logf("b got the lock after %d re-locks of a", cycles)

	// Both loop now: they must take turns, not one of them most of the time.
	const total = 40
	var mu sync.Mutex
	grants := map[string]int{}
	var wg sync.WaitGroup
	for _, m := range []*s3lock.Mutex{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if err := m.Lock(ctx); err != nil {
					t.Errorf("%s: Lock() = %v", m.Owner(), err)
					return
				}
				mu.Lock()
				n := grants["a"] + grants["b"]
				if n < total {
					grants[m.Owner()]++
				}
				mu.Unlock()
				if err := m.Unlock(ctx); err != nil {
					t.Errorf("%s: Unlock() = %v", m.Owner(), err)
					return
				}
				if n >= total {
					return
				}
			}
		}()
	}
	wg.Wait()
	if grants["a"] < total/4 || grants["b"] < total/4 {
		t.Errorf("grants = %v; want each of a and b to get at least %d of %d", grants, total/4, total)
	}
}

// TestContendedLockQueues: several Mutexes looping on one lock queue up
// instead of all writing when they see it free, so almost every
// conditional write wins, and they take turns: none gets much less than
// its share, even though a Mutex that just unlocked could take the lock
// straight back with one PUT.
func TestContendedLockQueues(t *testing.T) {
	srv := s3locktest.New(t, s3locktest.WithLatency(2*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const workers, total = 4, 80
	before := srv.Stats().Snapshot()
	var mu sync.Mutex
	grants := make([]int, workers)
	granted := 0
	var wg sync.WaitGroup
	for i := range workers {
		m := newMutex(t, srv.Client(), srv.Bucket(), "locks/queue", s3lock.WithRetryInterval(10*time.Millisecond), s3lock.WithOwner(fmt.Sprintf("w%d", i)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if err := m.Lock(ctx); err != nil {
					t.Errorf("Lock() = %v", err)
					return
				}
				mu.Lock()
				done := granted >= total
				if !done {
					granted++
					grants[i]++
				}
				mu.Unlock()
				if err := m.Unlock(ctx); err != nil {
					t.Errorf("Unlock() = %v", err)
					return
				}
				if done {
					return
				}
			}
		}()
	}
	wg.Wait()
	d := srv.Stats().Snapshot().Sub(before)
	puts, failed := d.Method(http.MethodPut), d.Status(http.StatusPreconditionFailed)
	t.Logf("grants per worker %v: %d PUT (%d failed with 412), %d GET", grants, puts, failed, d.Method(http.MethodGet))
	// Everybody writing on sight of a free lock fails more than one PUT
	// per grant with 4 workers (97-107 measured here before the queue);
	// the queue leaves few (12-41 seen, the most on a loaded machine),
	// mostly while the workers start together. The bound sits between.
	if limit := int64(total * 3 / 4); failed > limit {
		t.Errorf("%d PUTs failed with 412 for %d grants; want at most %d", failed, total, limit)
	}
	for i, n := range grants {
		if n < total/workers/2 {
			t.Errorf("worker %d got %d of %d grants; want at least %d (half its share)", i, n, total, total/workers/2)
		}
	}
}

// TestLockGivesUpSayingWhy: when Lock's context ends while
// someone else holds the lock, its error matches the context's error and
// ErrLocked, and names the holder through *LockedError; when S3 cannot be
// reached, it matches the context's error and ErrUnavailable.
func TestLockGivesUpSayingWhy(t *testing.T) {
	ctx := context.Background()
	t.Run("held", func(t *testing.T) {
		srv := s3locktest.New(t)
		holder := newMutex(t, srv.Client(), srv.Bucket(), "locks/why", s3lock.WithOwner("the-holder"))
		if err := holder.TryLock(ctx); err != nil {
			t.Fatal(err)
		}
		defer holder.Unlock(ctx)
		m := newMutex(t, srv.Client(), srv.Bucket(), "locks/why")
		for _, end := range []struct {
			name string
			ctx  func() (context.Context, context.CancelFunc)
			want error
		}{
			{"deadline", func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 300*time.Millisecond) }, context.DeadlineExceeded},
			{"cancel", func() (context.Context, context.CancelFunc) {
				c, cancel := context.WithCancel(ctx)
				time.AfterFunc(300*time.Millisecond, cancel)
				return c, cancel
			}, context.Canceled},
		} {
			lctx, cancel := end.ctx()
			err := m.Lock(lctx)
			cancel()
			var le *s3lock.LockedError
			if !errors.Is(err, end.want) || !errors.Is(err, s3lock.ErrLocked) || !errors.As(err, &le) || le.Owner != "the-holder" {
				t.Errorf("%s: Lock() = %v; want it to match %v and ErrLocked, with a LockedError naming the-holder", end.name, err, end.want)
			}
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		srv := s3locktest.New(t)
		fa := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
		fa.Partition(time.Hour)
		m := newMutex(t, srv.FaultyClient(fa), srv.Bucket(), "locks/why-unreachable", s3lock.WithRetryInterval(50*time.Millisecond))
		lctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		err := m.Lock(lctx)
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, s3lock.ErrUnavailable) || errors.Is(err, s3lock.ErrLocked) {
			t.Errorf("Lock() against an unreachable S3 = %v; want DeadlineExceeded and ErrUnavailable, not ErrLocked", err)
		}
	})
}

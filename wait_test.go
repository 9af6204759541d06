package s3lock_test

import (
	"context"
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
	time.Sleep(20 * time.Millisecond) // b is polling
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

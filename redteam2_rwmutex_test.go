package s3lock_test

// Second adversarial review of issue 17: the RWMutex's local join of a
// value's read hold (rwmutex.go rlock), added after the first review.

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

// TestRedteam2RLockJoinRacesLastRUnlock attacks "a wrong 'you hold it' is
// the worst bug" on the local join. RUnlock of the value's last reader
// unlocks rw.mu and only then calls r.release, which clears the hold; an
// RLock that re-checks rw.readers > 0 && r.held() in that window joins a
// hold whose release is already under way (readers 1 -> 2), returns nil,
// and RUnlock then sets readers = 0 over it: the joined goroutine believes
// it holds a read lock that no longer exists in S3 (a writer may hold the
// key), and its RUnlock answers ErrNotHeld. Goroutines of one value loop
// RLock/RUnlock; every RLock that returned nil must find a live hold
// (Token != 0) and end in an RUnlock that is not a bare ErrNotHeld.
func TestRedteam2RLockJoinRacesLastRUnlock(t *testing.T) {
	srv := s3locktest.New(t)
	key := "redteam2/join-vs-last-runlock"
	v := newRWAt(t, srv, key, s3lock.WithTTL(10*time.Second), s3lock.WithRetryInterval(5*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var (
		wg              sync.WaitGroup
		cycles, badUnlk atomic.Int64
		mu              sync.Mutex
		first           string
	)
	report := func(s string) {
		mu.Lock()
		if first == "" {
			first = s
		}
		mu.Unlock()
	}
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && badUnlk.Load() == 0 && cycles.Load() < 1500 {
				if err := v.RLock(ctx); err != nil {
					continue
				}
				cycles.Add(1)
				if v.Token() == 0 {
					report("RLock() = nil but Token() = 0: joined a hold already released")
				}
				err := v.RUnlock(context.Background())
				if errors.Is(err, s3lock.ErrNotHeld) && !errors.Is(err, s3lock.ErrLeaseLost) {
					badUnlk.Add(1)
					report("RUnlock() after RLock() = nil: " + err.Error())
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d RLock/RUnlock cycles", cycles.Load())
	if first != "" {
		t.Fatalf("%s (%d bad RUnlocks)", first, badUnlk.Load())
	}
}

// TestRedteam2RLockAfterLostHold attacks liveness of the local join: when
// the value's read hold is lost (here broken by ForceUnlockHolder; a
// missed renewal does the same) while one goroutine still has RLock,
// r.held() is false, so a new RLock skips the join, and rw.readers > 0
// sends it to wait on rw.changed, which only the last RUnlock closes. The
// key is free in S3, yet RLock waits until its ctx ends (and TryRLock
// answers a local ErrLocked) for as long as the old reader keeps its
// (lost) RLock. The doc promises joiners "wait for the hold to end"; it
// has ended.
func TestRedteam2RLockAfterLostHold(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	key := "redteam2/rlock-after-lost"
	v := newRWAt(t, srv, key, s3lock.WithTTL(3*time.Second), s3lock.WithAutoRenew(200*time.Millisecond))
	if err := v.RLock(ctx); err != nil {
		t.Fatal(err)
	}
	st := lockState(t, srv, key)
	if len(st.Holders) != 1 {
		t.Fatalf("%d holders; want 1", len(st.Holders))
	}
	if _, err := s3lock.ForceUnlockHolder(ctx, srv.Client(), srv.Bucket(), key, st.ETag, st.Holders[0].ID); err != nil {
		t.Fatal(err)
	}
	waitDone(t, v.Context(), 5*time.Second, "the broken read hold's context")
	if now := lockState(t, srv, key); now.Held {
		t.Fatalf("key held after the break: %+v", now)
	}
	// Another value takes a read hold at once: the key is free.
	other := newRWAt(t, srv, key)
	if err := other.TryRLock(ctx); err != nil {
		t.Fatalf("another value's TryRLock() = %v", err)
	}
	if err := other.RUnlock(ctx); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	err := v.RLock(rctx)
	if err == nil {
		_ = v.RUnlock(ctx)
	}
	// The first goroutine's RUnlock, late, reports the loss.
	if uerr := v.RUnlock(ctx); !errors.Is(uerr, s3lock.ErrLeaseLost) {
		t.Logf("first RUnlock() = %v", uerr)
	}
	if err != nil && (!errors.Is(err, s3lock.ErrLeaseLost) || errors.Is(err, context.DeadlineExceeded)) {
		t.Fatalf("RLock() on a free key, while another goroutine of the value still has an RLock of the lost hold = %v; want nil (a new hold) or ErrLeaseLost, not a wait until ctx ends", err)
	}
}

// rwBook checks the holds a hammer's goroutines believe they have: no
// write hold overlaps another write hold or a read hold (holds whose
// context has ended are not counted).
type rwBook struct {
	t      *testing.T
	mu     sync.Mutex
	next   int
	active map[int]rwEntry
	reads  int
	writes int
}

type rwEntry struct {
	who   string
	write bool
	ctx   context.Context
}

func (b *rwBook) enter(e rwEntry) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e.write {
		b.writes++
	} else {
		b.reads++
	}
	for _, o := range b.active {
		if o.ctx.Err() == nil && e.ctx.Err() == nil && (o.write || e.write) {
			b.t.Errorf("%s (write %v) entered while %s (write %v) believes it holds", e.who, e.write, o.who, o.write)
		}
	}
	b.next++
	b.active[b.next] = e
	return b.next
}

func (b *rwBook) exit(id int) {
	b.mu.Lock()
	delete(b.active, id)
	b.mu.Unlock()
}

// TestRedteam2RWMutexOneValueMixed attacks safety and the error contracts
// of the local join under -race: two RWMutex values on one key, each used
// by three reader goroutines (RLock/RUnlock, TryRLock) and one writer
// goroutine (Lock/Unlock, TryLock) at once. No write hold overlaps a read
// or write hold that believes it is live, RUnlock and Unlock after a nil
// RLock/Lock never answer a bare ErrNotHeld, and while a goroutine holds
// the write lock the value's Context and Token are the write hold's.
// Guard.
func TestRedteam2RWMutexOneValueMixed(t *testing.T) {
	srv := s3locktest.New(t)
	key := "redteam2/one-value-mixed"
	opts := []s3lock.Option{s3lock.WithTTL(5 * time.Second), s3lock.WithRetryInterval(20 * time.Millisecond)}
	book := &rwBook{t: t, active: map[int]rwEntry{}}
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Second)
	defer cancel()
	bare := func(err error) bool { return errors.Is(err, s3lock.ErrNotHeld) && !errors.Is(err, s3lock.ErrLeaseLost) }
	var wg sync.WaitGroup
	for vi := range 2 {
		v := newRWAt(t, srv, key, opts...)
		for ri := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				who := fmt.Sprintf("value %d reader %d", vi, ri)
				for i := 0; ctx.Err() == nil; i++ {
					var err error
					if i%3 == 2 {
						err = v.TryRLock(ctx)
					} else {
						err = v.RLock(ctx)
					}
					if err != nil {
						time.Sleep(5 * time.Millisecond)
						continue
					}
					id := book.enter(rwEntry{who: who, ctx: v.Context()})
					time.Sleep(time.Duration(ri+1) * 3 * time.Millisecond)
					book.exit(id)
					if err := v.RUnlock(context.Background()); bare(err) {
						t.Errorf("%s: RUnlock() after RLock() = nil: %v", who, err)
					}
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			who := fmt.Sprintf("value %d writer", vi)
			for i := 0; ctx.Err() == nil; i++ {
				var err error
				if i%2 == 1 {
					err = v.TryLock(ctx)
				} else {
					lctx, lcancel := context.WithTimeout(ctx, 2*time.Second)
					err = v.Lock(lctx)
					lcancel()
				}
				if err != nil {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				hctx := v.Context()
				tok := v.Token()
				id := book.enter(rwEntry{who: who, write: true, ctx: hctx})
				if tok == 0 {
					t.Errorf("%s: Token() = 0 while holding the write lock", who)
				}
				time.Sleep(10 * time.Millisecond)
				book.exit(id)
				if err := v.Unlock(context.Background()); bare(err) {
					t.Errorf("%s: Unlock() after Lock() = nil: %v", who, err)
				}
				time.Sleep(30 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d read holds and %d write holds entered", book.reads, book.writes)
	if book.writes == 0 || book.reads == 0 {
		t.Errorf("%d read holds and %d write holds: the hammer did not exercise both", book.reads, book.writes)
	}
}

// TestRedteam2RLockJoinFailsOnOneBadGet attacks RLock's error contract
// ("Errors are those of Mutex.Lock"): Mutex.Lock, and an RLock that
// acquires, wait through S3 failures (until ctx or the failure timeout);
// an RLock that joins the value's read hold makes one GET (joinable) and
// returns its error at once. One GET answered 500 (on every SDK attempt)
// fails an RLock that had a live hold to join.
func TestRedteam2RLockJoinFailsOnOneBadGet(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	key := "redteam2/join-bad-get"
	f := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
	v, err := s3lock.NewRWMutex(srv.FaultyClient(f), srv.Bucket(), key, s3lock.WithRetryInterval(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.RLock(ctx); err != nil {
		t.Fatal(err)
	}
	defer v.RUnlock(ctx)
	isGet := func(r *http.Request) bool { return r.Method == http.MethodGet }
	// For comparison: another value's RLock, which acquires a hold of its
	// own, waits through the same failures.
	f2 := s3locktest.NewFaults(2, s3locktest.FaultConfig{})
	other, err := s3lock.NewRWMutex(srv.FaultyClient(f2), srv.Bucket(), key, s3lock.WithRetryInterval(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	f2.Inject(s3locktest.FaultInternalError, 5, isGet)
	octx, ocancel := context.WithTimeout(ctx, 5*time.Second)
	defer ocancel()
	if err := other.RLock(octx); err != nil {
		t.Fatalf("another value's RLock() through 5 failed GETs = %v", err)
	}
	if err := other.RUnlock(ctx); err != nil {
		t.Fatal(err)
	}
	f.Inject(s3locktest.FaultInternalError, 5, isGet)
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err = v.RLock(rctx)
	if err != nil {
		t.Fatalf("RLock() joining a live read hold while one GET failed = %v; want nil (RLock waits through S3 failures as Mutex.Lock does)", err)
	}
	if err := v.RUnlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestRedteam2RWMutexContextToken attacks the Context/Token contract of
// RWMutex: the read hold's while reading, the write hold's while writing
// (a larger token), and a context cancelled with ErrNotHeld and token 0
// between holds; errors of RUnlock/Unlock without a hold match
// ErrNotHeld. Guard.
func TestRedteam2RWMutexContextToken(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	v := newRWAt(t, srv, "redteam2/context-token")
	notHeld := func(when string) {
		t.Helper()
		if c := v.Context(); c.Err() == nil || !errors.Is(context.Cause(c), s3lock.ErrNotHeld) || v.Token() != 0 {
			t.Errorf("%s: Context() err %v cause %v, Token() %d; want cancelled with ErrNotHeld, 0", when, c.Err(), context.Cause(c), v.Token())
		}
	}
	notHeld("before any hold")
	if err := v.RUnlock(ctx); !errors.Is(err, s3lock.ErrNotHeld) {
		t.Errorf("RUnlock() without RLock = %v; want ErrNotHeld", err)
	}
	if err := v.Unlock(ctx); !errors.Is(err, s3lock.ErrNotHeld) {
		t.Errorf("Unlock() without Lock = %v; want ErrNotHeld", err)
	}
	if err := v.RLock(ctx); err != nil {
		t.Fatal(err)
	}
	rc, rt := v.Context(), v.Token()
	if rc.Err() != nil || rt == 0 {
		t.Fatalf("reading: Context() err %v, Token() %d", rc.Err(), rt)
	}
	if err := v.RUnlock(ctx); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(context.Cause(rc), s3lock.ErrNotHeld) {
		t.Errorf("read hold's context after RUnlock: cause %v; want ErrNotHeld", context.Cause(rc))
	}
	notHeld("after RUnlock")
	if err := v.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	wc, wt := v.Context(), v.Token()
	if wc.Err() != nil || wt <= rt {
		t.Errorf("writing: Context() err %v, Token() %d; want live, above the read token %d", wc.Err(), wt, rt)
	}
	if err := v.TryRLock(ctx); err == nil {
		t.Errorf("TryRLock() on the value holding the write lock = nil")
		_ = v.RUnlock(ctx)
	}
	if err := v.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(context.Cause(wc), s3lock.ErrNotHeld) {
		t.Errorf("write hold's context after Unlock: cause %v; want ErrNotHeld", context.Cause(wc))
	}
	notHeld("after Unlock")
}

package s3lock_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

func newSem(tb testing.TB, srv *s3locktest.Server, key string, limit int64, opts ...s3lock.Option) *s3lock.Semaphore {
	tb.Helper()
	s, err := s3lock.NewSemaphore(srv.Client(), srv.Bucket(), key, limit, opts...)
	if err != nil {
		tb.Fatalf("NewSemaphore() = %v", err)
	}
	return s
}

func TestSemaphoreBasics(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	a, b, c := newSem(t, srv, "sem", 3), newSem(t, srv, "sem", 3), newSem(t, srv, "sem", 3)
	if err := a.TryAcquire(ctx, 2); err != nil {
		t.Fatalf("a.TryAcquire(2) = %v", err)
	}
	if err := b.TryAcquire(ctx, 2); !errors.Is(err, s3lock.ErrLocked) {
		t.Fatalf("b.TryAcquire(2) = %v; want ErrLocked", err)
	}
	if err := b.TryAcquire(ctx, 1); err != nil {
		t.Fatalf("b.TryAcquire(1) = %v", err)
	}
	if a.Token() == 0 || b.Token() <= a.Token() {
		t.Fatalf("tokens a=%d b=%d; want 0 < a < b", a.Token(), b.Token())
	}
	wantLocked(t, c.TryAcquire(ctx, 1))
	m := newMutex(t, srv.Client(), srv.Bucket(), "sem")
	wantLocked(t, m.TryLock(ctx))
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Release(ctx); !errors.Is(err, s3lock.ErrNotHeld) {
		t.Fatalf("second Release = %v", err)
	}
	if a.Context().Err() == nil {
		t.Fatal("context of a released hold not done")
	}
	if err := c.TryAcquire(ctx, 2); err != nil {
		t.Fatalf("c.TryAcquire(2) = %v", err)
	}
	other := newSem(t, srv, "sem", 4)
	if err := other.TryAcquire(ctx, 1); !errors.Is(err, s3lock.ErrLimitConflict) {
		t.Fatalf("limit 4 on a limit-3 key: %v; want ErrLimitConflict", err)
	}
	for _, s := range []*s3lock.Semaphore{b, c} {
		if err := s.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("Mutex after all released: %v", err)
	}
	wantLocked(t, a.TryAcquire(ctx, 1))
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := other.TryAcquire(ctx, 4); err != nil {
		t.Fatalf("limit 4 on a free key: %v", err)
	}
	if err := other.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestSemaphoreNeverOverLimit(t *testing.T) {
	srv := s3locktest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const limit, workers, rounds = 3, 8, 4
	var held, peak atomic.Int64
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := newSem(t, srv, "hammer", limit, s3lock.WithRetryInterval(20*time.Millisecond), s3lock.WithTTL(5*time.Second))
			n := int64(1 + i%2)
			for range rounds {
				if err := s.Acquire(ctx, n); err != nil {
					t.Error(err)
					return
				}
				now := held.Add(n)
				for p := peak.Load(); now > p && !peak.CompareAndSwap(p, now); p = peak.Load() {
				}
				if now > limit {
					t.Errorf("%d units held, limit %d", now, limit)
				}
				time.Sleep(5 * time.Millisecond)
				held.Add(-n)
				if err := s.Release(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("peak %d units", peak.Load())
}

func TestRWMutexBasics(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	r1, _ := s3lock.NewRWMutex(srv.Client(), srv.Bucket(), "rw")
	r2, _ := s3lock.NewRWMutex(srv.Client(), srv.Bucket(), "rw")
	w, _ := s3lock.NewRWMutex(srv.Client(), srv.Bucket(), "rw")
	if err := r1.RLock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r2.TryRLock(ctx); err != nil {
		t.Fatal(err)
	}
	wantLocked(t, w.TryLock(ctx))
	m := newMutex(t, srv.Client(), srv.Bucket(), "rw")
	wantLocked(t, m.TryLock(ctx))
	sem := newSem(t, srv, "rw", 2)
	if err := sem.TryAcquire(ctx, 1); !errors.Is(err, s3lock.ErrLimitConflict) {
		t.Fatalf("semaphore on a read-held key: %v", err)
	}
	lockCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	got := make(chan error, 1)
	go func() { got <- w.Lock(lockCtx) }()
	time.Sleep(1500 * time.Millisecond) // the writer reserves its turn
	wantLocked(t, newRW(t, srv).TryRLock(ctx))
	if err := r1.RUnlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r2.RUnlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("writer: %v", err)
	}
	if r2.Token() != 0 || w.Token() == 0 {
		t.Fatalf("tokens %d %d", r2.Token(), w.Token())
	}
	wantLocked(t, r1.TryRLock(ctx))
	if err := w.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r1.TryRLock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r1.RUnlock(ctx); err != nil {
		t.Fatal(err)
	}
}

func newRW(t *testing.T, srv *s3locktest.Server) *s3lock.RWMutex {
	rw, err := s3lock.NewRWMutex(srv.Client(), srv.Bucket(), "rw")
	if err != nil {
		t.Fatal(err)
	}
	return rw
}

// A writer that keeps waiting keeps new readers out for as long as it
// waits, well past reservationStale (5 s): it refreshes its reservation.
func TestRWMutexLiveWriterKeepsReservation(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	reader := newRW(t, srv)
	if err := reader.RLock(ctx); err != nil {
		t.Fatal(err)
	}
	writer := newRW(t, srv)
	wctx, cancel := context.WithCancel(ctx)
	got := make(chan error, 1)
	go func() { got <- writer.Lock(wctx) }()
	deadline := time.Now().Add(9 * time.Second)
	refused := 0
	late := newRW(t, srv) // one value: it remembers how long it has seen the reservation
	for time.Now().Before(deadline) {
		if err := late.TryRLock(ctx); err == nil {
			if refused > 0 {
				t.Errorf("a new reader joined after %d refusals while the writer still waited", refused)
			}
			_ = late.RUnlock(ctx)
		} else {
			refused++
		}
		time.Sleep(300 * time.Millisecond)
	}
	if refused == 0 {
		t.Fatal("no new reader was ever refused while a writer waited")
	}
	if err := reader.RUnlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("writer: %v", err)
	}
	cancel()
	if err := writer.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// The hooks see a Semaphore's and an RWMutex reader's operations with
// their tokens, and a hold broken under them as a loss.
func TestSharedHoldHooks(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	var mu sync.Mutex
	var seen []string
	var lost []uint64
	hooks := &s3lock.Hooks{
		Acquire: func(_ context.Context, i s3lock.AcquireInfo) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, fmt.Sprintf("%s %s %d", i.Op, i.Outcome, i.Token))
		},
		Release: func(_ context.Context, i s3lock.ReleaseInfo) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, fmt.Sprintf("%s %d held=%v err=%v", i.Op, i.Token, i.Held > 0, i.Err != nil))
		},
		LeaseLost: func(i s3lock.LeaseLostInfo) {
			mu.Lock()
			defer mu.Unlock()
			lost = append(lost, i.Token)
		},
	}
	a := newSem(t, srv, "hooked", 2, s3lock.WithHooks(hooks))
	b := newSem(t, srv, "hooked", 2, s3lock.WithHooks(hooks))
	if err := a.Acquire(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := b.TryAcquire(ctx, 2); err == nil {
		t.Fatal("b took 2 units of 2 while a held one")
	}
	if err := b.TryAcquire(ctx, 1); err != nil {
		t.Fatal(err)
	}
	st := lockState(t, srv, "hooked")
	if _, err := s3lock.ForceUnlockHolder(ctx, srv.Client(), srv.Bucket(), "hooked", st.ETag, b.HolderID()); err != nil {
		t.Fatal(err)
	}
	if err := b.Release(ctx); !errors.Is(err, s3lock.ErrLeaseLost) {
		t.Fatalf("b.Release after its hold was broken = %v; want ErrLeaseLost", err)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	rw, err := s3lock.NewRWMutex(srv.Client(), srv.Bucket(), "hooked-rw", s3lock.WithHooks(hooks))
	if err != nil {
		t.Fatal(err)
	}
	if err := rw.RLock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := rw.RUnlock(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{
		"Acquire acquired 1", "TryAcquire locked 0", "TryAcquire acquired 2",
		"Release 2 held=true err=true", "Release 1 held=true err=false",
		"RLock acquired 1", "RUnlock 1 held=true err=false",
	}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("hooks saw\n%q\nwant\n%q", seen, want)
	}
	if len(lost) != 1 || lost[0] != 2 {
		t.Errorf("LeaseLost tokens %v; want [2] (b's hold, broken)", lost)
	}
}

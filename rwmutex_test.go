package s3lock_test

// RWMutex: readers share, writers (RWMutex writers and Mutexes alike)
// exclude everyone, a waiting writer is not starved by readers, and a
// Mutex waiting on a key of shared holders leaves their holder table
// alone.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

func newRWKey(t *testing.T, client s3lock.S3API, srv *s3locktest.Server, key string, opts ...s3lock.Option) *s3lock.RWMutex {
	t.Helper()
	rw, err := s3lock.NewRWMutex(client, srv.Bucket(), key, opts...)
	if err != nil {
		t.Fatalf("NewRWMutex() = %v", err)
	}
	return rw
}

// TestRWMutexReadersShare: readers of several RWMutex values hold the
// read lock at once, each listed with its own token; a writer and a Mutex
// find it held until the last reader leaves.
func TestRWMutexReadersShare(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key, readers = "rw/share", 5
	rs := make([]*s3lock.RWMutex, readers)
	errs := make([]error, readers)
	var wg sync.WaitGroup
	for i := range rs {
		rs[i] = newRWKey(t, srv.Client(), srv, key, s3lock.WithOwner(fmt.Sprint("r", i)), s3lock.WithRetryInterval(20*time.Millisecond))
		wg.Go(func() {
			lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			errs[i] = rs[i].RLock(lctx)
		})
	}
	wg.Wait()
	tokens := map[uint64]bool{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("r%d.RLock() = %v", i, err)
		}
		if rs[i].Context().Err() != nil || tokens[rs[i].Token()] || rs[i].Token() == 0 {
			t.Errorf("r%d: Context().Err() = %v, Token() = %d; want a live hold with a token of its own", i, rs[i].Context().Err(), rs[i].Token())
		}
		tokens[rs[i].Token()] = true
	}
	if st := lockState(t, srv, key); len(st.Holders) != readers || st.Limit != 0 {
		t.Fatalf("Inspect: %d holders, limit %d; want %d readers", len(st.Holders), st.Limit, readers)
	}
	w := newRWKey(t, srv.Client(), srv, key)
	m := newMutex(t, srv.Client(), srv.Bucket(), key)
	for i, r := range rs {
		wantLocked(t, w.TryLock(ctx))
		wantLocked(t, m.TryLock(ctx))
		if err := r.RUnlock(ctx); err != nil {
			t.Fatalf("r%d.RUnlock() = %v", i, err)
		}
	}
	if err := w.TryLock(ctx); err != nil {
		t.Fatalf("writer TryLock() after every RUnlock = %v", err)
	}
	for tok := range tokens {
		if w.Token() <= tok {
			t.Errorf("writer token %d; want above every reader's (%d)", w.Token(), tok)
		}
	}
	if err := w.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestRWMutexHammer: readers of 5 RWMutex values, writers of 2 RWMutex
// values and 2 Mutexes take one key in turn through client faults. The
// history of believed holds is checked as a semaphore's: a reader counts
// 1 unit and a writer all 5, with a limit of 5, so a writer overlapping
// anyone, or two writers overlapping, is a violation; tokens are unique
// and in real-time order.
func TestRWMutexHammer(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key, readers, writers, mutexes, rounds = "rw/hammer", 5, 2, 2, 5
	seed := seedFor(t)
	var (
		mu     sync.Mutex
		faults []*s3locktest.Faults
		hist   semHistory
		wg     sync.WaitGroup
	)
	client := func(i int) *s3.Client {
		f := s3locktest.NewFaults(seed+uint64(i), hammerFaults)
		mu.Lock()
		faults = append(faults, f)
		mu.Unlock()
		return srv.FaultyClient(f)
	}
	opts := func(who string) []s3lock.Option {
		return []s3lock.Option{s3lock.WithOwner(who), s3lock.WithTTL(3 * time.Second),
			s3lock.WithRetryInterval(20 * time.Millisecond), s3lock.WithReleaseTimeout(5 * time.Second)}
	}
	type locker struct {
		lock, unlock func(context.Context) error
		hold         func() context.Context
		token        func() uint64
	}
	run := func(who string, units int64, l locker, hold time.Duration) {
		for round := range rounds {
			called := time.Now()
			lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := l.lock(lctx)
			cancel()
			if err != nil {
				t.Errorf("%s: lock = %v", who, err)
				continue
			}
			x := semHold{who: fmt.Sprintf("%s#%d", who, round), units: units, token: l.token(), called: called, granted: time.Now()}
			var lostAt atomic.Pointer[time.Time]
			stop := context.AfterFunc(l.hold(), func() { now := time.Now(); lostAt.Store(&now) })
			time.Sleep(hold)
			x.ended = time.Now()
			err = l.unlock(ctx)
			stop()
			if at := lostAt.Load(); at != nil && at.Before(x.ended) {
				x.ended, x.lost = *at, true
			}
			hist.add(x)
			if err != nil {
				t.Logf("%s: unlock = %v", who, err)
			}
		}
	}
	n := 0
	for i := range readers {
		rw := newRWKey(t, client(n), srv, key, opts(fmt.Sprint("r", i))...)
		n++
		wg.Go(func() {
			run(fmt.Sprint("r", i), 1, locker{rw.RLock, rw.RUnlock, rw.Context, rw.Token}, 30*time.Millisecond)
		})
	}
	for i := range writers {
		rw := newRWKey(t, client(n), srv, key, opts(fmt.Sprint("w", i))...)
		n++
		wg.Go(func() {
			run(fmt.Sprint("w", i), readers, locker{rw.Lock, rw.Unlock, rw.Context, rw.Token}, 10*time.Millisecond)
		})
	}
	for i := range mutexes {
		m := newMutex(t, client(n), srv.Bucket(), key, opts(fmt.Sprint("m", i))...)
		n++
		wg.Go(func() {
			run(fmt.Sprint("m", i), readers, locker{m.Lock, m.Unlock, m.Context, m.Token}, 10*time.Millisecond)
		})
	}
	wg.Wait()
	for _, v := range checkSemHistory(hist.holds, readers) {
		t.Error(v)
	}
	// How much the readers shared: the most readers believed at once.
	peak := peakUnits(hist.holds, func(h semHold) bool { return h.units == 1 })
	counts := s3locktest.FaultCounts{}
	for _, f := range faults {
		counts.Add(f.Counts())
	}
	t.Logf("%d holds; at most %d readers at once; faults %v", len(hist.holds), peak, counts)
	if want := (readers + writers + mutexes) * rounds; len(hist.holds) != want {
		t.Errorf("%d holds; want %d", len(hist.holds), want)
	}
	wantShareRenewers(t, 0)
}

// peakUnits returns the most units that the holds for which keep is true
// held at one instant.
func peakUnits(holds []semHold, keep func(semHold) bool) int64 {
	var peak int64
	for _, a := range holds {
		if !keep(a) {
			continue
		}
		var at int64
		for _, b := range holds {
			if keep(b) && !b.granted.After(a.granted) && b.ended.After(a.granted) {
				at += b.units
			}
		}
		peak = max(peak, at)
	}
	return peak
}

// TestRWMutexNoWriterStarvation: readers of 4 RWMutex values hold the
// read lock without pause, their holds overlapping so that it is never
// free. A writer's Lock still gets the lock, after a bounded number of
// read grants, and the readers carry on after its Unlock.
func TestRWMutexNoWriterStarvation(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key, readers = "rw/starve", 4
	var (
		grants   atomic.Int64 // read grants so far
		writerIn atomic.Bool  // the writer holds the lock
		wg       sync.WaitGroup
	)
	stop := make(chan struct{})
	for i := range readers {
		rw := newRWKey(t, srv.Client(), srv, key, s3lock.WithOwner(fmt.Sprint("r", i)), s3lock.WithRetryInterval(20*time.Millisecond))
		wg.Go(func() {
			// Staggered so that the holds overlap.
			time.Sleep(time.Duration(i) * 40 * time.Millisecond)
			for {
				select {
				case <-stop:
					return
				default:
				}
				lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				err := rw.RLock(lctx)
				cancel()
				if err != nil {
					t.Errorf("r%d.RLock() = %v", i, err)
					return
				}
				if writerIn.Load() {
					t.Errorf("r%d got the read lock (token %d) while the writer held it", i, rw.Token())
				}
				grants.Add(1)
				time.Sleep(160 * time.Millisecond)
				if err := rw.RUnlock(ctx); err != nil {
					t.Errorf("r%d.RUnlock() = %v", i, err)
					return
				}
			}
		})
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	// Wait until the readers are in their stride.
	for grants.Load() < 2*readers {
		time.Sleep(10 * time.Millisecond)
	}
	w := newRWKey(t, srv.Client(), srv, key, s3lock.WithOwner("writer"), s3lock.WithRetryInterval(20*time.Millisecond))
	before := grants.Load()
	lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := w.Lock(lctx); err != nil {
		t.Fatalf("writer Lock() under continuous readers = %v", err)
	}
	writerIn.Store(true)
	passed := grants.Load() - before
	t.Logf("read grants while the writer waited: %d", passed)
	// Readers already past their poll may slip in once each, twice at most.
	if passed > 2*readers {
		t.Errorf("%d read grants while the writer waited; want at most %d", passed, 2*readers)
	}
	time.Sleep(200 * time.Millisecond)
	atWrite := grants.Load()
	writerIn.Store(false)
	if err := w.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); grants.Load() < atWrite+readers; {
		if time.Now().After(deadline) {
			t.Fatalf("readers got %d grants in 10 s after the writer's Unlock; want %d", grants.Load()-atWrite, readers)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRWMutexReadersWaitBehindWriter: once a writer waits (its
// reservation is in the object), TryRLock fails and RLock waits, even
// though only readers hold the lock; the waiting reader gets the lock
// after the writer's Unlock.
func TestRWMutexReadersWaitBehindWriter(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "rw/behind"
	r1 := newRWKey(t, srv.Client(), srv, key, s3lock.WithOwner("r1"))
	if err := r1.RLock(ctx); err != nil {
		t.Fatal(err)
	}
	w := newRWKey(t, srv.Client(), srv, key, s3lock.WithOwner("writer"), s3lock.WithRetryInterval(20*time.Millisecond))
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	wrote := make(chan error, 1)
	go func() { wrote <- w.Lock(wctx) }()
	for deadline := time.Now().Add(10 * time.Second); ; {
		rec, _ := rawRecord(t, srv, key)
		if rec["next"] != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reservation in the record 10 s after the writer began to wait: %v", rec)
		}
		time.Sleep(10 * time.Millisecond)
	}
	r2 := newRWKey(t, srv.Client(), srv, key, s3lock.WithOwner("r2"), s3lock.WithRetryInterval(20*time.Millisecond))
	for range 3 {
		wantLocked(t, r2.TryRLock(ctx))
		time.Sleep(50 * time.Millisecond)
	}
	// Another value's RLock waits, and gets the lock after the writer.
	read := make(chan error, 1)
	rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
	defer rcancel()
	go func() { read <- r2.RLock(rctx) }()
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-read:
		t.Fatalf("r2.RLock() while a writer waits = %v (token %d); want it to wait", err, r2.Token())
	default:
	}
	if err := r1.RUnlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err != nil {
		t.Fatalf("writer Lock() = %v", err)
	}
	select {
	case err := <-read:
		t.Fatalf("r2.RLock() while the writer holds = %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	wtok := w.Token()
	if err := w.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-read; err != nil {
		t.Fatalf("r2.RLock() after the writer's Unlock = %v", err)
	}
	if r2.Token() <= wtok {
		t.Errorf("reader token %d after writer's %d; want larger", r2.Token(), wtok)
	}
	if err := r2.RUnlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestMutexOnReadHeldKey: a Mutex on a read-held key gets a *LockedError
// (ErrLocked) from TryLock and waits in Lock; a reader on a Mutex-held key
// likewise.
func TestMutexOnReadHeldKey(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "rw/mutex"
	r := newRWKey(t, srv.Client(), srv, key)
	if err := r.RLock(ctx); err != nil {
		t.Fatal(err)
	}
	m := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithRetryInterval(20*time.Millisecond))
	wantLocked(t, m.TryLock(ctx))
	lctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := m.Lock(lctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Mutex Lock() on a read-held key = %v; want DeadlineExceeded", err)
	}
	if err := r.Context().Err(); err != nil {
		t.Fatalf("reader's hold ended while a Mutex waited: %v", context.Cause(r.Context()))
	}
	if err := r.RUnlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("Mutex TryLock() after RUnlock = %v", err)
	}
	wantLocked(t, r.TryRLock(ctx))
	rctx, rcancel := context.WithTimeout(ctx, time.Second)
	defer rcancel()
	if err := r.RLock(rctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RLock() on a Mutex-held key = %v; want DeadlineExceeded", err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestMutexWaitsOnSemaphoreKey: a Mutex whose Lock waits on a key held by
// three renewing semaphore holders (and by readers, on another key) must
// not erase their holder table: every held record seen while it waits
// lists them all, they keep their leases and renew for several TTLs, and
// the Mutex gets the lock after they release, with a larger token.
func TestMutexWaitsOnSemaphoreKey(t *testing.T) {
	for _, kind := range []string{"semaphore", "readers"} {
		t.Run(kind, func(t *testing.T) {
			srv := s3locktest.New(t)
			ctx := context.Background()
			key := "shared/" + kind
			const holders = 3
			type holderT struct {
				name    string
				release func(context.Context) error
				hold    func() context.Context
				token   func() uint64
			}
			var hs []holderT
			for i := range holders {
				opts := []s3lock.Option{s3lock.WithOwner(fmt.Sprint("h", i)), s3lock.WithTTL(renewTTL), s3lock.WithAutoRenew(renewInterval)}
				if kind == "semaphore" {
					s := newSem(t, srv, key, 4, opts...)
					if err := s.TryAcquire(ctx, 1); err != nil {
						t.Fatal(err)
					}
					hs = append(hs, holderT{fmt.Sprint("h", i), s.Release, s.Context, s.Token})
				} else {
					rw := newRWKey(t, srv.Client(), srv, key, opts...)
					if err := rw.RLock(ctx); err != nil {
						t.Fatal(err)
					}
					hs = append(hs, holderT{fmt.Sprint("h", i), rw.RUnlock, rw.Context, rw.Token})
				}
			}
			stop := make(chan struct{})
			watched := make(chan string, 1)
			var seen atomic.Int64
			go func() {
				defer close(watched)
				for {
					select {
					case <-stop:
						return
					case <-time.After(5 * time.Millisecond):
					}
					rec, err := rawRecordErr(srv, key)
					if err != nil || rec["state"] != "held" {
						continue
					}
					if list, _ := rec["holders"].([]any); len(list) != holders {
						watched <- fmt.Sprint(rec)
						return
					}
					seen.Add(1)
				}
			}()
			m := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("mutex"), s3lock.WithTTL(renewTTL),
				s3lock.WithRetryInterval(50*time.Millisecond))
			lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			locked := make(chan error, 1)
			go func() { locked <- m.Lock(lctx) }()
			select {
			case err := <-locked:
				t.Fatalf("Mutex Lock() on a key of live holders returned %v (token %d)", err, m.Token())
			case <-time.After(4 * renewTTL):
			}
			for _, h := range hs {
				if err := h.hold().Err(); err != nil {
					t.Errorf("%s lost its hold while a Mutex waited: %v", h.name, context.Cause(h.hold()))
				}
			}
			rec, _ := rawRecord(t, srv, key)
			t.Logf("record while the Mutex waits: next=%v next_units=%v; %d held records seen", rec["next"], rec["next_units"], seen.Load())
			close(stop)
			if bad, ok := <-watched; ok {
				t.Errorf("held record without all %d holders while a Mutex waited: %s", holders, bad)
			}
			var maxTok uint64
			for _, h := range hs {
				maxTok = max(maxTok, h.token())
				if err := h.release(ctx); err != nil {
					t.Errorf("%s: release after a Mutex waited = %v", h.name, err)
				}
			}
			if err := <-locked; err != nil {
				t.Fatalf("Mutex Lock() after the holders released = %v", err)
			}
			if m.Token() <= maxTok {
				t.Errorf("Mutex token %d; want above the holders' %d", m.Token(), maxTok)
			}
			if err := m.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRWMutexReaderDiesWriterWaits: a reader dies holding (never renews
// nor releases) while a writer waits, reserved; another reader that polls
// faster than the writer must still not take the read lock ahead of it
// once the dead reader's lease has run out: the writer gets the lock
// first, the reader after the writer's Unlock.
func TestRWMutexReaderDiesWriterWaits(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "rw/dead-reader"
	dead := newRWKey(t, srv.Client(), srv, key, s3lock.WithOwner("dead"), s3lock.WithTTL(renewTTL))
	if err := dead.RLock(ctx); err != nil {
		t.Fatal(err)
	}
	w := newRWKey(t, srv.Client(), srv, key, s3lock.WithOwner("writer"), s3lock.WithRetryInterval(250*time.Millisecond))
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	wrote := make(chan error, 1)
	go func() { wrote <- w.Lock(wctx) }()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if rec, _ := rawRecord(t, srv, key); rec["next"] != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no reservation in the record 10 s after the writer began to wait")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := newRWKey(t, srv.Client(), srv, key, s3lock.WithOwner("reader"), s3lock.WithRetryInterval(20*time.Millisecond))
	read := make(chan error, 1)
	rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
	defer rcancel()
	go func() { read <- r.RLock(rctx) }()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatalf("writer Lock() = %v", err)
		}
	case err := <-read:
		t.Fatalf("reader RLock() = %v (token %d) ahead of the writer that waited, reserved, before it", err, r.Token())
	}
	wtok := w.Token()
	if err := w.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-read; err != nil {
		t.Fatalf("reader RLock() after the writer's Unlock = %v", err)
	}
	if r.Token() <= wtok {
		t.Errorf("reader token %d after the writer's %d; want larger", r.Token(), wtok)
	}
	if err := r.RUnlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dead.RUnlock(ctx); !errors.Is(err, s3lock.ErrLeaseLost) {
		t.Errorf("dead reader's RUnlock() = %v; want ErrLeaseLost", err)
	}
}

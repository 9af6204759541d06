package s3lock_test

// Adversarial tests of issue 17 (semaphores and shared locks in one
// record, schema 3). Each test names the promise it attacks; those that
// fail show a bug (see the comment above each).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/internal/prevrelease"
	"github.com/s3lock/s3lock/s3locktest"
)

// sharedBody is a schema-3 record listing the given holder entries (JSON
// objects), with top-level generation, ttl_ms and limit.
func sharedBody(gen uint64, ttlMS, limit int64, entries ...string) []byte {
	lim := ""
	if limit != 0 {
		lim = fmt.Sprintf(`,"limit":%d`, limit)
	}
	return fmt.Appendf(nil, `{"s3lock":3,"state":"held","nonce":"top%d","generation":%d,"ttl_ms":%d%s,"holders":[%s]}`,
		gen, gen, ttlMS, lim, strings.Join(entries, ","))
}

// TestRedteamSharedHugeHolderTTLCountsAsHeld attacks promises 3 and 5: a
// record a version cannot accept counts as held, and ttl_ms above 7 days
// counts as 7 days (docs/record-format.md, rule 4). decodeRecord runs
// checkShared for schema 3 and then skips the ttl_ms bound that schemas 1
// and 2 get; holder.ttl() then multiplies a huge ttl_ms into a negative
// time.Duration, so a holder written a moment ago is judged expired at once
// and a fresh Mutex takes the key over. The releases before it hold the
// same object for 7 days.
func TestRedteamSharedHugeHolderTTLCountsAsHeld(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const huge = int64(10_000_000_000_000) // ms: about 317 years; ×1e6 overflows int64 ns
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"holder and record ttl_ms huge", sharedBody(7, huge, 0, fmt.Sprintf(`{"id":"reader-a","units":1,"token":7,"ttl_ms":%d,"nonce":"n-a"}`, huge))},
		{"record ttl_ms huge, holder ttl_ms huge, limit 3", sharedBody(7, huge, 3, fmt.Sprintf(`{"id":"sem-a","units":2,"token":7,"ttl_ms":%d,"nonce":"n-a"}`, huge))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "redteam/huge-ttl/" + strings.ReplaceAll(tc.name, " ", "-")
			if err := srv.PutObject(ctx, key, tc.body); err != nil {
				t.Fatal(err)
			}
			old, perr := prevrelease.New(srv.Client(), srv.Bucket(), key)
			if perr != nil {
				t.Fatal(perr)
			}
			if err := old.TryLock(ctx); !errors.Is(err, prevrelease.ErrLocked) {
				t.Fatalf("previous release TryLock() = %v; want ErrLocked", err)
			}
			m := newMutex(t, srv.Client(), srv.Bucket(), key)
			err := m.TryLock(ctx)
			if err == nil {
				_ = m.Unlock(ctx)
				t.Fatalf("Mutex.TryLock() over a record written a moment ago with ttl_ms %d = nil; want ErrLocked (rule 4: held, at least for 7 days)", huge)
			}
			wantLocked(t, err)
		})
	}
}

// TestRedteamSharedUnitsOverflowCountsAsHeld attacks promises 1 and 5:
// checkShared sums the units of the entries in an int64 and compares the
// sum with the limit; with limit MaxInt64 the sum of entries of
// MaxInt64, MaxInt64 and 3 units wraps to 1, so a record listing far more
// units than its limit is accepted, and judgeShared (whose sum wraps the
// same way) grants another unit over it.
func TestRedteamSharedUnitsOverflowCountsAsHeld(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	key := "redteam/units-overflow"
	const big = math.MaxInt64
	body := sharedBody(9, 30000, big,
		fmt.Sprintf(`{"id":"sem-a","units":%d,"token":7,"ttl_ms":30000,"nonce":"n-a"}`, int64(big)),
		fmt.Sprintf(`{"id":"sem-b","units":%d,"token":8,"ttl_ms":30000,"nonce":"n-b"}`, int64(big)),
		`{"id":"sem-c","units":3,"token":9,"ttl_ms":30000,"nonce":"n-c"}`)
	if err := srv.PutObject(ctx, key, body); err != nil {
		t.Fatal(err)
	}
	s := newSem(t, srv, key, big)
	if err := s.TryAcquire(ctx, 1); err == nil {
		st := lockState(t, srv, key)
		_ = s.Release(ctx)
		t.Fatalf("TryAcquire(1) over a record listing 2×MaxInt64+3 units (limit MaxInt64) = nil (Inspect: %d units, %d holders); want ErrLocked",
			st.Units, len(st.Holders))
	} else if !errors.Is(err, s3lock.ErrLocked) {
		t.Fatalf("TryAcquire(1) = %v; want ErrLocked", err)
	}
}

// TestRedteamSharedHostileRecords attacks promise 5: no panic on hostile
// schema-3 records, and every such record written a moment ago counts as
// held by every kind of contender (it is either invalid, or lists a live
// holder).
func TestRedteamSharedHostileRecords(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	entry := `{"id":"h1","units":1,"token":3,"ttl_ms":30000,"nonce":"x"}`
	bodies := map[string]string{
		"duplicate ids":       string(sharedBody(3, 30000, 0, entry, entry)),
		"token > generation":  string(sharedBody(2, 30000, 0, entry)),
		"token 0":             string(sharedBody(3, 30000, 0, `{"id":"h1","units":1,"token":0,"ttl_ms":30000,"nonce":"x"}`)),
		"negative since":      string(sharedBody(3, 30000, 0, `{"id":"h1","units":1,"token":3,"ttl_ms":30000,"nonce":"x","since":-5}`)),
		"since in the future": string(sharedBody(3, 30000, 0, `{"id":"h1","units":1,"token":3,"ttl_ms":30000,"nonce":"x","since":99999999999}`)),
		"units 0":             string(sharedBody(3, 30000, 0, `{"id":"h1","units":0,"token":3,"ttl_ms":30000,"nonce":"x"}`)),
		"units negative":      string(sharedBody(3, 30000, 2, `{"id":"h1","units":-1,"token":3,"ttl_ms":30000,"nonce":"x"}`)),
		"units over limit":    string(sharedBody(3, 30000, 2, `{"id":"h1","units":3,"token":3,"ttl_ms":30000,"nonce":"x"}`)),
		"units huge, readers": string(sharedBody(3, 30000, 0, `{"id":"h1","units":9223372036854775807,"token":3,"ttl_ms":30000,"nonce":"x"}`, `{"id":"h2","units":9223372036854775807,"token":3,"ttl_ms":30000,"nonce":"y"}`)),
		"units a string":      string(sharedBody(3, 30000, 0, `{"id":"h1","units":"1","token":3,"ttl_ms":30000,"nonce":"x"}`)),
		"ttl a float":         string(sharedBody(3, 30000, 0, `{"id":"h1","units":1,"token":3,"ttl_ms":1.5,"nonce":"x"}`)),
		"holder ttl > record": string(sharedBody(3, 1000, 0, entry)),
		"holder null":         string(sharedBody(3, 30000, 0, `null`)),
		"holder a number":     string(sharedBody(3, 30000, 0, `7`)),
		"holders empty":       `{"s3lock":3,"state":"held","nonce":"t","generation":3,"ttl_ms":30000,"holders":[]}`,
		"holders an object":   `{"s3lock":3,"state":"held","nonce":"t","generation":3,"ttl_ms":30000,"holders":{"id":"h1"}}`,
		"state free":          `{"s3lock":3,"state":"free","nonce":"t","generation":3,"ttl_ms":30000,"holders":[` + entry + `]}`,
		"limit negative":      string(sharedBody(3, 30000, -1, entry)),
		"limit a string":      `{"s3lock":3,"state":"held","nonce":"t","generation":3,"ttl_ms":30000,"limit":"2","holders":[` + entry + `]}`,
		"schema 1 + holders":  `{"s3lock":1,"state":"held","nonce":"t","generation":3,"ttl_ms":30000,"holders":[` + entry + `]}`,
		"next_units huge":     `{"s3lock":3,"state":"held","nonce":"t","generation":3,"ttl_ms":30000,"next":"w","next_waited":18446744073709551615,"next_units":9223372036854775807,"holders":[` + entry + `]}`,
		"id 65 bytes":         string(sharedBody(3, 30000, 0, `{"id":"`+strings.Repeat("i", 65)+`","units":1,"token":3,"ttl_ms":30000,"nonce":"x"}`)),
		"entry extra fields":  string(sharedBody(3, 30000, 0, `{"id":"h1","units":1,"token":3,"ttl_ms":30000,"nonce":"x","Units":5,"ID":"h9","\u00ff":1,"zzz":{"a":[1,2]}}`)),
		"generation max":      string(sharedBody(math.MaxUint64, 30000, 0, `{"id":"h1","units":1,"token":18446744073709551615,"ttl_ms":30000,"nonce":"x"}`)),
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			key := "redteam/hostile/" + strings.ReplaceAll(name, " ", "-")
			if err := srv.PutObject(ctx, key, []byte(body)); err != nil {
				t.Fatal(err)
			}
			st, err := s3lock.Inspect(ctx, srv.Client(), srv.Bucket(), key)
			if err != nil {
				t.Fatalf("Inspect() = %v", err)
			}
			m := newMutex(t, srv.Client(), srv.Bucket(), key)
			if err := m.TryLock(ctx); err == nil {
				_ = m.Unlock(ctx)
				t.Errorf("Mutex.TryLock() = nil over %s; want ErrLocked", body)
			}
			for _, limit := range []int64{1, 2, math.MaxInt64} {
				s := newSem(t, srv, key, limit)
				if err := s.TryAcquire(ctx, 1); err == nil {
					_ = s.Release(ctx)
					t.Errorf("Semaphore(%d).TryAcquire(1) = nil over %s; want an error", limit, body)
				}
			}
			rw := newRWAt(t, srv, key)
			if err := rw.TryRLock(ctx); err == nil {
				_ = rw.RUnlock(ctx)
				if st.Invalid != nil {
					t.Errorf("TryRLock() = nil over an invalid record (%v)", st.Invalid)
				}
			}
			for _, h := range st.Holders {
				if _, err := s3lock.ForceUnlockHolder(ctx, srv.Client(), srv.Bucket(), key, st.ETag, h.ID); err != nil && !errors.Is(err, s3lock.ErrChanged) && !errors.Is(err, s3lock.ErrInvalidLockObject) && !errors.Is(err, s3lock.ErrNotHeld) {
					t.Logf("ForceUnlockHolder(%q) = %v", h.ID, err)
				}
			}
		})
	}
}

// newRWAt is NewRWMutex for tests.
func newRWAt(tb testing.TB, srv *s3locktest.Server, key string, opts ...s3lock.Option) *s3lock.RWMutex {
	tb.Helper()
	rw, err := s3lock.NewRWMutex(srv.Client(), srv.Bucket(), key, opts...)
	if err != nil {
		tb.Fatalf("NewRWMutex() = %v", err)
	}
	return rw
}

// holdBook checks the holds a hammer's workers believe they have: units
// of holders whose hold context is not done never exceed limit, an
// exclusive hold never overlaps another, and no two grants share a token.
type holdBook struct {
	t     *testing.T
	limit int64

	mu     sync.Mutex
	active map[int]bookHold
	tokens map[uint64]string
	grants int
	lost   int
}

type bookHold struct {
	who   string
	units int64
	excl  bool
	ctx   context.Context
}

func newHoldBook(t *testing.T, limit int64) *holdBook {
	return &holdBook{t: t, limit: limit, active: map[int]bookHold{}, tokens: map[uint64]string{}}
}

func (b *holdBook) enter(id int, h bookHold, token uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.grants++
	if h.ctx.Err() != nil {
		return // lost before it began: the worker must not use it
	}
	if prev, ok := b.tokens[token]; ok {
		b.t.Errorf("%s got token %d, already granted to %s", h.who, token, prev)
	}
	b.tokens[token] = h.who
	used := h.units
	for _, o := range b.active {
		if o.ctx.Err() != nil {
			continue
		}
		if o.excl || h.excl {
			b.t.Errorf("%s (exclusive %v) entered while %s (exclusive %v) believes it holds", h.who, h.excl, o.who, o.excl)
		}
		used += o.units
	}
	if used > b.limit {
		b.t.Errorf("%s entered: %d units held by holders that believe they hold, limit %d", h.who, used, b.limit)
	}
	b.active[id] = h
}

func (b *holdBook) exit(id int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if h, ok := b.active[id]; ok && h.ctx.Err() != nil {
		b.lost++
	}
	delete(b.active, id)
}

// sharedHammerFaults are the faults of the hammers: lost answers, 5xx after the
// write was applied (the SDK retries them into 412s), 409s, plain 500s.
var sharedHammerFaults = s3locktest.FaultConfig{DropResponse: 0.05, ErrorAfterApply: 0.05, Conflict: 0.05, InternalError: 0.03, Jitter: 3 * time.Millisecond}

// TestRedteamSharedHammerFaults attacks promise 1 with ambiguous writes:
// semaphore holders (1 or 2 of 3 units) and a Mutex on one key, and
// RWMutex readers, writers and a Mutex on another, every client with its
// own faults. Guard: it passes.
func TestRedteamSharedHammerFaults(t *testing.T) {
	srv := s3locktest.New(t)
	seed := seedFor(t)
	const run = 8 * time.Second
	opts := []s3lock.Option{s3lock.WithTTL(3 * time.Second), s3lock.WithAutoRenew(time.Second), s3lock.WithRetryInterval(20 * time.Millisecond)}
	type worker struct {
		who          string
		units        int64
		excl         bool
		lock, unlock func(context.Context) error
		token        func() uint64
		hold         func() context.Context
	}
	for _, tc := range []struct {
		name  string
		limit int64
		make  func(i int, c s3lock.S3API, key string) worker
		n     int
	}{
		{"semaphore 3 and a Mutex", 3, func(i int, c s3lock.S3API, key string) worker {
			if i == 0 {
				m := newMutex(t, c, srv.Bucket(), key, opts...)
				return worker{"mutex", 3, true, m.Lock, m.Unlock, m.Token, m.Context}
			}
			s, err := s3lock.NewSemaphore(c, srv.Bucket(), key, 3, opts...)
			if err != nil {
				t.Fatal(err)
			}
			n := int64(1 + i%2)
			return worker{fmt.Sprintf("sem%d(%d)", i, n), n, false, func(ctx context.Context) error { return s.Acquire(ctx, n) }, s.Release, s.Token, s.Context}
		}, 6},
		{"readers, writers and a Mutex", math.MaxInt64, func(i int, c s3lock.S3API, key string) worker {
			if i == 0 {
				m := newMutex(t, c, srv.Bucket(), key, opts...)
				return worker{"mutex", 1, true, m.Lock, m.Unlock, m.Token, m.Context}
			}
			rw, err := s3lock.NewRWMutex(c, srv.Bucket(), key, opts...)
			if err != nil {
				t.Fatal(err)
			}
			if i == 1 {
				return worker{"writer", 1, true, rw.Lock, rw.Unlock, rw.Token, rw.Context}
			}
			return worker{fmt.Sprintf("reader%d", i), 1, false, rw.RLock, rw.RUnlock, rw.Token, rw.Context}
		}, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "redteam/hammer/" + strings.ReplaceAll(tc.name, " ", "-")
			book := newHoldBook(t, tc.limit)
			ctx, cancel := context.WithTimeout(context.Background(), run)
			defer cancel()
			var wg sync.WaitGroup
			var faults []*s3locktest.Faults
			for i := range tc.n {
				f := s3locktest.NewFaults(seed+uint64(i), sharedHammerFaults)
				faults = append(faults, f)
				w := tc.make(i, srv.FaultyClient(f), key)
				wg.Add(1)
				go func() {
					defer wg.Done()
					for ctx.Err() == nil {
						if err := w.lock(ctx); err != nil {
							continue
						}
						book.enter(i, bookHold{w.who, w.units, w.excl, w.hold()}, w.token())
						// Some holds outlast a renewal, so renewals race grants and releases.
						hold := time.Duration(5+i*3) * time.Millisecond
						if i%3 == 2 {
							hold = 1500 * time.Millisecond
						}
						time.Sleep(hold)
						book.exit(i)
						_ = w.unlock(context.Background())
					}
				}()
			}
			wg.Wait()
			var counts s3locktest.FaultCounts = s3locktest.FaultCounts{}
			for _, f := range faults {
				counts.Add(f.Counts())
			}
			t.Logf("%d grants, %d holds lost while held; faults: %v", book.grants, book.lost, counts)
			if book.grants < 10 {
				t.Errorf("only %d grants in %v: the hammer did not hammer", book.grants, run)
			}
		})
	}
}

// TestRedteamSharedLimitConflictWritesNothing attacks promise 5: a
// contender whose limit differs gets ErrLimitConflict and writes nothing
// (TryAcquire and a waiting Acquire alike), and bad arguments get
// ErrInvalidArgument. Guard: it passes.
func TestRedteamSharedLimitConflictWritesNothing(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	key := "redteam/limit-conflict"
	a := newSem(t, srv, key, 3)
	if err := a.TryAcquire(ctx, 3); err != nil { // full: a waiter would reserve
		t.Fatal(err)
	}
	defer a.Release(ctx)
	_, etag := rawRecord(t, srv, key)
	other := newSem(t, srv, key, 4, s3lock.WithRetryInterval(20*time.Millisecond))
	var lc *s3lock.LimitConflictError
	if err := other.TryAcquire(ctx, 1); !errors.As(err, &lc) || !errors.Is(err, s3lock.ErrLimitConflict) {
		t.Fatalf("TryAcquire(1) with limit 4 on a limit-3 key = %v; want a *LimitConflictError", err)
	}
	actx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := other.Acquire(actx, 4); !errors.Is(err, s3lock.ErrLimitConflict) {
		t.Fatalf("Acquire(4) with limit 4 on a limit-3 key = %v; want ErrLimitConflict", err)
	}
	rw := newRWAt(t, srv, key)
	if err := rw.TryRLock(ctx); !errors.Is(err, s3lock.ErrLimitConflict) {
		t.Fatalf("TryRLock() on a limit-3 key = %v; want ErrLimitConflict", err)
	}
	if _, now := rawRecord(t, srv, key); now != etag {
		t.Errorf("the lock object changed (ETag %s → %s) though every contender met a limit conflict", etag, now)
	}
	for _, n := range []int64{0, -1, 4, math.MaxInt64} {
		if err := a.TryAcquire(ctx, n); !errors.Is(err, s3lock.ErrInvalidArgument) {
			t.Errorf("TryAcquire(%d) on limit 3 = %v; want ErrInvalidArgument", n, err)
		}
		if err := other.Acquire(ctx, n+1); n+1 > 4 && !errors.Is(err, s3lock.ErrInvalidArgument) {
			t.Errorf("Acquire(%d) on limit 4 = %v; want ErrInvalidArgument", n+1, err)
		}
	}
	for _, limit := range []int64{0, -1, math.MinInt64} {
		if _, err := s3lock.NewSemaphore(srv.Client(), srv.Bucket(), key, limit); !errors.Is(err, s3lock.ErrInvalidArgument) {
			t.Errorf("NewSemaphore(limit %d) = %v; want ErrInvalidArgument", limit, err)
		}
	}
	b := newSem(t, srv, key, 3)
	if err := b.Release(ctx); !errors.Is(err, s3lock.ErrNotHeld) {
		t.Errorf("Release() without a hold = %v; want ErrNotHeld", err)
	}
	if err := rw.RUnlock(ctx); !errors.Is(err, s3lock.ErrNotHeld) {
		t.Errorf("RUnlock() without a hold = %v; want ErrNotHeld", err)
	}
}

// TestRedteamSharedPrevReleaseNeverTakesLiveHold attacks promise 3: a
// Mutex of the previous release (62e4b95) waiting on a key whose
// semaphore holders renew never takes it while one believes it holds, and
// takes it after they release with a larger generation. Guard: it passes.
func TestRedteamSharedPrevReleaseNeverTakesLiveHold(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	key := "redteam/prev-release"
	opts := []s3lock.Option{s3lock.WithTTL(1500 * time.Millisecond), s3lock.WithAutoRenew(400 * time.Millisecond)}
	a, b := newSem(t, srv, key, 2, opts...), newSem(t, srv, key, 2, opts...)
	if err := a.TryAcquire(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := b.TryAcquire(ctx, 1); err != nil {
		t.Fatal(err)
	}
	old, err := prevrelease.New(srv.Client(), srv.Bucket(), key, prevrelease.WithTTL(time.Second), prevrelease.WithRetryInterval(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	got := make(chan error, 1)
	go func() { got <- old.Lock(lctx) }()
	// The holders hand over: a releases, c takes its unit, b releases,
	// a takes again; someone always believes it holds.
	c := newSem(t, srv, key, 2, opts...)
	steps := []func() error{
		func() error { return a.Release(ctx) },
		func() error { return c.Acquire(lctx, 1) },
		func() error { return b.Release(ctx) },
		func() error { return a.Acquire(lctx, 1) },
		func() error { return c.Release(ctx) },
	}
	var maxToken uint64
	for i, step := range steps {
		select {
		case err := <-got:
			t.Fatalf("the previous release's Lock returned %v (step %d) while semaphore holders believe they hold", err, i)
		case <-time.After(1200 * time.Millisecond):
		}
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		maxToken = max(maxToken, a.Token(), b.Token(), c.Token())
	}
	select {
	case err := <-got:
		t.Fatalf("the previous release's Lock returned %v while a holds", err)
	case <-time.After(1200 * time.Millisecond):
	}
	if a.Context().Err() != nil {
		t.Fatalf("a's hold ended: %v", context.Cause(a.Context()))
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("the previous release's Lock after the last release = %v", err)
	}
	defer old.Unlock(ctx)
	if old.Token() <= maxToken {
		t.Errorf("previous release's token %d; want more than the semaphore's %d", old.Token(), maxToken)
	}
}

// TestRedteamSharedDeadHolderNotEarly attacks promise 1 on the expiry
// rule per holder: a semaphore holder whose client is cut off (it cannot
// renew) while another holder renews (stamping its entry's since) and a
// waiter reserves: the waiter's grant of its unit comes only after the
// dead holder's context is done. With S3's Date an hour ahead, and
// without. Guard: it passes.
func TestRedteamSharedDeadHolderNotEarly(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ahead time.Duration
	}{{"S3 clock right", 0}, {"S3 Date an hour ahead", time.Hour}} {
		t.Run(tc.name, func(t *testing.T) {
			var srv *s3locktest.Server
			if tc.ahead != 0 {
				srv = s3locktest.New(t, s3locktest.WithMiddleware(dateAhead(tc.ahead)))
			} else {
				srv = s3locktest.New(t)
			}
			ctx := context.Background()
			key := "redteam/dead-holder"
			const ttl = 2 * time.Second
			f := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
			dead, err := s3lock.NewSemaphore(srv.FaultyClient(f), srv.Bucket(), key, 2, s3lock.WithTTL(ttl), s3lock.WithAutoRenew(ttl/3))
			if err != nil {
				t.Fatal(err)
			}
			live := newSem(t, srv, key, 2, s3lock.WithTTL(ttl), s3lock.WithAutoRenew(300*time.Millisecond))
			if err := live.TryAcquire(ctx, 1); err != nil {
				t.Fatal(err)
			}
			defer live.Release(ctx)
			if err := dead.TryAcquire(ctx, 1); err != nil {
				t.Fatal(err)
			}
			granted := time.Now()
			f.Partition(time.Hour)
			defer f.Heal()
			w := newSem(t, srv, key, 2, s3lock.WithTTL(ttl), s3lock.WithRetryInterval(50*time.Millisecond))
			actx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			if err := w.Acquire(actx, 1); err != nil {
				t.Fatal(err)
			}
			took := time.Since(granted)
			if dead.Context().Err() == nil {
				t.Fatalf("a waiter was granted the dead holder's unit %v after its grant while it still believes it holds (TTL %v)", took, ttl)
			}
			if live.Context().Err() != nil {
				t.Errorf("the renewing holder lost its hold: %v", context.Cause(live.Context()))
			}
			t.Logf("taken over %v after the dead holder's grant", took)
			_ = w.Release(ctx)
			f.Heal()
			_ = dead.Release(ctx)
		})
	}
}

// plantUnknown rewrites the lock object at key with extra fields: one at
// the top level and one in every holder entry, everything else as it was
// (so the holders' nonces are unchanged). It returns the new ETag.
func plantUnknown(t *testing.T, srv *s3locktest.Server, key string) {
	t.Helper()
	m, _ := rawRecord(t, srv, key)
	m["zz_future"] = map[string]any{"keep": "me"}
	hs, _ := m["holders"].([]any)
	for _, h := range hs {
		h.(map[string]any)["zz_entry"] = "kept"
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.PutObject(context.Background(), key, b); err != nil {
		t.Fatal(err)
	}
}

// wantUnknown fails the test unless the record at key still carries the
// planted fields at the top level and in the entries of the holders ids.
func wantUnknown(t *testing.T, srv *s3locktest.Server, key, when string, ids ...string) {
	t.Helper()
	m, _ := rawRecord(t, srv, key)
	if _, ok := m["zz_future"]; !ok {
		t.Errorf("%s: the top-level unknown field is gone: %v", when, m)
	}
	hs, _ := m["holders"].([]any)
	for _, id := range ids {
		found := false
		for _, h := range hs {
			e := h.(map[string]any)
			if e["id"] == id {
				found = true
				if e["zz_entry"] != "kept" {
					t.Errorf("%s: holder %s lost its unknown field: %v", when, id, e)
				}
			}
		}
		if !found {
			t.Errorf("%s: holder %s is no longer listed: %v", when, id, m)
		}
	}
}

// TestRedteamSharedMutexWaitKeepsTable attacks promise 2 and the issue's
// "careful" note: a Mutex waiting on a semaphore key with live holders
// (it reserves the next turn), the holders' renewals and releases, a
// ForceUnlockHolder of one of them: the others keep their holds, and
// unknown fields at the top level and in their entries survive every
// rewrite within the holds. Guard: it passes.
func TestRedteamSharedMutexWaitKeepsTable(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	key := "redteam/mutex-wait-table"
	opts := []s3lock.Option{s3lock.WithTTL(3 * time.Second), s3lock.WithAutoRenew(time.Second)}
	a, b, c := newSem(t, srv, key, 3, opts...), newSem(t, srv, key, 3, opts...), newSem(t, srv, key, 3, opts...)
	for _, s := range []*s3lock.Semaphore{a, b, c} {
		if err := s.TryAcquire(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	st := lockState(t, srv, key)
	if len(st.Holders) != 3 {
		t.Fatalf("%d holders listed; want 3", len(st.Holders))
	}
	idOf := map[uint64]string{}
	for _, h := range st.Holders {
		idOf[h.Token] = h.ID
	}
	idA, idB, idC := idOf[a.Token()], idOf[b.Token()], idOf[c.Token()]
	plantUnknown(t, srv, key)
	m := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithRetryInterval(50*time.Millisecond))
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	got := make(chan error, 1)
	go func() { got <- m.Lock(lctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if raw, _ := rawRecord(t, srv, key); raw["next"] != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the waiting Mutex never reserved its turn")
		}
		time.Sleep(20 * time.Millisecond)
	}
	wantUnknown(t, srv, key, "after the Mutex's reservation", idA, idB, idC)
	time.Sleep(2500 * time.Millisecond) // every holder renews at least twice
	wantUnknown(t, srv, key, "after renewals", idA, idB, idC)
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	wantUnknown(t, srv, key, "after b's release", idA, idC)
	st = lockState(t, srv, key)
	if _, err := s3lock.ForceUnlockHolder(ctx, srv.Client(), srv.Bucket(), key, st.ETag, idC); err != nil {
		t.Fatal(err)
	}
	wantUnknown(t, srv, key, "after c was broken", idA)
	time.Sleep(1500 * time.Millisecond)
	wantUnknown(t, srv, key, "after a's next renewal", idA)
	select {
	case err := <-got:
		t.Fatalf("Mutex.Lock() = %v while a holds", err)
	default:
	}
	if a.Context().Err() != nil {
		t.Fatalf("a lost its hold: %v", context.Cause(a.Context()))
	}
	waitDone(t, c.Context(), 5*time.Second, "the broken holder's context")
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("Mutex.Lock() after the last release = %v", err)
	}
	if m.Token() <= max(a.Token(), b.Token(), c.Token(), st.Generation) {
		t.Errorf("Mutex token %d not above the semaphore's (generation %d)", m.Token(), st.Generation)
	}
	_ = m.Unlock(ctx)
	_ = c.Release(ctx)
}

// TestRedteamSharedNoStarvation attacks promise 4: a request for every
// unit of a semaphore, and an RWMutex writer, each get their turn while
// small holders (readers) keep coming and going with overlapping holds.
// Guard: it passes.
func TestRedteamSharedNoStarvation(t *testing.T) {
	srv := s3locktest.New(t)
	opts := []s3lock.Option{s3lock.WithTTL(3 * time.Second), s3lock.WithRetryInterval(20 * time.Millisecond)}
	for _, tc := range []struct {
		name  string
		small func(key string) (lock, unlock func(context.Context) error)
		big   func(key string) (lock, unlock func(context.Context) error)
	}{
		{"semaphore: 3 of 3 among 1-unit holders", func(key string) (func(context.Context) error, func(context.Context) error) {
			s := newSem(t, srv, key, 3, opts...)
			return func(ctx context.Context) error { return s.Acquire(ctx, 1) }, s.Release
		}, func(key string) (func(context.Context) error, func(context.Context) error) {
			s := newSem(t, srv, key, 3, opts...)
			return func(ctx context.Context) error { return s.Acquire(ctx, 3) }, s.Release
		}},
		{"RWMutex: a writer among readers", func(key string) (func(context.Context) error, func(context.Context) error) {
			rw := newRWAt(t, srv, key, opts...)
			return rw.RLock, rw.RUnlock
		}, func(key string) (func(context.Context) error, func(context.Context) error) {
			rw := newRWAt(t, srv, key, opts...)
			return rw.Lock, rw.Unlock
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "redteam/starve/" + strings.ReplaceAll(tc.name, " ", "-")
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for i := range 3 {
				lock, unlock := tc.small(key)
				wg.Add(1)
				go func() {
					defer wg.Done()
					for ctx.Err() == nil {
						if lock(ctx) != nil {
							continue
						}
						time.Sleep(time.Duration(100+50*i) * time.Millisecond)
						_ = unlock(context.Background())
					}
				}()
			}
			time.Sleep(500 * time.Millisecond)
			lock, unlock := tc.big(key)
			bctx, bcancel := context.WithTimeout(context.Background(), 15*time.Second)
			start := time.Now()
			err := lock(bctx)
			bcancel()
			took := time.Since(start)
			cancel()
			if err == nil {
				_ = unlock(context.Background())
			}
			wg.Wait()
			if err != nil {
				t.Fatalf("the big request waited %v among small ones and gave up: %v", took, err)
			}
			t.Logf("the big request got its turn after %v", took)
		})
	}
}

// TestRedteamSharedRenewalsDoNotFight attacks promise 2: twelve holders
// of one key renewing every second (TTL 3 s), with 409 conflicts and lost
// answers on their clients, all keep their holds. Guard: it passes.
func TestRedteamSharedRenewalsDoNotFight(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	seed := seedFor(t)
	key := "redteam/renewals"
	const holders = 12
	var sems []*s3lock.Semaphore
	for i := range holders {
		f := s3locktest.NewFaults(seed+uint64(i), s3locktest.FaultConfig{Conflict: 0.05, DropResponse: 0.03, ErrorAfterApply: 0.03})
		s, err := s3lock.NewSemaphore(srv.FaultyClient(f), srv.Bucket(), key, holders, s3lock.WithTTL(3*time.Second), s3lock.WithAutoRenew(time.Second), s3lock.WithOwner(fmt.Sprintf("h%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = s.Acquire(actx, 1)
		cancel()
		if err != nil {
			t.Fatalf("holder %d: Acquire() = %v", i, err)
		}
		sems = append(sems, s)
	}
	time.Sleep(8 * time.Second)
	for i, s := range sems {
		if s.Context().Err() != nil {
			t.Errorf("holder %d lost its hold while renewing: %v", i, context.Cause(s.Context()))
		}
	}
	if st := lockState(t, srv, key); len(st.Holders) != holders {
		t.Errorf("%d holders listed; want %d", len(st.Holders), holders)
	}
	for _, s := range sems {
		_ = s.Release(ctx)
	}
}

// TestRedteamSharedJoinedReadersStarveWriter attacks promise 4 (issue 17:
// "as with sync.RWMutex: once a writer waits, new readers wait behind
// it"). RLock on an RWMutex value that already holds a read hold joins it
// without looking at S3 (rwmutex.go rlock: readers > 0 && writers == 0,
// writers counting only this value's own Lock calls), so goroutines that
// share one value (a server's request handlers) and take overlapping read
// locks keep its hold forever: a writer elsewhere that reserved the next
// turn waits until its context ends.
func TestRedteamSharedJoinedReadersStarveWriter(t *testing.T) {
	srv := s3locktest.New(t)
	key := "redteam/joined-readers"
	opts := []s3lock.Option{s3lock.WithTTL(3 * time.Second), s3lock.WithAutoRenew(time.Second), s3lock.WithRetryInterval(50 * time.Millisecond)}
	v := newRWAt(t, srv, key, opts...)
	ctx, cancel := context.WithCancel(context.Background())
	if err := v.RLock(ctx); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	joins := 0
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 200 * time.Millisecond)
			for ctx.Err() == nil {
				if err := v.RLock(ctx); err != nil {
					continue
				}
				mu.Lock()
				joins++
				mu.Unlock()
				time.Sleep(400 * time.Millisecond)
				_ = v.RUnlock(context.Background())
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	_ = v.RUnlock(ctx) // the first RLock ends; the two goroutines go on
	w := newRWAt(t, srv, key, opts...)
	wctx, wcancel := context.WithTimeout(context.Background(), 8*time.Second)
	start := time.Now()
	err := w.Lock(wctx)
	wcancel()
	took := time.Since(start)
	cancel()
	wg.Wait()
	if err == nil {
		_ = w.Unlock(context.Background())
		t.Logf("the writer got its turn after %v", took)
		return
	}
	mu.Lock()
	defer mu.Unlock()
	t.Fatalf("a writer waited %v and gave up (%v) while %d new RLocks joined the read hold it was waiting for", took.Round(time.Millisecond), err, joins)
}

// TestRedteamSharedReleaseAfterBreak attacks promise 5: Release returns
// an error matching ErrLeaseLost when the hold had ended, "or it was
// broken" (semaphore.go). share.release counts every 412 as a possibly
// applied release of its own (uncertain), and then takes an entry found
// gone, within the lease, for its own release landing: after
// ForceUnlockHolder broke the hold, Release answers nil. The Mutex's
// Unlock reports the same break.
func TestRedteamSharedReleaseAfterBreak(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	t.Run("semaphore", func(t *testing.T) {
		key := "redteam/release-after-break"
		a := newSem(t, srv, key, 2)
		if err := a.TryAcquire(ctx, 1); err != nil {
			t.Fatal(err)
		}
		st := lockState(t, srv, key)
		if len(st.Holders) != 1 {
			t.Fatalf("%d holders; want 1", len(st.Holders))
		}
		if _, err := s3lock.ForceUnlockHolder(ctx, srv.Client(), srv.Bucket(), key, st.ETag, st.Holders[0].ID); err != nil {
			t.Fatal(err)
		}
		if err := a.Release(ctx); !errors.Is(err, s3lock.ErrLeaseLost) {
			t.Fatalf("Release() after ForceUnlockHolder broke the hold = %v; want ErrLeaseLost", err)
		}
	})
	t.Run("mutex, for comparison", func(t *testing.T) {
		key := "redteam/unlock-after-break"
		m := newMutex(t, srv.Client(), srv.Bucket(), key)
		if err := m.TryLock(ctx); err != nil {
			t.Fatal(err)
		}
		st := lockState(t, srv, key)
		if _, err := s3lock.ForceUnlock(ctx, srv.Client(), srv.Bucket(), key, st.ETag); err != nil {
			t.Fatal(err)
		}
		if err := m.Unlock(ctx); !errors.Is(err, s3lock.ErrLeaseLost) {
			t.Fatalf("Unlock() after ForceUnlock = %v; want ErrLeaseLost", err)
		}
	})
}

// TestRedteamSharedReacquireOverOwnOrphan attacks promise 1 with the same
// holder id listed twice over time: a Semaphore value whose Release
// failed (its entry stays listed) acquires again; its new grant replaces
// the old entry (the old hold's context is done), and the units listed
// never exceed the limit. Guard: it passes.
func TestRedteamSharedReacquireOverOwnOrphan(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	key := "redteam/reacquire-orphan"
	f := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
	v, err := s3lock.NewSemaphore(srv.FaultyClient(f), srv.Bucket(), key, 3, s3lock.WithReleaseTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.TryAcquire(ctx, 2); err != nil {
		t.Fatal(err)
	}
	old := v.Context()
	f.Partition(time.Hour)
	if err := v.Release(ctx); err == nil {
		t.Fatal("Release() through a partition = nil")
	}
	f.Heal()
	if old.Err() == nil {
		t.Fatal("the old hold's context is not done after a failed Release")
	}
	w := newSem(t, srv, key, 3)
	if err := w.TryAcquire(ctx, 1); err != nil {
		t.Fatal(err)
	}
	wantLocked(t, newSem(t, srv, key, 3).TryAcquire(ctx, 1))
	if err := v.TryAcquire(ctx, 2); err != nil {
		t.Fatalf("TryAcquire(2) over its own orphan entry = %v", err)
	}
	st := lockState(t, srv, key)
	if st.Units > 3 || len(st.Holders) != 2 {
		t.Errorf("after the re-acquire: %d units, %d holders listed; want at most 3 units and 2 holders", st.Units, len(st.Holders))
	}
	_ = v.Release(ctx)
	_ = w.Release(ctx)
}

// TestRedteamSharedStampsNeverAgeLiveHolder attacks promise 1 on the
// since stamps: while a holder renews properly, Mutex waiters come and
// go (each reservation and each withdrawal rewrites the record, stamping
// the holder's entry), and fresh contenders, which have no monotonic
// history and check S3's clock, judge the holder's lease from those
// stamps: none may take its unit while it believes it holds. Guard: it
// passes.
func TestRedteamSharedStampsNeverAgeLiveHolder(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	key := "redteam/stamps"
	const ttl = 2 * time.Second
	h := newSem(t, srv, key, 1, s3lock.WithTTL(ttl), s3lock.WithAutoRenew(600*time.Millisecond))
	if err := h.TryAcquire(ctx, 1); err != nil {
		t.Fatal(err)
	}
	defer h.Release(ctx)
	stop := time.Now().Add(4 * ttl)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // Mutex waiters: reserve, give up (withdraw), again
		defer wg.Done()
		for time.Now().Before(stop) {
			m := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithRetryInterval(50*time.Millisecond))
			lctx, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
			if err := m.Lock(lctx); err == nil {
				t.Errorf("a Mutex took the key while the semaphore holder renews")
				_ = m.Unlock(ctx)
			}
			cancel()
		}
	}()
	tries := 0
	for time.Now().Before(stop) {
		c := newSem(t, srv, key, 1, s3lock.WithTTL(ttl))
		err := c.TryAcquire(ctx, 1)
		tries++
		if err == nil {
			live := h.Context().Err() == nil
			_ = c.Release(ctx)
			if live {
				t.Fatalf("a fresh contender took the unit (try %d) while the holder renews and believes it holds", tries)
			}
			t.Fatalf("the renewing holder lost its hold: %v", context.Cause(h.Context()))
		}
		time.Sleep(150 * time.Millisecond)
	}
	wg.Wait()
	if h.Context().Err() != nil {
		t.Fatalf("the renewing holder lost its hold: %v", context.Cause(h.Context()))
	}
	t.Logf("%d fresh contenders refused", tries)
}

// TestRedteamSharedS3ClockDatesFromStamp attacks promise 1 on the S3-clock
// rule per holder: a dead holder's entry is stamped (since) by another
// holder's renewals; fresh contenders (a new Semaphore value per try, so
// only S3's clock can call the lease expired) must not take the dead
// holder's unit before its lease is over by its own clock. Guard: it
// passes.
func TestRedteamSharedS3ClockDatesFromStamp(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	key := "redteam/s3clock-stamp"
	const ttl = 2 * time.Second
	live := newSem(t, srv, key, 2, s3lock.WithTTL(ttl), s3lock.WithAutoRenew(600*time.Millisecond))
	if err := live.TryAcquire(ctx, 1); err != nil {
		t.Fatal(err)
	}
	defer live.Release(ctx)
	f := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
	dead, err := s3lock.NewSemaphore(srv.FaultyClient(f), srv.Bucket(), key, 2, s3lock.WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	if err := dead.TryAcquire(ctx, 1); err != nil {
		t.Fatal(err)
	}
	granted := time.Now()
	f.Partition(time.Hour)
	defer f.Heal()
	for time.Since(granted) < 15*time.Second {
		c := newSem(t, srv, key, 2, s3lock.WithTTL(ttl))
		if err := c.TryAcquire(ctx, 1); err == nil {
			took := time.Since(granted)
			believes := dead.Context().Err() == nil
			_ = c.Release(ctx)
			if believes {
				t.Fatalf("a fresh contender took the dead holder's unit %v after its grant while it believes it holds (TTL %v)", took, ttl)
			}
			t.Logf("a fresh contender took the dead holder's unit %v after its grant (by S3's clock)", took)
			if live.Context().Err() != nil {
				t.Errorf("the renewing holder lost its hold: %v", context.Cause(live.Context()))
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("no fresh contender took the dead holder's unit in 15s: S3's clock rule never decided")
}

package s3lock_test

// The Semaphore's contract: weights, invalid arguments, dead holders,
// limit conflicts and many renewing holders.

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

// TestSemaphoreWeights: a request of n units waits until n are free, and
// not while fewer are; the units of several holders add up to the limit.
func TestSemaphoreWeights(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key, limit = "sem/weights", 5
	opts := []s3lock.Option{s3lock.WithRetryInterval(20 * time.Millisecond)}
	a, b := newSem(t, srv, key, limit, opts...), newSem(t, srv, key, limit, opts...)
	c, d := newSem(t, srv, key, limit, opts...), newSem(t, srv, key, limit, opts...)
	if err := a.TryAcquire(ctx, 3); err != nil {
		t.Fatalf("a.TryAcquire(3) = %v", err)
	}
	if err := c.TryAcquire(ctx, 1); err != nil {
		t.Fatalf("c.TryAcquire(1) = %v", err)
	}
	// 1 unit free: b's 3 must wait for a's release.
	before := srv.Stats().Snapshot()
	got := make(chan error, 1)
	bctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	go func() { got <- b.Acquire(bctx, 3) }()
	waitForGets(t, srv, before, 10)
	select {
	case err := <-got:
		t.Fatalf("b.Acquire(3) with 1 unit free returned %v (token %d)", err, b.Token())
	default:
	}
	if err := c.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// 2 free: still not enough.
	waitForGets(t, srv, srv.Stats().Snapshot(), 5)
	select {
	case err := <-got:
		t.Fatalf("b.Acquire(3) with 2 units free returned %v (token %d)", err, b.Token())
	default:
	}
	if st := lockState(t, srv, key); st.Units != 3 || st.Limit != limit {
		t.Fatalf("Inspect: %d units of %d held; want 3 of %d", st.Units, st.Limit, limit)
	}
	aTok := a.Token()
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("b.Acquire(3) after a's release = %v", err)
	}
	if b.Token() <= aTok {
		t.Errorf("b.Token() = %d after a's release; want larger than a's %d", b.Token(), aTok)
	}
	if err := d.TryAcquire(ctx, 2); err != nil {
		t.Fatalf("d.TryAcquire(2) with 2 of 5 free = %v", err)
	}
	le := wantLocked(t, c.TryAcquire(ctx, 1))
	t.Logf("full semaphore: %v", le)
	if st := lockState(t, srv, key); st.Units != limit || len(st.Holders) != 2 {
		t.Errorf("Inspect: %d units, %d holders; want %d and 2", st.Units, len(st.Holders), limit)
	}
	for _, s := range []*s3lock.Semaphore{b, d} {
		if err := s.Release(ctx); err != nil {
			t.Error(err)
		}
	}
	if err := c.TryAcquire(ctx, limit); err != nil {
		t.Fatalf("TryAcquire(limit) on a free semaphore = %v", err)
	}
	if err := c.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestSemaphoreInvalidArguments: a limit ≤ 0 and n outside 1..limit are
// ErrInvalidArgument, and nothing is sent to S3.
func TestSemaphoreInvalidArguments(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	for _, limit := range []int64{0, -1, -1 << 62} {
		if s, err := s3lock.NewSemaphore(srv.Client(), srv.Bucket(), "sem/bad", limit); !errors.Is(err, s3lock.ErrInvalidArgument) || s != nil {
			t.Errorf("NewSemaphore(limit %d) = %v, %v; want nil, ErrInvalidArgument", limit, s, err)
		}
	}
	s := newSem(t, srv, "sem/bad", 3)
	before := srv.Stats().Snapshot()
	for _, n := range []int64{0, -1, 4, 1 << 62} {
		if err := s.Acquire(ctx, n); !errors.Is(err, s3lock.ErrInvalidArgument) {
			t.Errorf("Acquire(%d) with limit 3 = %v; want ErrInvalidArgument", n, err)
		}
		if err := s.TryAcquire(ctx, n); !errors.Is(err, s3lock.ErrInvalidArgument) {
			t.Errorf("TryAcquire(%d) with limit 3 = %v; want ErrInvalidArgument", n, err)
		}
	}
	if n := srv.Stats().Snapshot().Sub(before).Total(); n != 0 {
		t.Errorf("%d S3 requests for invalid arguments; want 0", n)
	}
	if s.Token() != 0 || s.Context().Err() == nil {
		t.Errorf("after invalid requests: Token() = %d, Context().Err() = %v; want 0 and cancelled", s.Token(), s.Context().Err())
	}
	if err := s.Release(ctx); !errors.Is(err, s3lock.ErrNotHeld) {
		t.Errorf("Release() without a hold = %v; want ErrNotHeld", err)
	}
}

// TestSemaphoreDeadHolderRecovery: of two holders, one renews and one
// stops (never renews nor releases). A contender that needs the dead
// holder's units gets them no earlier than TTL + margin after the dead
// holder's last write, and the dead holder's hold context is cancelled
// with ErrLeaseLost before the contender writes; the renewing holder
// keeps its units throughout, and its renewals do not extend the dead
// holder's lease.
func TestSemaphoreDeadHolderRecovery(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key, limit, margin = "sem/dead", 4, time.Second
	live := newSem(t, srv, key, limit, s3lock.WithOwner("live"), s3lock.WithTTL(renewTTL), s3lock.WithAutoRenew(renewInterval))
	dc, dlog := loggedClient(srv)
	dead, err := s3lock.NewSemaphore(dc, srv.Bucket(), key, limit, s3lock.WithOwner("dead"), s3lock.WithTTL(renewTTL))
	if err != nil {
		t.Fatal(err)
	}
	cc, clog := loggedClient(srv)
	cont, err := s3lock.NewSemaphore(cc, srv.Bucket(), key, limit, s3lock.WithOwner("contender"), s3lock.WithTTL(renewTTL), s3lock.WithExpiryMargin(margin))
	if err != nil {
		t.Fatal(err)
	}
	if err := live.TryAcquire(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := dead.TryAcquire(ctx, 2); err != nil {
		t.Fatal(err)
	}
	deadTok := dead.Token()
	dlog.mu.Lock()
	lastDeadWrite := dlog.sent[len(dlog.sent)-1]
	dlog.mu.Unlock()
	hold := dead.Context()
	lost := make(chan time.Time, 1)
	defer context.AfterFunc(hold, func() { lost <- time.Now() })()

	attempts := 0
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := cont.TryAcquire(ctx, 2)
		attempts++
		if err == nil {
			break
		}
		wantLocked(t, err)
		if time.Now().After(deadline) {
			t.Fatalf("contender did not get the dead holder's units in 30 s (%d attempts)", attempts)
		}
		time.Sleep(50 * time.Millisecond)
	}
	took := clog.first()
	if gap := took.Sub(lastDeadWrite); gap < renewTTL+margin {
		t.Errorf("contender wrote %v after the dead holder's last write; want ≥ TTL + margin = %v", gap, renewTTL+margin)
	} else {
		t.Logf("contender took the units %v after the dead holder's last write (TTL %v + margin %v), after %d attempts", gap.Round(time.Millisecond), renewTTL, margin, attempts)
	}
	select {
	case at := <-lost:
		if !at.Before(took) {
			t.Errorf("dead holder's hold ended at %v, not before the contender's write at %v", at, took)
		}
	default:
		t.Error("contender took the units while the dead holder's hold context was alive")
	}
	if !errors.Is(context.Cause(hold), s3lock.ErrLeaseLost) {
		t.Errorf("dead holder's cause = %v; want ErrLeaseLost", context.Cause(hold))
	}
	if err := live.Context().Err(); err != nil {
		t.Errorf("renewing holder lost its hold: %v", context.Cause(live.Context()))
	}
	if cont.Token() <= deadTok || cont.Token() <= live.Token() {
		t.Errorf("contender token %d; want above the dead holder's %d and the live one's %d", cont.Token(), deadTok, live.Token())
	}
	if st := lockState(t, srv, key); st.Units != 4 || len(st.Holders) != 2 {
		t.Errorf("Inspect after takeover: %d units, %d holders; want 4 units of live and contender", st.Units, len(st.Holders))
	}
	if err := dead.Release(ctx); !errors.Is(err, s3lock.ErrLeaseLost) {
		t.Errorf("dead.Release() = %v; want ErrLeaseLost", err)
	}
	for _, s := range []*s3lock.Semaphore{live, cont} {
		if err := s.Release(ctx); err != nil {
			t.Errorf("Release() = %v", err)
		}
	}
}

// TestSemaphoreLimitConflict: a Semaphore of another limit than the live
// holders', and one on a read-held key, get ErrLimitConflict (a
// *LimitConflictError) from TryAcquire and from Acquire (without
// waiting), and write nothing: the object keeps its ETag.
func TestSemaphoreLimitConflict(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	holder := newSem(t, srv, "sem/limit", 3)
	if err := holder.TryAcquire(ctx, 1); err != nil {
		t.Fatal(err)
	}
	reader := newRW(t, srv) // key "rw"
	if err := reader.RLock(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, key    string
		limit, found int64
	}{
		{"larger limit", "sem/limit", 4, 3},
		{"smaller limit", "sem/limit", 2, 3},
		{"read-held key", "rw", 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, etag := rawRecord(t, srv, tc.key)
			before := srv.Stats().Snapshot()
			s := newSem(t, srv, tc.key, tc.limit, s3lock.WithRetryInterval(20*time.Millisecond))
			actx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			for name, err := range map[string]error{"TryAcquire": s.TryAcquire(ctx, 1), "Acquire": s.Acquire(actx, 1)} {
				var lc *s3lock.LimitConflictError
				if !errors.Is(err, s3lock.ErrLimitConflict) || !errors.As(err, &lc) {
					t.Errorf("%s() = %v; want a *LimitConflictError matching ErrLimitConflict", name, err)
					continue
				}
				if lc.Key != tc.key || lc.Limit != tc.limit || lc.Found != tc.found {
					t.Errorf("%s(): %+v; want key %q, limit %d, found %d", name, *lc, tc.key, tc.limit, tc.found)
				}
			}
			if actx.Err() != nil {
				t.Error("Acquire() waited for its context instead of reporting the conflict")
			}
			if _, after := rawRecord(t, srv, tc.key); after != etag {
				t.Errorf("object ETag %s after the conflict; want %s unchanged", after, etag)
			}
			if n := srv.Stats().Snapshot().Sub(before).Method(http.MethodPut); n != 0 {
				t.Errorf("%d PUTs by a conflicting Semaphore; want 0", n)
			}
			if s.Token() != 0 {
				t.Errorf("Token() = %d after a conflict; want 0", s.Token())
			}
		})
	}
	if err := holder.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := reader.RUnlock(ctx); err != nil {
		t.Fatal(err)
	}
	// Once the holders are gone, another limit is welcome.
	s := newSem(t, srv, "sem/limit", 4)
	if err := s.TryAcquire(ctx, 4); err != nil {
		t.Fatalf("limit 4 on a released limit-3 key: %v", err)
	}
	if err := s.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestSemaphoreRenewingHolders: many holders of one key renewing on a
// scaled-down TTL all keep their leases over several renewal rounds; the
// renewals' 412s are counted. 32 holders fit with short owners.
func TestSemaphoreRenewingHolders(t *testing.T) {
	for _, tc := range []struct {
		name          string
		holders       int
		ttl, interval time.Duration
		holdFor       time.Duration
		owner         func(i int) string
	}{
		{"8 holders", 8, renewTTL, renewInterval, 4 * renewTTL, func(i int) string { return fmt.Sprintf("holder-%d.example.internal", i) }},
		// 32 renewals a second at TTL 3 s; this is half that.
		{"32 short owners", 32, 6 * time.Second, 2 * time.Second, 8 * time.Second, func(i int) string { return fmt.Sprint("h", i) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := s3locktest.New(t)
			ctx := context.Background()
			key := "sem/renew"
			sems := make([]*s3lock.Semaphore, tc.holders)
			var wg sync.WaitGroup
			errs := make([]error, tc.holders)
			for i := range sems {
				sems[i] = newSem(t, srv, key, int64(tc.holders), s3lock.WithOwner(tc.owner(i)), s3lock.WithTTL(tc.ttl),
					s3lock.WithAutoRenew(tc.interval), s3lock.WithRetryInterval(20*time.Millisecond))
				wg.Go(func() {
					actx, cancel := context.WithTimeout(ctx, 20*time.Second)
					defer cancel()
					errs[i] = sems[i].Acquire(actx, 1)
				})
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("holder %d: Acquire() = %v", i, err)
				}
			}
			st := lockState(t, srv, key)
			if len(st.Holders) != tc.holders || st.Units != int64(tc.holders) {
				t.Fatalf("Inspect: %d holders, %d units; want %d", len(st.Holders), st.Units, tc.holders)
			}
			before := srv.Stats().Snapshot()
			time.Sleep(tc.holdFor)
			d := srv.Stats().Snapshot().Sub(before)
			for i, s := range sems {
				if err := s.Context().Err(); err != nil {
					t.Errorf("holder %d lost its lease: %v", i, context.Cause(s.Context()))
				}
			}
			puts, conflicts := d.Method(http.MethodPut), d.Status(http.StatusPreconditionFailed)
			rounds := int64(tc.holdFor / tc.interval)
			t.Logf("%d holders over %v (%d renewal rounds): %d PUTs, %d answered 412, %d GETs", tc.holders, tc.holdFor, rounds, puts, conflicts, d.Method(http.MethodGet))
			if want := int64(tc.holders) * rounds / 2; puts-conflicts < want {
				t.Errorf("%d renewals applied; want at least %d (every holder renewing at least every other interval)", puts-conflicts, want)
			}
			for i, s := range sems {
				if err := s.Release(ctx); err != nil {
					t.Errorf("holder %d: Release() = %v", i, err)
				}
			}
			wantShareRenewers(t, 0)
			if st := lockState(t, srv, key); st.Held {
				t.Errorf("Inspect after every Release: held by %v", st.Holders)
			}
		})
	}
}

// TestSemaphoreLargeRequestNotStarved: holders of 1 unit keep 3 of 4
// units busy without pause, their holds overlapping so that 3 units are
// never free at once unless they wait. A request for 3 units still gets
// them, after a bounded number of small grants, and the small holders
// carry on afterwards.
func TestSemaphoreLargeRequestNotStarved(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key, limit, small = "sem/large", 4, 3
	var (
		grants  atomic.Int64
		largeIn atomic.Bool
		heldNow atomic.Int64
		wg      sync.WaitGroup
	)
	stop := make(chan struct{})
	for i := range small {
		s := newSem(t, srv, key, limit, s3lock.WithOwner(fmt.Sprint("s", i)), s3lock.WithRetryInterval(20*time.Millisecond))
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 50 * time.Millisecond)
			for {
				select {
				case <-stop:
					return
				default:
				}
				actx, cancel := context.WithTimeout(ctx, 20*time.Second)
				err := s.Acquire(actx, 1)
				cancel()
				if err != nil {
					t.Errorf("s%d.Acquire(1) = %v", i, err)
					return
				}
				if n := heldNow.Add(1); largeIn.Load() && n+small > limit {
					t.Errorf("s%d holds a unit while the large request holds %d: %d units", i, small, n+small)
				}
				grants.Add(1)
				time.Sleep(150 * time.Millisecond)
				heldNow.Add(-1)
				if err := s.Release(ctx); err != nil {
					t.Errorf("s%d.Release() = %v", i, err)
					return
				}
			}
		})
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	for grants.Load() < 2*small {
		time.Sleep(10 * time.Millisecond)
	}
	large := newSem(t, srv, key, limit, s3lock.WithOwner("large"), s3lock.WithRetryInterval(20*time.Millisecond))
	before := grants.Load()
	actx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := large.Acquire(actx, small); err != nil {
		t.Fatalf("Acquire(%d) among busy 1-unit holders = %v", small, err)
	}
	largeIn.Store(true)
	passed := grants.Load() - before
	t.Logf("small grants while the large request waited: %d", passed)
	if passed > 2*small {
		t.Errorf("%d small grants while a request for %d waited; want at most %d", passed, small, 2*small)
	}
	time.Sleep(200 * time.Millisecond)
	largeIn.Store(false)
	at := grants.Load()
	if err := large.Release(ctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); grants.Load() < at+small; {
		if time.Now().After(deadline) {
			t.Fatalf("small holders got %d grants in 10 s after the large release; want %d", grants.Load()-at, small)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

package s3lock_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

// recorder keeps what the hooks reported.
type recorder struct {
	mu       sync.Mutex // protects the fields below
	starts   []s3lock.StartInfo
	acquires []s3lock.AcquireInfo
	releases []s3lock.ReleaseInfo
	renews   []s3lock.RenewInfo
	lost     []s3lock.LeaseLostInfo
	reserves []s3lock.ReserveInfo
	requests []s3lock.RequestInfo
	// unmatched counts end hooks whose context did not come from Start.
	unmatched int
}

type startKey struct{}

func (r *recorder) hooks() *s3lock.Hooks {
	ended := func(ctx context.Context) {
		if ctx.Value(startKey{}) == nil {
			r.unmatched++
		}
	}
	return &s3lock.Hooks{
		Start: func(ctx context.Context, i s3lock.StartInfo) context.Context {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.starts = append(r.starts, i)
			return context.WithValue(ctx, startKey{}, i.Op)
		},
		Acquire: func(ctx context.Context, i s3lock.AcquireInfo) {
			r.mu.Lock()
			defer r.mu.Unlock()
			ended(ctx)
			r.acquires = append(r.acquires, i)
		},
		Release: func(ctx context.Context, i s3lock.ReleaseInfo) {
			r.mu.Lock()
			defer r.mu.Unlock()
			ended(ctx)
			r.releases = append(r.releases, i)
		},
		Renew: func(ctx context.Context, i s3lock.RenewInfo) {
			r.mu.Lock()
			defer r.mu.Unlock()
			ended(ctx)
			r.renews = append(r.renews, i)
		},
		LeaseLost: func(i s3lock.LeaseLostInfo) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.lost = append(r.lost, i)
		},
		Reserve: func(ctx context.Context, i s3lock.ReserveInfo) {
			r.mu.Lock()
			defer r.mu.Unlock()
			ended(ctx)
			r.reserves = append(r.reserves, i)
		},
		Request: func(ctx context.Context, i s3lock.RequestInfo) {
			r.mu.Lock()
			defer r.mu.Unlock()
			// Every request of a Mutex belongs to an operation.
			ended(ctx)
			r.requests = append(r.requests, i)
		},
	}
}

func (r *recorder) snapshot() recorder {
	r.mu.Lock()
	defer r.mu.Unlock()
	return recorder{
		starts: r.starts, acquires: r.acquires, releases: r.releases, renews: r.renews,
		lost: r.lost, reserves: r.reserves, requests: r.requests, unmatched: r.unmatched,
	}
}

// requestsBy counts the reported requests by verb and outcome.
func (r *recorder) requestsBy(verb string, o s3lock.RequestOutcome) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n int64
	for _, q := range r.requests {
		if q.Verb == verb && (o == "" || q.Outcome == o) {
			n++
		}
	}
	return n
}

func TestHooksAcquireRelease(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	var rec recorder
	m := newMutex(t, srv.Client(), srv.Bucket(), "locks/hooks", s3lock.WithHooks(rec.hooks()))
	before := srv.Stats().Snapshot()

	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("TryLock() = %v; want nil", err)
	}
	time.Sleep(5 * time.Millisecond)
	if err := m.Unlock(ctx); err != nil {
		t.Fatalf("Unlock() = %v; want nil", err)
	}
	if err := m.Lock(ctx); err != nil {
		t.Fatalf("Lock() = %v; want nil", err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatalf("Unlock() = %v; want nil", err)
	}
	err := m.Unlock(ctx)
	if !errors.Is(err, s3lock.ErrNotHeld) {
		t.Fatalf("second Unlock() = %v; want ErrNotHeld", err)
	}

	got := rec.snapshot()
	wantStarts := []s3lock.Op{s3lock.OpTryLock, s3lock.OpUnlock, s3lock.OpLock, s3lock.OpUnlock, s3lock.OpUnlock}
	if len(got.starts) != len(wantStarts) {
		t.Fatalf("Start calls = %+v; want ops %v", got.starts, wantStarts)
	}
	for i, s := range got.starts {
		if s.Op != wantStarts[i] || s.Bucket != srv.Bucket() || s.Key != "locks/hooks" {
			t.Errorf("Start #%d = %+v; want op %s on %s/locks/hooks", i, s, wantStarts[i], srv.Bucket())
		}
	}
	if got.starts[1].Token != 1 || got.starts[3].Token != 2 || got.starts[4].Token != 0 {
		t.Errorf("Unlock Start tokens = %d, %d, %d; want 1, 2, 0", got.starts[1].Token, got.starts[3].Token, got.starts[4].Token)
	}
	if len(got.acquires) != 2 {
		t.Fatalf("Acquire calls = %+v; want 2", got.acquires)
	}
	for i, a := range got.acquires {
		want := []s3lock.Op{s3lock.OpTryLock, s3lock.OpLock}[i]
		if a.Op != want || a.Outcome != s3lock.OutcomeAcquired || a.Token != uint64(i+1) || a.Err != nil || a.Waited <= 0 {
			t.Errorf("Acquire #%d = %+v; want %s acquired with token %d, a positive wait and no error", i, a, want, i+1)
		}
	}
	if len(got.releases) != 3 {
		t.Fatalf("Release calls = %+v; want 3", got.releases)
	}
	if r := got.releases[0]; r.Token != 1 || r.Held < 5*time.Millisecond || r.Err != nil || r.Duration <= 0 {
		t.Errorf("Release #0 = %+v; want token 1, held at least 5ms, no error", r)
	}
	if r := got.releases[2]; r.Token != 0 || r.Held != 0 || !errors.Is(r.Err, s3lock.ErrNotHeld) {
		t.Errorf("Release of nothing = %+v; want token 0, held 0, ErrNotHeld", r)
	}
	if len(got.lost) != 0 || len(got.renews) != 0 {
		t.Errorf("LeaseLost = %+v, Renew = %+v; want none", got.lost, got.renews)
	}
	if got.unmatched != 0 {
		t.Errorf("%d end or request hooks got a context that was not Start's", got.unmatched)
	}

	// The requests reported are the requests the server saw.
	d := srv.Stats().Snapshot().Sub(before)
	if g, p := rec.requestsBy(http.MethodGet, ""), rec.requestsBy(http.MethodPut, ""); g != d.Method(http.MethodGet) || p != d.Method(http.MethodPut) {
		t.Errorf("hooks saw %d GET, %d PUT; server saw %d GET, %d PUT", g, p, d.Method(http.MethodGet), d.Method(http.MethodPut))
	}
	// The first acquire of a new lock reads a missing object.
	if n := rec.requestsBy(http.MethodGet, s3lock.RequestNotFound); n != 1 {
		t.Errorf("GETs not_found = %d; want 1", n)
	}
	if n, all := rec.requestsBy(http.MethodPut, s3lock.RequestOK), rec.requestsBy(http.MethodPut, ""); n != all || n != 4 {
		t.Errorf("PUTs ok = %d of %d; want 4 of 4", n, all)
	}
}

func TestHooksContention(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	var rec recorder
	a := newMutex(t, srv.Client(), srv.Bucket(), "locks/hooks-contention", s3lock.WithOwner("a"))
	b := newMutex(t, srv.Client(), srv.Bucket(), "locks/hooks-contention", s3lock.WithOwner("b"),
		s3lock.WithHooks(rec.hooks()), s3lock.WithRetryInterval(10*time.Millisecond))
	if err := a.TryLock(ctx); err != nil {
		t.Fatalf("a.TryLock() = %v; want nil", err)
	}
	defer a.Unlock(ctx)
	before := srv.Stats().Snapshot()

	wantLocked(t, b.TryLock(ctx))
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := b.Lock(wctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("b.Lock() = %v; want DeadlineExceeded", err)
	}
	got := rec.snapshot()
	if len(got.acquires) != 2 {
		t.Fatalf("Acquire calls = %+v; want 2", got.acquires)
	}
	if x := got.acquires[0]; x.Op != s3lock.OpTryLock || x.Outcome != s3lock.OutcomeLocked || x.Token != 0 || !errors.Is(x.Err, s3lock.ErrLocked) {
		t.Errorf("TryLock's Acquire = %+v; want outcome locked, token 0, ErrLocked", x)
	}
	if x := got.acquires[1]; x.Op != s3lock.OpLock || x.Outcome != s3lock.OutcomeCanceled || x.Waited < 50*time.Millisecond {
		t.Errorf("Lock's Acquire = %+v; want outcome canceled after at least 50ms", x)
	}
	d := srv.Stats().Snapshot().Sub(before)
	// The deadline may cut a GET short, before or after the server saw it.
	if ok, all, sg := rec.requestsBy(http.MethodGet, s3lock.RequestOK), rec.requestsBy(http.MethodGet, ""), d.Method(http.MethodGet); sg < ok || sg > all || ok < 2 {
		t.Errorf("hooks saw %d GET ok of %d; server saw %d GET; want between, and at least 2 ok", ok, all, sg)
	}
	if p, sp := rec.requestsBy(http.MethodPut, ""), d.Method(http.MethodPut); p != sp {
		t.Errorf("hooks saw %d PUT; server saw %d", p, sp)
	}
}

func TestHooksRenewal(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	var rec recorder
	m := newMutex(t, srv.Client(), srv.Bucket(), "locks/hooks-renew",
		s3lock.WithTTL(600*time.Millisecond), s3lock.WithAutoRenew(100*time.Millisecond), s3lock.WithHooks(rec.hooks()))
	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("TryLock() = %v; want nil", err)
	}
	for deadline := time.Now().Add(10 * time.Second); len(rec.snapshot().renews) < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("Renew calls after 10s = %d; want 2", len(rec.snapshot().renews))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatalf("Unlock() = %v; want nil", err)
	}
	got := rec.snapshot()
	renewStarts := 0
	for _, s := range got.starts {
		if s.Op == s3lock.OpRenew {
			renewStarts++
			if s.Token != 1 {
				t.Errorf("renewal Start = %+v; want token 1", s)
			}
		}
	}
	if renewStarts != len(got.renews) {
		t.Errorf("%d renewal Starts, %d Renew calls; want equal", renewStarts, len(got.renews))
	}
	for _, r := range got.renews {
		if r.Err != nil || r.Token != 1 || r.Key != "locks/hooks-renew" {
			t.Errorf("Renew = %+v; want token 1 and no error", r)
		}
	}
	if len(got.lost) != 0 || got.unmatched != 0 {
		t.Errorf("LeaseLost = %+v, unmatched = %d; want none", got.lost, got.unmatched)
	}
}

// TestHooksLeaseLost: a loss is reported once per hold, by whoever finds
// it: the renewer, the expiry timer, or Unlock's release.
func TestHooksLeaseLost(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []s3lock.Option
		// found waits until the hold has ended before Unlock.
		found bool
	}{
		{name: "renewer", opts: []s3lock.Option{s3lock.WithTTL(2 * time.Second), s3lock.WithAutoRenew(100 * time.Millisecond)}, found: true},
		{name: "release", opts: []s3lock.Option{s3lock.WithTTL(time.Minute)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := s3locktest.New(t)
			ctx := context.Background()
			var rec recorder
			key := "locks/hooks-lost-" + tc.name
			m := newMutex(t, srv.Client(), srv.Bucket(), key, append(tc.opts, s3lock.WithHooks(rec.hooks()))...)
			if err := m.TryLock(ctx); err != nil {
				t.Fatalf("TryLock() = %v; want nil", err)
			}
			hold := m.Context()
			st, err := s3lock.Inspect(ctx, srv.Client(), srv.Bucket(), key)
			if err != nil {
				t.Fatalf("Inspect() = %v", err)
			}
			if _, err := s3lock.ForceUnlock(ctx, srv.Client(), srv.Bucket(), key, st.ETag); err != nil {
				t.Fatalf("ForceUnlock() = %v", err)
			}
			if tc.found {
				select {
				case <-hold.Done():
				case <-time.After(10 * time.Second):
					t.Fatal("hold context not cancelled 10s after ForceUnlock")
				}
				// The hook runs right after the cancellation, from the
				// goroutine that cancelled.
				for deadline := time.Now().Add(5 * time.Second); len(rec.snapshot().lost) == 0 && time.Now().Before(deadline); {
					time.Sleep(time.Millisecond)
				}
				if n := len(rec.snapshot().lost); n != 1 {
					t.Fatalf("LeaseLost calls once the hold ended = %d; want 1", n)
				}
			}
			if err := m.Unlock(ctx); !errors.Is(err, s3lock.ErrLeaseLost) {
				t.Fatalf("Unlock() = %v; want ErrLeaseLost", err)
			}
			got := rec.snapshot()
			if len(got.lost) != 1 {
				t.Fatalf("LeaseLost calls = %+v; want exactly 1", got.lost)
			}
			if l := got.lost[0]; l.Token != 1 || l.Key != key || !errors.Is(l.Cause, s3lock.ErrLeaseLost) || l.Held <= 0 {
				t.Errorf("LeaseLost = %+v; want token 1, a cause matching ErrLeaseLost, a positive Held", l)
			}
			if len(got.releases) != 1 || !errors.Is(got.releases[0].Err, s3lock.ErrLeaseLost) || got.releases[0].Token != 1 {
				t.Errorf("Release calls = %+v; want one with token 1 and ErrLeaseLost", got.releases)
			}
		})
	}
}

// TestHooksLeaseExpires: without renewal, the expiry timer reports the
// loss, once, and Unlock (which then releases) does not report it again.
func TestHooksLeaseExpires(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	var rec recorder
	m := newMutex(t, srv.Client(), srv.Bucket(), "locks/hooks-expire", s3lock.WithTTL(50*time.Millisecond), s3lock.WithHooks(rec.hooks()))
	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("TryLock() = %v; want nil", err)
	}
	<-m.Context().Done()
	if err := m.Unlock(ctx); !errors.Is(err, s3lock.ErrLeaseLost) {
		t.Fatalf("Unlock() = %v; want ErrLeaseLost (the hold had ended)", err)
	}
	// The timer goroutine calls the hook right after the cancellation.
	for deadline := time.Now().Add(5 * time.Second); len(rec.snapshot().lost) == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	got := rec.snapshot()
	if len(got.lost) != 1 || got.lost[0].Token != 1 || got.lost[0].Held < 40*time.Millisecond {
		t.Errorf("LeaseLost calls = %+v; want one, token 1, held about the TTL", got.lost)
	}
}

// TestHooksReserve: a waiter passed over by a Mutex that keeps re-taking
// the lock reserves the next turn, and the hook sees it.
func TestHooksReserve(t *testing.T) {
	srv := s3locktest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var rec recorder
	looper := newMutex(t, srv.Client(), srv.Bucket(), "locks/hooks-reserve", s3lock.WithOwner("looper"))
	// A waiter that polls just as the looper lets go takes the lock
	// without reserving (the queue paces polls to the end of holds): try
	// again with a new waiter, a few times.
	const maxRounds = 5
	rounds := 0
	for ; rounds < maxRounds && len(reservedOf(rec.snapshot().reserves)) == 0; rounds++ {
		if err := looper.TryLock(ctx); err != nil {
			t.Fatalf("looper.TryLock() = %v", err)
		}
		waiter := newMutex(t, srv.Client(), srv.Bucket(), "locks/hooks-reserve", s3lock.WithOwner("waiter"),
			s3lock.WithRetryInterval(100*time.Millisecond), s3lock.WithHooks(rec.hooks()))
		done := make(chan error, 1)
		go func() { done <- waiter.Lock(ctx) }()
		var err error
	loop:
		for {
			// Hold, then let go and take straight back, as a loop does.
			time.Sleep(30 * time.Millisecond)
			if looper.Token() != 0 {
				if uerr := looper.Unlock(ctx); uerr != nil {
					t.Errorf("looper.Unlock() = %v", uerr)
				}
			}
			_ = looper.TryLock(ctx)
			select {
			case err = <-done:
				break loop
			default:
			}
		}
		if err != nil {
			t.Fatalf("waiter.Lock() = %v; want nil", err)
		}
		if looper.Token() != 0 {
			_ = looper.Unlock(ctx)
			t.Fatal("looper holds the lock the waiter acquired")
		}
		if err := waiter.Unlock(ctx); err != nil {
			t.Fatalf("waiter.Unlock() = %v", err)
		}
	}
	got := rec.snapshot()
	for _, r := range got.reserves {
		if r.Token == 0 || r.Key != "locks/hooks-reserve" {
			t.Errorf("Reserve = %+v; want a token and the key", r)
		}
	}
	t.Logf("%d rounds, %d reservation attempts, %d written", rounds, len(got.reserves), len(reservedOf(got.reserves)))
	if len(reservedOf(got.reserves)) == 0 {
		t.Errorf("no reservation written by a waiter passed over, in %d rounds", rounds)
	}
	if len(got.acquires) != rounds || len(got.releases) != rounds || got.unmatched != 0 {
		t.Errorf("%d Acquire, %d Release, %d unmatched; want %d, %d, 0", len(got.acquires), len(got.releases), got.unmatched, rounds, rounds)
	}
}

func reservedOf(rs []s3lock.ReserveInfo) []s3lock.ReserveInfo {
	var out []s3lock.ReserveInfo
	for _, r := range rs {
		if r.Reserved {
			out = append(out, r)
		}
	}
	return out
}

// TestWithHooksComposes: every WithHooks is called, in order, and each
// Start gets the context the one before returned.
func TestWithHooksComposes(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	type key int
	var order []string
	mk := func(name string, k key) *s3lock.Hooks {
		return &s3lock.Hooks{
			Start: func(ctx context.Context, i s3lock.StartInfo) context.Context {
				order = append(order, name+".Start")
				return context.WithValue(ctx, k, name)
			},
			Acquire: func(ctx context.Context, i s3lock.AcquireInfo) {
				order = append(order, fmt.Sprintf("%s.Acquire(%v,%v)", name, ctx.Value(key(1)), ctx.Value(key(2))))
			},
		}
	}
	m := newMutex(t, srv.Client(), srv.Bucket(), "locks/hooks-compose",
		s3lock.WithHooks(mk("a", 1)), s3lock.WithHooks(nil), s3lock.WithHooks(&s3lock.Hooks{}), s3lock.WithHooks(mk("b", 2)))
	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("TryLock() = %v", err)
	}
	defer m.Unlock(ctx)
	want := fmt.Sprint([]string{"a.Start", "b.Start", "a.Acquire(a,b)", "b.Acquire(a,b)"})
	if got := fmt.Sprint(order); got != want {
		t.Errorf("hook calls = %s; want %s", got, want)
	}
}

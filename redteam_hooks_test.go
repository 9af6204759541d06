package s3lock_test

// Red-team tests of the hooks (issue 18): every S3 request reported once
// with the verb and outcome S3 answered, losses once, acquire outcomes,
// hooks on the Election, hooks that panic, hooks from the renewer racing
// Unlock.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

// outcomeOfStatus is the RequestOutcome an S3 answer of status should be
// reported as.
func outcomeOfStatus(status int) s3lock.RequestOutcome {
	switch status {
	case http.StatusOK:
		return s3lock.RequestOK
	case http.StatusPreconditionFailed, http.StatusConflict:
		return s3lock.RequestPreconditionFailed
	case http.StatusNotFound:
		return s3lock.RequestNotFound
	}
	return s3lock.RequestError
}

type verbOutcome struct {
	verb    string
	outcome s3lock.RequestOutcome
}

// compareWithServer fails unless the requests the hooks reported are, by
// verb and outcome, the requests the server answered since base. The
// server counts a request once its handler has returned, which can be
// just after the client has read the answer: the comparison is retried
// for up to two seconds before it fails.
func compareWithServer(t *testing.T, rec *recorder, srv *s3locktest.Server, base s3locktest.Counts) {
	t.Helper()
	var diffs []string
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if diffs = requestDiffs(rec, srv, base); len(diffs) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, d := range diffs {
		t.Error(d)
	}
}

// requestDiffs lists how the requests the hooks reported differ from the
// ones the server counted since base.
func requestDiffs(rec *recorder, srv *s3locktest.Server, base s3locktest.Counts) []string {
	want := map[verbOutcome]int64{}
	for k, n := range srv.Stats().Snapshot().Sub(base) {
		want[verbOutcome{k.Method, outcomeOfStatus(k.Status)}] += n
	}
	got := map[verbOutcome]int64{}
	cut := map[verbOutcome]int64{} // requests cut short by the caller's context
	for _, q := range rec.snapshot().requests {
		o := q.Outcome
		if o == s3lock.RequestError && (errors.Is(q.Err, context.Canceled) || errors.Is(q.Err, context.DeadlineExceeded)) {
			// Cut short by the caller's context: the server may have
			// answered it (counted there) or never seen it; the client
			// saw an error. Count it as the server's ok, allowing for
			// the ones that never reached the server.
			o = s3lock.RequestOK
			cut[verbOutcome{q.Verb, o}]++
		}
		got[verbOutcome{q.Verb, o}]++
	}
	var diffs []string
	for k := range want {
		if got[k] < want[k] || got[k] > want[k]+cut[k] {
			diffs = append(diffs, fmt.Sprintf("%s %s: hooks reported %d requests; the server answered %d", k.verb, k.outcome, got[k], want[k]))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok && got[k] > cut[k] {
			diffs = append(diffs, fmt.Sprintf("%s %s: hooks reported %d requests; the server answered none", k.verb, k.outcome, got[k]))
		}
	}
	return diffs
}

// TestRedteamRequestsMatchServer: contention (GET 404, PUT 412, polls,
// reservations written into a held record, a waiter whose ctx ends after
// it reserved and withdraws, releases over a reserved record): the hooks
// see what the server saw, request for request, by verb and outcome.
func TestRedteamRequestsMatchServer(t *testing.T) {
	srv := s3locktest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var rec recorder
	key := "locks/redteam-requests"
	looper := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("looper"), s3lock.WithHooks(rec.hooks()))
	base := srv.Stats().Snapshot()
	for round := 0; round < 4; round++ {
		if err := looper.TryLock(ctx); err != nil {
			t.Fatalf("looper.TryLock() = %v", err)
		}
		waiter := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("waiter"),
			s3lock.WithRetryInterval(100*time.Millisecond), s3lock.WithHooks(rec.hooks()))
		// Odd rounds: the waiter gives up after a while (withdrawing its
		// reservation, if it made one).
		wctx, wcancel := ctx, context.CancelFunc(func() {})
		if round%2 == 1 {
			wctx, wcancel = context.WithTimeout(ctx, 350*time.Millisecond)
		}
		done := make(chan error, 1)
		go func() { done <- waiter.Lock(wctx) }()
		var err error
	loop:
		for {
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
		wcancel()
		if err == nil {
			if err := waiter.Unlock(ctx); err != nil {
				t.Fatalf("waiter.Unlock() = %v", err)
			}
		} else if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("waiter.Lock() = %v", err)
		}
		if looper.Token() != 0 {
			if err := looper.Unlock(ctx); err != nil {
				t.Fatalf("looper.Unlock() = %v", err)
			}
		}
	}
	got := rec.snapshot()
	t.Logf("%d reservation attempts, %d written; %d requests", len(got.reserves), len(reservedOf(got.reserves)), len(got.requests))
	compareWithServer(t, &rec, srv, base)
}

// TestRedteamClockCheckRequestsMatchServer: a contender that finds a dead
// holder's record expired by S3's clock but not yet by its own checks S3's
// clock (a PUT and a GET of key+".s3lock-clock") before taking over; those
// requests are reported too.
func TestRedteamClockCheckRequestsMatchServer(t *testing.T) {
	var clockRequests atomic.Int64
	srv := s3locktest.New(t, s3locktest.WithMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, ".s3lock-clock") {
				clockRequests.Add(1)
			}
			next.ServeHTTP(w, r)
		})
	}))
	ctx := context.Background()
	key := "locks/redteam-clock"
	if err := srv.PutObject(ctx, key, heldRecord(7, time.Second)); err != nil {
		t.Fatalf("PutObject() = %v", err)
	}
	time.Sleep(3500 * time.Millisecond) // expired by S3's clock (1 s resolution, margin)
	var rec recorder
	m := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithTTL(time.Second), s3lock.WithRetryInterval(50*time.Millisecond), s3lock.WithHooks(rec.hooks()))
	base := srv.Stats().Snapshot()
	lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := m.Lock(lctx); err != nil {
		t.Fatalf("Lock() = %v", err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatalf("Unlock() = %v", err)
	}
	compareWithServer(t, &rec, srv, base)
	if clockRequests.Load() == 0 {
		t.Error("no request to the clock-check key: the test did not exercise the clock check")
	}
}

// TestRedteamLeaseLostOnce: whichever way a hold ends without Unlock, the
// LeaseLost hook is called exactly once for it, and a later Unlock (which
// finds the loss again) does not report it again.
func TestRedteamLeaseLostOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []s3lock.Option
		// breakIt ends the hold from outside; nil lets the TTL run out.
		breakIt bool
	}{
		{name: "force-renewer", opts: []s3lock.Option{s3lock.WithTTL(3 * time.Second), s3lock.WithAutoRenew(100 * time.Millisecond)}, breakIt: true},
		{name: "force-no-renew", opts: []s3lock.Option{s3lock.WithTTL(400 * time.Millisecond)}, breakIt: true},
		{name: "expiry-no-renew", opts: []s3lock.Option{s3lock.WithTTL(300 * time.Millisecond)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := s3locktest.New(t)
			ctx := context.Background()
			var rec recorder
			key := "locks/redteam-lost-" + tc.name
			m := newMutex(t, srv.Client(), srv.Bucket(), key, append(tc.opts, s3lock.WithHooks(rec.hooks()))...)
			if err := m.TryLock(ctx); err != nil {
				t.Fatalf("TryLock() = %v", err)
			}
			if tc.breakIt {
				st, err := s3lock.Inspect(ctx, srv.Client(), srv.Bucket(), key)
				if err != nil {
					t.Fatalf("Inspect() = %v", err)
				}
				if _, err := s3lock.ForceUnlock(ctx, srv.Client(), srv.Bucket(), key, st.ETag); err != nil {
					t.Fatalf("ForceUnlock() = %v", err)
				}
			}
			waitDone(t, m.Context(), 10*time.Second, "hold context")
			// Both the timer and (for the renewer) the renewal may find
			// the loss; give them time to race.
			time.Sleep(300 * time.Millisecond)
			if err := m.Unlock(ctx); !errors.Is(err, s3lock.ErrLeaseLost) {
				t.Fatalf("Unlock() = %v; want ErrLeaseLost", err)
			}
			if err := m.Unlock(ctx); !errors.Is(err, s3lock.ErrNotHeld) {
				t.Fatalf("second Unlock() = %v; want ErrNotHeld", err)
			}
			got := rec.snapshot()
			if len(got.lost) != 1 {
				t.Fatalf("LeaseLost calls = %d (%+v); want exactly 1", len(got.lost), got.lost)
			}
			if !errors.Is(got.lost[0].Cause, s3lock.ErrLeaseLost) || got.lost[0].Token != 1 {
				t.Errorf("LeaseLost = %+v; want token 1 and a cause matching ErrLeaseLost", got.lost[0])
			}
			if len(got.releases) != 2 || got.releases[0].Token != 1 || got.releases[1].Token != 0 {
				t.Errorf("Release calls = %+v; want two: token 1, then token 0 (ErrNotHeld)", got.releases)
			}
		})
	}
}

// TestRedteamAcquireOutcomes: the outcome and token of each way Lock and
// TryLock can end.
func TestRedteamAcquireOutcomes(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	key := "locks/redteam-outcomes"
	var rec recorder
	holder := newMutex(t, srv.Client(), srv.Bucket(), key)
	if err := holder.TryLock(ctx); err != nil {
		t.Fatalf("holder.TryLock() = %v", err)
	}
	defer holder.Unlock(ctx)
	m := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithRetryInterval(20*time.Millisecond), s3lock.WithHooks(rec.hooks()))

	// TryLock on a held lock: locked.
	wantLocked(t, m.TryLock(ctx))
	// Lock that waited, then its ctx ended: canceled, though it also
	// matches ErrLocked.
	wctx, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
	err := m.Lock(wctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, s3lock.ErrLocked) {
		t.Fatalf("Lock() = %v; want DeadlineExceeded and ErrLocked", err)
	}
	// TryLock with a cancelled ctx: canceled.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := m.TryLock(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("TryLock(cancelled) = %v", err)
	}
	// A missing bucket: error.
	nb := newMutex(t, srv.Client(), "no-such-bucket", key, s3lock.WithHooks(rec.hooks()))
	if err := nb.Lock(ctx); !errors.Is(err, s3lock.ErrBucketNotFound) {
		t.Fatalf("Lock(missing bucket) = %v", err)
	}

	got := rec.snapshot()
	want := []struct {
		op      s3lock.Op
		outcome s3lock.Outcome
	}{
		{s3lock.OpTryLock, s3lock.OutcomeLocked},
		{s3lock.OpLock, s3lock.OutcomeCanceled},
		{s3lock.OpTryLock, s3lock.OutcomeCanceled},
		{s3lock.OpLock, s3lock.OutcomeError},
	}
	if len(got.acquires) != len(want) {
		t.Fatalf("Acquire calls = %+v; want %d", got.acquires, len(want))
	}
	for i, w := range want {
		a := got.acquires[i]
		if a.Op != w.op || a.Outcome != w.outcome || a.Token != 0 || a.Err == nil {
			t.Errorf("Acquire #%d = %+v; want %s %s, token 0, an error", i, a, w.op, w.outcome)
		}
	}
	if a := got.acquires[1]; a.Waited < 100*time.Millisecond {
		t.Errorf("Lock that waited 150ms reported Waited = %v", a.Waited)
	}
	if got.unmatched != 0 {
		t.Errorf("%d end hooks without their Start's context", got.unmatched)
	}
}

// TestRedteamElectionObserved: issue 18 asks hooks to work for the
// Election. Campaign is an acquire and Resign a release: a dashboard built
// on the hooks must see both, paired (Start, then Acquire; Start, then
// Release), and every request inside an operation.
func TestRedteamElectionObserved(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	var rec recorder
	e, err := s3lock.NewElection(srv.Client(), srv.Bucket(), "locks/redteam-election", s3lock.WithHooks(rec.hooks()))
	if err != nil {
		t.Fatalf("NewElection() = %v", err)
	}
	if err := e.Campaign(ctx, "v1"); err != nil {
		t.Fatalf("Campaign() = %v", err)
	}
	if err := e.Proclaim(ctx, "v2"); err != nil {
		t.Fatalf("Proclaim() = %v", err)
	}
	if err := e.Resign(ctx); err != nil {
		t.Fatalf("Resign() = %v", err)
	}
	got := rec.snapshot()
	if len(got.acquires) != 1 || got.acquires[0].Outcome != s3lock.OutcomeAcquired || got.acquires[0].Token == 0 {
		t.Errorf("Acquire calls after Campaign = %+v; want one, acquired, with the term's token", got.acquires)
	}
	if len(got.releases) != 1 {
		t.Errorf("Release calls after Resign = %+v; want one", got.releases)
	}
	var ops []s3lock.Op
	for _, s := range got.starts {
		ops = append(ops, s.Op)
	}
	if len(got.starts) != len(got.acquires)+len(got.releases)+len(got.renews) {
		t.Errorf("Start calls %v do not pair with the end hooks (%d Acquire, %d Release, %d Renew)", ops, len(got.acquires), len(got.releases), len(got.renews))
	}
	if got.unmatched != 0 {
		t.Errorf("%d of %d hook calls (requests of Campaign and Proclaim) came without a Start's context: no span to hang them on", got.unmatched, len(got.requests))
	}
}

// TestRedteamObserveNotModifiedIsNotAnError: Observe polls with
// If-None-Match, and S3 answers 304 when the leader has not changed: the
// normal, cheap answer. The hooks report every one of them as a failed
// request (RequestError), so a dashboard of S3 errors lights up for an
// idle, healthy election.
func TestRedteamObserveNotModifiedIsNotAnError(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	key := "locks/redteam-observe"
	leader, err := s3lock.NewElection(srv.Client(), srv.Bucket(), key, s3lock.WithTTL(10*time.Second))
	if err != nil {
		t.Fatalf("NewElection() = %v", err)
	}
	if err := leader.Campaign(ctx, "boss"); err != nil {
		t.Fatalf("Campaign() = %v", err)
	}
	defer leader.Resign(ctx)
	var rec recorder
	watcher, err := s3lock.NewElection(srv.Client(), srv.Bucket(), key, s3lock.WithTTL(10*time.Second),
		s3lock.WithRetryInterval(20*time.Millisecond), s3lock.WithHooks(rec.hooks()))
	if err != nil {
		t.Fatalf("NewElection() = %v", err)
	}
	base := srv.Stats().Snapshot()
	octx, cancel := context.WithCancel(ctx)
	ch := watcher.Observe(octx)
	<-ch
	time.Sleep(300 * time.Millisecond)
	cancel()
	for range ch {
	}
	notModified := srv.Stats().Snapshot().Sub(base)[s3locktest.Request{Method: http.MethodGet, Status: http.StatusNotModified}]
	if notModified == 0 {
		t.Fatal("the server answered no 304: the test did not exercise If-None-Match")
	}
	if n := rec.requestsBy(http.MethodGet, s3lock.RequestError); n != 0 {
		t.Errorf("hooks reported %d GETs as RequestError; the server answered %d of them 304 Not Modified and none failed", n, notModified)
	}
}

// TestRedteamPanickingHookKeepsMutexUsable: a Request hook that panics
// (a bug in an observer) must not leave the Mutex unusable. The panic is
// recovered around the hook, so the TryLock completes and tells the truth:
// it holds the lock, Unlock releases it, and the lock is usable again.
// (Before, the panic unwound past tryLock with the Mutex's turn taken and
// the lock written in S3 with no hold behind it: every later TryLock said
// "held locally" forever.)
func TestRedteamPanickingHookKeepsMutexUsable(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	var armed sync.Once
	panicked := false
	h := &s3lock.Hooks{Request: func(_ context.Context, i s3lock.RequestInfo) {
		if i.Verb == http.MethodPut {
			armed.Do(func() { panicked = true; panic("observer bug") })
		}
	}}
	m := newMutex(t, srv.Client(), srv.Bucket(), "locks/redteam-panic", s3lock.WithTTL(300*time.Millisecond), s3lock.WithHooks(h))
	var err error
	escaped := true
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("the hook's panic reached the caller: %v", r)
			}
		}()
		err = m.TryLock(ctx)
		escaped = false
	}()
	if !panicked {
		t.Fatal("the hook did not panic")
	}
	if escaped {
		return
	}
	if err != nil {
		t.Fatalf("TryLock() with a panicking hook = %v; want nil (the write landed)", err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatalf("Unlock() = %v", err)
	}
	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("TryLock() after Unlock = %v; want nil", err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Errorf("Unlock() = %v", err)
	}
}

// TestRedteamHooksRaceRenewerAndUnlock: hooks called from the renewer
// while Unlock runs in another goroutine; run with -race. Every Renew
// pairs with a Start, and no hook comes after Unlock returned.
func TestRedteamHooksRaceRenewerAndUnlock(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	var (
		mu       sync.Mutex
		unlocked bool
		late     []string
	)
	var rec recorder
	inner := rec.hooks()
	after := func(what string) {
		mu.Lock()
		if unlocked {
			late = append(late, what)
		}
		mu.Unlock()
	}
	h := &s3lock.Hooks{
		Renew: func(ctx context.Context, i s3lock.RenewInfo) { after(fmt.Sprintf("Renew %+v", i)) },
		Request: func(ctx context.Context, i s3lock.RequestInfo) {
			if i.Verb == http.MethodPut {
				after("request")
			}
		},
	}
	m := newMutex(t, srv.Client(), srv.Bucket(), "locks/redteam-race", s3lock.WithTTL(2*time.Second),
		s3lock.WithAutoRenew(100*time.Millisecond), s3lock.WithHooks(inner), s3lock.WithHooks(h))
	for i := range 5 {
		if err := m.TryLock(ctx); err != nil {
			t.Fatalf("TryLock() #%d = %v", i, err)
		}
		time.Sleep(time.Duration(200+20*i) * time.Millisecond)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.Unlock(ctx); err != nil {
				t.Errorf("Unlock() = %v", err)
			}
			mu.Lock()
			unlocked = true
			mu.Unlock()
		}()
		wg.Wait()
		mu.Lock()
		unlocked = false
		mu.Unlock()
	}
	got := rec.snapshot()
	if len(got.renews) == 0 {
		t.Log("no renewal ran")
	}
	if got.unmatched != 0 {
		t.Errorf("%d end hooks without their Start's context", got.unmatched)
	}
	if len(got.starts) != len(got.acquires)+len(got.releases)+len(got.renews) {
		t.Errorf("%d Start calls; %d end calls", len(got.starts), len(got.acquires)+len(got.releases)+len(got.renews))
	}
	if len(late) != 0 {
		t.Errorf("hooks called after Unlock returned: %v", late)
	}
}

// TestRedteamNoETagReadBackReported: against a store that answers PUTs
// without an ETag, put reads the record back; that GET is reported too.
func TestRedteamNoETagReadBackReported(t *testing.T) {
	srv := s3locktest.New(t, s3locktest.WithMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPut {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			for k, v := range rec.Header() {
				if !strings.EqualFold(k, "ETag") {
					w.Header()[k] = v
				}
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
		})
	}))
	ctx := context.Background()
	var rec recorder
	m := newMutex(t, srv.Client(), srv.Bucket(), "locks/redteam-noetag", s3lock.WithHooks(rec.hooks()))
	base := srv.Stats().Snapshot()
	for range 2 {
		if err := m.TryLock(ctx); err != nil {
			t.Fatalf("TryLock() = %v", err)
		}
		if err := m.Unlock(ctx); err != nil {
			t.Fatalf("Unlock() = %v", err)
		}
	}
	if n := srv.Stats().Snapshot().Sub(base).Method(http.MethodGet); n < 2 {
		t.Fatalf("%d GETs: the store's ETags were not dropped (no read-back)", n)
	}
	compareWithServer(t, &rec, srv, base)
}

// TestRedteamSlowHookNoFalseHold: a Request hook that blocks past the TTL
// right after the acquiring PUT (like a very slow S3 answer) must not
// produce a "you hold it" for a lease that has already run out: when
// TryLock returns nil, the hold is live and a contender is refused.
func TestRedteamSlowHookNoFalseHold(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	key := "locks/redteam-slow-hook"
	var once sync.Once
	h := &s3lock.Hooks{Request: func(_ context.Context, i s3lock.RequestInfo) {
		if i.Verb == http.MethodPut && i.Outcome == s3lock.RequestOK {
			once.Do(func() { time.Sleep(1500 * time.Millisecond) })
		}
	}}
	m := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithTTL(time.Second), s3lock.WithHooks(h))
	err := m.TryLock(ctx)
	if err != nil {
		t.Logf("TryLock() = %v (refusing is safe)", err)
		return
	}
	defer m.Unlock(ctx)
	if cerr := m.Context().Err(); cerr != nil {
		t.Fatalf("TryLock() = nil but the hold context is already done: %v", context.Cause(m.Context()))
	}
	other := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithTTL(time.Second))
	if err := other.TryLock(ctx); err == nil {
		other.Unlock(ctx)
		t.Fatal("a contender acquired the lock TryLock had just reported held")
	}
}

// BenchmarkRedteamHooksCost: TryLock+Unlock without hooks, with a Hooks
// whose fields are all nil, and with a Request hook only: what the hooks
// cost per cycle (allocations, ns) against the embedded server.
func BenchmarkRedteamHooksCost(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts []s3lock.Option
	}{
		{"none", nil},
		{"empty", []s3lock.Option{s3lock.WithHooks(&s3lock.Hooks{})}},
		{"request", []s3lock.Option{s3lock.WithHooks(&s3lock.Hooks{Request: func(context.Context, s3lock.RequestInfo) {}})}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			srv := s3locktest.New(b)
			ctx := context.Background()
			m := newMutex(b, srv.Client(), srv.Bucket(), "locks/redteam-bench", bc.opts...)
			b.ReportAllocs()
			for b.Loop() {
				if err := m.TryLock(ctx); err != nil {
					b.Fatal(err)
				}
				if err := m.Unlock(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

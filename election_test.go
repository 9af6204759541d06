package s3lock_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

func newElection(tb testing.TB, client s3lock.S3API, bucket, key string, opts ...s3lock.Option) *s3lock.Election {
	tb.Helper()
	e, err := s3lock.NewElection(client, bucket, key, opts...)
	if err != nil {
		tb.Fatalf("NewElection() = %v", err)
	}
	return e
}

// resign ends e's term at the end of the test if it still leads.
func resignLater(t *testing.T, e *s3lock.Election) {
	t.Cleanup(func() {
		if e.Token() != 0 {
			_ = e.Resign(context.Background())
		}
	})
}

// TestElectionOneLeader: candidates racing with Campaign lead one at a
// time, each term's token larger than the one before, and Leader reports
// the leader and its value during its term.
func TestElectionOneLeader(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key, candidates, terms = "elect/one", 4, 3
	var (
		leading  atomic.Int32
		mu       sync.Mutex
		tokens   []uint64
		failures []string
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for i := range candidates {
		e := newElection(t, srv.Client(), srv.Bucket(), key,
			s3lock.WithOwner(fmt.Sprintf("c%d", i)), s3lock.WithRetryInterval(20*time.Millisecond))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range terms {
				value := fmt.Sprintf("c%d:%d", i, time.Now().UnixNano())
				if err := e.Campaign(ctx, value); err != nil {
					fail("Campaign() = %v", err)
					return
				}
				if n := leading.Add(1); n != 1 {
					fail("%d leaders at once", n)
				}
				tok := e.Token()
				mu.Lock()
				tokens = append(tokens, tok)
				mu.Unlock()
				ld, err := e.Leader(ctx)
				if err != nil || ld.Owner != fmt.Sprintf("c%d", i) || ld.Value != value || ld.Token != tok {
					fail("Leader() during c%d's term %d = %+v, %v; want owner c%d, value %q", i, tok, ld, err, i, value)
				}
				time.Sleep(5 * time.Millisecond)
				leading.Add(-1)
				if err := e.Resign(ctx); err != nil {
					fail("Resign() = %v", err)
				}
			}
		}()
	}
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
	if len(tokens) != candidates*terms {
		t.Fatalf("%d terms; want %d", len(tokens), candidates*terms)
	}
	for i := 1; i < len(tokens); i++ {
		if tokens[i] <= tokens[i-1] {
			t.Errorf("term %d has token %d after %d; want increasing tokens: %v", i, tokens[i], tokens[i-1], tokens)
		}
	}
}

// next receives from ch, failing the test after timeout.
func next(t *testing.T, ch <-chan s3lock.Leader, timeout time.Duration) s3lock.Leader {
	t.Helper()
	select {
	case ld, ok := <-ch:
		if !ok {
			t.Fatal("Observe's channel closed early")
		}
		return ld
	case <-time.After(timeout):
		t.Fatalf("Observe delivered nothing in %v", timeout)
	}
	return s3lock.Leader{}
}

func wantState(t *testing.T, got s3lock.Leader, owner, value string, token uint64) {
	t.Helper()
	if got.Owner != owner || got.Value != value || got.Token != token {
		t.Fatalf("Observe delivered {Owner:%q Value:%q Token:%d}; want {Owner:%q Value:%q Token:%d}",
			got.Owner, got.Value, got.Token, owner, value, token)
	}
}

// TestElectionObserveSequence: Observe delivers the vacancy first, then the
// leader, its new value after Proclaim, the vacancy after Resign, the next
// leader, and the vacancy once that leader, stopped without resigning, has
// let its lease run out.
func TestElectionObserveSequence(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "elect/observe"
	opts := []s3lock.Option{s3lock.WithRetryInterval(20 * time.Millisecond)}
	obs := newElection(t, srv.Client(), srv.Bucket(), key, opts...)
	octx, stop := context.WithCancel(ctx)
	ch := obs.Observe(octx)
	defer func() {
		stop()
		for range ch { // the channel is closed once ctx ends
		}
	}()
	const wait = 5 * time.Second

	wantState(t, next(t, ch, wait), "", "", 0)

	a := newElection(t, srv.Client(), srv.Bucket(), key, append(opts, s3lock.WithOwner("a"))...)
	resignLater(t, a)
	if err := a.Campaign(ctx, "a:1"); err != nil {
		t.Fatalf("a.Campaign() = %v", err)
	}
	first := next(t, ch, wait)
	wantState(t, first, "a", "a:1", 1)
	if first.LastModified.IsZero() || first.TTL != s3lock.DefaultTTL || first.Since.IsZero() {
		t.Errorf("Leader = %+v; want LastModified, Since and TTL %v", first, s3lock.DefaultTTL)
	}
	if err := a.Proclaim(ctx, "a:2"); err != nil {
		t.Fatalf("a.Proclaim() = %v", err)
	}
	wantState(t, next(t, ch, wait), "a", "a:2", 1)
	if got := a.Token(); got != 1 {
		t.Errorf("a.Token() after Proclaim = %d; want 1 (same term)", got)
	}
	if err := a.Resign(ctx); err != nil {
		t.Fatalf("a.Resign() = %v", err)
	}
	if err := context.Cause(a.Context()); !errors.Is(err, s3lock.ErrNotHeld) {
		t.Errorf("a.Context() cause after Resign = %v; want ErrNotHeld", err)
	}
	wantState(t, next(t, ch, wait), "", "", 0)

	// b does not renew: its term ends after its TTL, like a leader that
	// was stopped without resigning.
	b := newElection(t, srv.Client(), srv.Bucket(), key, append(opts, s3lock.WithOwner("b"),
		s3lock.WithTTL(time.Second), s3lock.WithExpiryMargin(100*time.Millisecond), s3lock.WithAutoRenew(0))...)
	if err := b.Campaign(ctx, "b"); err != nil {
		t.Fatalf("b.Campaign() = %v", err)
	}
	began := time.Now()
	wantState(t, next(t, ch, wait), "b", "b", 2)
	wantState(t, next(t, ch, wait), "", "", 0)
	if d := time.Since(began); d < time.Second {
		t.Errorf("vacancy reported %v after b's grant; want no earlier than its TTL (1s)", d)
	}
	if err := context.Cause(b.Context()); !errors.Is(err, s3lock.ErrLeaseLost) {
		t.Errorf("b.Context() cause after its lease ran out = %v; want ErrLeaseLost", err)
	}
	_ = b.Resign(ctx)
}

// TestElectionObserveThroughFailures: while S3 fails, Observe reports
// nothing (in particular no vacancy), and once S3 answers again it
// reports the state then.
func TestElectionObserveThroughFailures(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "elect/failures"
	f := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
	obs := newElection(t, srv.FaultyClient(f), srv.Bucket(), key, s3lock.WithRetryInterval(20*time.Millisecond))
	a := newElection(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("a"))
	resignLater(t, a)
	if err := a.Campaign(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	octx, stop := context.WithCancel(ctx)
	ch := obs.Observe(octx)
	defer func() {
		stop()
		for range ch {
		}
	}()
	wantState(t, next(t, ch, 5*time.Second), "a", "x", 1)
	f.Partition(time.Hour)
	time.Sleep(100 * time.Millisecond) // polls fail meanwhile
	if err := a.Proclaim(ctx, "y"); err != nil {
		t.Fatal(err)
	}
	select {
	case ld := <-ch:
		t.Fatalf("Observe delivered %+v while S3 failed; want nothing", ld)
	case <-time.After(300 * time.Millisecond):
	}
	f.Heal()
	wantState(t, next(t, ch, 5*time.Second), "a", "y", 1)
}

// TestElectionObserveNotModified: polls of an unchanged object are answered
// 304 Not Modified (no body), and Observe still sees the changes.
func TestElectionObserveNotModified(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "elect/304"
	a := newElection(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("a"))
	resignLater(t, a)
	if err := a.Campaign(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	obs := newElection(t, srv.Client(), srv.Bucket(), key, s3lock.WithRetryInterval(10*time.Millisecond))
	octx, stop := context.WithCancel(ctx)
	ch := obs.Observe(octx)
	defer func() {
		stop()
		for range ch {
		}
	}()
	wantState(t, next(t, ch, 5*time.Second), "a", "x", 1)
	base := srv.Stats().Snapshot()
	time.Sleep(200 * time.Millisecond)
	d := srv.Stats().Snapshot().Sub(base)
	if d[s3locktest.Request{Method: http.MethodGet, Status: http.StatusNotModified}] == 0 || d[s3locktest.Request{Method: http.MethodGet, Status: http.StatusOK}] != 0 {
		t.Errorf("requests while the leader did not write: %v; want only GETs answered 304", d)
	}
	if err := a.Proclaim(ctx, "y"); err != nil {
		t.Fatal(err)
	}
	wantState(t, next(t, ch, 5*time.Second), "a", "y", 1)
}

// TestElectionSlowObserver: a receiver that does not read for a while gets
// the latest state, not the ones it missed, and the poller kept going.
func TestElectionSlowObserver(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "elect/slow"
	a := newElection(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("a"))
	resignLater(t, a)
	obs := newElection(t, srv.Client(), srv.Bucket(), key, s3lock.WithRetryInterval(10*time.Millisecond))
	octx, stop := context.WithCancel(ctx)
	ch := obs.Observe(octx)
	defer func() {
		stop()
		for range ch {
		}
	}()
	if err := a.Campaign(ctx, "v0"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		if err := a.Proclaim(ctx, fmt.Sprintf("v%d", i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Millisecond)
	}
	// The first state the poller read may have been the vacancy or any
	// value; what comes last must be the latest.
	var got []string
	for {
		ld := next(t, ch, 5*time.Second)
		got = append(got, ld.Value)
		if ld.Value == "v5" {
			break
		}
		if len(got) > 3 {
			t.Fatalf("Observe delivered %q to a slow receiver; want at most the held state then the latest (v5)", got)
		}
	}
	select {
	case ld := <-ch:
		t.Fatalf("Observe delivered %+v after the latest state; want nothing", ld)
	case <-time.After(100 * time.Millisecond):
	}
}

// TestElectionLostToForceUnlock: a leader whose record is broken by
// ForceUnlock sees its Context cancelled with ErrLeaseLost, and Proclaim
// fails with ErrLeaseLost.
func TestElectionLostToForceUnlock(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "elect/force"
	a := newElection(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("a"), s3lock.WithTTL(900*time.Millisecond))
	if err := a.Campaign(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	term := a.Context()
	st, err := s3lock.Inspect(ctx, srv.Client(), srv.Bucket(), key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s3lock.ForceUnlock(ctx, srv.Client(), srv.Bucket(), key, st.ETag); err != nil {
		t.Fatalf("ForceUnlock() = %v", err)
	}
	select {
	case <-term.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the term's Context was not cancelled after ForceUnlock and a renewal")
	}
	if err := context.Cause(term); !errors.Is(err, s3lock.ErrLeaseLost) {
		t.Errorf("Context() cause = %v; want ErrLeaseLost", err)
	}
	if err := a.Proclaim(ctx, "y"); !errors.Is(err, s3lock.ErrLeaseLost) {
		t.Errorf("Proclaim() after the loss = %v; want ErrLeaseLost", err)
	}
	if _, err := a.Leader(ctx); !errors.Is(err, s3lock.ErrNoLeader) {
		t.Errorf("Leader() after ForceUnlock = %v; want ErrNoLeader", err)
	}
	if err := a.Resign(ctx); !errors.Is(err, s3lock.ErrLeaseLost) {
		t.Errorf("Resign() after the loss = %v; want ErrLeaseLost", err)
	}
}

// TestElectionProclaimLosesRace: Proclaim itself finds the record broken.
func TestElectionProclaimFindsLoss(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "elect/proclaim-loss"
	a := newElection(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("a"))
	if err := a.Campaign(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	st, err := s3lock.Inspect(ctx, srv.Client(), srv.Bucket(), key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s3lock.ForceUnlock(ctx, srv.Client(), srv.Bucket(), key, st.ETag); err != nil {
		t.Fatal(err)
	}
	if err := a.Proclaim(ctx, "y"); !errors.Is(err, s3lock.ErrLeaseLost) {
		t.Errorf("Proclaim() over a broken record = %v; want ErrLeaseLost", err)
	}
	if err := context.Cause(a.Context()); !errors.Is(err, s3lock.ErrLeaseLost) {
		t.Errorf("Context() cause = %v; want ErrLeaseLost", err)
	}
	_ = a.Resign(ctx)
	rec, _ := rawRecord(t, srv, key)
	if rec["state"] != "free" || rec["value"] != nil {
		t.Errorf("record after the failed Proclaim = %v; want the free record ForceUnlock wrote", rec)
	}
}

// TestElectionBadInput: bad arguments and calls out of turn are refused,
// and write nothing.
func TestElectionBadInput(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "elect/bad"
	if _, err := s3lock.NewElection(srv.Client(), srv.Bucket(), ""); !errors.Is(err, s3lock.ErrInvalidArgument) {
		t.Errorf("NewElection(empty key) = %v; want ErrInvalidArgument", err)
	}
	if _, err := s3lock.NewElection(srv.Client(), srv.Bucket(), key, nil); !errors.Is(err, s3lock.ErrInvalidArgument) {
		t.Errorf("NewElection(nil Option) = %v; want ErrInvalidArgument", err)
	}
	if _, err := s3lock.NewElection(srv.Client(), srv.Bucket(), key, s3lock.WithTTL(time.Second), s3lock.WithAutoRenew(time.Second)); !errors.Is(err, s3lock.ErrInvalidArgument) {
		t.Errorf("NewElection(renew every TTL) = %v; want ErrInvalidArgument", err)
	}
	if _, err := s3lock.NewElection(srv.Client(), srv.Bucket(), key, s3lock.WithAutoRenew(-1)); !errors.Is(err, s3lock.ErrInvalidArgument) {
		t.Errorf("NewElection(WithAutoRenew(-1)) = %v; want ErrInvalidArgument", err)
	}
	e := newElection(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("e"))
	base := srv.Stats().Snapshot()
	long := strings.Repeat("x", s3lock.MaxValueLen+1)
	if err := e.Campaign(ctx, long); !errors.Is(err, s3lock.ErrInvalidArgument) {
		t.Errorf("Campaign(%d bytes) = %v; want ErrInvalidArgument", len(long), err)
	}
	if err := e.Campaign(ctx, "\xff"); !errors.Is(err, s3lock.ErrInvalidArgument) {
		t.Errorf("Campaign(invalid UTF-8) = %v; want ErrInvalidArgument", err)
	}
	if err := e.Proclaim(ctx, "x"); !errors.Is(err, s3lock.ErrNotHeld) {
		t.Errorf("Proclaim() without leading = %v; want ErrNotHeld", err)
	}
	if err := e.Resign(ctx); !errors.Is(err, s3lock.ErrNotHeld) {
		t.Errorf("Resign() without leading = %v; want ErrNotHeld", err)
	}
	if err := context.Cause(e.Context()); !errors.Is(err, s3lock.ErrNotHeld) {
		t.Errorf("Context() without leading: cause %v; want ErrNotHeld", err)
	}
	if d := srv.Stats().Snapshot().Sub(base); d.Total() != 0 {
		t.Errorf("requests for refused calls: %v; want none", d)
	}
	if _, err := e.Leader(ctx); !errors.Is(err, s3lock.ErrNoLeader) {
		t.Errorf("Leader() without an object = %v; want ErrNoLeader", err)
	}

	if err := e.Campaign(ctx, strings.Repeat("y", s3lock.MaxValueLen)); err != nil {
		t.Fatalf("Campaign(%d bytes) = %v; want nil", s3lock.MaxValueLen, err)
	}
	defer e.Resign(ctx)
	if err := e.Proclaim(ctx, long); !errors.Is(err, s3lock.ErrInvalidArgument) {
		t.Errorf("Proclaim(%d bytes) = %v; want ErrInvalidArgument", len(long), err)
	}
	base = srv.Stats().Snapshot()
	err := e.Campaign(ctx, "again")
	var le *s3lock.LockedError
	if !errors.As(err, &le) || !le.Local || !errors.Is(err, s3lock.ErrLocked) {
		t.Errorf("Campaign() while leading = %v; want a local *LockedError matching ErrLocked", err)
	}
	if d := srv.Stats().Snapshot().Sub(base); d.Method(http.MethodPut) != 0 {
		t.Errorf("requests for a Campaign while leading: %v; want no write", d)
	}
	ld, err := e.Leader(ctx)
	if err != nil || ld.Value != strings.Repeat("y", s3lock.MaxValueLen) {
		t.Errorf("Leader() = %+v, %v; want the %d-byte value", ld.Owner, err, s3lock.MaxValueLen)
	}
}

// TestElectionAndMutexExclude: an Election and a Mutex on one key exclude
// each other, and Campaign's error matches ctx.Err() when ctx ends.
func TestElectionAndMutexExclude(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "elect/mutex"
	e := newElection(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("e"), s3lock.WithRetryInterval(20*time.Millisecond))
	m := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("m"))
	if err := e.Campaign(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	le := wantLocked(t, m.TryLock(ctx))
	if le.Owner != "e" {
		t.Errorf("Mutex sees owner %q; want e", le.Owner)
	}
	if err := e.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	tctx, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
	defer cancel()
	if err := e.Campaign(tctx, "y"); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, s3lock.ErrLocked) {
		t.Errorf("Campaign() while a Mutex holds the key = %v; want DeadlineExceeded and ErrLocked", err)
	}
	if _, err := e.Leader(ctx); err != nil {
		t.Errorf("Leader() while a Mutex holds the key = %v; want the Mutex as leader", err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Campaign(ctx, "z"); err != nil {
		t.Fatal(err)
	}
	if got := e.Token(); got != 3 {
		t.Errorf("Token() = %d; want 3", got)
	}
	if err := e.Resign(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestElectionCampaignCtxBoundsOnlyTheWait: cancelling Campaign's context
// after it returned does not end the term, which outlives its TTL.
func TestElectionCampaignCtxBoundsOnlyTheWait(t *testing.T) {
	srv := s3locktest.New(t)
	const key = "elect/ctx"
	e := newElection(t, srv.Client(), srv.Bucket(), key, s3lock.WithTTL(600*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	if err := e.Campaign(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	cancel()
	time.Sleep(1500 * time.Millisecond)
	if err := e.Context().Err(); err != nil {
		t.Fatalf("term's Context ended (%v) after Campaign's ctx was cancelled; want it renewed", context.Cause(e.Context()))
	}
	if _, err := e.Leader(context.Background()); err != nil {
		t.Errorf("Leader() = %v; want e", err)
	}
	if err := e.Resign(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestMutexWithValue: a Mutex publishes WithValue's value with its hold,
// where Inspect and an Election's Leader read it; the release drops it.
func TestMutexWithValue(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "elect/mutex-value"
	if _, err := s3lock.New(srv.Client(), srv.Bucket(), key, s3lock.WithValue(strings.Repeat("x", s3lock.MaxValueLen+1))); !errors.Is(err, s3lock.ErrInvalidArgument) {
		t.Errorf("New(WithValue(too long)) = %v; want ErrInvalidArgument", err)
	}
	m := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("m"), s3lock.WithValue("job 42 on host-a"))
	if err := m.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := s3lock.Inspect(ctx, srv.Client(), srv.Bucket(), key)
	if err != nil || st.Value != "job 42 on host-a" {
		t.Errorf("Inspect() = %+v, %v; want value %q", st, err, "job 42 on host-a")
	}
	e := newElection(t, srv.Client(), srv.Bucket(), key)
	if ld, err := e.Leader(ctx); err != nil || ld.Owner != "m" || ld.Value != "job 42 on host-a" {
		t.Errorf("Leader() = %+v, %v; want m with its value", ld, err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := s3lock.Inspect(ctx, srv.Client(), srv.Bucket(), key); err != nil || st.Value != "" || st.Held {
		t.Errorf("Inspect() after Unlock = %+v, %v; want free without a value", st, err)
	}
}

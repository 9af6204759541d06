package s3lock_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/cenkalti/backoff/v4"
	"go.uber.org/goleak"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newMutex is s3lock.New for tests: it fails the test if New fails. For a
// Mutex with a client of its own on an s3locktest.Server, pass
// srv.Client(), srv.Bucket().
func newMutex(tb testing.TB, client s3lock.S3API, bucket, key string, opts ...s3lock.Option) *s3lock.Mutex {
	tb.Helper()
	m, err := s3lock.New(client, bucket, key, opts...)
	if err != nil {
		tb.Fatalf("New() = %v", err)
	}
	return m
}

func wantLocked(t *testing.T, err error) *s3lock.LockedError {
	t.Helper()
	var le *s3lock.LockedError
	if !errors.As(err, &le) || !errors.Is(err, s3lock.ErrLocked) {
		t.Fatalf("err = %v; want a *LockedError matching ErrLocked", err)
	}
	return le
}

func TestTryLockUnlockCycle(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	a := newMutex(t, srv.Client(), srv.Bucket(), "locks/cycle", s3lock.WithOwner("a"))
	b := newMutex(t, srv.Client(), srv.Bucket(), "locks/cycle", s3lock.WithOwner("b"))

	if err := a.TryLock(ctx); err != nil {
		t.Fatalf("a.TryLock() = %v; want nil", err)
	}
	if got := a.Token(); got != 1 {
		t.Errorf("a.Token() = %d; want 1", got)
	}
	le := wantLocked(t, b.TryLock(ctx))
	if le.Owner != "a" || le.Generation != 1 || le.Until.IsZero() || le.Local {
		t.Errorf("LockedError = %+v; want owner a, generation 1, Until set, not local", le)
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatalf("a.Unlock() = %v", err)
	}
	if got := a.Token(); got != 0 {
		t.Errorf("a.Token() after Unlock = %d; want 0", got)
	}
	if err := b.TryLock(ctx); err != nil {
		t.Fatalf("b.TryLock() after release = %v; want nil", err)
	}
	if got := b.Token(); got != 2 {
		t.Errorf("b.Token() = %d; want 2", got)
	}
	if err := b.Unlock(ctx); err != nil {
		t.Fatalf("b.Unlock() = %v", err)
	}
	// The release left a free record, not a deleted object.
	st, err := s3lock.Inspect(ctx, srv.Client(), srv.Bucket(), "locks/cycle")
	if err != nil {
		t.Fatalf("Inspect() = %v", err)
	}
	if !st.Exists || st.Held || st.Generation != 2 {
		t.Errorf("Inspect() = %+v; want an existing free record of generation 2", st)
	}
}

// TestCounterHammer runs many critical sections from many Mutex values
// (and several goroutines sharing one Mutex), each a GET→+1→PUT of a
// counter in S3. The counter must end exact, no two sections may overlap,
// and fencing tokens must strictly increase.
func TestCounterHammer(t *testing.T) {
	const mutexes, sharedGoroutines, perWorker = 8, 3, 12
	srv := s3locktest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	counter := &s3locktest.Counter{Client: srv.Client(), Bucket: srv.Bucket(), Key: "data/counter"}

	var inside atomic.Int32
	var overlaps atomic.Int32
	var tokMu sync.Mutex
	var lastToken uint64
	var tokenErrors []string

	section := func(m *s3lock.Mutex) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			if inside.Add(1) != 1 {
				overlaps.Add(1)
			}
			defer inside.Add(-1)
			tok := m.Token()
			tokMu.Lock()
			if tok <= lastToken {
				tokenErrors = append(tokenErrors, fmt.Sprintf("token %d after %d", tok, lastToken))
			}
			lastToken = tok
			tokMu.Unlock()
			n, err := counter.Get(ctx)
			if err != nil {
				return err
			}
			return counter.Set(ctx, n+1)
		}
	}

	var wg sync.WaitGroup
	errs := make(chan error, mutexes+sharedGoroutines)
	run := func(m *s3lock.Mutex) {
		defer wg.Done()
		for range perWorker {
			if err := m.WithLock(ctx, section(m)); err != nil {
				errs <- err
				return
			}
		}
	}
	opts := []s3lock.Option{s3lock.WithRetryInterval(5 * time.Millisecond), s3lock.WithTTL(20 * time.Second)}
	for range mutexes {
		wg.Add(1)
		go run(newMutex(t, srv.Client(), srv.Bucket(), "locks/hammer", opts...))
	}
	shared := newMutex(t, srv.Client(), srv.Bucket(), "locks/hammer", opts...)
	for range sharedGoroutines {
		wg.Add(1)
		go run(shared)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("WithLock() = %v", err)
	}
	want := (mutexes + sharedGoroutines) * perWorker
	got, err := counter.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("counter = %d; want %d (lost updates: %d)", got, want, want-got)
	}
	if n := overlaps.Load(); n != 0 {
		t.Errorf("%d overlapping critical sections; want 0", n)
	}
	if len(tokenErrors) > 0 {
		t.Errorf("fencing tokens did not strictly increase: %v", tokenErrors)
	}
	if lastToken != uint64(want) {
		t.Errorf("last token = %d; want %d (one generation per grant)", lastToken, want)
	}
}

// TestExpiryTakeover: a hold that is never unlocked blocks others for its
// TTL and is taken over after it, never before, whatever the clients'
// wall clocks say.
func TestExpiryTakeover(t *testing.T) {
	const ttl = time.Second
	for _, tc := range []struct {
		name               string
		holderSkew, contSk time.Duration
	}{
		{"no skew", 0, 0},
		{"holder +1h", time.Hour, 0},
		{"holder -1h", -time.Hour, 0},
		{"contender +1h", 0, time.Hour},
		{"contender -1h", 0, -time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := s3locktest.New(t)
			ctx := context.Background()
			key := "locks/expiry"
			holder := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithTTL(ttl), s3lock.WithOwner("holder"), s3lock.WithClock(s3locktest.SkewedClock{Skew: tc.holderSkew}))
			cont := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithTTL(ttl), s3lock.WithOwner("contender"),
				s3lock.WithClock(s3locktest.SkewedClock{Skew: tc.contSk}), s3lock.WithRetryInterval(50*time.Millisecond))
			if err := holder.TryLock(ctx); err != nil {
				t.Fatalf("holder.TryLock() = %v", err)
			}
			acquired := time.Now()
			// Abandoned: the holder never unlocks. Until the TTL is over,
			// every attempt fails.
			for time.Since(acquired) < ttl*8/10 {
				err := cont.TryLock(ctx)
				if time.Since(acquired) < ttl && err == nil {
					t.Fatalf("contender acquired %v after the hold began; TTL is %v", time.Since(acquired), ttl)
				}
				wantLocked(t, err)
				time.Sleep(100 * time.Millisecond)
			}
			lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := cont.Lock(lctx); err != nil {
				t.Fatalf("contender.Lock() = %v; want takeover after the TTL", err)
			}
			gap := time.Since(acquired)
			if gap < ttl {
				t.Fatalf("takeover %v after acquire; want ≥ TTL %v", gap, ttl)
			}
			t.Logf("takeover after %v (TTL %v)", gap.Round(time.Millisecond), ttl)
			if got := cont.Token(); got != 2 {
				t.Errorf("contender Token() = %d; want 2", got)
			}
			// The old holder finds its lease lost.
			if err := holder.Unlock(ctx); !errors.Is(err, s3lock.ErrLeaseLost) {
				t.Errorf("holder.Unlock() after takeover = %v; want ErrLeaseLost", err)
			}
			if err := cont.Unlock(ctx); err != nil {
				t.Errorf("contender.Unlock() = %v", err)
			}
		})
	}
}

// dropOnce is an http.RoundTripper that sends the first request matching
// its filter to the server, then throws the answer away and reports a
// transport error: the write was applied but the client does not know.
type dropOnce struct {
	next    http.RoundTripper
	match   func(*http.Request) bool
	dropped atomic.Int32
	armed   atomic.Bool
}

func (d *dropOnce) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := d.next.RoundTrip(r)
	if err == nil && d.match(r) && d.armed.CompareAndSwap(true, false) {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		d.dropped.Add(1)
		return nil, fmt.Errorf("injected: connection reset after the request was applied: %w", io.ErrUnexpectedEOF)
	}
	return resp, err
}

// TestLostAcquireResponse: the acquire PUT is applied but its response is
// lost. With SDK retries the retry sees 412 for our own write; without,
// the call fails outright. Either way TryLock must report the truth: nil.
func TestLostAcquireResponse(t *testing.T) {
	for _, tc := range []struct {
		name     string
		attempts int
		warm     bool
	}{
		{"create, SDK retries", 3, false},
		{"create, no SDK retry", 1, false},
		{"warm If-Match, SDK retries", 3, true},
		{"warm If-Match, no SDK retry", 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := s3locktest.New(t)
			ctx := context.Background()
			drop := &dropOnce{next: srv.HTTPClient().Transport, match: s3locktest.IsMethod(http.MethodPut)}
			client := srv.Client(func(o *s3.Options) {
				o.HTTPClient = &http.Client{Transport: drop}
				o.RetryMaxAttempts = tc.attempts
			})
			m := newMutex(t, client, srv.Bucket(), "locks/lost", s3lock.WithOwner("m"))
			if tc.warm {
				if err := m.TryLock(ctx); err != nil {
					t.Fatal(err)
				}
				if err := m.Unlock(ctx); err != nil {
					t.Fatal(err)
				}
			}
			drop.armed.Store(true)
			if err := m.TryLock(ctx); err != nil {
				t.Fatalf("TryLock() with a lost response = %v; want nil", err)
			}
			if drop.dropped.Load() != 1 {
				t.Fatalf("dropped %d responses; want 1", drop.dropped.Load())
			}
			// The lock really is ours: another Mutex cannot take it, and
			// our Unlock frees it.
			other := newMutex(t, srv.Client(), srv.Bucket(), "locks/lost")
			le := wantLocked(t, other.TryLock(ctx))
			if le.Owner != "m" {
				t.Errorf("holder = %q; want m", le.Owner)
			}
			if err := m.Unlock(ctx); err != nil {
				t.Fatalf("Unlock() = %v", err)
			}
			if err := other.TryLock(ctx); err != nil {
				t.Fatalf("other.TryLock() after Unlock = %v", err)
			}
			_ = other.Unlock(ctx)
		})
	}
}

// TestLostReleaseResponse: the release PUT is applied but its answer is
// lost; Unlock must still report success and leave the lock free.
func TestLostReleaseResponse(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	drop := &dropOnce{next: srv.HTTPClient().Transport, match: s3locktest.IsMethod(http.MethodPut)}
	client := srv.Client(func(o *s3.Options) { o.HTTPClient = &http.Client{Transport: drop} })
	m := newMutex(t, client, srv.Bucket(), "locks/lost-release")
	if err := m.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	drop.armed.Store(true)
	if err := m.Unlock(ctx); err != nil {
		t.Fatalf("Unlock() with a lost response = %v; want nil", err)
	}
	other := newMutex(t, srv.Client(), srv.Bucket(), "locks/lost-release")
	if err := other.TryLock(ctx); err != nil {
		t.Fatalf("other.TryLock() = %v; want nil (lock must be free)", err)
	}
	_ = other.Unlock(ctx)
}

func TestUnlockErrors(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	a := newMutex(t, srv.Client(), srv.Bucket(), "locks/unlock")
	if err := a.Unlock(ctx); !errors.Is(err, s3lock.ErrNotHeld) {
		t.Errorf("Unlock() never locked = %v; want ErrNotHeld", err)
	}
	if err := a.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	b := newMutex(t, srv.Client(), srv.Bucket(), "locks/unlock")
	if err := b.Unlock(ctx); !errors.Is(err, s3lock.ErrNotHeld) {
		t.Errorf("Unlock() by non-holder = %v; want ErrNotHeld", err)
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatalf("Unlock() = %v", err)
	}
	if err := a.Unlock(ctx); !errors.Is(err, s3lock.ErrNotHeld) {
		t.Errorf("second Unlock() = %v; want ErrNotHeld", err)
	}
}

// TestUnlockAfterForcedBreak: the hold was broken and taken by another;
// the old holder's Unlock reports ErrLeaseLost and does not free the new
// holder's lock.
func TestUnlockAfterForcedBreak(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	a := newMutex(t, srv.Client(), srv.Bucket(), "locks/broken", s3lock.WithOwner("a"))
	b := newMutex(t, srv.Client(), srv.Bucket(), "locks/broken", s3lock.WithOwner("b"))
	if err := a.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := s3lock.Inspect(ctx, srv.Client(), srv.Bucket(), "locks/broken")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s3lock.ForceUnlock(ctx, srv.Client(), srv.Bucket(), "locks/broken", st.ETag); err != nil {
		t.Fatalf("ForceUnlock() = %v", err)
	}
	if err := b.TryLock(ctx); err != nil {
		t.Fatalf("b.TryLock() after break = %v", err)
	}
	if a.Token() >= b.Token() {
		t.Errorf("tokens a=%d b=%d; want a < b", a.Token(), b.Token())
	}
	if err := a.Unlock(ctx); !errors.Is(err, s3lock.ErrLeaseLost) {
		t.Errorf("a.Unlock() = %v; want ErrLeaseLost", err)
	}
	if cause := context.Cause(a.Context()); !errors.Is(cause, s3lock.ErrNotHeld) {
		t.Errorf("a.Context() cause after Unlock = %v; want ErrNotHeld", cause)
	}
	wantLocked(t, newMutex(t, srv.Client(), srv.Bucket(), "locks/broken").TryLock(ctx))
	if err := b.Unlock(ctx); err != nil {
		t.Errorf("b.Unlock() = %v", err)
	}
}

// TestLocalExclusion: goroutines sharing one Mutex exclude each other
// without S3 traffic while they wait.
func TestLocalExclusion(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	m := newMutex(t, srv.Client(), srv.Bucket(), "locks/local")
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	le := wantLocked(t, m.TryLock(ctx))
	if !le.Local {
		t.Errorf("TryLock() on a held Mutex: Local = false; want true")
	}
	before := srv.Stats().Snapshot()
	got := make(chan error, 1)
	go func() { got <- m.Lock(ctx) }()
	select {
	case err := <-got:
		t.Fatalf("second Lock() returned %v while the first holds", err)
	case <-time.After(300 * time.Millisecond):
	}
	if n := srv.Stats().Snapshot().Sub(before).Total(); n != 0 {
		t.Errorf("waiting in-process made %d S3 requests; want 0", n)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("second Lock() = %v", err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestLockHonoursContext(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	a := newMutex(t, srv.Client(), srv.Bucket(), "locks/ctx")
	b := newMutex(t, srv.Client(), srv.Bucket(), "locks/ctx", s3lock.WithRetryInterval(20*time.Millisecond))
	if err := a.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	defer a.Unlock(ctx)

	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	err := b.Lock(cctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock() = %v; want it to wrap context.DeadlineExceeded", err)
	}
	if b.Token() != 0 {
		t.Errorf("Token() after failed Lock = %d; want 0", b.Token())
	}
	// Already-cancelled context: no attempt at all.
	cancelled, cancel2 := context.WithCancel(ctx)
	cancel2()
	if err := b.Lock(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("Lock(cancelled) = %v; want context.Canceled", err)
	}
	if err := b.TryLock(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("TryLock(cancelled) = %v; want context.Canceled", err)
	}
}

// TestLockWaitsForRelease: Lock returns soon after the holder unlocks.
func TestLockWaitsForRelease(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	a := newMutex(t, srv.Client(), srv.Bucket(), "locks/wait")
	b := newMutex(t, srv.Client(), srv.Bucket(), "locks/wait", s3lock.WithRetryInterval(20*time.Millisecond))
	if err := a.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { got <- b.Lock(ctx) }()
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-got:
		t.Fatalf("b.Lock() = %v while a holds", err)
	default:
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("b.Lock() = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("b.Lock() still waiting 10s after the release")
	}
	if err := b.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestRequestsPerOperation(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	m := newMutex(t, srv.Client(), srv.Bucket(), "locks/cost")

	count := func(f func() error) (gets, puts, total int64) {
		t.Helper()
		before := srv.Stats().Snapshot()
		if err := f(); err != nil {
			t.Fatal(err)
		}
		d := srv.Stats().Snapshot().Sub(before)
		return d.Method(http.MethodGet), d.Method(http.MethodPut), d.Total()
	}
	// First acquire of a lock that does not exist yet: GET (404) + PUT.
	if g, p, n := count(func() error { return m.TryLock(ctx) }); g != 1 || p != 1 || n != 2 {
		t.Errorf("first acquire: %d GET, %d PUT, %d total; want 1, 1, 2", g, p, n)
	}
	if g, p, n := count(func() error { return m.Unlock(ctx) }); g != 0 || p != 1 || n != 1 {
		t.Errorf("release: %d GET, %d PUT, %d total; want 0, 1, 1", g, p, n)
	}
	// Warm cycle: one conditional PUT each way.
	for i := range 5 {
		_, p, n := count(func() error {
			if err := m.TryLock(ctx); err != nil {
				return err
			}
			return m.Unlock(ctx)
		})
		if p != 2 || n != 2 {
			t.Errorf("warm cycle %d: %d PUT, %d total; want 2, 2", i, p, n)
		}
	}
	// A fresh Mutex on an existing free lock: GET + PUT.
	fresh := newMutex(t, srv.Client(), srv.Bucket(), "locks/cost")
	if g, p, n := count(func() error { return fresh.TryLock(ctx) }); g != 1 || p != 1 || n != 2 {
		t.Errorf("first acquire of an existing free lock: %d GET, %d PUT, %d total; want 1, 1, 2", g, p, n)
	}
	_ = fresh.Unlock(ctx)
}

func TestInvalidLockObjects(t *testing.T) {
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"corrupt", []byte("{not json")},
		{"foreign JSON", []byte(`{"owner":"someone","expires":"2030-01-01T00:00:00Z"}`)},
		{"newer schema", []byte(`{"s3lock":3,"state":"held","owner":"x","nonce":"n","generation":3,"ttl_ms":1000,"written_at":"2026-01-01T00:00:00Z"}`)},
		{"value too long", []byte(`{"s3lock":2,"state":"held","owner":"x","nonce":"n","generation":3,"ttl_ms":1000,"value":"` + strings.Repeat("x", s3lock.MaxValueLen+1) + `"}`)},
		{"value not a string", []byte(`{"s3lock":2,"state":"held","owner":"x","nonce":"n","generation":3,"ttl_ms":1000,"value":42}`)},
		{"oversized", bytes.Repeat([]byte("x"), 4096+100)}, // the largest record is 4 KiB
		{"empty", []byte{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := s3locktest.New(t)
			ctx := context.Background()
			if err := srv.PutObject(ctx, "locks/invalid", tc.body); err != nil {
				t.Fatal(err)
			}
			m := newMutex(t, srv.Client(), srv.Bucket(), "locks/invalid", s3lock.WithTTL(time.Second))
			err := m.TryLock(ctx)
			le := wantLocked(t, err)
			if !errors.Is(err, s3lock.ErrInvalidLockObject) || le.Invalid == nil {
				t.Fatalf("TryLock() = %v; want it to match ErrInvalidLockObject too", err)
			}
			if !errors.Is(le.Invalid, s3lock.ErrInvalidLockObject) || le.Key != "locks/invalid" {
				t.Errorf("LockedError = %+v; want Key locks/invalid and Invalid matching ErrInvalidLockObject", le)
			}
			// Lock takes it over, but only once S3 shows it older than the TTL.
			start := time.Now()
			lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := m.Lock(lctx); err != nil {
				t.Fatalf("Lock() over an invalid object = %v", err)
			}
			if waited := time.Since(start); waited < time.Second {
				t.Errorf("took the invalid object over after %v; want ≥ TTL", waited)
			}
			if err := m.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestMissingBucket(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	m := newMutex(t, srv.Client(), "no-such-bucket", "locks/x")
	if err := m.TryLock(ctx); !errors.Is(err, s3lock.ErrBucketNotFound) || errors.Is(err, s3lock.ErrLocked) {
		t.Errorf("TryLock() = %v; want ErrBucketNotFound (and not ErrLocked)", err)
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := m.Lock(lctx); !errors.Is(err, s3lock.ErrBucketNotFound) {
		t.Errorf("Lock() = %v; want ErrBucketNotFound at once", err)
	}
}

func TestNewValidates(t *testing.T) {
	srv := s3locktest.New(t)
	c := srv.Client()
	for _, tc := range []struct {
		name        string
		client      s3lock.S3API
		bucket, key string
		opts        []s3lock.Option
	}{
		{"nil client", nil, "b", "k", nil},
		{"empty bucket", c, "", "k", nil},
		{"bucket with slash", c, "a/b", "k", nil},
		{"empty key", c, "b", "", nil},
		{"key too long", c, "b", strings.Repeat("k", 1025), nil},
		{"key not UTF-8", c, "b", "k\xff", nil},
		{"zero TTL", c, "b", "k", []s3lock.Option{s3lock.WithTTL(0)}},
		{"negative TTL", c, "b", "k", []s3lock.Option{s3lock.WithTTL(-time.Second)}},
		{"empty owner", c, "b", "k", []s3lock.Option{s3lock.WithOwner("")}},
		{"zero retry interval", c, "b", "k", []s3lock.Option{s3lock.WithRetryInterval(0)}},
		{"nil backoff", c, "b", "k", []s3lock.Option{s3lock.WithBackoff(nil)}},
		{"renew too slow for TTL", c, "b", "k", []s3lock.Option{s3lock.WithTTL(3 * time.Second), s3lock.WithAutoRenew(2 * time.Second)}},
		{"nil logger", c, "b", "k", []s3lock.Option{s3lock.WithLogger(nil)}},
		{"nil option", c, "b", "k", []s3lock.Option{nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := s3lock.New(tc.client, tc.bucket, tc.key, tc.opts...)
			if !errors.Is(err, s3lock.ErrInvalidArgument) || m != nil {
				t.Errorf("New() = %v, %v; want nil, ErrInvalidArgument", m, err)
			}
		})
	}
	if n := srv.Stats().Snapshot().Total(); n != 0 {
		t.Errorf("New made %d S3 requests; want 0", n)
	}
}

func TestLocker(t *testing.T) {
	srv := s3locktest.New(t)
	m := newMutex(t, srv.Client(), srv.Bucket(), "locks/locker")
	l := m.Locker()
	l.Lock()
	if m.Token() == 0 {
		t.Error("Token() after Locker().Lock() = 0; want the hold's generation")
	}
	l.Unlock()
	defer func() {
		r := recover()
		err, ok := r.(error)
		if !ok || !errors.Is(err, s3lock.ErrNotHeld) {
			t.Errorf("Locker().Unlock() of an unlocked Mutex panicked with %v; want ErrNotHeld", r)
		}
	}()
	l.Unlock()
}

// TestRetryIntervalCapsBackoff: WithRetryInterval and WithBackoff combine,
// the interval capping the backoff's pauses: with a backoff that would
// wait an hour, Lock still sees the release within its context's limit.
func TestRetryIntervalCapsBackoff(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	holder := newMutex(t, srv.Client(), srv.Bucket(), "locks/capped")
	if err := holder.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	m := newMutex(t, srv.Client(), srv.Bucket(), "locks/capped", s3lock.WithRetryInterval(50*time.Millisecond), s3lock.WithBackoff(backoff.NewConstantBackOff(time.Hour)))
	done := make(chan error, 1)
	lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	go func() { done <- m.Lock(lctx) }()
	time.Sleep(200 * time.Millisecond) // m is waiting
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Lock() with an hour-long backoff capped at 50ms = %v; want the lock", err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// churnS3 is a real S3 client that lets another Mutex take and release
// the lock right before each of our PutObject calls, so every conditional
// write of ours loses its race and the re-read finds the lock free again.
type churnS3 struct {
	s3lock.S3API
	other *s3lock.Mutex
	t     *testing.T
	puts  int
}

func (c *churnS3) PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	c.puts++
	if err := c.other.TryLock(ctx); err != nil {
		c.t.Errorf("other.TryLock() = %v", err)
	} else if err := c.other.Unlock(ctx); err != nil {
		c.t.Errorf("other.Unlock() = %v", err)
	}
	return c.S3API.PutObject(ctx, in, optFns...)
}

// TestTryLockLosingEveryRaceReportsErrLocked: when TryLock loses every
// conditional write to other owners (each time finding the lock free again
// on re-read), it must still report contention as ErrLocked: TryLock's
// contract is nil, a *LockedError, or an error from S3 or ctx. Under heavy
// churn (seen on moto in TestLinearizability) it instead returns
// "gave up after 5 conflicting writes", which matches no sentinel.
func TestTryLockLosingEveryRaceReportsErrLocked(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "locks/churn"
	other := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("other"))
	// Leave a free record at the key.
	if err := other.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := other.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	churn := &churnS3{S3API: srv.Client(), other: other, t: t}
	m := newMutex(t, churn, srv.Bucket(), key, s3lock.WithOwner("loser"))
	err := m.TryLock(ctx)
	if err == nil {
		t.Fatalf("TryLock() = nil after losing every race; want ErrLocked")
	}
	t.Logf("TryLock() after losing %d races: %v", churn.puts, err)
	if !errors.Is(err, s3lock.ErrLocked) {
		t.Errorf("TryLock() = %v; want an error matching ErrLocked (the lock kept being taken by others)", err)
	}
}

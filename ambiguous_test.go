package s3lock_test

// Lock writes whose outcome the client cannot see (an answer lost, a 5xx
// after the write was applied, a 409, a read-back that fails): the Mutex
// must report the truth, or leave nothing stranded when it cannot learn it.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/internal/s3http"
	"github.com/s3lock/s3lock/s3locktest"
)

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
			drop := &dropOnce{next: srv.HTTPClient().Transport, match: s3http.IsMethod(http.MethodPut)}
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
			handOver(t, ctx, m, other, 0)
		})
	}
}

// TestLostReleaseResponse: the release PUT is applied but its answer is
// lost; Unlock must still report success and leave the lock free.
func TestLostReleaseResponse(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	drop := &dropOnce{next: srv.HTTPClient().Transport, match: s3http.IsMethod(http.MethodPut)}
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

// ambiguity is a way for a lock write to go wrong.
type ambiguity struct {
	name string
	// arm queues the faults for the next conditional write (and the reads
	// after it).
	arm func(f *s3locktest.Faults)
	// resolvable: the Mutex can learn what happened, so it must report
	// the truth.
	resolvable bool
}

// afterWrite matches conditional writes, and reads once a conditional
// write has been seen; its methods are called with the Faults locked.
type afterWrite struct{ seen bool }

func (a *afterWrite) write(r *http.Request) bool {
	if s3http.IsConditionalWrite(r) {
		a.seen = true
		return true
	}
	return false
}

func (a *afterWrite) read(r *http.Request) bool { return a.seen && r.Method == http.MethodGet }

var ambiguities = []ambiguity{
	{"answer dropped", func(f *s3locktest.Faults) {
		f.Inject(s3locktest.FaultDropResponse, 1, s3http.IsConditionalWrite)
	}, true},
	{"500 after apply", func(f *s3locktest.Faults) {
		f.Inject(s3locktest.FaultErrorAfterApply, 1, s3http.IsConditionalWrite)
	}, true},
	{"answer dropped on every SDK attempt", func(f *s3locktest.Faults) {
		f.Inject(s3locktest.FaultDropResponse, 3, s3http.IsConditionalWrite)
	}, true},
	{"answer dropped, then 409 on the SDK's retry", func(f *s3locktest.Faults) {
		// The retry's 409 says "nothing written" about itself only: the
		// first attempt was applied.
		f.Inject(s3locktest.FaultDropResponse, 1, s3http.IsConditionalWrite)
		f.Inject(s3locktest.FaultConflict, 1, s3http.IsConditionalWrite)
	}, true},
	{"409 conflict", func(f *s3locktest.Faults) {
		f.Inject(s3locktest.FaultConflict, 1, s3http.IsConditionalWrite)
	}, true},
	{"applied, answers and read-back lost", func(f *s3locktest.Faults) {
		aw := &afterWrite{}
		f.Inject(s3locktest.FaultDropResponse, 3, aw.write)
		f.Inject(s3locktest.FaultInternalError, 3, aw.read)
	}, false},
	{"not applied, answers and read-back lost", func(f *s3locktest.Faults) {
		aw := &afterWrite{}
		f.Inject(s3locktest.FaultPartition, 3, aw.write)
		f.Inject(s3locktest.FaultInternalError, 3, aw.read)
	}, false},
}

// TestAmbiguousWrites makes each kind of lock write (acquire by create,
// acquire over a free record, takeover of an expired hold, renewal,
// release) meet each kind of ambiguous outcome, and checks that the Mutex
// reports the truth: no false "acquired", no false "not acquired" or
// "lost" when the truth can be learned, and no lock stranded when it
// cannot.
func TestAmbiguousWrites(t *testing.T) {
	const key = "locks/ambiguous"
	type setup func(t *testing.T, srv *s3locktest.Server) (wantToken uint64)
	acquireKinds := []struct {
		name    string
		prepare setup
		margin  time.Duration
	}{
		{"acquire by create", func(*testing.T, *s3locktest.Server) uint64 { return 1 }, 0},
		{"acquire over a free record", func(t *testing.T, srv *s3locktest.Server) uint64 {
			c := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("c"))
			if err := c.TryLock(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := c.Unlock(context.Background()); err != nil {
				t.Fatal(err)
			}
			return 2
		}, 0},
		{"takeover of an expired hold", func(t *testing.T, srv *s3locktest.Server) uint64 {
			dead := `{"s3lock":1,"state":"held","owner":"dead","nonce":"0123456789abcdef","generation":5,"ttl_ms":200,"written_at":"2025-01-01T00:00:00Z"}`
			if err := srv.PutObject(context.Background(), key, []byte(dead)); err != nil {
				t.Fatal(err)
			}
			return 6
		}, 100 * time.Millisecond},
	}
	for _, kind := range acquireKinds {
		for _, amb := range ambiguities {
			t.Run(kind.name+"/"+amb.name, func(t *testing.T) {
				srv := s3locktest.New(t)
				ctx := context.Background()
				wantTok := kind.prepare(t, srv)
				fa := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
				a := newMutex(t, srv.FaultyClient(fa), srv.Bucket(), key, s3lock.WithOwner("a"),
					s3lock.WithExpiryMargin(kind.margin), s3lock.WithTTL(2*time.Second))
				b := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("b"), s3lock.WithTTL(2*time.Second))
				if wantTok == 6 {
					// Let a watch the dead hold expire, without faults.
					le := wantLocked(t, a.TryLock(ctx))
					time.Sleep(le.RetryAfter + 50*time.Millisecond)
				}
				amb.arm(fa)
				err := a.TryLock(ctx)
				if fa.Pending() != 0 {
					t.Fatalf("%d injected faults were not used: the write did not meet them", fa.Pending())
				}
				st := lockState(t, srv, key)
				heldByA := st.Held && st.Owner == "a"
				t.Logf("TryLock() = %v; lock in S3: held=%v owner=%q generation=%d; faults: %v", err, st.Held, st.Owner, st.Generation, fa.Counts())
				switch {
				case err == nil:
					if !heldByA || st.Generation != wantTok || a.Token() != wantTok {
						t.Fatalf("TryLock() = nil but S3 has held=%v owner=%q generation %d, Token() = %d; want held by a with generation %d",
							st.Held, st.Owner, st.Generation, a.Token(), wantTok)
					}
					wantLocked(t, b.TryLock(ctx))
				case amb.resolvable:
					t.Fatalf("TryLock() = %v; want nil (the outcome could be read back)", err)
				case errors.Is(err, s3lock.ErrLocked):
					t.Fatalf("TryLock() = %v; want an S3 error, not ErrLocked", err)
				case heldByA:
					// Our write landed but we could not learn it: others
					// are excluded (the truth), and we take it back at once.
					wantLocked(t, b.TryLock(ctx))
					if err := a.TryLock(ctx); err != nil {
						t.Fatalf("a.TryLock() over its own stranded write = %v; want nil at once", err)
					}
				default:
					// Our write did not land: the lock is free (or, for the
					// takeover, expired) for others.
					lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
					defer cancel()
					if err := b.Lock(lctx); err != nil {
						t.Fatalf("b.Lock() = %v; want nil (a's write was not applied)", err)
					}
					if err := b.Unlock(ctx); err != nil {
						t.Fatal(err)
					}
					if err := a.TryLock(ctx); err != nil {
						t.Fatalf("a.TryLock() after b = %v", err)
					}
				}
				// a holds the lock now; its release frees it for b.
				handOver(t, ctx, a, b, 0)
			})
		}
	}

	for _, amb := range ambiguities {
		t.Run("release/"+amb.name, func(t *testing.T) {
			srv := s3locktest.New(t)
			ctx := context.Background()
			fa := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
			a := newMutex(t, srv.FaultyClient(fa), srv.Bucket(), key, s3lock.WithOwner("a"), s3lock.WithTTL(30*time.Second))
			b := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("b"))
			if err := a.TryLock(ctx); err != nil {
				t.Fatal(err)
			}
			amb.arm(fa)
			err := a.Unlock(ctx)
			if fa.Pending() != 0 {
				t.Fatalf("%d injected faults were not used", fa.Pending())
			}
			st := lockState(t, srv, key)
			t.Logf("Unlock() = %v; lock in S3: held=%v owner=%q generation=%d; faults: %v", err, st.Held, st.Owner, st.Generation, fa.Counts())
			if errors.Is(err, s3lock.ErrLeaseLost) || errors.Is(err, s3lock.ErrNotHeld) {
				t.Fatalf("Unlock() = %v; a false loss", err)
			}
			switch {
			case err == nil:
				if st.Held {
					t.Fatalf("Unlock() = nil but the lock is still held by %q", st.Owner)
				}
			case amb.resolvable:
				t.Fatalf("Unlock() = %v; want nil (the outcome could be read back)", err)
			case st.Held:
				// The release did not land (30 s TTL): others are
				// excluded, but a takes its hold back at once.
				wantLocked(t, b.TryLock(ctx))
				if err := a.TryLock(ctx); err != nil {
					t.Fatalf("a.TryLock() over its stranded hold = %v; want nil at once", err)
				}
				if err := a.Unlock(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if err := b.TryLock(ctx); err != nil {
				t.Fatalf("b.TryLock() after the release = %v; want nil (not stranded)", err)
			}
			if got := b.Token(); got <= 1 {
				t.Errorf("b.Token() = %d; want > 1", got)
			}
			_ = b.Unlock(ctx)
		})
	}

	for _, amb := range ambiguities {
		t.Run("renew/"+amb.name, func(t *testing.T) {
			srv := s3locktest.New(t)
			ctx := context.Background()
			fa := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
			a := newMutex(t, srv.FaultyClient(fa), srv.Bucket(), key, s3lock.WithOwner("a"),
				s3lock.WithTTL(renewTTL), s3lock.WithAutoRenew(renewInterval))
			b := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("b"))
			if err := a.TryLock(ctx); err != nil {
				t.Fatal(err)
			}
			amb.arm(fa)
			deadline := time.Now().Add(10 * time.Second)
			for fa.Pending() != 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if fa.Pending() != 0 {
				t.Fatalf("%d injected faults unused after 10s", fa.Pending())
			}
			// Let the renewer settle the outcome and renew again.
			before := a.SafeUntil()
			time.Sleep(3 * renewInterval)
			if err := a.Context().Err(); err != nil {
				t.Fatalf("hold lost after an ambiguous renewal: %v; want alive", context.Cause(a.Context()))
			}
			if !a.SafeUntil().After(before) {
				t.Errorf("SafeUntil did not advance after the ambiguous renewal")
			}
			st := lockState(t, srv, key)
			if !st.Held || st.Owner != "a" || st.Generation != 1 {
				t.Fatalf("lock in S3: held=%v owner=%q generation=%d; want held by a, generation 1", st.Held, st.Owner, st.Generation)
			}
			wantLocked(t, b.TryLock(ctx))
			t.Logf("faults: %v", fa.Counts())
			handOver(t, ctx, a, b, 0)
		})
	}
}

// TestReleaseAnswerLostWhileNextHolderMovesIn: a's release is applied but
// its answer is lost; before a reads the lock back, b acquires it. The
// release did land, so Unlock must return nil, not ErrLeaseLost (the
// hammer under faults meets this case a few times a run).
func TestReleaseAnswerLostWhileNextHolderMovesIn(t *testing.T) {
	for _, attempts := range []int{1, 3} {
		t.Run(fmt.Sprintf("SDK attempts %d", attempts), func(t *testing.T) {
			srv := s3locktest.New(t)
			ctx := context.Background()
			const key = "locks/release-race"
			b := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("b"))
			fa := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
			a := newMutex(t, srv.FaultyClient(fa, func(o *s3.Options) { o.RetryMaxAttempts = attempts }),
				srv.Bucket(), key, s3lock.WithOwner("a"), s3lock.WithTTL(30*time.Second))
			if err := a.TryLock(ctx); err != nil {
				t.Fatal(err)
			}
			var bErr error
			bRan := false
			aw := &afterWrite{}
			fa.Inject(s3locktest.FaultDropResponse, 1, aw.write)
			// Not a fault: when a reads the lock back, b has just taken it.
			fa.Inject(s3locktest.FaultInternalError, 1, func(r *http.Request) bool {
				if aw.read(r) && !bRan {
					bErr, bRan = b.TryLock(ctx), true
				}
				return false
			})
			err := a.Unlock(ctx)
			if !bRan || bErr != nil {
				t.Fatalf("b.TryLock() before a's read-back = %v (ran: %v); want nil: a's release had landed", bErr, bRan)
			}
			if err != nil {
				t.Errorf("a.Unlock() = %v; want nil (its release was applied; b acquired after it)", err)
			}
			if got := b.Token(); got != 2 {
				t.Errorf("b.Token() = %d; want 2", got)
			}
			_ = b.Unlock(ctx)
		})
	}
}

// TestNoFalseAcquireAfterRetry: a's create fails with a 500 that was not
// applied; before the SDK retries it, b takes the lock; the retry then gets
// 412. a must report the lock as held by b, not as its own.
func TestNoFalseAcquireAfterRetry(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "locks/false-acquire"
	b := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("b"))
	var bErr error
	bTook := false
	fa := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
	fa.Inject(s3locktest.FaultInternalError, 1, func(r *http.Request) bool {
		if !s3http.IsConditionalWrite(r) {
			return false
		}
		// While a's first attempt fails, b takes the lock.
		bErr, bTook = b.TryLock(ctx), true
		return true
	})
	a := newMutex(t, srv.FaultyClient(fa), srv.Bucket(), key, s3lock.WithOwner("a"))
	err := a.TryLock(ctx)
	if !bTook || bErr != nil {
		t.Fatalf("b.TryLock() during a's write = %v (ran: %v); want nil", bErr, bTook)
	}
	le := wantLocked(t, err)
	if le.Owner != "b" {
		t.Errorf("a.TryLock() reports holder %q; want b", le.Owner)
	}
	if a.Token() != 0 {
		t.Errorf("a.Token() = %d; want 0 (not held)", a.Token())
	}
	if err := a.Unlock(ctx); !errors.Is(err, s3lock.ErrNotHeld) {
		t.Errorf("a.Unlock() = %v; want ErrNotHeld", err)
	}
	if err := b.Unlock(ctx); err != nil {
		t.Errorf("b.Unlock() = %v", err)
	}
}

// TestAppliedAcquireForgottenAfter412: an acquire's
// conditional PUT is applied, its answer is lost, the SDK's retry meets
// 412, and the read that would settle it fails. TryLock fails, but the
// Mutex must remember its write: its next TryLock takes the record back
// at once instead of waiting out a whole TTL.
func TestAppliedAcquireForgottenAfter412(t *testing.T) {
	for _, tc := range []struct {
		name    string
		warm    bool   // acquire over a free record of m's (If-Match) instead of by create
		wantGen uint64 // generation of the record the lost write left
	}{
		{"create", false, 1},
		{"over a free record", true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := s3locktest.New(t)
			ctx := context.Background()
			const key = "locks/applied-412"
			fa := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
			m := newMutex(t, srv.FaultyClient(fa), srv.Bucket(), key, s3lock.WithOwner("m"), s3lock.WithTTL(time.Minute))
			other := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("other"))
			if tc.warm {
				if err := m.TryLock(ctx); err != nil {
					t.Fatal(err)
				}
				if err := m.Unlock(ctx); err != nil {
					t.Fatal(err)
				}
			}

			// The write is applied, its answer lost; the SDK retries it
			// (412), and every attempt of the read-back fails.
			aw := &afterWrite{}
			fa.Inject(s3locktest.FaultDropResponse, 1, aw.write)
			fa.Inject(s3locktest.FaultInternalError, 3, aw.read)
			err := m.TryLock(ctx)
			if err == nil || errors.Is(err, s3lock.ErrLocked) {
				t.Fatalf("TryLock() with the write's answer and read-back lost = %v; want an S3 error", err)
			}
			if n := fa.Pending(); n != 0 {
				t.Fatalf("%d injected faults unused; want 0", n)
			}
			if got := m.Token(); got != 0 {
				t.Errorf("Token() after a failed TryLock = %d; want 0", got)
			}
			// The write was applied: the lock is m's in S3.
			le := wantLocked(t, other.TryLock(ctx))
			if le.Owner != "m" || le.Generation != tc.wantGen {
				t.Fatalf("other.TryLock() = %v; want locked by m at generation %d", le, tc.wantGen)
			}

			if err := m.TryLock(ctx); err != nil {
				t.Fatalf("TryLock() over its own applied write = %v; want nil", err)
			}
			if got := m.Token(); got != tc.wantGen+1 {
				t.Errorf("Token() = %d; want %d", got, tc.wantGen+1)
			}
			handOver(t, ctx, m, other, tc.wantGen+2)
		})
	}
}

// slowReadBack is an http.RoundTripper that applies the first conditional
// write it is armed for and loses its answer, then delays the next GET
// (the read that settles the write) by delay.
type slowReadBack struct {
	next    http.RoundTripper
	delay   time.Duration
	armed   atomic.Bool
	slowGet atomic.Bool
	delayed atomic.Int32
}

func (s *slowReadBack) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodGet && s.slowGet.CompareAndSwap(true, false) {
		s.delayed.Add(1)
		t := time.NewTimer(s.delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
	}
	resp, err := s.next.RoundTrip(r)
	if err == nil && s3http.IsConditionalWrite(r) && s.armed.CompareAndSwap(true, false) {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		s.slowGet.Store(true)
		return nil, fmt.Errorf("injected: connection reset after the write was applied: %w", io.ErrUnexpectedEOF)
	}
	return resp, err
}

// TestNoExpiredHoldReturned: when finding out that an
// acquire's write was applied takes longer than the TTL, TryLock returns
// either an error or a hold with time left and a live context, never a
// hold that has already run out.
func TestNoExpiredHoldReturned(t *testing.T) {
	for _, attempts := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d SDK attempts", attempts), func(t *testing.T) {
			srv := s3locktest.New(t)
			ctx := context.Background()
			const key = "locks/slow-confirm"
			const ttl = time.Second
			rt := &slowReadBack{next: srv.HTTPClient().Transport, delay: ttl + ttl/2}
			client := srv.Client(func(o *s3.Options) {
				o.HTTPClient = &http.Client{Transport: rt}
				o.RetryMaxAttempts = attempts
			})
			m := newMutex(t, client, srv.Bucket(), key, s3lock.WithOwner("m"), s3lock.WithTTL(ttl))
			rt.armed.Store(true)
			err := m.TryLock(ctx)
			if rt.delayed.Load() != 1 {
				t.Fatalf("%d read-backs delayed; want 1", rt.delayed.Load())
			}
			if err != nil {
				// Allowed: the hold could not be kept. It must not be
				// stranded for this Mutex, though.
				t.Logf("TryLock() = %v", err)
				if err := m.TryLock(ctx); err != nil {
					t.Fatalf("TryLock() after the slow confirmation failed = %v; want nil", err)
				}
			}
			if until, now := m.SafeUntil(), time.Now(); !until.After(now) {
				t.Fatalf("TryLock() = nil with SafeUntil() %v in the past; want time left", now.Sub(until))
			}
			if err := m.Context().Err(); err != nil {
				t.Fatalf("TryLock() = nil with the hold's context done (%v); want a live hold", context.Cause(m.Context()))
			}
			le := wantLocked(t, newMutex(t, srv.Client(), srv.Bucket(), key).TryLock(ctx))
			if le.Owner != "m" {
				t.Errorf("lock held by %q; want m", le.Owner)
			}
			if err := m.Unlock(ctx); err != nil {
				t.Errorf("Unlock() = %v; want nil", err)
			}
		})
	}
}

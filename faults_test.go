package s3lock_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/internal/s3http"
	"github.com/s3lock/s3lock/s3locktest"
)

var faultSeed = flag.Uint64("faultseed", 0, "seed of the injected faults in faults_test.go (0: pick one and log it)")

// seedFor returns the fault seed for t and logs how to replay it.
func seedFor(t *testing.T) uint64 {
	t.Helper()
	s := *faultSeed
	if s == 0 {
		s = rand.Uint64N(1 << 53)
	}
	t.Logf("fault seed %d; replay with: go test -run '^%s$' -faultseed=%d", s, t.Name(), s)
	return s
}

// hammerFaults is the fault mix of the hammer: 10% 5xx (2% of them after
// the request was applied), 5% applied-then-dropped answers, 5% 409s on
// conditional writes, and 0-20 ms of jitter on every request.
var hammerFaults = s3locktest.FaultConfig{
	Jitter:             20 * time.Millisecond,
	InternalError:      0.04,
	ServiceUnavailable: 0.03,
	SlowDown:           0.01,
	ErrorAfterApply:    0.02,
	DropResponse:       0.05,
	Conflict:           0.05,
}

// hammerReport is what a hammer run counted.
type hammerReport struct {
	sections, lockErrs, lostHolds, overlaps, staleTokens int64
	unlockErrs, unlockLost                               int64
	counter                                              int
	requests                                             int64
	faults                                               s3locktest.FaultCounts
}

// runHammer runs mutexes goroutines, each with its own Mutex on one key
// and its own client, each doing sections critical sections of GET→+1→PUT
// on a counter kept in S3 through a client without faults. clientFor
// returns the client of Mutex i.
func runHammer(t *testing.T, srv *s3locktest.Server, mutexes, sections int, clientFor func(i int) *s3.Client) hammerReport {
	t.Helper()
	ctx := context.Background()
	counter := &s3locktest.Counter{Client: srv.Client(), Bucket: srv.Bucket(), Key: "hammer/counter"}
	var (
		r        hammerReport
		inside   atomic.Int32
		maxToken atomic.Uint64
		errMu    sync.Mutex
		errs     []error
	)
	record := func(err error) {
		errMu.Lock()
		errs = append(errs, err)
		errMu.Unlock()
	}
	var wg sync.WaitGroup
	for i := range mutexes {
		m := newMutex(t, clientFor(i), srv.Bucket(), "hammer/lock",
			s3lock.WithOwner(fmt.Sprint("m", i)), s3lock.WithTTL(3*time.Second),
			s3lock.WithRetryInterval(20*time.Millisecond), s3lock.WithReleaseTimeout(5*time.Second))
		wg.Go(func() {
			for range sections {
				lctx, cancel := context.WithTimeout(ctx, 60*time.Second)
				err := m.Lock(lctx)
				cancel()
				if err != nil {
					atomic.AddInt64(&r.lockErrs, 1)
					if !errors.Is(err, context.DeadlineExceeded) {
						record(fmt.Errorf("Lock() = %w; want nil or its ctx error", err))
					} else {
						record(fmt.Errorf("Lock() did not succeed within 60s: %w", err))
					}
					continue
				}
				if inside.Add(1) != 1 {
					atomic.AddInt64(&r.overlaps, 1)
				}
				tok := m.Token()
				if prev := maxToken.Swap(tok); tok <= prev {
					atomic.AddInt64(&r.staleTokens, 1)
				}
				n, err := counter.Get(ctx)
				if err == nil {
					err = counter.Set(ctx, n+1)
				}
				if err != nil {
					record(fmt.Errorf("counter: %w", err))
				}
				if m.Context().Err() != nil {
					atomic.AddInt64(&r.lostHolds, 1)
				}
				inside.Add(-1)
				atomic.AddInt64(&r.sections, 1)
				if err := m.Unlock(ctx); err != nil {
					atomic.AddInt64(&r.unlockErrs, 1)
					if errors.Is(err, s3lock.ErrLeaseLost) || errors.Is(err, s3lock.ErrNotHeld) {
						atomic.AddInt64(&r.unlockLost, 1)
						record(fmt.Errorf("Unlock() = %w", err))
					} else {
						t.Logf("Unlock() = %v (an unresolved release; the lock stays held until its TTL except for m%d)", err, i)
					}
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	var err error
	if r.counter, err = counter.Get(ctx); err != nil {
		t.Fatal(err)
	}
	return r
}

// check asserts the hammer's properties and logs its counts.
func (r *hammerReport) check(t *testing.T, want int) {
	t.Helper()
	lost := int64(want) - int64(r.counter)
	t.Logf("operations: %d Lock/Unlock pairs, %d S3 requests through faults; faults injected: %d (%v); lost updates: %d; overlaps: %d; stale tokens: %d; holds lost mid-section: %d; Lock errors: %d; Unlock errors: %d",
		r.sections, r.requests, r.faults.Failures(), r.faults, lost, r.overlaps, r.staleTokens, r.lostHolds, r.lockErrs, r.unlockErrs)
	if r.sections != int64(want) || r.lockErrs != 0 {
		t.Errorf("%d critical sections ran, %d Locks failed; want %d and 0", r.sections, r.lockErrs, want)
	}
	if r.counter != want {
		t.Errorf("counter = %d; want %d (lost updates: %d)", r.counter, want, lost)
	}
	if r.overlaps != 0 {
		t.Errorf("%d overlapping critical sections; want 0", r.overlaps)
	}
	if r.staleTokens != 0 {
		t.Errorf("%d holds got a token not larger than the one before; want 0", r.staleTokens)
	}
	if r.lostHolds != 0 || r.unlockLost != 0 {
		t.Errorf("%d holds lost during a section, %d Unlocks reported a lost lease; want 0", r.lostHolds, r.unlockLost)
	}
	if r.faults.Failures() == 0 {
		t.Error("no faults were injected")
	}
	wantRenewers(t, 0)
}

// TestHammerUnderClientFaults: 8 Mutex values, each on its own client with
// its own seeded faults, take turns on one lock.
func TestHammerUnderClientFaults(t *testing.T) {
	const mutexes, sections = 8, 15
	srv := s3locktest.New(t)
	seed := seedFor(t)
	var faults []*s3locktest.Faults
	r := runHammer(t, srv, mutexes, sections, func(i int) *s3.Client {
		f := s3locktest.NewFaults(seed+uint64(i), hammerFaults)
		faults = append(faults, f)
		return srv.FaultyClient(f)
	})
	r.faults = s3locktest.FaultCounts{}
	for _, f := range faults {
		r.faults.Add(f.Counts())
		r.requests += f.Requests()
	}
	r.check(t, mutexes*sections)
	for _, k := range []s3locktest.Fault{s3locktest.FaultDropResponse, s3locktest.FaultConflict, s3locktest.FaultInternalError} {
		if r.faults[k] == 0 {
			t.Errorf("no %q fault was injected; the mix is not being exercised", k)
		}
	}
}

// TestHammerUnderServerFaults: the same with the faults in the server,
// where a lost answer is a real connection closed after the write. The
// faults hit only the lock object's requests, so the counter's client
// stays clean.
func TestHammerUnderServerFaults(t *testing.T) {
	const mutexes, sections = 8, 8
	srv := s3locktest.New(t)
	cfg := hammerFaults
	cfg.Match = func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "/hammer/lock") }
	f := s3locktest.NewFaults(seedFor(t), cfg)
	srv.SetFaults(f)
	r := runHammer(t, srv, mutexes, sections, func(int) *s3.Client {
		// The SDK's default retryer, as users have it.
		return srv.Client()
	})
	r.faults, r.requests = f.Counts(), f.Requests()
	r.check(t, mutexes*sections)
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

// lockState reads the lock as S3 has it.
func lockState(t *testing.T, srv *s3locktest.Server, key string) *s3lock.LockStatus {
	t.Helper()
	st, err := s3lock.Inspect(context.Background(), srv.Client(), srv.Bucket(), key)
	if err != nil {
		t.Fatalf("Inspect() = %v", err)
	}
	return st
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
				if err := a.Unlock(ctx); err != nil {
					t.Fatalf("a.Unlock() = %v", err)
				}
				if err := b.TryLock(ctx); err != nil {
					t.Fatalf("b.TryLock() after a.Unlock = %v", err)
				}
				_ = b.Unlock(ctx)
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
			if err := a.Unlock(ctx); err != nil {
				t.Fatalf("a.Unlock() = %v", err)
			}
			if err := b.TryLock(ctx); err != nil {
				t.Fatalf("b.TryLock() after a.Unlock = %v", err)
			}
			_ = b.Unlock(ctx)
		})
	}
}

// TestReleaseAnswerLostWhileNextHolderMovesIn: a's release is applied but
// its answer is lost; before a reads the lock back, b acquires it. The
// release did land, so Unlock must return nil, not ErrLeaseLost (found by
// the hammer: 2-8 false ErrLeaseLost per run).
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

// TestClockSkew: clients whose wall clocks are an hour ahead or behind
// neither take a hold over early nor leave the lock stuck.
func TestClockSkew(t *testing.T) {
	const ttl, margin = renewTTL, time.Second
	for _, tc := range []struct {
		name                 string
		holderSkew, contSkew time.Duration
		renew                bool
	}{
		{"holder +1h, contender -1h", time.Hour, -time.Hour, false},
		{"holder -1h, contender +1h", -time.Hour, time.Hour, false},
		{"renewing holder -1h, contender +1h", -time.Hour, time.Hour, true},
		{"renewing holder +1h, contender -1h", time.Hour, -time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := s3locktest.New(t)
			ctx := context.Background()
			const key = "locks/skew"
			opts := []s3lock.Option{s3lock.WithOwner("holder"), s3lock.WithTTL(ttl),
				s3lock.WithClock(s3locktest.SkewedClock{Skew: tc.holderSkew})}
			if tc.renew {
				opts = append(opts, s3lock.WithAutoRenew(renewInterval))
			}
			holder := newMutex(t, srv.Client(), srv.Bucket(), key, opts...)
			cc, clog := loggedClient(srv)
			cont := newMutex(t, cc, srv.Bucket(), key, s3lock.WithOwner("contender"), s3lock.WithTTL(ttl),
				s3lock.WithExpiryMargin(margin), s3lock.WithRetryInterval(50*time.Millisecond),
				s3lock.WithClock(s3locktest.SkewedClock{Skew: tc.contSkew}))

			start := time.Now()
			if err := holder.TryLock(ctx); err != nil {
				t.Fatal(err)
			}
			st := lockState(t, srv, key)
			if d := time.Until(st.AcquiredAt) - tc.holderSkew; d < -time.Minute || d > time.Minute {
				t.Fatalf("record's acquired_at = %v; want about now %+v (the skewed clock is not in use)", st.AcquiredAt, tc.holderSkew)
			}
			wantLocked(t, cont.TryLock(ctx))

			if tc.renew {
				// A renewing holder keeps the lock for several TTLs.
				end := time.Now().Add(2 * ttl)
				for time.Now().Before(end) {
					wantLocked(t, cont.TryLock(ctx))
					time.Sleep(100 * time.Millisecond)
				}
				if err := holder.Context().Err(); err != nil {
					t.Fatalf("renewing holder lost its hold: %v", context.Cause(holder.Context()))
				}
				if err := holder.Unlock(ctx); err != nil {
					t.Fatal(err)
				}
				// Released: the contender gets it at once.
				if err := cont.TryLock(ctx); err != nil {
					t.Fatalf("contender TryLock() after release = %v; want nil", err)
				}
				_ = cont.Unlock(ctx)
				return
			}

			// The holder stops without releasing: the contender waits out
			// the TTL, no less, and then gets the lock (not stuck).
			lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if err := cont.Lock(lctx); err != nil {
				t.Fatalf("contender Lock() = %v; want nil after the TTL", err)
			}
			if w := clog.first(); w.Sub(start) < ttl+margin {
				t.Errorf("contender wrote %v after the holder's acquire; want >= TTL+margin (%v)", w.Sub(start), ttl+margin)
			}
			if holder.Context().Err() == nil {
				t.Error("holder's hold context alive after the takeover")
			}
			if got := cont.Token(); got != 2 {
				t.Errorf("contender Token() = %d; want 2", got)
			}
			if err := holder.Unlock(ctx); !errors.Is(err, s3lock.ErrLeaseLost) {
				t.Errorf("holder.Unlock() = %v; want ErrLeaseLost", err)
			}
			if err := cont.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
			if err := holder.TryLock(ctx); err != nil {
				t.Fatalf("holder TryLock() after the contender's release = %v; want nil", err)
			}
			if got := holder.Token(); got != 3 {
				t.Errorf("holder Token() = %d; want 3", got)
			}
			_ = holder.Unlock(ctx)
		})
	}
}

// TestRenewalUnderFaults: a renewing holder whose client meets the
// hammer's fault mix keeps its hold for several TTLs; nobody else gets in.
func TestRenewalUnderFaults(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "locks/renew-faults"
	fa := s3locktest.NewFaults(seedFor(t), hammerFaults)
	a := newMutex(t, srv.FaultyClient(fa), srv.Bucket(), key, s3lock.WithOwner("a"),
		s3lock.WithTTL(renewTTL), s3lock.WithAutoRenew(renewInterval/2))
	b := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("b"))
	if err := a.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(4 * renewTTL)
	polls := 0
	for time.Now().Before(end) {
		wantLocked(t, b.TryLock(ctx))
		polls++
		time.Sleep(50 * time.Millisecond)
	}
	if err := a.Context().Err(); err != nil {
		t.Fatalf("hold lost under faults: %v", context.Cause(a.Context()))
	}
	c := fa.Counts()
	t.Logf("%d requests through faults, %d faults (%v), %d polls by b, all refused", fa.Requests(), c.Failures(), c, polls)
	uctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := a.Unlock(uctx); err != nil {
		t.Fatalf("a.Unlock() = %v", err)
	}
	if err := b.TryLock(ctx); err != nil {
		t.Fatalf("b.TryLock() after a.Unlock = %v", err)
	}
	_ = b.Unlock(ctx)
}

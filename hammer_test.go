package s3lock_test

// Hammer tests: many Mutex values take turns on one lock, with and without
// injected faults; a counter kept in S3 must end exact, no two critical
// sections may overlap, and fencing tokens must grow.

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

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

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

	sec := newSections(t)
	section := func(m *s3lock.Mutex) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			sec.enter(m.Owner(), m.Token())
			defer sec.exit()
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
	if last := sec.lastToken(); last != uint64(want) {
		t.Errorf("last token = %d; want %d (one generation per grant)", last, want)
	}
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
	sections, lockErrs, lostHolds, unlockErrs, unlockLost int64
	overlaps, staleTokens                                 int // failed the test as they happened
	counter                                               int
	requests                                              int64
	faults                                                s3locktest.FaultCounts
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
		r     hammerReport
		sec   = newSections(t)
		errMu sync.Mutex
		errs  []error
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
				sec.enter(m.Owner(), m.Token())
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
				sec.exit()
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
	r.overlaps, r.staleTokens = sec.overlaps, sec.staleTokens
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

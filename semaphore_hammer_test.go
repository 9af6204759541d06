package s3lock_test

// Semaphore hammers: many Semaphore values of several weights take and
// give back units of one key through injected faults, some of them dying
// while they hold. Every hold is kept as the interval during which its
// holder believed it held its units; after the run a history check
// asserts that at no instant the believed units exceed the limit, that
// no two grants share a token, and that a grant that began after another
// had been granted carries a larger token.

import (
	"cmp"
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

// semHold is one hold of a semaphore as its holder saw it: Acquire was
// called at called and returned nil at granted; the holder believed it
// held units from granted until ended (when it called Release, or when
// its hold context was cancelled, whichever came first).
type semHold struct {
	who                    string
	units                  int64
	token                  uint64
	called, granted, ended time.Time
	lost                   bool // the hold context ended before Release
}

// semHistory collects the holds of a hammer from its goroutines.
type semHistory struct {
	mu    sync.Mutex
	holds []semHold
}

func (h *semHistory) add(x semHold) {
	h.mu.Lock()
	h.holds = append(h.holds, x)
	h.mu.Unlock()
}

// checkSemHistory returns every violation in holds of a semaphore of
// limit units: an instant at which the holds believed held add up to more
// than limit, a token given to two grants, and a grant whose token is not
// larger than that of a grant that was complete before it was asked for.
// Intervals are half-open, [granted, ended).
func checkSemHistory(holds []semHold, limit int64) []string {
	var bad []string
	type event struct {
		at    time.Time
		delta int64
		i     int
	}
	var evs []event
	for i, h := range holds {
		evs = append(evs, event{h.granted, h.units, i}, event{h.ended, -h.units, i})
	}
	// Ends before starts at one instant: the intervals are half-open.
	slices.SortStableFunc(evs, func(a, b event) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return cmp.Compare(a.delta, b.delta)
	})
	var units int64
	inside := map[int]bool{}
	for _, e := range evs {
		units += e.delta
		if e.delta > 0 {
			inside[e.i] = true
		} else {
			delete(inside, e.i)
		}
		if units > limit {
			var who []string
			for i := range inside {
				who = append(who, fmt.Sprintf("%s(%d units, token %d)", holds[i].who, holds[i].units, holds[i].token))
			}
			slices.Sort(who)
			bad = append(bad, fmt.Sprintf("%d units held at once (limit %d) by %v", units, limit, who))
		}
	}
	byToken := map[uint64]int{}
	for i, h := range holds {
		if h.token == 0 {
			bad = append(bad, fmt.Sprintf("%s was granted token 0", h.who))
		}
		if j, ok := byToken[h.token]; ok {
			bad = append(bad, fmt.Sprintf("token %d granted to both %s and %s", h.token, holds[j].who, h.who))
		}
		byToken[h.token] = i
	}
	for _, a := range holds {
		for _, b := range holds {
			if a.granted.Before(b.called) && a.token >= b.token {
				bad = append(bad, fmt.Sprintf("%s asked at %v after %s was granted token %d, and got token %d",
					b.who, b.called.Format(time.StampMicro), a.who, a.token, b.token))
			}
		}
	}
	return bad
}

// TestSemHistoryChecker: the history check passes a history within the
// limit with growing tokens, and catches too many units at once, a token
// given twice and a token that goes back.
func TestSemHistoryChecker(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ok := []semHold{
		{who: "a", units: 2, token: 1, called: at(0), granted: at(1), ended: at(10)},
		{who: "b", units: 2, token: 2, called: at(0), granted: at(2), ended: at(12)},
		{who: "c", units: 2, token: 3, called: at(3), granted: at(10), ended: at(20)}, // starts as a ends
	}
	if bad := checkSemHistory(ok, 4); len(bad) != 0 {
		t.Errorf("checkSemHistory(good history) = %q; want none", bad)
	}
	over := slices.Clone(ok)
	over[2].granted = at(9)
	if bad := checkSemHistory(over, 4); len(bad) != 1 {
		t.Errorf("checkSemHistory(6 units at once) = %q; want one violation", bad)
	}
	dup := slices.Clone(ok)
	dup[1].token = 1
	if bad := checkSemHistory(dup, 4); len(bad) != 1 {
		t.Errorf("checkSemHistory(token given twice) = %q; want one violation", bad)
	}
	back := slices.Clone(ok)
	back[2].token = 1
	back[0].token = 3
	if bad := checkSemHistory(back, 4); len(bad) != 2 {
		t.Errorf("checkSemHistory(tokens going back) = %q; want two violations (a→c and b→c)", bad)
	}
}

// semHammer is the setup of one semaphore hammer run.
type semHammer struct {
	limit    int64
	workers  int // Semaphore values, of weights 1..3 in turn
	rounds   int // holds per worker
	crashers int // of the workers, how many die (never release) every other round
	hold     time.Duration
	opts     []s3lock.Option // for every worker
	renew    time.Duration   // auto-renewal of the workers that do not die (0: none)
	client   func(i int) *s3.Client
}

// semHammerReport is what a run counted.
type semHammerReport struct {
	holds                                   []semHold
	acquireErrs, releaseErrs, lost, crashes int64
}

// run runs h on srv's key and returns its history.
func (h *semHammer) run(t *testing.T, srv *s3locktest.Server, key string) semHammerReport {
	t.Helper()
	ctx := context.Background()
	var (
		hist  semHistory
		r     semHammerReport
		wg    sync.WaitGroup
		errMu sync.Mutex
		errs  []error

		deadMu sync.Mutex
		dead   []*s3lock.Semaphore // died holding; released at the end
	)
	record := func(err error) {
		errMu.Lock()
		errs = append(errs, err)
		errMu.Unlock()
	}
	for i := range h.workers {
		units := int64(1 + i%3)
		crasher := i < h.crashers
		wg.Go(func() {
			newValue := func() *s3lock.Semaphore {
				opts := append([]s3lock.Option{s3lock.WithOwner(fmt.Sprint("w", i))}, h.opts...)
				if h.renew > 0 && !crasher {
					opts = append(opts, s3lock.WithAutoRenew(h.renew))
				}
				s, err := s3lock.NewSemaphore(h.client(i), srv.Bucket(), key, h.limit, opts...)
				if err != nil {
					record(err)
					return nil
				}
				return s
			}
			s := newValue()
			if s == nil {
				return
			}
			for round := range h.rounds {
				called := time.Now()
				actx, cancel := context.WithTimeout(ctx, 30*time.Second)
				err := s.Acquire(actx, units)
				cancel()
				if err != nil {
					atomic.AddInt64(&r.acquireErrs, 1)
					record(fmt.Errorf("w%d: Acquire(%d) = %w", i, units, err))
					continue
				}
				granted, token := time.Now(), s.Token()
				var lostAt atomic.Pointer[time.Time]
				lostCh := make(chan struct{})
				stop := context.AfterFunc(s.Context(), func() { now := time.Now(); lostAt.Store(&now); close(lostCh) })
				x := semHold{who: fmt.Sprintf("w%d#%d", i, round), units: units, token: token, called: called, granted: granted}
				if crasher && round%2 == 0 {
					// Dies holding: never renews nor releases. Its
					// belief ends when its hold context says so.
					<-lostCh
					x.ended, x.lost = *lostAt.Load(), true
					atomic.AddInt64(&r.crashes, 1)
					hist.add(x)
					deadMu.Lock()
					dead = append(dead, s)
					deadMu.Unlock()
					if s = newValue(); s == nil {
						return
					}
					continue
				}
				time.Sleep(h.hold)
				x.ended = time.Now()
				err = s.Release(ctx)
				stop()
				if l := lostAt.Load(); l != nil && l.Before(x.ended) {
					x.ended, x.lost = *l, true
					atomic.AddInt64(&r.lost, 1)
				}
				hist.add(x)
				if err != nil {
					atomic.AddInt64(&r.releaseErrs, 1)
					t.Logf("w%d: Release() = %v", i, err)
				}
			}
		})
	}
	wg.Wait()
	for _, s := range dead {
		_ = s.Release(ctx) // the dead hold's value: frees its timers
	}
	for _, err := range errs {
		t.Error(err)
	}
	r.holds = hist.holds
	for _, v := range checkSemHistory(r.holds, h.limit) {
		t.Error(v)
	}
	return r
}

// TestSemaphoreHammerFaults: 12 Semaphore values of weights 1..3 on a
// limit of 4, each on its own client with its own seeded faults (lost
// answers, 5xx, 409s, jitter), take and give back units. The history
// check must pass and every Acquire must succeed.
func TestSemaphoreHammerFaults(t *testing.T) {
	srv := s3locktest.New(t)
	seed := seedFor(t)
	var (
		mu     sync.Mutex
		faults []*s3locktest.Faults
	)
	h := &semHammer{limit: 4, workers: 12, rounds: 5, hold: 10 * time.Millisecond,
		opts: []s3lock.Option{s3lock.WithTTL(3 * time.Second), s3lock.WithRetryInterval(20 * time.Millisecond),
			s3lock.WithReleaseTimeout(5 * time.Second)},
		client: func(i int) *s3.Client {
			f := s3locktest.NewFaults(seed+uint64(i), hammerFaults)
			mu.Lock()
			faults = append(faults, f)
			mu.Unlock()
			return srv.FaultyClient(f)
		}}
	r := h.run(t, srv, "sem/hammer")
	counts := s3locktest.FaultCounts{}
	var requests int64
	for _, f := range faults {
		counts.Add(f.Counts())
		requests += f.Requests()
	}
	t.Logf("%d holds, %d lost before Release, %d Release errors; %d requests, faults %v", len(r.holds), r.lost, r.releaseErrs, requests, counts)
	if want := h.workers * h.rounds; len(r.holds) != want {
		t.Errorf("%d holds; want %d", len(r.holds), want)
	}
	for _, k := range []s3locktest.Fault{s3locktest.FaultDropResponse, s3locktest.FaultConflict, s3locktest.FaultInternalError} {
		if counts[k] == 0 {
			t.Errorf("no %q fault was injected; the mix is not being exercised", k)
		}
	}
	wantShareRenewers(t, 0)
}

// TestSemaphoreHammerCrashes: the same with short TTLs, renewing holders,
// and 3 holders that die holding every other round (they never renew nor
// release), so their units are taken over after their TTL. Faults are
// injected in the server for the lock object.
func TestSemaphoreHammerCrashes(t *testing.T) {
	srv := s3locktest.New(t)
	cfg := hammerFaults
	cfg.Jitter = 5 * time.Millisecond
	f := s3locktest.NewFaults(seedFor(t), cfg)
	srv.SetFaults(f)
	h := &semHammer{limit: 4, workers: 12, rounds: 4, crashers: 3, hold: 40 * time.Millisecond,
		opts: []s3lock.Option{s3lock.WithTTL(time.Second), s3lock.WithRetryInterval(20 * time.Millisecond),
			s3lock.WithReleaseTimeout(3 * time.Second)},
		renew:  300 * time.Millisecond,
		client: func(int) *s3.Client { return srv.Client() }}
	r := h.run(t, srv, "sem/crash")
	t.Logf("%d holds, %d of them died holding, %d lost before Release, %d Release errors; %d requests, faults %v",
		len(r.holds), r.crashes, r.lost, r.releaseErrs, f.Requests(), f.Counts())
	if want := h.workers * h.rounds; len(r.holds) != want {
		t.Errorf("%d holds; want %d", len(r.holds), want)
	}
	if want := int64(h.crashers * ((h.rounds + 1) / 2)); r.crashes != want {
		t.Errorf("%d holders died holding; want %d", r.crashes, want)
	}
	if f.Counts().Failures() == 0 {
		t.Error("no faults were injected")
	}
	wantShareRenewers(t, 0)
}

// wantShareRenewers fails the test unless exactly n renewers of shared
// holds run, giving one that is returning a moment to finish.
func wantShareRenewers(t *testing.T, n int) {
	t.Helper()
	count := func() int { return strings.Count(goroutineDump(), "s3lock.(*share).renewLoop(") }
	deadline := time.Now().Add(5 * time.Second)
	for count() != n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := count(); got != n {
		t.Fatalf("%d renewers of shared holds running; want %d", got, n)
	}
}

func goroutineDump() string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return string(buf[:n])
		}
		buf = make([]byte, 2*len(buf))
	}
}

package s3lock_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

// The bound the fairness tests hold s3lock to: while one contender waits,
// at most 2 × (number of contenders) grants go to others.
func bypassBound(contenders int) int { return 2 * contenders }

// grantLog follows the grants of a lock in fencing-token order, as the
// contenders of one test report them, and the bypass of each wait: how
// many grants went to others between its start and its end.
type grantLog struct {
	mu        sync.Mutex
	last      uint64         // largest token granted so far
	perWho    map[string]int // grants per contender
	maxBypass int
	worst     string   // the wait with maxBypass
	history   []string // "token:who/bypass", for failure reports

	// warmup: waits that began before this many grants are not held to
	// the bound (they still must end: every contender must get turns).
	warmup uint64

	// sections checks the critical sections of contenders in this
	// process: with reservations rewriting held records under heavy
	// turn-taking, no two may overlap, and tokens must grow.
	sections *sections
}

func newGrantLog(t *testing.T) *grantLog {
	return &grantLog{perWho: map[string]int{}, sections: newSections(t)}
}

// waiting returns the mark a contender takes when it starts to wait.
func (g *grantLog) waiting() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.last
}

// granted records that who got token after waiting since mark. A grant
// that happened before the wait began but was reported after it counts as
// a bypass too: that errs on the strict side.
func (g *grantLog) granted(who string, token, mark uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.perWho[who]++
	if mark >= g.warmup {
		g.note(who, int(token-mark-1))
	}
	g.history = append(g.history, fmt.Sprintf("%d:%s/%d", token, who, token-mark-1))
	g.last = max(g.last, token)
}

// gaveUp records a wait that ended without a grant (the test stopped it).
func (g *grantLog) gaveUp(who string, mark uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.note(who+" (still waiting at the end)", int(g.last-mark))
}

func (g *grantLog) note(who string, bypass int) {
	if bypass > g.maxBypass {
		g.maxBypass, g.worst = bypass, who
	}
}

// check fails t unless every contender got a turn and no wait saw more
// than the bound of grants go to others.
func (g *grantLog) check(t *testing.T, contenders []string) {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	counts := make([]int, len(contenders))
	for i, c := range contenders {
		counts[i] = g.perWho[c]
		if counts[i] == 0 {
			t.Errorf("%s never got the lock (grants per contender %v)", c, counts)
		}
	}
	if bound := bypassBound(len(contenders)); g.maxBypass > bound {
		t.Errorf("a wait of %s saw %d grants go to others; want at most %d (grants per contender %v)\ngrants (token:who/bypass): %v", g.worst, g.maxBypass, bound, counts, g.history)
	}
	t.Logf("grants per contender %v, largest bypass %d (bound %d)", counts, g.maxBypass, bypassBound(len(contenders)))
}

// loopContender locks, holds, unlocks, again and again, until ctx ends,
// reporting to g.
func loopContender(ctx context.Context, t *testing.T, g *grantLog, who string, m *s3lock.Mutex, hold time.Duration) {
	for ctx.Err() == nil {
		mark := g.waiting()
		if err := m.Lock(ctx); err != nil {
			if ctx.Err() == nil {
				t.Errorf("%s: Lock() = %v", who, err)
			}
			g.gaveUp(who, mark)
			return
		}
		token := m.Token()
		g.granted(who, token, mark)
		g.sections.enter(who, token)
		time.Sleep(hold)
		g.sections.exit()
		if err := m.Unlock(context.Background()); err != nil {
			t.Errorf("%s: Unlock() = %v", who, err)
			return
		}
	}
}

// TestFairnessLoopingContenders: contenders that lock again as soon as they
// unlock, with holds longer than a fast poll and default options, as
// Mutex values in one process and goroutines sharing one Mutex: every one
// gets turns, no two critical sections overlap, and no wait sees more
// than 2 × contenders grants
// go to others.
func TestFairnessLoopingContenders(t *testing.T) {
	type layout struct {
		name    string
		mutexes []int // contender i uses mutex mutexes[i]
	}
	layouts := []layout{
		{"4 Mutex values", []int{0, 1, 2, 3}},
		{"3 goroutines sharing one Mutex", []int{0, 0, 0}},
	}
	settings := []struct {
		name   string
		hold   time.Duration
		opts   []s3lock.Option
		grants int
	}{
		{"default retry, hold 100ms", 100 * time.Millisecond, nil, 30},
		{"default retry, hold 300ms", 300 * time.Millisecond, nil, 16},
		// Critical sections of at least a round trip: shorter ones can take
		// up to warmStreakLimit grants in a row (see wait.go).
		{"retry 20ms, hold 10ms", 10 * time.Millisecond, []s3lock.Option{s3lock.WithRetryInterval(20 * time.Millisecond)}, 60},
	}
	for _, st := range settings {
		for _, ly := range layouts {
			t.Run(st.name+"/"+ly.name, func(t *testing.T) {
				srv := s3locktest.New(t, s3locktest.WithLatency(2*time.Millisecond))
				mutexes := map[int]*s3lock.Mutex{}
				g := newGrantLog(t)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				var names []string
				var wg sync.WaitGroup
				for i, mi := range ly.mutexes {
					if mutexes[mi] == nil {
						mutexes[mi] = newMutex(t, srv.Client(), srv.Bucket(), "locks/fair", append([]s3lock.Option{s3lock.WithOwner(fmt.Sprintf("m%d", mi))}, st.opts...)...)
					}
					who := fmt.Sprintf("c%d(m%d)", i, mi)
					names = append(names, who)
					m := mutexes[mi] // read here: the loop writes the map while contenders run
					wg.Add(1)
					go func() {
						defer wg.Done()
						loopContender(ctx, t, g, who, m, st.hold)
					}()
				}
				deadline := time.After(time.Minute)
				for g.waiting() < uint64(st.grants) {
					select {
					case <-deadline:
						t.Errorf("only %d grants in a minute", g.waiting())
						cancel()
					case <-time.After(10 * time.Millisecond):
					}
					if ctx.Err() != nil {
						break
					}
				}
				cancel()
				wg.Wait()
				g.check(t, names)
			})
		}
	}
}

// TestFairnessProcesses: the same with separate processes (lockworker) at
// the default retry interval and 100 ms holds, once all have started.
func TestFairnessProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a helper binary and runs processes for ~10 s")
	}
	const workers, iterations = 4, 8
	bin := mpBuildWorker(t)
	srv := s3locktest.New(t, s3locktest.WithLatency(2*time.Millisecond))
	g := newGrantLog(t)
	// Processes start one by one (slowly under -race), and while they do
	// the first grants fall as they may: one CI run saw a wait that began
	// at grant 6 see 9 grants go by. The bound applies from then on.
	g.warmup = 2 * workers
	marks := make([]uint64, workers)
	var names []string
	var mu sync.Mutex // orders the lines of all workers
	var wg sync.WaitGroup
	for i := range workers {
		who := fmt.Sprintf("w%d", i)
		names = append(names, who)
		cmd := exec.Command(bin, "-endpoint", srv.URL(), "-bucket", srv.Bucket(),
			"-key", "fair/lock", "-counter", "fair/counter", "-owner", who,
			"-ttl", "10s", "-hold", "100ms", "-retry", s3lock.DefaultRetryInterval.String(),
			"-iterations", strconv.Itoa(iterations), "-deadline", "90s")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				mu.Lock()
				switch f[0] {
				case "WAITING":
					marks[i] = g.waiting()
				case "ACQUIRED":
					token, err := strconv.ParseUint(f[1], 10, 64)
					if err != nil {
						t.Errorf("%s: bad line %q", who, sc.Text())
					}
					g.granted(who, token, marks[i])
				}
				mu.Unlock()
			}
			_, _ = io.Copy(io.Discard, stdout)
			if err := cmd.Wait(); err != nil {
				t.Errorf("%s: %v: %s", who, err, stderr.String())
			}
		}()
	}
	wg.Wait()
	g.check(t, names)
}

// reservationBound is the documented bound on how long a reservation whose
// waiter is gone keeps a free lock from the others (2 s), plus a poll of
// theirs and room for a loaded machine.
const reservationBound = 2*time.Second + s3lock.DefaultRetryInterval + 2*time.Second

// TestDeadReservedWaiter: a waiter that reserved the next turn and then
// stopped polling (its Lock cancelled, or its process SIGKILLed) delays the
// next waiter by at most the reservation bound, and the holder's release
// over the reservation still works.
func TestDeadReservedWaiter(t *testing.T) {
	for _, kind := range []string{"goroutine cancelled", "process killed"} {
		t.Run(kind, func(t *testing.T) {
			if kind == "process killed" && testing.Short() {
				t.Skip("builds a helper binary")
			}
			srv := s3locktest.New(t, s3locktest.WithLatency(2*time.Millisecond))
			ctx := context.Background()
			const key = "locks/dead-waiter"
			holder := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("holder"))
			if err := holder.TryLock(ctx); err != nil {
				t.Fatal(err)
			}
			// The doomed waiter loops Lock/Unlock; the holder releases and
			// takes the lock back with TryLock (which ignores reservations)
			// until the waiter, passed over, reserves the next turn.
			var stop func()
			switch kind {
			case "goroutine cancelled":
				wctx, cancel := context.WithCancel(ctx)
				done := make(chan error, 1)
				doomed := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("doomed"))
				go func() {
					for {
						if err := doomed.Lock(wctx); err != nil {
							done <- err
							return
						}
						if err := doomed.Unlock(ctx); err != nil {
							done <- err
							return
						}
					}
				}()
				stop = func() {
					cancel()
					if err := <-done; !errors.Is(err, context.Canceled) {
						t.Errorf("doomed waiter's Lock() = %v; want context.Canceled", err)
					}
				}
			case "process killed":
				cmd := exec.Command(mpBuildWorker(t), "-endpoint", srv.URL(), "-bucket", srv.Bucket(),
					"-key", key, "-counter", "dead/counter", "-owner", "doomed", "-retry", "500ms",
					"-hold", "0s", "-iterations", "100000", "-deadline", "60s")
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				stop = func() {
					_ = cmd.Process.Kill()
					_ = cmd.Wait()
				}
			}
			for i := 0; ; i++ {
				if rec, _ := rawRecord(t, srv, key); rec["next"] != nil && rec["owner"] == "holder" {
					break
				}
				if i == 200 {
					stop()
					t.Fatal("the waiter never reserved the next turn")
				}
				if err := holder.Unlock(ctx); err != nil {
					t.Fatal(err)
				}
				for {
					err := holder.TryLock(ctx)
					if err == nil {
						break
					}
					if !errors.Is(err, s3lock.ErrLocked) {
						t.Fatal(err)
					}
					time.Sleep(5 * time.Millisecond)
				}
				time.Sleep(50 * time.Millisecond)
			}
			stop()
			other := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("other"))
			before := srv.Stats().Snapshot()
			got := make(chan time.Time, 1)
			go func() {
				if err := other.Lock(ctx); err != nil {
					t.Errorf("other Lock() = %v", err)
				}
				got <- time.Now()
			}()
			waitForGets(t, srv, before, 1) // other has found the lock held: it waits
			released := time.Now()
			if err := holder.Unlock(ctx); err != nil {
				t.Fatalf("holder's Unlock over the reservation = %v; want nil", err)
			}
			select {
			case at := <-got:
				t.Logf("the next waiter got the lock %v after the release", at.Sub(released).Round(time.Millisecond))
			case <-time.After(reservationBound):
				t.Fatalf("the next waiter did not get the lock within %v of the release", reservationBound)
			}
			if err := other.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestHostileReservation: a reservation no waiter made (a foreign id, a
// huge next_waited, a field of the wrong type) keeps the lock from waiters
// for at most the reservation bound, and the holder's renewal and release
// over it keep working.
func TestHostileReservation(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		fields string // spliced into a free record
	}{
		{"foreign id", `"next":"ghost","next_waited":18446744073709551615`},
		{"wrong types", `"next":5,"next_waited":"x","waited":[1]`},
	} {
		t.Run("free record with "+tc.name, func(t *testing.T) {
			srv := s3locktest.New(t)
			body := `{"s3lock":1,"state":"free","owner":"o","nonce":"n1","generation":4,"ttl_ms":30000,"written_at":"2025-01-01T00:00:00Z",` + tc.fields + `}`
			if err := srv.PutObject(ctx, "locks/hostile", []byte(body)); err != nil {
				t.Fatal(err)
			}
			m := newMutex(t, srv.Client(), srv.Bucket(), "locks/hostile")
			start := time.Now()
			lctx, cancel := context.WithTimeout(ctx, reservationBound)
			defer cancel()
			if err := m.Lock(lctx); err != nil {
				t.Fatalf("Lock() over a free record with a hostile reservation = %v; want it taken within %v", err, reservationBound)
			}
			t.Logf("taken after %v", time.Since(start).Round(time.Millisecond))
			if got := m.Token(); got != 5 {
				t.Errorf("Token() = %d; want 5", got)
			}
			if err := m.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("held record rewritten with a foreign reservation", func(t *testing.T) {
		srv := s3locktest.New(t)
		const key = "locks/hostile-held"
		holder := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithTTL(renewTTL), s3lock.WithAutoRenew(renewInterval))
		if err := holder.TryLock(ctx); err != nil {
			t.Fatal(err)
		}
		// Rewrite the holder's record as a waiter would, naming nobody.
		rec, etag := rawRecord(t, srv, key)
		rec["next"], rec["next_waited"] = "ghost", 1
		body, _ := json.Marshal(rec)
		if _, err := srv.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(srv.Bucket()), Key: aws.String(key),
			Body: strings.NewReader(string(body)), IfMatch: aws.String(etag)}); err != nil {
			t.Fatal(err)
		}
		// Renewals go on over it: the hold outlives two TTLs.
		time.Sleep(2 * renewTTL)
		if err := holder.Context().Err(); err != nil {
			t.Fatalf("hold ended after a waiter's write: %v", context.Cause(holder.Context()))
		}
		if rec, _ := rawRecord(t, srv, key); rec["next"] != "ghost" {
			t.Errorf("renewals dropped the reservation: next = %v", rec["next"])
		}
		if err := holder.Unlock(ctx); err != nil {
			t.Fatalf("Unlock() over a reservation = %v; want nil", err)
		}
		if rec, _ := rawRecord(t, srv, key); rec["state"] != "free" || rec["next"] != "ghost" {
			t.Errorf("released record = %v; want free, reserved for ghost", rec)
		}
		m := newMutex(t, srv.Client(), srv.Bucket(), key)
		lctx, cancel := context.WithTimeout(ctx, reservationBound)
		defer cancel()
		if err := m.Lock(lctx); err != nil {
			t.Fatalf("Lock() = %v; want the lock within %v", err, reservationBound)
		}
		if err := m.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// TestReservationDoesNotDelayTakeover: a waiter's reservation rewrites the
// held record (a new ETag and Last-Modified) but keeps the holder's nonce,
// and the monotonic expiry rule is keyed by that nonce. So a contender that
// has watched a dead holder's record takes it over one TTL + margin after
// it first saw it, not one TTL + margin after the reservation; and never
// before the holder's own lease ended.
func TestReservationDoesNotDelayTakeover(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "locks/dead-holder"
	const ttl = 2 * time.Second
	holder := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithTTL(ttl))
	if err := holder.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	safeUntil := holder.SafeUntil()
	// The holder now "dies": it never renews nor releases (Unlock at the
	// end only stops its timer).
	defer holder.Unlock(ctx)
	contender := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithTTL(ttl), s3lock.WithRetryInterval(100*time.Millisecond))
	before := srv.Stats().Snapshot()
	got := make(chan error, 1)
	go func() {
		lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		got <- contender.Lock(lctx)
	}()
	// The contender's first read starts its watch of the hold; halfway
	// through the TTL after it, a waiter reserves the next turn.
	waitForGets(t, srv, before, 1)
	start := time.Now()
	time.Sleep(ttl / 2)
	rec, etag := rawRecord(t, srv, key)
	rec["next"], rec["next_waited"] = "waiter", 2
	body, _ := json.Marshal(rec)
	if _, err := srv.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(srv.Bucket()), Key: aws.String(key),
		Body: strings.NewReader(string(body)), IfMatch: aws.String(etag)}); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("contender's Lock() = %v; want the dead holder's lock", err)
	}
	took := time.Now()
	defer contender.Unlock(ctx)
	if took.Before(safeUntil) {
		t.Fatalf("contender took over %v before the holder's lease ended", safeUntil.Sub(took))
	}
	// Keyed by nonce: TTL + 1 s margin from its first read, about 3 s. Had
	// the reservation restarted the watch it would be 1 s + 3 s = 4 s at
	// the earliest (and later still by S3's clock).
	if elapsed := took.Sub(start); elapsed >= ttl/2+ttl+s3lock.DefaultExpiryMargin {
		t.Errorf("contender took over after %v; want before %v: the reservation restarted its expiry watch", elapsed, ttl/2+ttl+s3lock.DefaultExpiryMargin)
	} else {
		t.Logf("contender took over after %v (holder's lease ended after %v)", elapsed.Round(time.Millisecond), safeUntil.Sub(start).Round(time.Millisecond))
	}
}

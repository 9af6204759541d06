package s3lock_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

// Tests that renewals and releases report only what they proved: a
// renewal counts only when the lease was extended, and a release goes on
// after the caller's context ends.

// isRenewalPut matches a write over an existing version (If-Match): the
// renewals of a hold taken with If-None-Match.
func isRenewalPut(r *http.Request) bool {
	return r.Method == http.MethodPut && r.Header.Get("If-Match") != ""
}

// noRetries makes a client send each request once, so that one injected
// fault fails one renewal.
func noRetries(o *s3.Options) { o.RetryMaxAttempts = 1 }

// TestFailedRenewalIsRetried: a renewal whose write was refused with a 503
// and not applied must not count as a renewal. Reading back finds our own
// record unchanged; the old code took that as success, waited a whole
// interval, and with two such failures in a row lost a 3 s lease at 2.97 s
// although S3 answered the next write. A renewal that failed is retried
// within a quarter interval, so the hold survives.
func TestFailedRenewalIsRetried(t *testing.T) {
	for _, failures := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d failures", failures), func(t *testing.T) {
			srv := s3locktest.New(t)
			faults := s3locktest.NewFaults(seedFor(t), s3locktest.FaultConfig{})
			srv.SetFaults(faults)
			ctx := context.Background()
			m := newMutex(t, srv.Client(noRetries), srv.Bucket(), "locks/renew-503",
				s3lock.WithTTL(3*time.Second), s3lock.WithAutoRenew(time.Second))
			if err := m.TryLock(ctx); err != nil {
				t.Fatalf("TryLock() = %v", err)
			}
			defer m.Unlock(ctx)
			start := time.Now()
			gen := m.Token()
			faults.Inject(s3locktest.FaultServiceUnavailable, failures, isRenewalPut)
			// Past one TTL and a margin: only renewals can keep the hold.
			select {
			case <-m.Context().Done():
				t.Fatalf("hold lost %v after acquire with %d failed renewals: %v",
					time.Since(start).Round(time.Millisecond), failures, context.Cause(m.Context()))
			case <-time.After(4500 * time.Millisecond):
			}
			if faults.Pending() != 0 {
				t.Fatalf("%d injected failures not used", faults.Pending())
			}
			st := lockState(t, srv, "locks/renew-503")
			if !st.Held || st.Generation != gen || st.Owner != m.Owner() {
				t.Fatalf("lock object: held %v, owner %q, generation %d; want held by %q at %d", st.Held, st.Owner, st.Generation, m.Owner(), gen)
			}
			if left := time.Until(m.SafeUntil()); left < time.Second {
				t.Fatalf("SafeUntil in %v after renewals; want a renewed lease", left)
			}
		})
	}
}

// releaseStaller is server middleware that holds the first release write
// (a PUT of a free record) for delay, then answers it with 503 without
// applying it, or applies it when apply is set.
type releaseStaller struct {
	delay time.Duration
	apply bool
	seen  atomic.Int32
}

func (rs *releaseStaller) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && r.Body != nil {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			if bytes.Contains(body, []byte(`"state":"free"`)) && rs.seen.Add(1) == 1 {
				time.Sleep(rs.delay)
				if !rs.apply {
					w.Header().Set("Content-Type", "application/xml")
					w.WriteHeader(http.StatusServiceUnavailable)
					_, _ = io.WriteString(w, `<Error><Code>ServiceUnavailable</Code><Message>stalled</Message></Error>`)
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// TestUnlockOutlivesCallerDeadline: the caller's deadline passes while the
// release write is in flight. The release must still be made (Unlock's
// doc: bounded by WithReleaseTimeout), not orphaned by attempts sent with
// the dead context; another Mutex then takes the lock at once.
func TestUnlockOutlivesCallerDeadline(t *testing.T) {
	for _, tc := range []struct {
		name  string
		apply bool
	}{
		{"first write refused", false},
		{"first write slow", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := &releaseStaller{delay: 400 * time.Millisecond, apply: tc.apply}
			srv := s3locktest.New(t, s3locktest.WithMiddleware(rs.middleware))
			key := "locks/unlock-deadline"
			m := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithTTL(time.Minute))
			if err := m.TryLock(context.Background()); err != nil {
				t.Fatalf("TryLock() = %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			if err := m.Unlock(ctx); err != nil {
				t.Fatalf("Unlock() with a deadline passing mid-release = %v; want nil", err)
			}
			if rs.seen.Load() == 0 {
				t.Fatal("the release write was never stalled: the test did not test")
			}
			if st := lockState(t, srv, key); st.Held {
				t.Fatalf("lock object still held by %q after Unlock", st.Owner)
			}
			other := newMutex(t, srv.Client(), srv.Bucket(), key)
			if err := other.TryLock(context.Background()); err != nil {
				t.Fatalf("TryLock() after the release = %v", err)
			}
			other.Unlock(context.Background())
		})
	}
}

// TestUnlockReleaseTimeoutBounds: a release that cannot reach S3 gives up
// WithReleaseTimeout after the caller's context ended, not earlier and
// not never.
func TestUnlockReleaseTimeoutBounds(t *testing.T) {
	srv := s3locktest.New(t)
	faults := s3locktest.NewFaults(seedFor(t), s3locktest.FaultConfig{})
	m := newMutex(t, srv.FaultyClient(faults), srv.Bucket(), "locks/unlock-bound",
		s3lock.WithReleaseTimeout(700*time.Millisecond))
	if err := m.TryLock(context.Background()); err != nil {
		t.Fatalf("TryLock() = %v", err)
	}
	faults.Blackhole(time.Minute)
	defer faults.Heal()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := m.Unlock(ctx)
	took := time.Since(start)
	if err == nil {
		t.Fatal("Unlock() through a blackhole = nil; want an error")
	}
	if took < 850*time.Millisecond {
		t.Errorf("Unlock gave up after %v; want the caller's 200ms plus the 700ms release timeout", took)
	}
	if took > 20*time.Second {
		t.Errorf("Unlock took %v; want it bounded by the release timeout", took)
	}
}

// reserveVia rewrites the held record at path through h as a waiter
// reserving the next turn does: the same record with "next" set, written
// with If-Match its ETag. It reports whether the write landed.
func reserveVia(h http.Handler, path, next string) bool {
	get := httptest.NewRequest(http.MethodGet, path, nil)
	got := httptest.NewRecorder()
	h.ServeHTTP(got, get)
	var rec map[string]any
	if got.Code != http.StatusOK || json.Unmarshal(got.Body.Bytes(), &rec) != nil {
		return false
	}
	rec["next"], rec["next_waited"] = next, 1
	body, _ := json.Marshal(rec)
	put := httptest.NewRequest(http.MethodPut, path, bytes.NewReader(body))
	put.Header.Set("If-Match", got.Header().Get("ETag"))
	put.Header.Set("Content-Type", "application/json")
	put.Header.Set("Content-Length", strconv.Itoa(len(body)))
	done := httptest.NewRecorder()
	h.ServeHTTP(done, put)
	return done.Code == http.StatusOK
}

// isCreate matches the write that creates the lock object.
func isCreate(r *http.Request) bool {
	return r.Method == http.MethodPut && r.Header.Get("If-None-Match") == "*"
}

// TestClaimKeepsReservationFoundOnReadBack: our acquiring write landed but
// its answer was lost, and a waiter reserved the next turn in our record
// before we read it back. The hold must keep the reservation: the old code
// adopted the reserved version with our own record, so the holder's next
// write silently erased the waiter's "next". The same on a store that
// returns no ETag on PUT, where every write of ours is read back.
func TestClaimKeepsReservationFoundOnReadBack(t *testing.T) {
	for _, tc := range []struct {
		name   string
		noETag bool
	}{
		{"answer lost", false},
		{"store without ETags on PUT", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var once atomic.Bool
			var reserved atomic.Bool
			mw := func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.Method != http.MethodPut {
						next.ServeHTTP(w, r)
						return
					}
					rec := httptest.NewRecorder()
					next.ServeHTTP(rec, r)
					if isCreate(r) && rec.Code == http.StatusOK && once.CompareAndSwap(false, true) {
						reserved.Store(reserveVia(next, r.URL.Path, "ghost-waiter"))
						if !tc.noETag {
							// Applied, answered with a 500: the SDK retries,
							// gets 412, and the claim reads back.
							w.WriteHeader(http.StatusInternalServerError)
							_, _ = io.WriteString(w, `<Error><Code>InternalError</Code><Message>lost</Message></Error>`)
							return
						}
					}
					for k, v := range rec.Header() {
						if !(tc.noETag && k == "Etag") {
							w.Header()[k] = v
						}
					}
					w.WriteHeader(rec.Code)
					_, _ = w.Write(rec.Body.Bytes())
				})
			}
			srv := s3locktest.New(t, s3locktest.WithMiddleware(mw))
			key := "locks/claim-readback"
			m := newMutex(t, srv.Client(), srv.Bucket(), key)
			ctx := context.Background()
			if err := m.TryLock(ctx); err != nil {
				t.Fatalf("TryLock() = %v", err)
			}
			if !reserved.Load() {
				t.Fatal("the reservation did not land: the test did not test")
			}
			if err := m.Unlock(ctx); err != nil {
				t.Fatalf("Unlock() = %v", err)
			}
			rec, _ := rawRecord(t, srv, key)
			if rec["state"] != "free" || rec["next"] != "ghost-waiter" {
				t.Fatalf("released record %v; want free, keeping next = ghost-waiter", rec)
			}
		})
	}
}

// TestReleaseOutlastsManyReservations: older waiters may take a
// reservation over from younger ones, so several can rewrite the record
// during one release. Each makes the release's write fail with 412; the
// old code gave up after 5 such writes and stranded the lock for its TTL.
func TestReleaseOutlastsManyReservations(t *testing.T) {
	const reservations = 8
	var n atomic.Int32
	mw := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPut {
				body, _ := io.ReadAll(r.Body)
				r.Body = io.NopCloser(bytes.NewReader(body))
				if bytes.Contains(body, []byte(`"state":"free"`)) {
					if i := n.Add(1); i <= reservations {
						reserveVia(next, r.URL.Path, fmt.Sprintf("waiter-%d", i))
					}
				}
			}
			next.ServeHTTP(w, r)
		})
	}
	srv := s3locktest.New(t, s3locktest.WithMiddleware(mw))
	key := "locks/release-reservations"
	m := newMutex(t, srv.Client(), srv.Bucket(), key)
	ctx := context.Background()
	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("TryLock() = %v", err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatalf("Unlock() with %d reservations during the release = %v", reservations, err)
	}
	rec, _ := rawRecord(t, srv, key)
	want := fmt.Sprintf("waiter-%d", reservations)
	if rec["state"] != "free" || rec["next"] != want {
		t.Fatalf("released record %v; want free, keeping next = %s", rec, want)
	}
}

// TestGaveUpWaiterWithdrawsReservation: a Lock that reserved the next turn
// and then gave up (its deadline passed) takes the reservation back, so
// the holder's release does not leave the free lock to a waiter that has
// gone (the old code kept it from everyone for 2 s per such caller).
func TestGaveUpWaiterWithdrawsReservation(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	key := "locks/withdraw"
	put := func(gen int) {
		body := fmt.Appendf(nil, `{"s3lock":1,"state":"held","owner":"holder","nonce":"n%d","generation":%d,"ttl_ms":30000,"written_at":"2025-01-01T00:00:00Z"}`, gen, gen)
		if err := srv.PutObject(ctx, key, body); err != nil {
			t.Fatal(err)
		}
	}
	put(1)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	waiter := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithRetryInterval(20*time.Millisecond))
	done := make(chan error, 1)
	go func() { done <- waiter.Lock(wctx) }()
	// Grants go by (new held records) until the waiter, passed over,
	// reserves the next turn in the held record.
	reserved := false
	for gen := 2; gen < 200 && !reserved; gen++ {
		put(gen)
		for range 20 {
			time.Sleep(10 * time.Millisecond)
			if rec, _ := rawRecord(t, srv, key); rec["next"] != nil {
				reserved = true
				break
			}
		}
	}
	if !reserved {
		cancel()
		<-done
		t.Fatal("the waiter never reserved the next turn")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Lock() = %v; want context.Canceled", err)
	}
	if rec, _ := rawRecord(t, srv, key); rec["next"] != nil || rec["owner"] != "holder" {
		t.Fatalf("record after the waiter gave up: %v; want the holder's record without next", rec)
	}
}

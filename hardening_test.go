package s3lock_test

// Tests pinning the fixes of issue 8 ("Hardening: twelve edge cases where
// the lock lies, leaks, strands or hangs"), items 1-5 and 7-10. Each test
// names its item.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/internal/s3http"
	"github.com/s3lock/s3lock/s3locktest"
)

// writeCounter is an s3.HTTPClient that counts the conditional writes a
// client sends (every SDK attempt, whether or not it reaches S3).
type writeCounter struct {
	next   s3.HTTPClient
	writes atomic.Int64
}

func (c *writeCounter) Do(r *http.Request) (*http.Response, error) {
	if s3http.IsConditionalWrite(r) {
		c.writes.Add(1)
	}
	return c.next.Do(r)
}

// countWrites returns a client option that puts w in front of the
// client's HTTP client.
func countWrites(w *writeCounter) func(*s3.Options) {
	return func(o *s3.Options) {
		w.next = o.HTTPClient
		o.HTTPClient = w
	}
}

// waitDone waits up to d for ctx to end, failing the test if it does not.
func waitDone(t *testing.T, ctx context.Context, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(d):
		t.Fatalf("%s not cancelled within %v", what, d)
	}
}

// TestUnlockRacingLock (issue 8, item 1): an Unlock from another goroutine
// that runs as soon as Lock has published the hold must stop everything
// the hold started. Once Unlock returns, the lock is free, stays free, and
// no renewer runs. Under -race, the old code also reported lease.halt
// racing lease.start.
func TestUnlockRacingLock(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "locks/unlock-racing-lock"
	m := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("m"),
		s3lock.WithTTL(time.Second), s3lock.WithAutoRenew(s3lock.MinAutoRenewInterval))
	const rounds = 100
	for round := range rounds {
		lockErr := make(chan error, 1)
		go func() { lockErr <- m.Lock(ctx) }()
		// The shutdown hook of the issue, in its own goroutine: unlock as
		// soon as a hold shows. (The old code could also block Unlock
		// forever, on the renewer's channel not made yet.)
		lockFailed := make(chan struct{})
		unlockErr := make(chan error, 1)
		go func() {
			for m.Token() == 0 {
				select {
				case <-lockFailed:
					return
				default:
					runtime.Gosched()
				}
			}
			unlockErr <- m.Unlock(ctx)
		}()
		if err := <-lockErr; err != nil {
			close(lockFailed)
			t.Fatalf("round %d: Lock() = %v; want nil", round, err)
		}
		select {
		case err := <-unlockErr:
			if err != nil {
				t.Fatalf("round %d: Unlock() = %v; want nil", round, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: Unlock() racing Lock has not returned after 10s", round)
		}
		if st := lockState(t, srv, key); st.Held {
			t.Fatalf("round %d: after Unlock, the lock is held (%+v); want free", round, st)
		}
		wantRenewers(t, 0)
	}
	// Nothing keeps writing the lock once Unlock has returned.
	before := lockState(t, srv, key)
	time.Sleep(5 * s3lock.MinAutoRenewInterval)
	after := lockState(t, srv, key)
	if after.Held || after.ETag != before.ETag {
		t.Errorf("lock %s (held %v) %v after the last Unlock; want unchanged free record %s",
			after.ETag, after.Held, 5*s3lock.MinAutoRenewInterval, before.ETag)
	}
	wantRenewers(t, 0)
}

// TestStrandedHoldAfterLongPartition (issue 8, item 2): a renewing holder
// is cut off from S3 for more than 16 failed renewals, loses its lease,
// and fails to Unlock. The record stays held for everyone else, but once
// S3 is back the same Mutex takes its own stranded hold back at once, as
// Unlock's doc promises. (Item 10's white-box check of the same scenario
// is in hardening_internal_test.go.)
func TestStrandedHoldAfterLongPartition(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "locks/stranded"
	fa := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
	writes := &writeCounter{}
	// One attempt per request: each failed renewal is quick, so the
	// partition makes dozens of them before the lease runs out.
	client := srv.FaultyClient(fa, func(o *s3.Options) { o.RetryMaxAttempts = 1 }, countWrites(writes))
	m := newMutex(t, client, srv.Bucket(), key, s3lock.WithOwner("m"),
		s3lock.WithTTL(1500*time.Millisecond), s3lock.WithAutoRenew(100*time.Millisecond))
	other := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("other"))

	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("TryLock() = %v; want nil", err)
	}
	hold := m.Context()
	fa.Partition(time.Hour)
	before := writes.writes.Load()
	waitDone(t, hold, 20*time.Second, "the partitioned hold's context")
	if cause := context.Cause(hold); !errors.Is(cause, s3lock.ErrLeaseLost) {
		t.Errorf("hold ended with cause %v; want ErrLeaseLost", cause)
	}
	wantRenewers(t, 0)
	failed := writes.writes.Load() - before
	if failed <= 16 {
		t.Fatalf("%d renewal writes failed during the partition; want more than 16", failed)
	}
	if err := m.Unlock(ctx); err == nil {
		t.Fatal("Unlock() while partitioned = nil; want an error")
	}

	// The record is still held in S3: nobody else may take it yet.
	le := wantLocked(t, other.TryLock(ctx))
	if le.Owner != "m" || le.Generation != 1 {
		t.Errorf("other.TryLock() = %v; want locked by m at generation 1", le)
	}

	fa.Heal()
	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("TryLock() after %d failed renewals and a failed Unlock = %v; want nil (its own stranded hold)", failed, err)
	}
	if got := m.Token(); got != 2 {
		t.Errorf("Token() = %d; want 2", got)
	}
	wantLocked(t, other.TryLock(ctx))
	if err := m.Unlock(ctx); err != nil {
		t.Errorf("Unlock() = %v; want nil", err)
	}
}

// TestAppliedAcquireForgottenAfter412 (issue 8, item 3): an acquire's
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
			if err := m.Unlock(ctx); err != nil {
				t.Errorf("Unlock() = %v; want nil", err)
			}
			if err := other.TryLock(ctx); err != nil {
				t.Errorf("other.TryLock() after Unlock = %v; want nil", err)
			} else {
				_ = other.Unlock(ctx)
			}
		})
	}
}

// beforeWrite is an http.RoundTripper that calls hook once, just before
// the first conditional write it passes on.
type beforeWrite struct {
	next http.RoundTripper
	once sync.Once
	hook func()
}

func (b *beforeWrite) RoundTrip(r *http.Request) (*http.Response, error) {
	if s3http.IsConditionalWrite(r) {
		b.once.Do(b.hook)
	}
	return b.next.RoundTrip(r)
}

// TestForceUnlockAppliedWrite (issue 8, item 4): when ForceUnlock's PUT is
// applied but its answer is lost and the SDK's retry meets 412, the break
// is ForceUnlock's: it returns the status of what it broke, not
// ErrChanged. A lock that really changed still gives ErrChanged and is left
// alone.
func TestForceUnlockAppliedWrite(t *testing.T) {
	const key = "locks/force-applied"
	for _, tc := range []struct {
		name string
		// client returns the client ForceUnlock uses; holder is the Mutex
		// holding the lock, etag the ETag the caller inspected.
		client     func(srv *s3locktest.Server, holder *s3lock.Mutex) *s3.Client
		changeETag bool // the lock changes between Inspect and ForceUnlock
		wantErr    error
	}{
		{name: "answer dropped, retry meets 412", client: func(srv *s3locktest.Server, _ *s3lock.Mutex) *s3.Client {
			fa := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
			fa.Inject(s3locktest.FaultDropResponse, 1, s3http.IsConditionalWrite)
			return srv.FaultyClient(fa)
		}},
		{name: "500 after apply, retry meets 412", client: func(srv *s3locktest.Server, _ *s3lock.Mutex) *s3.Client {
			fa := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
			fa.Inject(s3locktest.FaultErrorAfterApply, 1, s3http.IsConditionalWrite)
			return srv.FaultyClient(fa)
		}},
		{name: "changed since Inspect", changeETag: true, wantErr: s3lock.ErrChanged,
			client: func(srv *s3locktest.Server, _ *s3lock.Mutex) *s3.Client { return srv.Client() }},
		{name: "changed between ForceUnlock's read and write", wantErr: s3lock.ErrChanged,
			client: func(srv *s3locktest.Server, holder *s3lock.Mutex) *s3.Client {
				hc := srv.HTTPClient()
				hc.Transport = &beforeWrite{next: hc.Transport, hook: func() {
					// The holder unlocks and locks again (errors show
					// in the checks of the final state).
					ctx := context.Background()
					if holder.Unlock(ctx) == nil {
						_ = holder.TryLock(ctx)
					}
				}}
				return srv.Client(func(o *s3.Options) { o.HTTPClient = hc })
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := s3locktest.New(t)
			ctx := context.Background()
			holder := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("holder"), s3lock.WithTTL(time.Minute))
			if err := holder.TryLock(ctx); err != nil {
				t.Fatal(err)
			}
			st := lockState(t, srv, key)
			if tc.changeETag {
				if err := holder.Unlock(ctx); err != nil {
					t.Fatal(err)
				}
				if err := holder.TryLock(ctx); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s3lock.ForceUnlock(ctx, tc.client(srv, holder), srv.Bucket(), key, st.ETag)
			now := lockState(t, srv, key)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("ForceUnlock() = %v, %v; want an error matching %v", got, err, tc.wantErr)
				}
				if !now.Held || now.Owner != "holder" || now.Generation != holder.Token() {
					t.Errorf("after a refused ForceUnlock the lock is %+v; want held by holder at generation %d", now, holder.Token())
				}
				if err := holder.Unlock(ctx); err != nil {
					t.Errorf("holder.Unlock() = %v; want nil", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ForceUnlock() with its applied write's answer lost = %v; want nil", err)
			}
			if got == nil || !got.Held || got.Owner != "holder" || got.Generation != 1 || got.ETag != st.ETag {
				t.Errorf("ForceUnlock() status = %+v; want the broken hold (holder, generation 1, ETag %s)", got, st.ETag)
			}
			if now.Held || now.Generation != 2 {
				t.Errorf("after ForceUnlock the lock is %+v; want free at generation 2", now)
			}
			if err := holder.Unlock(ctx); !errors.Is(err, s3lock.ErrLeaseLost) {
				t.Errorf("holder.Unlock() after the break = %v; want ErrLeaseLost", err)
			}
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

// TestNoExpiredHoldReturned (issue 8, item 5): when finding out that an
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

// maxGenerationBody is a lock record at the largest generation, 2^64-1.
func maxGenerationBody(state string) []byte {
	return fmt.Appendf(nil, `{"s3lock":1,"state":%q,"owner":"o","nonce":"n-%s","generation":18446744073709551615,"ttl_ms":1000,"written_at":"2025-01-01T00:00:00Z"}`, state, state)
}

// TestGenerationNeverWraps (issue 8, item 7): a record at generation
// 2^64-1 cannot be granted again without the fencing token wrapping to 0.
// TryLock, Lock and ForceUnlock refuse it with ErrInvalidLockObject and
// write nothing; Lock does so at once instead of retrying.
func TestGenerationNeverWraps(t *testing.T) {
	for _, state := range []string{"free", "held"} {
		t.Run(state, func(t *testing.T) {
			srv := s3locktest.New(t)
			ctx := context.Background()
			const key = "locks/max-generation"
			if err := srv.PutObject(ctx, key, maxGenerationBody(state)); err != nil {
				t.Fatal(err)
			}
			before := lockState(t, srv, key)
			if before.Generation != 1<<64-1 {
				t.Fatalf("planted record has generation %d; want 2^64-1", before.Generation)
			}
			m := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("m"), s3lock.WithTTL(time.Second),
				s3lock.WithExpiryMargin(0), s3lock.WithRetryInterval(50*time.Millisecond))

			err := m.TryLock(ctx)
			if state == "held" {
				// Wait until the hold is expired for m: only then would
				// m write.
				wantLocked(t, err)
				deadline := time.Now().Add(10 * time.Second)
				for errors.Is(err, s3lock.ErrLocked) && time.Now().Before(deadline) {
					time.Sleep(50 * time.Millisecond)
					err = m.TryLock(ctx)
				}
			}
			if err == nil {
				tok := m.Token()
				_ = m.Unlock(ctx)
				t.Fatalf("TryLock() = nil with Token() %d; want an error matching ErrInvalidLockObject", tok)
			}
			if !errors.Is(err, s3lock.ErrInvalidLockObject) || errors.Is(err, s3lock.ErrLocked) {
				t.Fatalf("TryLock() = %v; want an error matching ErrInvalidLockObject, not ErrLocked", err)
			}

			lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			err = m.Lock(lctx)
			if err == nil {
				tok := m.Token()
				_ = m.Unlock(ctx)
				t.Fatalf("Lock() = nil with Token() %d; want an error matching ErrInvalidLockObject", tok)
			}
			if !errors.Is(err, s3lock.ErrInvalidLockObject) || lctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Lock() = %v; want an error matching ErrInvalidLockObject before its context ends", err)
			}

			if _, err := s3lock.ForceUnlock(ctx, srv.Client(), srv.Bucket(), key, before.ETag); !errors.Is(err, s3lock.ErrInvalidLockObject) {
				t.Errorf("ForceUnlock() = %v; want an error matching ErrInvalidLockObject", err)
			}
			if after := lockState(t, srv, key); after.ETag != before.ETag {
				t.Errorf("lock object rewritten (ETag %s, generation %d, held %v); want it unchanged", after.ETag, after.Generation, after.Held)
			}
		})
	}
}

// foreignRecord is a record this version may not fully understand, as a
// newer version (a rolling deploy) could write it.
func foreignRecord(kind string, state string, ttlMillis int64) []byte {
	schema, extra := 1, ""
	switch kind {
	case "unknown field":
		extra = `,"queue":[{"owner":"w","since":"2025-01-01T00:00:00Z"}]`
	case "schema 2":
		schema = 2
	case "unknown state":
		state = "draining"
	}
	return fmt.Appendf(nil, `{"s3lock":%d,"state":%q,"owner":"o","nonce":"n-%d","generation":7,"ttl_ms":%d,"written_at":"2025-01-01T00:00:00Z"%s}`,
		schema, state, time.Now().UnixNano(), ttlMillis, extra)
}

var foreignKinds = []string{"unknown field", "schema 2", "unknown state"}

// TestNewerRecordHonoured (issue 8, item 8): a held record of a newer
// version whose ttl_ms and generation can be read is not taken over
// before its own TTL, even by a Mutex with a much shorter one (the old
// code took such a record over after its own TTL plus the margin).
func TestNewerRecordHonoured(t *testing.T) {
	for _, kind := range foreignKinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			srv := s3locktest.New(t)
			ctx := context.Background()
			const key = "locks/newer-held"
			if err := srv.PutObject(ctx, key, foreignRecord(kind, "held", 60000)); err != nil {
				t.Fatal(err)
			}
			before := lockState(t, srv, key)
			m := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("m"), s3lock.WithTTL(time.Second))
			// Now, and after m's own TTL plus margin (2 s) has passed.
			for _, wait := range []time.Duration{0, 3 * time.Second} {
				time.Sleep(wait)
				err := m.TryLock(ctx)
				if err == nil {
					tok := m.Token()
					_ = m.Unlock(ctx)
					t.Fatalf("TryLock() after %v = nil (took over at generation %d); want ErrLocked, generation 7", wait, tok)
				}
				if le := wantLocked(t, err); le.Generation != 7 {
					t.Errorf("TryLock() after %v = %v (generation %d); want ErrLocked, generation 7", wait, err, le.Generation)
				}
			}
			if after := lockState(t, srv, key); after.ETag != before.ETag {
				t.Errorf("lock object rewritten (generation %d); want it unchanged", after.Generation)
			}
		})
	}
}

// TestNewerRecordGenerationContinues (issue 8, item 8): a grant over a
// record of a newer version continues its generations (8 after 7), both
// over a free record with an unknown field and when taking over an
// expired hold that this version cannot accept (the old code restarted at
// generation 1, sending the fencing token backwards).
func TestNewerRecordGenerationContinues(t *testing.T) {
	type row struct {
		name, kind, state string
	}
	rows := []row{{"free, unknown field", "unknown field", "free"}}
	for _, kind := range foreignKinds {
		rows = append(rows, row{"expired held, " + kind, kind, "held"})
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := s3locktest.New(t)
			ctx := context.Background()
			const key = "locks/newer-expired"
			if err := srv.PutObject(ctx, key, foreignRecord(tc.kind, tc.state, 1000)); err != nil {
				t.Fatal(err)
			}
			m := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("m"), s3lock.WithTTL(time.Second),
				s3lock.WithRetryInterval(100*time.Millisecond))
			var err error
			if tc.state == "free" {
				err = m.TryLock(ctx)
			} else {
				lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				err = m.Lock(lctx)
				cancel()
			}
			if err != nil {
				t.Fatalf("acquire = %v; want nil", err)
			}
			if got := m.Token(); got != 8 {
				t.Errorf("Token() = %d; want 8 (after the record's generation 7)", got)
			}
			if err := m.Unlock(ctx); err != nil {
				t.Errorf("Unlock() = %v; want nil", err)
			}
			if st := lockState(t, srv, key); st.Held || st.Generation != 8 {
				t.Errorf("after Unlock the lock is %+v; want free at generation 8", st)
			}
		})
	}
}

// TestWithAutoRenewMinimum (issue 8, item 9): renewal intervals below
// MinAutoRenewInterval, which would be a tight loop of PUTs, are refused.
func TestWithAutoRenewMinimum(t *testing.T) {
	srv := s3locktest.New(t)
	for _, tc := range []struct {
		name     string
		interval time.Duration
		wantErr  bool
	}{
		{"1ns", time.Nanosecond, true},
		{"1ms", time.Millisecond, true},
		{"just below the minimum", s3lock.MinAutoRenewInterval - 1, true},
		{"the minimum", s3lock.MinAutoRenewInterval, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s3lock.New(srv.Client(), srv.Bucket(), "locks/min-renew",
				s3lock.WithTTL(time.Second), s3lock.WithAutoRenew(tc.interval))
			switch {
			case tc.wantErr && !errors.Is(err, s3lock.ErrInvalidArgument):
				t.Errorf("New(WithAutoRenew(%v)) = %v; want ErrInvalidArgument", tc.interval, err)
			case !tc.wantErr && err != nil:
				t.Errorf("New(WithAutoRenew(%v)) = %v; want nil", tc.interval, err)
			}
		})
	}
}

// strand makes m hold the lock, then fail its Unlock (S3 unreachable), so
// m keeps its record as an orphan (lease.orphan: cond = {etag: own ETag}).
func strand(t *testing.T, srv *s3locktest.Server, key string, opts ...s3lock.Option) (*s3lock.Mutex, *s3locktest.Faults) {
	fa := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
	m := newMutex(t, srv.FaultyClient(fa), srv.Bucket(), key, opts...)
	if err := m.TryLock(context.Background()); err != nil {
		t.Fatal(err)
	}
	fa.Partition(time.Hour)
	if err := m.Unlock(context.Background()); err == nil {
		t.Fatal("Unlock while partitioned = nil")
	}
	fa.Heal()
	return m, fa
}

// A Mutex taking back its own stranded record writes a fresh nonce: a
// take-back PUT that was not applied must not read back as applied (it
// did when the take-back reused the stranded record's nonce).
func TestTakeBackRefusedIsNotReadAsApplied(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "locks/repro1"
	m, fa := strand(t, srv, key, s3lock.WithOwner("m"), s3lock.WithTTL(time.Minute))
	before := lockState(t, srv, key)
	fa.Inject(s3locktest.FaultInternalError, 3, s3http.IsConditionalWrite) // not applied, every SDK attempt
	err := m.TryLock(ctx)
	after := lockState(t, srv, key)
	t.Logf("TryLock() = %v; Token() = %d; S3: generation %d, ETag changed: %v", err, m.Token(), after.Generation, after.ETag != before.ETag)
	if err == nil && after.ETag == before.ETag {
		t.Errorf("TryLock() = nil with Token() %d although its write was refused; S3 still has generation %d written at %v", m.Token(), after.Generation, after.LastModified)
	}
	_ = m.Unlock(ctx)
}

// A take-back must look like a new version to a contender that has been
// watching the stranded record (its monotonic expiry rule is keyed by the
// nonce), or the contender takes over by its first sighting of the old
// record while the take-back lease still runs.
func TestTakeBackRestartsContendersWatch(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "locks/repro2"
	const ttl = 2 * time.Second
	other := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("other"), s3lock.WithTTL(ttl))
	m, _ := strand(t, srv, key, s3lock.WithOwner("m"), s3lock.WithTTL(ttl))
	wantLocked(t, other.TryLock(ctx)) // other starts watching the stranded record
	time.Sleep(ttl)                   // stranded record nearly expired (TTL + 1s margin)
	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("m.TryLock() take-back = %v", err)
	}
	t.Logf("m took back at generation %d; SafeUntil in %v", m.Token(), time.Until(m.SafeUntil()).Round(time.Millisecond))
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if err := other.TryLock(ctx); err == nil {
			left := time.Until(m.SafeUntil())
			t.Logf("other took over at generation %d; m's hold: ctx err %v, SafeUntil in %v", other.Token(), m.Context().Err(), left.Round(time.Millisecond))
			if left > 0 && m.Context().Err() == nil {
				t.Errorf("two holders: other holds generation %d while m's hold (generation %d) is safe for another %v", other.Token(), m.Token(), left.Round(time.Millisecond))
			}
			_ = other.Unlock(ctx)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = m.Unlock(ctx)
}

// TestLockGivesUpSayingWhy (item 6): when Lock's context ends while
// someone else holds the lock, its error matches the context's error and
// ErrLocked, and names the holder through *LockedError; when S3 cannot be
// reached, it matches the context's error and ErrUnavailable.
func TestLockGivesUpSayingWhy(t *testing.T) {
	ctx := context.Background()
	t.Run("held", func(t *testing.T) {
		srv := s3locktest.New(t)
		holder := newMutex(t, srv.Client(), srv.Bucket(), "locks/why", s3lock.WithOwner("the-holder"))
		if err := holder.TryLock(ctx); err != nil {
			t.Fatal(err)
		}
		defer holder.Unlock(ctx)
		m := newMutex(t, srv.Client(), srv.Bucket(), "locks/why")
		for _, end := range []struct {
			name string
			ctx  func() (context.Context, context.CancelFunc)
			want error
		}{
			{"deadline", func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 300*time.Millisecond) }, context.DeadlineExceeded},
			{"cancel", func() (context.Context, context.CancelFunc) {
				c, cancel := context.WithCancel(ctx)
				time.AfterFunc(300*time.Millisecond, cancel)
				return c, cancel
			}, context.Canceled},
		} {
			lctx, cancel := end.ctx()
			err := m.Lock(lctx)
			cancel()
			var le *s3lock.LockedError
			if !errors.Is(err, end.want) || !errors.Is(err, s3lock.ErrLocked) || !errors.As(err, &le) || le.Owner != "the-holder" {
				t.Errorf("%s: Lock() = %v; want it to match %v and ErrLocked, with a LockedError naming the-holder", end.name, err, end.want)
			}
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		srv := s3locktest.New(t)
		fa := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
		fa.Partition(time.Hour)
		m := newMutex(t, srv.FaultyClient(fa), srv.Bucket(), "locks/why-unreachable", s3lock.WithRetryInterval(50*time.Millisecond))
		lctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		err := m.Lock(lctx)
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, s3lock.ErrUnavailable) || errors.Is(err, s3lock.ErrLocked) {
			t.Errorf("Lock() against an unreachable S3 = %v; want DeadlineExceeded and ErrUnavailable, not ErrLocked", err)
		}
	})
}

// TestWritersDropUnknownFields (record rule 2): a record that carries a
// field this version does not know is read as usual, and the next write
// (a grant) carries only this version's fields.
func TestWritersDropUnknownFields(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "locks/rule2"
	body := `{"s3lock":1,"state":"free","owner":"o","nonce":"n","generation":3,"ttl_ms":1000,"written_at":"2025-01-01T00:00:00Z","later_hint":{"x":1}}`
	if err := srv.PutObject(ctx, key, []byte(body)); err != nil {
		t.Fatal(err)
	}
	m := newMutex(t, srv.Client(), srv.Bucket(), key)
	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("TryLock() over a record with an unknown field = %v; want nil", err)
	}
	defer m.Unlock(ctx)
	rec, _ := rawRecord(t, srv, key)
	if _, ok := rec["later_hint"]; ok || rec["generation"] != float64(4) {
		t.Errorf("record after the grant = %v; want generation 4 and no later_hint", rec)
	}
}

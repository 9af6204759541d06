package s3lock_test

// Record-format compatibility of shared records (docs/record-format.md):
// a Mutex of an older release (internal/prevrelease, 62e4b95, schema 1;
// internal/lastrelease, 38b22b2, schema 2) finds a key held by semaphore
// holders or readers of this version held, never writes into it while a
// holder is live and renewing, takes it over only once every holder has
// stopped for TTL + margin, and continues its generations. The other way
// round, an old Mutex's hold blocks this version's shared holds.

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
	"github.com/s3lock/s3lock/internal/lastrelease"
	"github.com/s3lock/s3lock/internal/prevrelease"
	"github.com/s3lock/s3lock/s3locktest"
)

// oldMutex is what the tests use of an older release's Mutex.
type oldMutex interface {
	TryLock(context.Context) error
	Lock(context.Context) error
	Unlock(context.Context) error
	Token() uint64
	Context() context.Context
}

// oldRelease makes Mutexes of one older release.
type oldRelease struct {
	name      string
	errLocked error
	new       func(client s3lock.S3API, bucket, key, owner string, ttl time.Duration) (oldMutex, error)
}

var oldReleases = []oldRelease{
	{"prevrelease", prevrelease.ErrLocked, func(c s3lock.S3API, bucket, key, owner string, ttl time.Duration) (oldMutex, error) {
		return prevrelease.New(c, bucket, key, prevrelease.WithOwner(owner), prevrelease.WithTTL(ttl),
			prevrelease.WithRetryInterval(50*time.Millisecond))
	}},
	{"lastrelease", lastrelease.ErrLocked, func(c s3lock.S3API, bucket, key, owner string, ttl time.Duration) (oldMutex, error) {
		return lastrelease.New(c, bucket, key, lastrelease.WithOwner(owner), lastrelease.WithTTL(ttl),
			lastrelease.WithRetryInterval(50*time.Millisecond))
	}},
}

// putLog records, on the server, when each PUT of a key that S3 answered
// with 200 began to be handled: no earlier than the write was applied.
type putLog struct {
	mu     sync.Mutex
	starts []time.Time
}

func (p *putLog) middleware(key string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPut || !strings.HasSuffix(r.URL.Path, "/"+key) {
				next.ServeHTTP(w, r)
				return
			}
			start := time.Now()
			sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
			next.ServeHTTP(sw, r)
			if sw.status == http.StatusOK {
				p.mu.Lock()
				p.starts = append(p.starts, start)
				p.mu.Unlock()
			}
		})
	}
}

// lastBefore returns the start of the last applied PUT that began before t.
func (p *putLog) lastBefore(t time.Time) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	var last time.Time
	for _, s := range p.starts {
		if s.Before(t) && s.After(last) {
			last = s
		}
	}
	return last
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// watchHolders polls key's raw record until the returned stop is called,
// which reports the first held record seen that does not list n holders
// ("" if none) and how many held records it saw.
func watchHolders(srv *s3locktest.Server, key string, n int) (stop func() (bad string, seen int64)) {
	done := make(chan struct{})
	var (
		wg   sync.WaitGroup
		bad  string
		seen atomic.Int64
	)
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			rec, err := rawRecordErr(srv, key)
			if err != nil || rec["state"] != "held" {
				continue
			}
			if list, _ := rec["holders"].([]any); len(list) != n {
				bad = fmt.Sprint(rec)
				return
			}
			seen.Add(1)
		}
	})
	return func() (string, int64) {
		close(done)
		wg.Wait()
		return bad, seen.Load()
	}
}

// TestSemOldMutexOnSharedKey: for each older release, and for semaphore
// holders and readers of this version: two holders renew; the old Mutex's
// TryLock finds the key held, and its Lock waits for several of its own
// TTLs without writing and without touching the holder table. Then the
// holders are cut off from S3 (they stop renewing, never release): the old
// Mutex takes the key over no earlier than TTL + margin after their last
// applied write, after their hold contexts ended, with a token above all
// of theirs.
func TestSemOldMutexOnSharedKey(t *testing.T) {
	const (
		holderTTL, holderRenew = renewTTL, renewInterval
		oldTTL, margin         = time.Second, s3lock.DefaultExpiryMargin
	)
	for _, rel := range oldReleases {
		for _, kind := range []string{"semaphore", "readers"} {
			t.Run(rel.name+"/"+kind, func(t *testing.T) {
				t.Parallel()
				key := "compat/" + kind
				puts := &putLog{}
				srv := s3locktest.New(t, s3locktest.WithMiddleware(puts.middleware(key)))
				ctx := context.Background()
				type holderT struct {
					faults  *s3locktest.Faults
					release func(context.Context) error
					hold    func() context.Context
					token   uint64
				}
				var hs []holderT
				for i := range 2 {
					f := s3locktest.NewFaults(uint64(i+1), s3locktest.FaultConfig{})
					opts := []s3lock.Option{s3lock.WithOwner(fmt.Sprint("h", i)), s3lock.WithTTL(holderTTL), s3lock.WithAutoRenew(holderRenew)}
					if kind == "semaphore" {
						s, err := s3lock.NewSemaphore(srv.FaultyClient(f), srv.Bucket(), key, 3, opts...)
						if err != nil {
							t.Fatal(err)
						}
						if err := s.TryAcquire(ctx, 1); err != nil {
							t.Fatal(err)
						}
						hs = append(hs, holderT{f, s.Release, s.Context, s.Token()})
					} else {
						rw := newRWKey(t, srv.FaultyClient(f), srv, key, opts...)
						if err := rw.RLock(ctx); err != nil {
							t.Fatal(err)
						}
						hs = append(hs, holderT{f, rw.RUnlock, rw.Context, rw.Token()})
					}
				}
				oc, olog := loggedClient(srv)
				old, err := rel.new(oc, srv.Bucket(), key, "old", oldTTL)
				if err != nil {
					t.Fatal(err)
				}
				if err := old.TryLock(ctx); !errors.Is(err, rel.errLocked) {
					t.Fatalf("old TryLock() on a key of live %s = %v; want its ErrLocked", kind, err)
				}
				stopWatch := watchHolders(srv, key, len(hs))
				lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				locked := make(chan error, 1)
				go func() { locked <- old.Lock(lctx) }()
				// Live and renewing for over twice the old Mutex's TTL + margin.
				select {
				case err := <-locked:
					t.Fatalf("old Lock() returned %v (token %d) while the %s renewed", err, old.Token(), kind)
				case <-time.After(2*(oldTTL+margin) + time.Second):
				}
				bad, seen := stopWatch()
				if bad != "" {
					t.Errorf("held record without both holders while an old Mutex waited: %s", bad)
				}
				if w := olog.first(); !w.IsZero() {
					t.Errorf("the old Mutex wrote to a key of live %s", kind)
				}
				for i, h := range hs {
					if err := h.hold().Err(); err != nil {
						t.Fatalf("h%d lost its hold while an old Mutex waited: %v", i, context.Cause(h.hold()))
					}
				}
				// The holders die: cut off, they neither renew nor release.
				ends := make([]chan time.Time, len(hs))
				for i, h := range hs {
					ends[i] = make(chan time.Time, 1)
					defer context.AfterFunc(h.hold(), func() { ends[i] <- time.Now() })()
					h.faults.Partition(time.Minute)
				}
				cut := time.Now()
				if err := <-locked; err != nil {
					t.Fatalf("old Lock() after the holders died = %v", err)
				}
				took := olog.first()
				lastWrite := puts.lastBefore(took)
				need := max(holderTTL, oldTTL) + margin
				t.Logf("holders cut off %v after their last applied write; old Mutex wrote %v after it (TTL + margin: %v); %d held records seen while it waited",
					cut.Sub(lastWrite).Round(time.Millisecond), took.Sub(lastWrite).Round(time.Millisecond), need, seen)
				if took.Sub(lastWrite) < need {
					t.Errorf("old Mutex took over %v after the holders' last write; want ≥ %v", took.Sub(lastWrite), need)
				}
				var maxTok uint64
				for i, h := range hs {
					maxTok = max(maxTok, h.token)
					select {
					case at := <-ends[i]:
						if !at.Before(took) {
							t.Errorf("h%d's hold ended at %v, not before the old Mutex's takeover write at %v", i, at, took)
						}
					default:
						t.Errorf("h%d's hold context alive after the old Mutex took over", i)
					}
					if !errors.Is(context.Cause(h.hold()), s3lock.ErrLeaseLost) {
						t.Errorf("h%d's cause = %v; want ErrLeaseLost", i, context.Cause(h.hold()))
					}
				}
				if old.Token() <= maxTok {
					t.Errorf("old Mutex token %d; want above the holders' %d (generations continue)", old.Token(), maxTok)
				}
				for i, h := range hs {
					h.faults.Heal()
					if err := h.release(ctx); !errors.Is(err, s3lock.ErrLeaseLost) {
						t.Errorf("h%d: release after the takeover = %v; want ErrLeaseLost", i, err)
					}
				}
				oldTok := old.Token()
				if err := old.Unlock(ctx); err != nil {
					t.Fatal(err)
				}
				s := newSem(t, srv, key, 3)
				if err := s.TryAcquire(ctx, 3); err != nil {
					t.Fatalf("TryAcquire() after the old Mutex's Unlock = %v", err)
				}
				if s.Token() <= oldTok {
					t.Errorf("semaphore token %d after the old Mutex's %d; want larger", s.Token(), oldTok)
				}
				if err := s.Release(ctx); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// TestSemOldMutexBlocksShared: an old release's Mutex holding the key
// keeps this version's semaphores and readers out (TryAcquire, TryRLock:
// ErrLocked; Acquire, RLock: wait), without disturbing the hold; after its
// Unlock they get the key with larger tokens.
func TestSemOldMutexBlocksShared(t *testing.T) {
	for _, rel := range oldReleases {
		t.Run(rel.name, func(t *testing.T) {
			t.Parallel()
			srv := s3locktest.New(t)
			ctx := context.Background()
			const key = "compat/old-holds"
			old, err := rel.new(srv.Client(), srv.Bucket(), key, "old", 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if err := old.TryLock(ctx); err != nil {
				t.Fatal(err)
			}
			_, etag := rawRecord(t, srv, key)
			sem := newSem(t, srv, key, 3, s3lock.WithRetryInterval(50*time.Millisecond))
			rw := newRWKey(t, srv.Client(), srv, key, s3lock.WithRetryInterval(50*time.Millisecond))
			wantLocked(t, sem.TryAcquire(ctx, 1))
			wantLocked(t, rw.TryRLock(ctx))
			wctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
			defer cancel()
			var wg sync.WaitGroup
			var semErr, rwErr error
			wg.Go(func() { semErr = sem.Acquire(wctx, 1) })
			wg.Go(func() { rwErr = rw.RLock(wctx) })
			wg.Wait()
			if !errors.Is(semErr, context.DeadlineExceeded) || !errors.Is(rwErr, context.DeadlineExceeded) {
				t.Fatalf("Acquire() = %v, RLock() = %v while an old Mutex holds; want both DeadlineExceeded", semErr, rwErr)
			}
			if err := old.Context().Err(); err != nil {
				t.Fatalf("old Mutex's hold ended: %v", context.Cause(old.Context()))
			}
			if rec, after := rawRecord(t, srv, key); after != etag {
				// A waiter may reserve the next turn, but the old
				// holder's record must stay one its release accepts.
				t.Logf("record after waiters: %v", rec)
			}
			oldTok := old.Token()
			if err := old.Unlock(ctx); err != nil {
				t.Fatalf("old Unlock() after this version's waiters = %v", err)
			}
			if err := sem.TryAcquire(ctx, 2); err != nil {
				t.Fatalf("TryAcquire() after the old Mutex's Unlock = %v", err)
			}
			if sem.Token() <= oldTok {
				t.Errorf("semaphore token %d; want above the old Mutex's %d", sem.Token(), oldTok)
			}
			if err := sem.Release(ctx); err != nil {
				t.Fatal(err)
			}
			if err := rw.TryRLock(ctx); err != nil {
				t.Fatalf("TryRLock() after the old Mutex's Unlock = %v", err)
			}
			if err := rw.RUnlock(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

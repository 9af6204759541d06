package s3lock_test

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

// Indicative S3 Standard prices in us-east-1 (docs/s3-semantics.md), USD per request.
const (
	usdPerPUT = 0.005 / 1000
	usdPerGET = 0.0004 / 1000
)

// Run them with, for example:
//
//	go test -run '^$' -bench . -benchmem .
//	go test -run '^$' -bench . -benchtime 20x .   # quick (CI)
//
// Requests are counted by the embedded server at the HTTP layer
// (s3locktest.Server.Stats), never by the library. R is the latency the
// server adds to every request.

// reportRequests reports the requests counted in d per op, by verb, and
// what a million ops cost at the indicative prices.
func reportRequests(b *testing.B, d s3locktest.Counts, ops int, prefix string) {
	b.Helper()
	if ops == 0 {
		return
	}
	n := float64(ops)
	gets := float64(d.Method(http.MethodGet)+d.Method(http.MethodHead)) / n
	puts := float64(d.Method(http.MethodPut)) / n
	b.ReportMetric(gets, prefix+"GET/op")
	b.ReportMetric(puts, prefix+"PUT/op")
	b.ReportMetric(float64(d.Status(http.StatusPreconditionFailed))/n, prefix+"412/op")
	b.ReportMetric(float64(d.Total())/n, prefix+"req/op")
	b.ReportMetric(1e6*(puts*usdPerPUT+gets*usdPerGET), prefix+"USD/Mop")
}

// reportLatency reports the median latency in units of R.
func reportLatency(b *testing.B, ds []time.Duration, r time.Duration, name string) {
	b.Helper()
	if r <= 0 || len(ds) == 0 {
		return
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	b.ReportMetric(float64(ds[len(ds)/2])/float64(r), name)
}

var latencies = []time.Duration{0, 10 * time.Millisecond}

// BenchmarkTryLockUnlock: a warm Mutex alone, TryLock then Unlock. The
// target is 2 requests (two conditional PUTs) and about 2 R per cycle.
func BenchmarkTryLockUnlock(b *testing.B) {
	for _, r := range latencies {
		b.Run(fmt.Sprintf("R=%v", r), func(b *testing.B) {
			benchCycle(b, r, func(m *s3lock.Mutex, ctx context.Context) error { return m.TryLock(ctx) })
		})
	}
}

// BenchmarkLockUnlock: the same with Lock. Every warmStreakLimit-th cycle
// reads first, so a looping Mutex cannot starve waiters it cannot see.
func BenchmarkLockUnlock(b *testing.B) {
	for _, r := range latencies {
		b.Run(fmt.Sprintf("R=%v", r), func(b *testing.B) {
			benchCycle(b, r, func(m *s3lock.Mutex, ctx context.Context) error { return m.Lock(ctx) })
		})
	}
}

func benchCycle(b *testing.B, r time.Duration, acquire func(*s3lock.Mutex, context.Context) error) {
	srv := s3locktest.New(b, s3locktest.WithLatency(r))
	ctx := context.Background()
	m := newMutex(b, srv.Client(), srv.Bucket(), "locks/bench-cycle")
	if err := m.TryLock(ctx); err != nil {
		b.Fatal(err)
	}
	if err := m.Unlock(ctx); err != nil {
		b.Fatal(err)
	}
	ds := make([]time.Duration, 0, b.N)
	before := srv.Stats().Snapshot()
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		if err := acquire(m, ctx); err != nil {
			b.Fatal(err)
		}
		if err := m.Unlock(ctx); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(t0))
	}
	b.StopTimer()
	reportRequests(b, srv.Stats().Snapshot().Sub(before), len(ds), "")
	reportLatency(b, ds, r, "p50-R/op")
}

// BenchmarkFirstAcquire: a fresh Mutex takes an existing free lock (GET +
// PUT; the target is at most 2 requests). Only the TryLock is counted.
func BenchmarkFirstAcquire(b *testing.B) {
	for _, r := range latencies {
		b.Run(fmt.Sprintf("R=%v", r), func(b *testing.B) {
			srv := s3locktest.New(b, s3locktest.WithLatency(r))
			ctx := context.Background()
			client := srv.Client()
			seed := newMutex(b, client, srv.Bucket(), "locks/bench-first")
			if err := seed.TryLock(ctx); err != nil {
				b.Fatal(err)
			}
			if err := seed.Unlock(ctx); err != nil {
				b.Fatal(err)
			}
			total := s3locktest.Counts{}
			var ds []time.Duration
			b.ResetTimer()
			for b.Loop() {
				m, err := s3lock.New(client, srv.Bucket(), "locks/bench-first")
				if err != nil {
					b.Fatal(err)
				}
				before := srv.Stats().Snapshot()
				t0 := time.Now()
				if err := m.TryLock(ctx); err != nil {
					b.Fatal(err)
				}
				ds = append(ds, time.Since(t0))
				for k, v := range srv.Stats().Snapshot().Sub(before) {
					total[k] += v
				}
				b.StopTimer()
				if err := m.Unlock(ctx); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.StopTimer()
			reportRequests(b, total, len(ds), "")
			reportLatency(b, ds, r, "p50-R/op")
		})
	}
}

// BenchmarkContended: 8 Mutexes (one per goroutine, each with its own S3
// client) loop Lock → GET+PUT of a counter → Unlock on one key with R = 10
// ms; an op is one grant, counted after 4 grants per worker of warm-up.
// The limit is 1/(4R) = 25 grants/s. The counter lives on a second server
// so that only lock requests are counted. The bench command
// (bench/, its own module) runs the same with one process per worker.
func BenchmarkContended(b *testing.B) {
	for _, retry := range []time.Duration{20 * time.Millisecond, 80 * time.Millisecond} {
		b.Run(fmt.Sprintf("retry=%v", retry), func(b *testing.B) {
			const workers, r, warmup = 8, 10 * time.Millisecond, 4 * 8
			srv := s3locktest.New(b, s3locktest.WithLatency(r))
			data := s3locktest.New(b, s3locktest.WithLatency(r))
			ctx := context.Background()
			counter := &s3locktest.Counter{Client: data.Client(), Bucket: data.Bucket(), Key: "data/bench-contended"}
			ms := make([]*s3lock.Mutex, workers)
			for i := range ms {
				ms[i] = newMutex(b, srv.Client(), srv.Bucket(), "locks/bench-contended", s3lock.WithRetryInterval(retry), s3lock.WithTTL(10*time.Second))
			}
			var mu sync.Mutex // protects the fields below
			granted := 0
			grants := make([]int, workers)
			var before, after s3locktest.Counts
			var start, end time.Time
			var wg sync.WaitGroup
			b.ResetTimer()
			for i, m := range ms {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						if err := m.Lock(ctx); err != nil {
							b.Error(err)
							return
						}
						mu.Lock()
						done := granted == warmup+b.N
						if !done {
							granted++
							switch {
							case granted == warmup:
								before, start = srv.Stats().Snapshot(), time.Now()
							case granted > warmup:
								grants[i]++
							}
							if granted == warmup+b.N {
								after, end = srv.Stats().Snapshot(), time.Now()
							}
						}
						mu.Unlock()
						n, err := counter.Get(ctx)
						if err == nil {
							err = counter.Set(ctx, n+1)
						}
						if uerr := m.Unlock(ctx); err == nil {
							err = uerr
						}
						if err != nil {
							b.Error(err)
							return
						}
						if done {
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			// Grants after the one that started the clock, up to the last.
			ops := b.N
			if ops == 0 || end.Equal(start) {
				return
			}
			reportRequests(b, after.Sub(before), ops, "lock-")
			b.ReportMetric(float64(ops)/end.Sub(start).Seconds(), "grants/s")
			var sum, sq float64
			for _, g := range grants {
				sum += float64(g)
				sq += float64(g) * float64(g)
			}
			if sq > 0 {
				b.ReportMetric(sum*sum/(float64(workers)*sq), "jain")
			}
		})
	}
}

// TestHoldFootprint: a held lock with renewal costs one goroutine (the
// renewer, which uses one timer); without renewal, none (one timer).
func TestHoldFootprint(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		opts  []s3lock.Option
		extra int
	}{
		{"renewing", []s3lock.Option{s3lock.WithTTL(600 * time.Millisecond), s3lock.WithAutoRenew(100 * time.Millisecond)}, 1},
		{"not renewing", []s3lock.Option{s3lock.WithTTL(time.Minute)}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMutex(t, srv.Client(), srv.Bucket(), "locks/footprint-"+tc.name, tc.opts...)
			// One cycle first, so the client's connection exists.
			if err := m.Lock(ctx); err != nil {
				t.Fatal(err)
			}
			time.Sleep(250 * time.Millisecond)
			if err := m.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
			idle := stableGoroutines()
			if err := m.Lock(ctx); err != nil {
				t.Fatal(err)
			}
			time.Sleep(250 * time.Millisecond) // two renewals when renewing
			held := stableGoroutines()
			if err := m.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
			after := stableGoroutines()
			if held-idle != tc.extra || after != idle {
				t.Errorf("goroutines: %d idle, %d held, %d after Unlock; want +%d while held and back after", idle, held, after, tc.extra)
			}
		})
	}
}

// stableGoroutines returns the goroutine count once it stops changing.
func stableGoroutines() int {
	n := runtime.NumGoroutine()
	for range 50 {
		time.Sleep(10 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m == n {
			return n
		}
		n = m
	}
	return n
}

package s3lock_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/internal/s3servers"
	"github.com/s3lock/s3lock/s3locktest"
)

// The benchmarks of the shared locks (BENCHMARKS.md, "Semaphores and
// shared locks"). Requests are counted by the embedded server at the HTTP
// layer. Quick (CI):
//
//	go test -run '^$' -bench 'Semaphore|SharedRenewal|ConditionalWrites' -benchtime 20x .
//
// The measurements of BENCHMARKS.md:
//
//	go test -run '^$' -bench SemaphoreGrants -benchtime 400x .
//	S3LOCK_BENCH_RENEW_TTL=3s go test -run '^$' -bench SharedRenewal -benchtime 20x .
//	S3LOCK_BENCH_RENEW_TTL=30s go test -run '^$' -bench SharedRenewal -benchtime 6x .   # 1 minute each
//	S3LOCK_BENCH_SERVERS=1 go test -run '^$' -bench ConditionalWrites -benchtime 2000x .

// contendedLatency is the latency the server adds to every request in the
// contended benchmarks: one round trip to S3.
const contendedLatency = 10 * time.Millisecond

// BenchmarkSemaphoreGrants: 16 contenders, each its own Semaphore value
// with its own client, at the library's default options, loop Acquire(1)
// → hold (10 or 100 ms) → Release on one key, for limits 1, 2 and 8;
// "mutex" is 16 Mutex values looping Lock → hold → Unlock on one key. One
// op is one grant. A counter kept by the benchmark checks that no more than limit
// units are ever held and that no fencing token is given twice (a failure
// fails the benchmark).
func BenchmarkSemaphoreGrants(b *testing.B) {
	const contenders = 16
	for _, hold := range []time.Duration{10 * time.Millisecond, 100 * time.Millisecond} {
		for _, limit := range []int64{1, 2, 8, 0} {
			name := fmt.Sprintf("hold=%v/limit=%d", hold, limit)
			if limit == 0 {
				name = fmt.Sprintf("hold=%v/mutex", hold)
			}
			b.Run(name, func(b *testing.B) { benchGrants(b, contenders, limit, hold) })
		}
	}
}

// benchGrants runs one setting of BenchmarkSemaphoreGrants; limit 0 is
// the Mutex.
func benchGrants(b *testing.B, contenders int, limit int64, hold time.Duration) {
	srv := s3locktest.New(b, s3locktest.WithLatency(contendedLatency))
	key := "locks/bench-grants"
	type locker struct {
		lock   func(context.Context) error
		unlock func(context.Context) error
		token  func() uint64
	}
	lockers := make([]locker, contenders)
	for i := range lockers {
		owner := s3lock.WithOwner(fmt.Sprintf("c%d", i))
		if limit == 0 {
			m := newMutex(b, srv.Client(), srv.Bucket(), key, owner)
			lockers[i] = locker{m.Lock, m.Unlock, m.Token}
			continue
		}
		s, err := s3lock.NewSemaphore(srv.Client(), srv.Bucket(), key, limit, owner)
		if err != nil {
			b.Fatal(err)
		}
		lockers[i] = locker{func(ctx context.Context) error { return s.Acquire(ctx, 1) }, s.Release, s.Token}
	}
	most := max(limit, 1)
	var (
		grants, holding, peak, over atomic.Int64
		mu                          sync.Mutex // protects tokens and errs
		tokens                      = map[uint64]bool{}
		dups                        int
		errs                        []error
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv.Stats().Reset()
	start := time.Now()
	var wg sync.WaitGroup
	for _, l := range lockers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := l.lock(ctx); err != nil {
					if ctx.Err() == nil {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
					}
					return
				}
				now := holding.Add(1)
				if now > most {
					over.Add(1)
				}
				for p := peak.Load(); now > p && !peak.CompareAndSwap(p, now); p = peak.Load() {
				}
				mu.Lock()
				if tok := l.token(); tokens[tok] {
					dups++
				} else {
					tokens[tok] = true
				}
				mu.Unlock()
				if grants.Add(1) >= int64(b.N) {
					cancel()
				}
				time.Sleep(hold)
				holding.Add(-1)
				if err := l.unlock(context.Background()); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if n := over.Load(); n != 0 {
		b.Errorf("%d grants found more than %d holders (peak %d)", n, most, peak.Load())
	}
	if dups != 0 {
		b.Errorf("%d fencing tokens given twice", dups)
	}
	for _, err := range errs {
		b.Error(err)
	}
	d := srv.Stats().Snapshot()
	n := float64(grants.Load())
	b.ReportMetric(n/elapsed.Seconds(), "grants/s")
	b.ReportMetric(float64(peak.Load()), "peak-holders")
	b.ReportMetric(float64(d.Method(http.MethodPut))/n, "PUT/grant")
	b.ReportMetric(float64(d.Method(http.MethodGet)+d.Method(http.MethodHead))/n, "GET/grant")
	b.ReportMetric(float64(d.Status(http.StatusPreconditionFailed)+d.Status(http.StatusConflict))/n, "412+409/grant")
	b.ReportMetric(float64(d.Total())/n, "req/grant")
}

// renewalTTL is the TTL of BenchmarkSharedRenewal: S3LOCK_BENCH_RENEW_TTL,
// 1.5 s by default (CI); the holds renew every TTL/3, as the defaults'
// 30 s and 10 s.
func renewalTTL(b *testing.B) time.Duration {
	v := os.Getenv("S3LOCK_BENCH_RENEW_TTL")
	if v == "" {
		return 1500 * time.Millisecond
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		b.Fatalf("S3LOCK_BENCH_RENEW_TTL=%q: %v", v, err)
	}
	return d
}

// BenchmarkSharedRenewal: 8 and 32 holds renewing in the background
// (WithAutoRenew(TTL/3)) for b.N renewal intervals: all the units of one
// Semaphore (limit = holders, short owners so that 32 entries fit), or
// Mutexes each on its own key. It reports the renewal PUTs that S3
// answered 412 or 409 (every one a conflict: nothing else writes during
// the run), per minute and per renewal, and how many holds were lost
// (their context cancelled before the release). One op is one renewal
// interval.
func BenchmarkSharedRenewal(b *testing.B) {
	ttl := renewalTTL(b)
	every := ttl / 3
	for _, holders := range []int{8, 32} {
		for _, kind := range []string{"semaphore", "mutexes"} {
			b.Run(fmt.Sprintf("holders=%d/%s/ttl=%v", holders, kind, ttl), func(b *testing.B) {
				srv := s3locktest.New(b, s3locktest.WithLatency(contendedLatency))
				ctx := context.Background()
				opts := func(i int) []s3lock.Option {
					return []s3lock.Option{s3lock.WithOwner(fmt.Sprintf("h%d", i)), s3lock.WithTTL(ttl), s3lock.WithAutoRenew(every)}
				}
				var (
					holds    []context.Context
					releases []func(context.Context) error
				)
				for i := range holders {
					if kind == "mutexes" {
						m := newMutex(b, srv.Client(), srv.Bucket(), fmt.Sprintf("locks/bench-renew-%d", i), opts(i)...)
						if err := m.TryLock(ctx); err != nil {
							b.Fatal(err)
						}
						holds, releases = append(holds, m.Context()), append(releases, m.Unlock)
						continue
					}
					s, err := s3lock.NewSemaphore(srv.Client(), srv.Bucket(), "locks/bench-renew", int64(holders), opts(i)...)
					if err != nil {
						b.Fatal(err)
					}
					if err := s.TryAcquire(ctx, 1); err != nil {
						b.Fatalf("holder %d: TryAcquire(1) = %v", i, err)
					}
					holds, releases = append(holds, s.Context()), append(releases, s.Release)
				}
				srv.Stats().Reset()
				b.ResetTimer()
				start := time.Now()
				time.Sleep(time.Duration(b.N) * every)
				elapsed := time.Since(start)
				d := srv.Stats().Snapshot()
				b.StopTimer()
				lost := 0
				for _, h := range holds {
					if h.Err() != nil {
						if lost++; lost == 1 {
							b.Logf("hold lost: %v", context.Cause(h))
						}
					}
				}
				relErrs := 0
				for _, release := range releases {
					if err := release(ctx); err != nil {
						relErrs++
					}
				}
				conflicts := float64(d.Status(http.StatusPreconditionFailed) + d.Status(http.StatusConflict))
				renewals := float64(d.Method(http.MethodPut)) - conflicts
				b.ReportMetric(conflicts/elapsed.Minutes(), "conflicts/min")
				b.ReportMetric(renewals/elapsed.Minutes(), "renewals/min")
				if renewals > 0 {
					b.ReportMetric(conflicts/renewals, "conflicts/renewal")
					b.ReportMetric(float64(d.Method(http.MethodGet))/renewals, "GET/renewal")
				}
				b.ReportMetric(float64(lost), "lost")
				b.ReportMetric(float64(relErrs), "release-errors")
			})
		}
	}
}

// BenchmarkConditionalWrites: how many conditional writes one key accepts
// per second. N writers, each with its own client, loop PUT If-Match with
// the ETag they last saw (their own last write's, or a GET's after a
// 412/409) on one object. One op is one accepted write. "lost-updates"
// counts accepted writes conditioned on a version that another accepted
// write had already replaced (0 on a store that honours If-Match). The embedded
// server runs always, without added latency; versitygw and SeaweedFS (as
// processes, see internal/s3servers) only with S3LOCK_BENCH_SERVERS=1.
func BenchmarkConditionalWrites(b *testing.B) {
	type store struct {
		name   string
		bucket string
		client func() *s3.Client
	}
	stores := []struct {
		name  string
		start func(b *testing.B) store
	}{
		{"embedded", func(b *testing.B) store {
			srv := s3locktest.New(b)
			return store{"embedded", srv.Bucket(), func() *s3.Client { return srv.Client() }}
		}},
		{"versitygw", func(b *testing.B) store {
			s := s3servers.Versitygw(b)
			return store{"versitygw", s.Bucket(), func() *s3.Client { return s.Client() }}
		}},
		{"seaweedfs", func(b *testing.B) store {
			s := s3servers.SeaweedFS(b)
			return store{"seaweedfs", s.Bucket(), func() *s3.Client { return s.Client() }}
		}},
	}
	for _, st := range stores {
		b.Run(st.name, func(b *testing.B) {
			if st.name != "embedded" && os.Getenv("S3LOCK_BENCH_SERVERS") == "" {
				b.Skip("set S3LOCK_BENCH_SERVERS=1 to measure the out-of-process servers")
			}
			srv := st.start(b)
			for _, writers := range []int{1, 4, 16} {
				b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
					conditionalWrites(b, srv.bucket, srv.client, writers)
				})
			}
		})
	}
}

func conditionalWrites(b *testing.B, bucket string, client func() *s3.Client, writers int) {
	ctx := context.Background()
	key := fmt.Sprintf("bench/conditional-%d-%d", writers, time.Now().UnixNano())
	// Every write has a body of its own: an ETag that is the MD5 of the
	// body would otherwise match whatever was written since.
	body := func(w int, seq int64) []byte {
		return fmt.Appendf(bytes.Repeat([]byte("x"), 280), "%d-%d", w, seq)
	}
	seed := client()
	out, err := seed.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body(0, 0))})
	if err != nil {
		b.Fatal(err)
	}
	first := aws.ToString(out.ETag)
	var accepted, conflicts, reads, others atomic.Int64
	var mu sync.Mutex // protects errs and over
	var errs []error
	// over counts the accepted writes by the ETag they were conditioned
	// on: a store that honours If-Match accepts one write per version.
	over := map[string]int{}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range writers {
		c := client()
		wg.Add(1)
		go func() {
			defer wg.Done()
			etag := first
			for seq := int64(1); wctx.Err() == nil; seq++ {
				out, err := c.PutObject(wctx, &s3.PutObjectInput{
					Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body(w+1, seq)), IfMatch: aws.String(etag),
				})
				if err == nil {
					mu.Lock()
					over[etag]++
					mu.Unlock()
					etag = aws.ToString(out.ETag)
					if accepted.Add(1) >= int64(b.N) {
						cancel()
					}
					continue
				}
				if wctx.Err() != nil {
					return
				}
				switch code := httpStatusOf(err); code {
				case http.StatusPreconditionFailed, http.StatusConflict:
					conflicts.Add(1)
				default:
					if others.Add(1) > 100 {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
						cancel()
						return
					}
				}
				h, err := c.HeadObject(wctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
				reads.Add(1)
				if err != nil {
					if wctx.Err() == nil {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
						cancel()
					}
					return
				}
				etag = aws.ToString(h.ETag)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	for _, err := range errs {
		b.Error(err)
	}
	twice := 0
	for _, k := range over {
		twice += k - 1
	}
	if twice > 0 {
		b.Logf("%d writes were accepted over a version another accepted write had already replaced (If-Match not atomic)", twice)
	}
	n := float64(accepted.Load())
	b.ReportMetric(n/elapsed.Seconds(), "writes/s")
	b.ReportMetric(float64(twice), "lost-updates")
	if n > 0 {
		b.ReportMetric(float64(conflicts.Load())/n, "412+409/write")
		b.ReportMetric(float64(reads.Load())/n, "HEAD/write")
		b.ReportMetric(float64(others.Load())/n, "other-errors/write")
	}
}

// httpStatusOf is the HTTP status of an SDK error, 0 when none.
func httpStatusOf(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

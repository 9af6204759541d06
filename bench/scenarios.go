package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

// Indicative S3 Standard prices in us-east-1 (AWS's published price list
// for S3 Standard), in USD per request: PUT/COPY/POST/LIST, and GET/HEAD
// (and all other requests).
const (
	usdPerPUT = 0.005 / 1000
	usdPerGET = 0.0004 / 1000
)

// row is one measured result.
type row struct {
	Scenario  string  `json:"scenario"`
	Name      string  `json:"name"`
	LatencyMS float64 `json:"added_latency_ms"` // per request, embedded server only
	Workers   int     `json:"workers,omitempty"`
	// RetryMS is the retry interval; DefaultRetry says it is the
	// library's default (no WithRetryInterval).
	RetryMS      float64 `json:"retry_interval_ms,omitempty"`
	DefaultRetry bool    `json:"default_retry,omitempty"`
	// HoldMS is how long each critical section held the lock after its
	// counter update (contended scenarios).
	HoldMS float64 `json:"hold_ms,omitempty"`
	Keys   int     `json:"keys,omitempty"`
	// Ops is how many operations (cycles, acquires or grants) were
	// measured, over Seconds.
	Ops     int64   `json:"ops"`
	Seconds float64 `json:"seconds"`
	// P50MS, P99MS and MaxMS are the latency of one operation: a cycle or
	// an acquire in the uncontended scenarios, a Lock call (the wait) in
	// the contended ones.
	P50MS float64 `json:"p50_ms"`
	P99MS float64 `json:"p99_ms"`
	MaxMS float64 `json:"max_ms"`
	// PerSecond is operations (grants) per second; LimitPct is that as a
	// percentage of the limit 1/(hold+4R) with R the added latency
	// (contended scenarios only): one grant needs the acquire PUT, the
	// counter's GET and PUT, the hold and the release PUT.
	PerSecond float64 `json:"per_second"`
	LimitPct  float64 `json:"limit_pct,omitempty"`
	// Lock requests per operation, by verb and outcome.
	LockRequests float64 `json:"lock_requests_per_op"`
	LockGET      float64 `json:"lock_get_per_op"`
	LockPUT      float64 `json:"lock_put_per_op"`
	LockPUT412   float64 `json:"lock_put_412_per_op"`
	LockPUT409   float64 `json:"lock_put_409_per_op"`
	// USDPerMillion is what the lock requests of a million operations cost
	// at the indicative prices.
	USDPerMillion float64 `json:"usd_per_million_ops"`
	// Jain is Jain's fairness index of grants per worker (1 = equal), and
	// GrantsPerWorker those grants (contended scenarios).
	Jain            float64 `json:"jain,omitempty"`
	GrantsPerWorker []int   `json:"grants_per_worker,omitempty"`
	// MaxBypass is the largest number of grants that went to other
	// workers while one waited, and LongestWaitMS the longest wait, counting
	// waits the end of the run cut short (see contention in fairness.go).
	MaxBypass     int     `json:"max_bypass"`
	LongestWaitMS float64 `json:"longest_wait_ms,omitempty"`
	// FailedWhileFree counts conditional lock writes that failed while the
	// lock object held a free record (embedded server only).
	FailedWhileFree int64 `json:"failed_while_free"`
	// HandoffMS is the mean time from a release to the next acquire as the
	// server saw them (it includes the acquire's own round trip), DetectMS
	// the mean time from a release to the first GET that found the lock
	// free, and FreeGETs how many GETs found it free per hand-off
	// (embedded server only).
	HandoffMS float64 `json:"handoff_ms,omitempty"`
	DetectMS  float64 `json:"detect_ms,omitempty"`
	FreeGETs  float64 `json:"free_gets_per_handoff,omitempty"`
	// Checks: the shared counter equals the number of critical sections
	// and fencing tokens are unique (contended scenarios).
	// Runs is how many runs the figures are the medians of (0 or 1: one
	// run); MaxWaitMS is then the largest MaxMS of all runs. Problem
	// counts are summed over the runs.
	Runs        int      `json:"runs,omitempty"`
	MaxWaitMS   float64  `json:"max_of_runs_ms,omitempty"`
	LostUpdates int64    `json:"lost_updates"`
	DupTokens   int      `json:"duplicate_tokens"`
	Errors      []string `json:"errors,omitempty"`
}

// setServerStats sets what the embedded server measured over ops
// operations.
func (r *row) setServerStats(st stats, ops int64) {
	r.setLockCounts(st.counts, ops)
	h := st.handoffs
	r.FailedWhileFree = h.failedWhileFree
	if h.n > 0 {
		n := float64(h.n)
		r.HandoffMS = ms(h.time) / n
		r.DetectMS = ms(h.detect) / n
		r.FreeGETs = float64(h.freeGETs) / n
	}
}

// setLockCounts sets the lock-object requests per operation from c.
func (r *row) setLockCounts(c s3locktest.Counts, ops int64) {
	if ops == 0 {
		return
	}
	n := float64(ops)
	put := func(status int) int64 { return c[s3locktest.Request{Method: http.MethodPut, Status: status}] }
	r.LockGET = float64(c.Method(http.MethodGet)+c.Method(http.MethodHead)) / n
	r.LockPUT = float64(c.Method(http.MethodPut)) / n
	r.LockPUT412 = float64(put(http.StatusPreconditionFailed)) / n
	r.LockPUT409 = float64(put(http.StatusConflict)) / n
	r.LockRequests = float64(c.Total()) / n
	other := r.LockRequests - r.LockGET - r.LockPUT
	r.USDPerMillion = 1e6 * (r.LockPUT*usdPerPUT + (r.LockGET+other)*usdPerGET)
}

func (r *row) setLatencies(ds []float64) {
	if len(ds) == 0 {
		return
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	r.P50MS = percentile(s, 0.50)
	r.P99MS = percentile(s, 0.99)
	r.MaxMS = s[len(s)-1]
}

// percentile returns the p-quantile of sorted (nearest rank).
func percentile(sorted []float64, p float64) float64 {
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// jain returns Jain's fairness index of xs: (Σx)² / (n·Σx²).
func jain(xs []float64) float64 {
	var sum, sq float64
	for _, x := range xs {
		sum += x
		sq += x * x
	}
	if sq == 0 {
		return 0
	}
	return sum * sum / (float64(len(xs)) * sq)
}

// bench runs scenarios against one target.
type bench struct {
	target target
	srv    *server // nil unless embedded
	client *s3Client
	run    string // unique per invocation, so runs never share keys
	prog   *progress
	seq    int
	lat    time.Duration // the embedded server's added latency
}

// setLatency sets the latency the embedded server adds to every request.
func (b *bench) setLatency(d time.Duration) {
	if b.srv != nil {
		b.lat = d
		b.srv.SetLatency(d)
	}
}

func newRunID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// keys returns a fresh lock key and data key for a scenario.
func (b *bench) keys(name string) (lockKey, dataKey string) {
	b.seq++
	k := fmt.Sprintf("s3lock-bench/%s/%03d-%s", b.run, b.seq, name)
	return lockPrefix + k, "data/" + k
}

// stats returns the request counters: the server's when embedded, the
// parent client's otherwise.
func (b *bench) stats() stats {
	if b.srv != nil {
		return b.srv.snapshot()
	}
	return stats{counts: b.client.counter.Snapshot()}
}

// latency is the embedded server's added latency, R.
func (b *bench) latency() time.Duration { return b.lat }

// uncontended measures one Mutex alone: warm Lock+Unlock and
// TryLock+Unlock cycles, the first acquire of an existing free lock by a
// fresh Mutex, and the acquire of an absent lock.
func (b *bench) uncontended(ctx context.Context, cycles int) ([]row, error) {
	lockKey, _ := b.keys("uncontended")
	m, err := s3lock.New(b.client, b.target.Bucket, lockKey)
	if err != nil {
		return nil, err
	}
	if err := m.TryLock(ctx); err != nil {
		return nil, err
	}
	if err := m.Unlock(ctx); err != nil {
		return nil, err
	}
	base := b.row("uncontended", "")
	var rows []row
	cycle := func(name string, acquire func(context.Context) error) error {
		r := base
		r.Name = name
		var ds []float64
		st0 := b.stats()
		start := time.Now()
		for range cycles {
			t0 := time.Now()
			if err := acquire(ctx); err != nil {
				return err
			}
			if err := m.Unlock(ctx); err != nil {
				return err
			}
			ds = append(ds, ms(time.Since(t0)))
		}
		r.Seconds = time.Since(start).Seconds()
		r.Ops = int64(cycles)
		r.PerSecond = float64(cycles) / r.Seconds
		r.setLatencies(ds)
		r.setServerStats(b.stats().sub(st0), r.Ops)
		rows = append(rows, r)
		return nil
	}
	if err := cycle("warm Lock+Unlock cycle", m.Lock); err != nil {
		return nil, err
	}
	if err := cycle("warm TryLock+Unlock cycle", m.TryLock); err != nil {
		return nil, err
	}
	// A fresh Mutex on an existing free lock, and on an absent lock: only
	// the acquire is measured and counted.
	acquire := func(name string, key func(i int) string) error {
		r := base
		r.Name = name
		var ds []float64
		total := s3locktest.Counts{}
		var failed int64
		start := time.Now()
		for i := range cycles {
			fresh, err := s3lock.New(b.client, b.target.Bucket, key(i))
			if err != nil {
				return err
			}
			st0 := b.stats()
			t0 := time.Now()
			if err := fresh.TryLock(ctx); err != nil {
				return err
			}
			ds = append(ds, ms(time.Since(t0)))
			d := b.stats().sub(st0)
			for k, v := range d.counts {
				total[k] += v
			}
			failed += d.handoffs.failedWhileFree
			if err := fresh.Unlock(ctx); err != nil {
				return err
			}
		}
		r.Seconds = time.Since(start).Seconds()
		r.Ops = int64(cycles)
		r.setLatencies(ds)
		r.setLockCounts(total, r.Ops)
		r.FailedWhileFree = failed
		rows = append(rows, r)
		return nil
	}
	if err := acquire("first acquire, existing free lock", func(int) string { return lockKey }); err != nil {
		return nil, err
	}
	absentKey, _ := b.keys("absent")
	if err := acquire("first acquire, absent lock", func(i int) string { return fmt.Sprintf("%s-%d", absentKey, i) }); err != nil {
		return nil, err
	}
	return rows, nil
}

func (b *bench) row(scenario, name string) row {
	return row{Scenario: scenario, Name: name, LatencyMS: ms(b.latency())}
}

// setting is one contended configuration.
type setting struct {
	workers int
	// retry is the retry interval, 0 for the library's default.
	retry time.Duration
	// hold is how long each critical section holds the lock after its
	// counter update.
	hold time.Duration
}

func (st setting) String() string {
	procs := "processes"
	if st.workers == 1 {
		procs = "process"
	}
	retry := "retry " + st.retry.String()
	if st.retry == 0 {
		retry = fmt.Sprintf("default retry (%v)", s3lock.DefaultRetryInterval)
	}
	if st.hold == 0 {
		return fmt.Sprintf("%d %s, %s", st.workers, procs, retry)
	}
	return fmt.Sprintf("%d %s, hold %v, %s", st.workers, procs, st.hold, retry)
}

// contended runs st.workers processes, each looping Lock → GET+PUT of a
// shared counter → hold → Unlock on one key, and measures the window
// [warmup, warmup+d).
func (b *bench) contended(ctx context.Context, st setting, warmup, d time.Duration) (row, error) {
	lockKey, dataKey := b.keys(fmt.Sprintf("contended-%dw-%v-%v", st.workers, st.retry, st.hold))
	r := b.row("contended", st.String())
	r.Workers, r.RetryMS, r.HoldMS = st.workers, ms(st.retry), ms(st.hold)
	ttl := 10 * time.Second
	if st.retry == 0 {
		// Default options throughout.
		r.RetryMS, r.DefaultRetry, ttl = ms(s3lock.DefaultRetryInterval), true, 0
	}
	// Process start-up takes ~50 ms each on a loaded 2-core machine.
	start := time.Now().Add(500*time.Millisecond + time.Duration(st.workers)*60*time.Millisecond)
	measure := start.Add(warmup)
	stop := measure.Add(d)
	cfgs := make([]workerConfig, st.workers)
	for i := range cfgs {
		cfgs[i] = workerConfig{
			ID: i, Target: b.target, LockKey: lockKey, DataKey: dataKey,
			Retry: st.retry, TTL: ttl, Hold: st.hold, Start: start, Stop: stop,
		}
	}
	var st0, st1 stats
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(time.Until(measure))
		st0 = b.stats()
		time.Sleep(time.Until(stop))
		st1 = b.stats()
	}()
	results, err := startWorkers(ctx, cfgs)
	wg.Wait()
	if err != nil {
		return r, err
	}
	c := analyze(results, measure, stop)
	var total int64
	clientCounts := s3locktest.Counts{}
	for _, res := range results {
		total += int64(res.Total)
		addList(clientCounts, res.Requests)
		for _, e := range res.Errors {
			r.Errors = append(r.Errors, fmt.Sprintf("worker %d: %s", res.ID, e))
		}
		if res.LateStartMS > ms(warmup) {
			r.Errors = append(r.Errors, fmt.Sprintf("worker %d started %.0f ms late", res.ID, res.LateStartMS))
		}
	}
	for _, g := range c.grants {
		r.Ops += int64(g)
		r.GrantsPerWorker = append(r.GrantsPerWorker, int(g))
	}
	r.DupTokens = c.dupTokens
	r.Seconds = d.Seconds()
	r.PerSecond = float64(r.Ops) / r.Seconds
	if lat := b.latency(); lat > 0 {
		r.LimitPct = 100 * r.PerSecond * (st.hold + 4*lat).Seconds()
	}
	r.setLatencies(c.latencies)
	r.Jain = jain(c.grants)
	r.MaxBypass = c.maxBypass
	r.LongestWaitMS = ms(c.longestWait)
	if b.srv != nil {
		r.setServerStats(st1.sub(st0), r.Ops)
	} else {
		// The clients counted the whole run: divide by all its grants.
		r.setLockCounts(clientCounts, total)
	}
	got, err := (&s3locktest.Counter{Client: b.client.Client, Bucket: b.target.Bucket, Key: dataKey}).Get(ctx)
	if err != nil {
		return r, err
	}
	r.LostUpdates = total - int64(got)
	return r, nil
}

// manyKeys runs one goroutine per key (each with its own Mutex, sharing
// one S3 client), each looping Lock → GET+PUT of its counter → Unlock, and
// reports the total grants per second.
func (b *bench) manyKeys(ctx context.Context, keys int, retry, d time.Duration) (row, error) {
	name := fmt.Sprintf("%d keys, 1 worker each", keys)
	if keys == 1 {
		name = "1 key, 1 worker"
	}
	r := b.row("keys", name)
	r.Keys, r.Workers, r.RetryMS = keys, keys, ms(retry)
	if retry == 0 {
		r.RetryMS, r.DefaultRetry = ms(s3lock.DefaultRetryInterval), true
	}
	type worker struct {
		m *s3lock.Mutex
		c *s3locktest.Counter
	}
	ws := make([]worker, keys)
	for i := range ws {
		lockKey, dataKey := b.keys(fmt.Sprintf("keys-%d-%d", keys, i))
		opts := []s3lock.Option{s3lock.WithTTL(10 * time.Second)}
		if retry > 0 {
			opts = append(opts, s3lock.WithRetryInterval(retry))
		}
		m, err := s3lock.New(b.client, b.target.Bucket, lockKey, opts...)
		if err != nil {
			return r, err
		}
		ws[i] = worker{m, &s3locktest.Counter{Client: b.client.Client, Bucket: b.target.Bucket, Key: dataKey}}
	}
	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var mu sync.Mutex
	var waits []float64
	var errs []string
	var wg sync.WaitGroup
	st0 := b.stats()
	start := time.Now()
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local []float64
			for runCtx.Err() == nil {
				t0 := time.Now()
				if err := w.m.Lock(runCtx); err != nil {
					if runCtx.Err() == nil {
						mu.Lock()
						errs = append(errs, err.Error())
						mu.Unlock()
					}
					break
				}
				local = append(local, ms(time.Since(t0)))
				_, err := w.c.Increment(ctx)
				if uerr := w.m.Unlock(ctx); err == nil {
					err = uerr
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err.Error())
					mu.Unlock()
					break
				}
			}
			mu.Lock()
			waits = append(waits, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	r.Seconds = time.Since(start).Seconds()
	r.Ops = int64(len(waits))
	r.PerSecond = float64(r.Ops) / r.Seconds
	r.setLatencies(waits)
	r.setServerStats(b.stats().sub(st0), r.Ops)
	if len(errs) > 5 {
		errs = append(errs[:5], fmt.Sprintf("… and %d more", len(errs)-5))
	}
	r.Errors = errs
	return r, nil
}

// medianRuns merges repeated runs of one step (each a list of rows in the
// same order) into one list whose figures are the medians over the runs.
// Counts of problems (lost updates, duplicate tokens, failed writes while
// free) are summed instead, and errors kept, so none is hidden.
func medianRuns(runs [][]row) []row {
	if len(runs) == 1 {
		return runs[0]
	}
	out := make([]row, len(runs[0]))
	for i := range out {
		var rs []row
		for _, run := range runs {
			if i < len(run) {
				rs = append(rs, run[i])
			}
		}
		out[i] = medianRow(rs)
	}
	return out
}

func medianRow(rs []row) row {
	m := rs[0]
	var best float64
	med := func(get func(*row) float64) float64 {
		vs := make([]float64, len(rs))
		for i := range rs {
			vs[i] = get(&rs[i])
		}
		slices.Sort(vs)
		if len(vs)%2 == 1 {
			return vs[len(vs)/2]
		}
		return (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
	}
	m.Ops = int64(med(func(r *row) float64 { return float64(r.Ops) }))
	m.Seconds = med(func(r *row) float64 { return r.Seconds })
	m.P50MS = med(func(r *row) float64 { return r.P50MS })
	m.P99MS = med(func(r *row) float64 { return r.P99MS })
	m.MaxMS = med(func(r *row) float64 { return r.MaxMS })
	m.PerSecond = med(func(r *row) float64 { return r.PerSecond })
	m.LimitPct = med(func(r *row) float64 { return r.LimitPct })
	m.LockRequests = med(func(r *row) float64 { return r.LockRequests })
	m.LockGET = med(func(r *row) float64 { return r.LockGET })
	m.LockPUT = med(func(r *row) float64 { return r.LockPUT })
	m.LockPUT412 = med(func(r *row) float64 { return r.LockPUT412 })
	m.LockPUT409 = med(func(r *row) float64 { return r.LockPUT409 })
	m.USDPerMillion = med(func(r *row) float64 { return r.USDPerMillion })
	m.Jain = med(func(r *row) float64 { return r.Jain })
	m.MaxBypass = int(med(func(r *row) float64 { return float64(r.MaxBypass) }))
	m.LongestWaitMS = med(func(r *row) float64 { return r.LongestWaitMS })
	// The grants per worker of the run whose Jain index is nearest the
	// median.
	m.GrantsPerWorker = nil
	for _, r := range rs {
		if r.GrantsPerWorker != nil && (m.GrantsPerWorker == nil || math.Abs(r.Jain-m.Jain) < math.Abs(best-m.Jain)) {
			m.GrantsPerWorker, best = r.GrantsPerWorker, r.Jain
		}
	}
	m.HandoffMS = med(func(r *row) float64 { return r.HandoffMS })
	m.DetectMS = med(func(r *row) float64 { return r.DetectMS })
	m.FreeGETs = med(func(r *row) float64 { return r.FreeGETs })
	m.Runs = len(rs)
	m.FailedWhileFree, m.LostUpdates, m.DupTokens, m.Errors = 0, 0, 0, nil
	for _, r := range rs {
		m.FailedWhileFree += r.FailedWhileFree
		m.LostUpdates += r.LostUpdates
		m.DupTokens += r.DupTokens
		m.Errors = append(m.Errors, r.Errors...)
		m.MaxWaitMS = max(m.MaxWaitMS, r.MaxMS)
	}
	return m
}

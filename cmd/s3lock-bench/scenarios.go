package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

// Indicative S3 Standard prices in us-east-1 (see docs/s3-semantics.md), in USD per
// request: PUT/COPY/POST/LIST, and GET/HEAD (and all other requests).
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
	RetryMS   float64 `json:"retry_interval_ms,omitempty"`
	Keys      int     `json:"keys,omitempty"`
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
	// percentage of the limit 1/(4R) with R the added latency (contended
	// scenario only).
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
	// Jain is Jain's fairness index of grants per worker (1 = equal).
	Jain float64 `json:"jain,omitempty"`
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
	r.FailedWhileFree = st.failedWhileFree
	if st.handoffs > 0 {
		n := float64(st.handoffs)
		r.HandoffMS = ms(st.handoffTime) / n
		r.DetectMS = ms(st.detectTime) / n
		r.FreeGETs = float64(st.freeGETs) / n
	}
}

func (r *row) setLockCounts(c counts, ops int64) {
	if ops == 0 {
		return
	}
	n := float64(ops)
	r.LockGET = float64(c.n("lock", "GET", 0)+c.n("lock", "HEAD", 0)) / n
	r.LockPUT = float64(c.n("lock", "PUT", 0)) / n
	r.LockPUT412 = float64(c.n("lock", "PUT", 412)) / n
	r.LockPUT409 = float64(c.n("lock", "PUT", 409)) / n
	r.LockRequests = float64(c.n("lock", "", 0)) / n
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
	return stats{counts: b.client.counter.snapshot()}
}

func (b *bench) latency() time.Duration {
	if b.srv == nil {
		return 0
	}
	return time.Duration(b.srv.latency.Load())
}

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
		var total stats
		total.counts = counts{}
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
			total.counts.add(d.counts)
			total.failedWhileFree += d.failedWhileFree
			if err := fresh.Unlock(ctx); err != nil {
				return err
			}
		}
		r.Seconds = time.Since(start).Seconds()
		r.Ops = int64(cycles)
		r.setLatencies(ds)
		r.setLockCounts(total.counts, r.Ops)
		r.FailedWhileFree = total.failedWhileFree
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

// contended runs workers processes, each looping Lock → GET+PUT of a
// shared counter → Unlock on one key, and measures the window [warmup,
// warmup+d).
func (b *bench) contended(ctx context.Context, workers int, retry, warmup, d time.Duration) (row, error) {
	lockKey, dataKey := b.keys(fmt.Sprintf("contended-%dw-%v", workers, retry))
	procs := "processes"
	if workers == 1 {
		procs = "process"
	}
	r := b.row("contended", fmt.Sprintf("%d %s, retry %v", workers, procs, retry))
	r.Workers, r.RetryMS = workers, ms(retry)
	// Process start-up takes ~50 ms each on a loaded 2-core machine.
	start := time.Now().Add(500*time.Millisecond + time.Duration(workers)*60*time.Millisecond)
	measure := start.Add(warmup)
	stop := measure.Add(d)
	cfgs := make([]workerConfig, workers)
	for i := range cfgs {
		cfgs[i] = workerConfig{
			ID: i, Target: b.target, LockKey: lockKey, DataKey: dataKey,
			Retry: retry, TTL: 10 * time.Second, Start: start, Measure: measure, Stop: stop,
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
	var waits, grants []float64
	var total int64
	tokens := map[uint64]bool{}
	clientCounts := counts{}
	for _, res := range results {
		r.Ops += int64(res.Grants)
		grants = append(grants, float64(res.Grants))
		waits = append(waits, res.Waits...)
		total += int64(res.Total)
		for _, t := range res.Tokens {
			if tokens[t] {
				r.DupTokens++
			}
			tokens[t] = true
		}
		clientCounts.add(listToCounts(res.Requests))
		for _, e := range res.Errors {
			r.Errors = append(r.Errors, fmt.Sprintf("worker %d: %s", res.ID, e))
		}
		if res.LateStartMS > ms(warmup) {
			r.Errors = append(r.Errors, fmt.Sprintf("worker %d started %.0f ms late", res.ID, res.LateStartMS))
		}
	}
	r.Seconds = d.Seconds()
	r.PerSecond = float64(r.Ops) / r.Seconds
	if lat := b.latency(); lat > 0 {
		r.LimitPct = 100 * r.PerSecond / (1 / (4 * lat.Seconds()))
	}
	r.setLatencies(waits)
	r.Jain = jain(grants)
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
	type worker struct {
		m *s3lock.Mutex
		c *s3locktest.Counter
	}
	ws := make([]worker, keys)
	for i := range ws {
		lockKey, dataKey := b.keys(fmt.Sprintf("keys-%d-%d", keys, i))
		m, err := s3lock.New(b.client, b.target.Bucket, lockKey, s3lock.WithRetryInterval(retry), s3lock.WithTTL(10*time.Second))
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

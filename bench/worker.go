package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

// workerEnv, when set, makes the bench binary a contention worker: it reads
// its workerConfig (JSON) from this variable and prints a workerResult
// (JSON) on stdout. The bench starts its worker processes this way.
const workerEnv = "S3LOCK_BENCH_WORKER"

// workerConfig tells one worker process what to do.
type workerConfig struct {
	ID      int    `json:"id"`
	Target  target `json:"target"`
	LockKey string `json:"lock_key"`
	DataKey string `json:"data_key"`
	// Retry and TTL are the Mutex's options; 0 leaves the library's
	// default.
	Retry time.Duration `json:"retry"`
	TTL   time.Duration `json:"ttl"`
	// Hold is how long each critical section holds the lock after its
	// counter update.
	Hold time.Duration `json:"hold"`
	// Start and Stop are wall-clock instants (all processes run on this
	// machine): the loop starts at Start, and no Lock starts after Stop.
	Start time.Time `json:"start"`
	Stop  time.Time `json:"stop"`
}

// workerResult is what one worker reports.
type workerResult struct {
	ID int `json:"id"`
	// Locks are all its Lock calls, the one cut short by Stop included.
	Locks []lockCall `json:"locks"`
	// Total is how many critical sections ran over the whole run (each
	// added 1 to the shared counter).
	Total int `json:"total"`
	// Requests are counted by the client when the server cannot count.
	Requests []reqCount `json:"requests,omitempty"`
	// LateStartMS is how late the loop started (process start-up).
	LateStartMS float64  `json:"late_start_ms"`
	Errors      []string `json:"errors,omitempty"`
}

// lockCall is one Lock call, timed by the wall clock (Unix nanoseconds),
// which every worker on this machine shares.
type lockCall struct {
	// Start is just before Lock was called; Granted just after it
	// returned the lock, 0 when it did not (the run stopped first).
	Start   int64 `json:"start"`
	Granted int64 `json:"granted,omitempty"`
	// Token is the grant's fencing token.
	Token uint64 `json:"token,omitempty"`
}

type reqCount struct {
	Method string `json:"method"`
	Status int    `json:"status"`
	N      int64  `json:"n"`
}

func countsToList(c s3locktest.Counts) []reqCount {
	var l []reqCount
	for k, v := range c {
		l = append(l, reqCount{k.Method, k.Status, v})
	}
	return l
}

func addList(c s3locktest.Counts, l []reqCount) {
	for _, rc := range l {
		c[s3locktest.Request{Method: rc.Method, Status: rc.Status}] += rc.N
	}
}

// workerMain runs a worker process.
func workerMain(raw string) int {
	var cfg workerConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "s3lock-bench worker: bad config:", err)
		return 2
	}
	res := runWorker(context.Background(), cfg)
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, "s3lock-bench worker:", err)
		return 1
	}
	return 0
}

// runWorker loops Lock → GET+PUT of a counter → hold → Unlock from
// cfg.Start to cfg.Stop with one Mutex and its own S3 client.
func runWorker(ctx context.Context, cfg workerConfig) workerResult {
	res := workerResult{ID: cfg.ID}
	client, err := cfg.Target.newClient(ctx)
	if err != nil {
		res.Errors = append(res.Errors, err.Error())
		return res
	}
	defer client.close()
	opts := []s3lock.Option{s3lock.WithOwner("bench-worker-" + strconv.Itoa(cfg.ID))}
	if cfg.Retry > 0 {
		opts = append(opts, s3lock.WithRetryInterval(cfg.Retry))
	}
	if cfg.TTL > 0 {
		opts = append(opts, s3lock.WithTTL(cfg.TTL))
	}
	m, err := s3lock.New(client, cfg.Target.Bucket, cfg.LockKey, opts...)
	if err != nil {
		res.Errors = append(res.Errors, err.Error())
		return res
	}
	counter := &s3locktest.Counter{Client: client.Client, Bucket: cfg.Target.Bucket, Key: cfg.DataKey}
	time.Sleep(time.Until(cfg.Start))
	res.LateStartMS = ms(time.Since(cfg.Start))
	stopCtx, cancel := context.WithDeadline(ctx, cfg.Stop)
	defer cancel()
	for stopCtx.Err() == nil {
		call := lockCall{Start: time.Now().UnixNano()}
		if err := m.Lock(stopCtx); err != nil {
			res.Locks = append(res.Locks, call)
			if stopCtx.Err() == nil {
				res.Errors = append(res.Errors, "Lock: "+err.Error())
			}
			break
		}
		call.Granted, call.Token = time.Now().UnixNano(), m.Token()
		res.Locks = append(res.Locks, call)
		if _, err := counter.Increment(ctx); err != nil {
			res.Errors = append(res.Errors, "critical section: "+err.Error())
		} else {
			res.Total++
		}
		time.Sleep(cfg.Hold)
		if err := m.Unlock(ctx); err != nil {
			res.Errors = append(res.Errors, "Unlock: "+err.Error())
		}
		if len(res.Errors) > 20 {
			break
		}
	}
	if client.counter != nil {
		res.Requests = countsToList(client.counter.Snapshot())
	}
	return res
}

// startWorkers runs one worker process per config and returns their
// results once they have all exited.
func startWorkers(ctx context.Context, cfgs []workerConfig) ([]workerResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	results := make([]workerResult, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, cfg := range cfgs {
		raw, err := json.Marshal(cfg)
		if err != nil {
			return nil, err
		}
		cmd := exec.CommandContext(ctx, exe)
		cmd.Env = append(os.Environ(), workerEnv+"="+string(raw))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("starting worker %d: %w", i, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := cmd.Wait(); err != nil {
				errs[i] = fmt.Errorf("worker %d: %w: %s", i, err, strings.TrimSpace(stderr.String()))
				return
			}
			if err := json.Unmarshal(stdout.Bytes(), &results[i]); err != nil {
				errs[i] = fmt.Errorf("worker %d: bad result: %w", i, err)
			}
		}()
	}
	wg.Wait()
	return results, errors.Join(errs...)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

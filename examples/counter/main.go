// Command counter is the main demo of s3lock: N workers, each with its own
// Mutex and S3 client, increment a shared counter kept in S3 with a plain
// GET → +1 → PUT under WithLock, against the embedded S3 server. Without the
// lock, increments would be lost; with it, none are.
//
//	go run ./examples/counter -workers 8 -increments 25 -latency 10ms
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

func main() {
	workers := flag.Int("workers", 8, "number of workers, each with its own Mutex and S3 client")
	increments := flag.Int("increments", 25, "increments per worker")
	latency := flag.Duration("latency", 0, "delay added to every S3 request by the embedded server")
	retry := flag.Duration("retry", 20*time.Millisecond, "Lock's retry interval")
	flag.Parse()
	if err := run(os.Stdout, *workers, *increments, *latency, *retry); err != nil {
		log.Fatal(err)
	}
}

func run(out io.Writer, workers, increments int, latency, retry time.Duration) error {
	if workers < 1 || increments < 1 {
		return errors.New("workers and increments must be at least 1")
	}
	srv, err := s3locktest.Start(s3locktest.WithLatency(latency))
	if err != nil {
		return err
	}
	defer srv.Close()
	ctx := context.Background()
	const lockKey, counterKey = "locks/counter", "data/counter"

	var (
		mu        sync.Mutex
		latencies []time.Duration
		firstErr  error
		wg        sync.WaitGroup
	)
	start := time.Now()
	for w := range workers {
		client := srv.Client()
		counter := &s3locktest.Counter{Client: client, Bucket: srv.Bucket(), Key: counterKey}
		m, err := s3lock.New(client, srv.Bucket(), lockKey,
			s3lock.WithOwner(fmt.Sprintf("worker-%d", w)), s3lock.WithRetryInterval(retry))
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range increments {
				asked := time.Now()
				err := m.WithLock(ctx, func(ctx context.Context) error {
					mu.Lock()
					latencies = append(latencies, time.Since(asked))
					mu.Unlock()
					_, err := counter.Increment(ctx) // GET → +1 → PUT
					return err
				})
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return firstErr
	}
	final, err := (&s3locktest.Counter{Client: srv.Client(), Bucket: srv.Bucket(), Key: counterKey}).Get(ctx)
	if err != nil {
		return err
	}
	want := workers * increments
	counts := srv.Stats().Snapshot()
	slices.Sort(latencies)

	fmt.Fprintf(out, "s3lock counter demo: %d workers x %d increments, %v added S3 latency\n", workers, increments, latency)
	fmt.Fprintf(out, "increments:     %d (counter in S3: %d)\n", want, final)
	fmt.Fprintf(out, "lost updates:   %d\n", want-final)
	fmt.Fprintf(out, "acquisitions:   %d in %v (%.1f/s)\n", len(latencies), elapsed.Round(time.Millisecond), float64(len(latencies))/elapsed.Seconds())
	fmt.Fprintf(out, "acquire latency p50 %v, p99 %v\n", pct(latencies, 50), pct(latencies, 99))
	// The counter itself costs 1 GET + 1 PUT per increment; the rest is the lock.
	var parts []string
	for _, method := range counts.Methods() {
		parts = append(parts, fmt.Sprintf("%s %d", method, counts.Method(method)))
	}
	fmt.Fprintf(out, "S3 requests:    %s (total %d; the counter's own GET+PUT: %d)\n", strings.Join(parts, ", "), counts.Total(), 2*want)
	lockReqs := counts.Total() - int64(2*want)
	fmt.Fprintf(out, "lock requests per acquisition: %.2f (PUT %.2f, 412 answers %d)\n",
		float64(lockReqs)/float64(want), float64(counts.Method("PUT")-int64(want))/float64(want), counts.Status(412))
	if final != want {
		return fmt.Errorf("lost %d updates", want-final)
	}
	return nil
}

func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	i = min(max(i-1, 0), len(sorted)-1)
	return sorted[i].Round(100 * time.Microsecond)
}

// Command worker runs a job under an s3lock lock in a real S3 bucket, using
// the standard AWS configuration chain (environment, shared config and
// credentials files, SSO, instance roles). Run it on several machines, or
// several times on one: the jobs never overlap.
//
//	go run ./examples/worker -bucket my-bucket -key locks/nightly -work 10s
//
// It needs s3:GetObject and s3:PutObject on the lock key.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock"
)

func main() {
	bucket := flag.String("bucket", "", "S3 bucket that holds the lock object (required)")
	key := flag.String("key", "locks/example-worker", "key of the lock object")
	ttl := flag.Duration("ttl", 30*time.Second, "lease duration")
	work := flag.Duration("work", 5*time.Second, "how long the pretend job runs")
	wait := flag.Duration("wait", time.Minute, "how long to wait for the lock")
	endpoint := flag.String("endpoint-url", "", "S3-compatible endpoint (optional)")
	flag.Parse()
	if *bucket == "" {
		fmt.Fprintln(os.Stderr, "worker: -bucket is required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *bucket, *key, *endpoint, *ttl, *work, *wait); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, bucket, key, endpoint string, ttl, work, wait time.Duration) error {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("loading AWS configuration: %w", err)
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if endpoint != "" {
			o.BaseEndpoint = &endpoint
			o.UsePathStyle = true
		}
	})
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	m, err := s3lock.New(client, bucket, key,
		s3lock.WithTTL(ttl),
		s3lock.WithAutoRenew(ttl/3), // the job may run longer than one TTL
		s3lock.WithBackoff(exponential()),
		s3lock.WithRetryInterval(5*time.Second), // the retry interval caps the backoff's pauses
		s3lock.WithLogger(logger))
	if err != nil {
		return err
	}
	lockCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	err = m.WithLock(lockCtx, func(ctx context.Context) error {
		log.Printf("acquired %s as %s, fencing token %d; working for %v", key, m.Owner(), m.Token(), work)
		select {
		case <-time.After(work):
			log.Printf("done")
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	})
	return explain(err, wait)
}

// explain says why the job did not run, when it did not: Lock's error
// matches its context's error and carries its last attempt, so a timeout
// while someone else held the lock names the holder, and one while S3
// could not be reached says so.
func explain(err error, wait time.Duration) error {
	var locked *s3lock.LockedError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded) && errors.As(err, &locked):
		return fmt.Errorf("gave up waiting after %v: %q holds the lock (generation %d): %w", wait, locked.Owner, locked.Generation, err)
	case errors.Is(err, context.DeadlineExceeded) && errors.Is(err, s3lock.ErrUnavailable):
		return fmt.Errorf("gave up waiting after %v: S3 could not be reached: %w", wait, err)
	}
	return err
}

// Command lockworker is a helper for s3lock's multi-process tests: it runs
// critical sections under one s3lock.Mutex against an S3 endpoint and
// announces what it does on stdout, one line per event, so a test can
// follow (and SIGKILL) several such processes.
//
// Each iteration: print "WAITING", Lock, GET the counter object, print
// "ACQUIRED <token> <counter value read>", sleep -hold, PUT the counter
// plus one, print "COMMITTED <token> <value written>", print "RELEASING
// <token>", Unlock, print "RELEASED <token>", sleep -pause. At the end it
// prints "DONE".
// Errors go to stderr with a non-zero exit status.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

func main() {
	var (
		endpoint   = flag.String("endpoint", "", "S3 endpoint URL (loopback), e.g. http://127.0.0.1:9000")
		bucket     = flag.String("bucket", "", "bucket")
		key        = flag.String("key", "lock", "lock object key")
		counterKey = flag.String("counter", "counter", "counter object key")
		owner      = flag.String("owner", "", "owner name recorded in the lock (default host:pid:random)")
		ttl        = flag.Duration("ttl", 2*time.Second, "lock TTL")
		retry      = flag.Duration("retry", 100*time.Millisecond, "Lock poll interval")
		iterations = flag.Int("iterations", 3, "critical sections to run")
		hold       = flag.Duration("hold", 500*time.Millisecond, "time spent inside each critical section between reading and writing the counter")
		pause      = flag.Duration("pause", 0, "time to wait after each release before the next Lock, so other workers get their turn")
		deadline   = flag.Duration("deadline", time.Minute, "give up (exit 2) after this long")
		accessKey  = flag.String("access-key", "s3locktest", "static access key")
		secretKey  = flag.String("secret-key", "s3locktest", "static secret key")
		verbose    = flag.Bool("v", false, "log s3lock's debug output to stderr")
	)
	flag.Parse()
	if *endpoint == "" || *bucket == "" {
		fmt.Fprintln(os.Stderr, "lockworker: -endpoint and -bucket are required")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *deadline)
	defer cancel()
	client := s3.New(s3.Options{
		Region:                     "us-east-1",
		BaseEndpoint:               aws.String(*endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(*accessKey, *secretKey, ""),
		HTTPClient:                 &http.Client{Transport: &http.Transport{Proxy: nil}},
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
	opts := []s3lock.Option{s3lock.WithTTL(*ttl), s3lock.WithRetryInterval(*retry)}
	if *owner != "" {
		opts = append(opts, s3lock.WithOwner(*owner))
	}
	if *verbose {
		opts = append(opts, s3lock.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	}
	m, err := s3lock.New(client, *bucket, *key, opts...)
	if err != nil {
		fail(err)
	}
	w := &s3locktest.Counter{Client: client, Bucket: *bucket, Key: *counterKey}
	for range *iterations {
		say("WAITING")
		if err := m.Lock(ctx); err != nil {
			fail(fmt.Errorf("locking: %w", err))
		}
		token := m.Token()
		v, err := w.Get(ctx)
		if err != nil {
			fail(err)
		}
		say("ACQUIRED %d %d", token, v)
		time.Sleep(*hold)
		if err := w.Set(ctx, v+1); err != nil {
			fail(err)
		}
		say("COMMITTED %d %d", token, v+1)
		say("RELEASING %d", token)
		if err := m.Unlock(ctx); err != nil {
			fail(fmt.Errorf("unlocking: %w", err))
		}
		say("RELEASED %d", token)
		time.Sleep(*pause)
	}
	say("DONE")
}

// say writes one announcement line to stdout (unbuffered: one write each).
func say(format string, args ...any) {
	if _, err := fmt.Fprintf(os.Stdout, format+"\n", args...); err != nil {
		os.Exit(3)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "lockworker: %v\n", err)
	os.Exit(1)
}

package main

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestWorkerAgainstEmbeddedS3 runs the worker through the real AWS config
// chain (credentials from the environment) against the embedded server.
func TestWorkerAgainstEmbeddedS3(t *testing.T) {
	srv := s3locktest.New(t)
	awsEnv(t)
	err := run(context.Background(), srv.Bucket(), "locks/worker", srv.URL(), 3*time.Second, 50*time.Millisecond, 5*time.Second)
	if err != nil {
		t.Fatalf("run() = %v", err)
	}
}

// TestWorkerAgainstAWS runs against a real bucket when S3LOCK_TEST_BUCKET is
// set (with credentials in the environment); it is skipped otherwise.
func TestWorkerAgainstAWS(t *testing.T) {
	bucket := os.Getenv("S3LOCK_TEST_BUCKET")
	if bucket == "" {
		t.Skip("S3LOCK_TEST_BUCKET not set: skipping the real-AWS run")
	}
	err := run(context.Background(), bucket, "s3lock-test/example-worker", "", 10*time.Second, time.Second, 30*time.Second)
	if err != nil {
		t.Fatalf("run() = %v", err)
	}
}

// TestWorkerGivesUpWaiting: while someone else holds the lock, the worker
// gives up when its wait ends and says who holds it.
func TestWorkerGivesUpWaiting(t *testing.T) {
	srv := s3locktest.New(t)
	awsEnv(t)
	ctx := context.Background()
	holder, err := s3lock.New(srv.Client(), srv.Bucket(), "locks/worker", s3lock.WithOwner("nightly-on-host-a"))
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.TryLock(ctx); err != nil {
		t.Fatalf("holder TryLock() = %v", err)
	}
	defer holder.Unlock(ctx)
	err = run(ctx, srv.Bucket(), "locks/worker", srv.URL(), 3*time.Second, 50*time.Millisecond, 300*time.Millisecond)
	var locked *s3lock.LockedError
	if !errors.As(err, &locked) || locked.Owner != "nightly-on-host-a" || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("run() = %v; want a LockedError naming nightly-on-host-a that also matches DeadlineExceeded", err)
	}
	if !strings.Contains(err.Error(), "gave up waiting after 300ms") {
		t.Errorf("run() = %q; want it to say it gave up waiting", err)
	}
}

// TestWorkerGivesUpOnUnreachableS3: with nothing listening at the endpoint,
// the worker gives up when its wait ends and says S3 could not be reached.
func TestWorkerGivesUpOnUnreachableS3(t *testing.T) {
	awsEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	err = run(context.Background(), "bucket", "locks/worker", endpoint, 3*time.Second, 50*time.Millisecond, 500*time.Millisecond)
	if !errors.Is(err, s3lock.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) ||
		!strings.Contains(err.Error(), "S3 could not be reached") {
		t.Fatalf("run() = %v; want it to give up saying S3 could not be reached (ErrUnavailable and DeadlineExceeded)", err)
	}
}

// awsEnv points the AWS configuration chain at test credentials only.
func awsEnv(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
	t.Setenv("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
}

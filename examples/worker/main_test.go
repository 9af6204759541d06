package main

import (
	"context"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/s3lock/s3lock/s3locktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestWorkerAgainstEmbeddedS3 runs the worker through the real AWS config
// chain (credentials from the environment) against the embedded server.
func TestWorkerAgainstEmbeddedS3(t *testing.T) {
	srv := s3locktest.New(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
	t.Setenv("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
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

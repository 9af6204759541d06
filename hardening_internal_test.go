package s3lock

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock/internal/s3http"
	"github.com/s3lock/s3lock/s3locktest"
)

// renewalCounter is an s3.HTTPClient that counts conditional writes.
type renewalCounter struct {
	next   s3.HTTPClient
	writes atomic.Int64
}

func (c *renewalCounter) Do(r *http.Request) (*http.Response, error) {
	if s3http.IsConditionalWrite(r) {
		c.writes.Add(1)
	}
	return c.next.Do(r)
}

// TestFailedRenewalsKeepMemoryBounded (issue 8, item 10): a lease whose
// renewals fail for a long time (here, dozens of them behind a partition)
// leaves the Mutex remembering only a few unresolved writes: the record in
// S3 and the one renewal that may have replaced it, not one per failure.
// (The old code kept a nonce per failed renewal, trimmed to the last 16,
// which dropped the record actually in S3: see
// TestStrandedHoldAfterLongPartition.)
func TestFailedRenewalsKeepMemoryBounded(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	fa := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
	writes := &renewalCounter{}
	client := srv.FaultyClient(fa, func(o *s3.Options) {
		o.RetryMaxAttempts = 1
		writes.next = o.HTTPClient
		o.HTTPClient = writes
	})
	m, err := New(client, srv.Bucket(), "locks/bounded", WithOwner("m"),
		WithTTL(4*time.Second), WithAutoRenew(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("TryLock() = %v; want nil", err)
	}
	hold := m.Context()
	fa.Partition(time.Hour)
	before := writes.writes.Load()
	select {
	case <-hold.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the partitioned hold's context not cancelled within 30s")
	}
	failed := writes.writes.Load() - before
	if failed < 40 {
		t.Fatalf("%d renewal writes failed during the partition; want at least 40", failed)
	}
	if err := m.Unlock(ctx); err == nil {
		t.Fatal("Unlock() while partitioned = nil; want an error")
	}
	m.lm.mu.Lock()
	n := len(m.lm.orphans)
	m.lm.mu.Unlock()
	// The record in S3, and the renewal over it whose fate is unknown.
	if n > 2 {
		t.Errorf("after %d failed renewals and a failed release the Mutex remembers %d unresolved writes; want at most 2", failed, n)
	}
	fa.Heal()
	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("TryLock() after the partition = %v; want nil (its own stranded hold)", err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Errorf("Unlock() = %v; want nil", err)
	}
}

package s3lock

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/s3lock/s3lock/internal/s3http"
	"github.com/s3lock/s3lock/s3locktest"
)

// TestFailedRenewalsKeepMemoryBounded: a lease whose renewals fail for a
// long time (here, dozens of them behind a partition) leaves the Mutex
// remembering only a few unresolved writes: the record in S3 and the one
// renewal that may have replaced it, not one per failure. The record in
// S3 is among them: the Mutex takes its hold back after the partition
// (TestStrandedHoldAfterLongPartition checks the same from outside).
func TestFailedRenewalsKeepMemoryBounded(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	fa := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
	writes := &s3http.WriteCounter{}
	client := srv.FaultyClient(fa, func(o *s3.Options) { o.RetryMaxAttempts = 1 }, writes.Install)
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
	before := writes.Writes()
	select {
	case <-hold.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the partitioned hold's context not cancelled within 30s")
	}
	failed := writes.Writes() - before
	if failed < 40 {
		t.Fatalf("%d renewal writes failed during the partition; want at least 40", failed)
	}
	if err := m.Unlock(ctx); err == nil {
		t.Fatal("Unlock() while partitioned = nil; want an error")
	}
	n := len(m.lm.orphans.snapshot())
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

// TestTakeBackDoesNotReuseRenewalNonce: a take-back of our own stranded
// record must not reuse the nonce of an unresolved renewal. Here the
// delayed renewal lands just before the take-back: had the take-back
// borrowed its nonce, the read-back would find "our" nonce and the Mutex
// believe it holds generation g+1 while S3 says g, and after expiry
// another Mutex would be granted g+1 too: one fencing token, two holds.
// The test checks that Token() is the generation S3 has.
func TestTakeBackDoesNotReuseRenewalNonce(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	key := "locks/take-back-renewal-nonce"
	sc := &scripted{next: srv.Client()}
	m, err := New(sc, srv.Bucket(), key, WithTTL(time.Second), WithExpiryMargin(100*time.Millisecond), WithReleaseTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	g := m.Token()
	l := m.hold

	// 1. A renewal whose request is held by the network and whose caller
	// times out: pending = {p, E}.
	var held *s3.PutObjectInput
	var heldNonce string
	sc.mu.Lock()
	sc.onPut = func(ctx context.Context, in *s3.PutObjectInput, body []byte) (bool, *s3.PutObjectOutput, error) {
		if held == nil && strings.Contains(string(body), `"held"`) {
			held = copyPut(in, body)
			r, _ := decodeRecord(body)
			heldNonce = r.Nonce
			<-ctx.Done()
			return true, nil, ctx.Err()
		}
		return false, nil, nil
	}
	sc.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err = l.renew(rctx)
	cancel()
	t.Logf("renew: %v; pending %+v", err, l.pending)

	// 2. S3 unreachable during Unlock: the release fails, the hold is
	// orphaned (its record and the pending renewal).
	sc.mu.Lock()
	sc.failGets = true
	sc.onPut = func(ctx context.Context, in *s3.PutObjectInput, body []byte) (bool, *s3.PutObjectOutput, error) {
		return true, nil, &smithy.GenericAPIError{Code: "InternalError", Message: "injected"}
	}
	sc.mu.Unlock()
	t.Logf("unlock: %v", m.Unlock(ctx))
	t.Logf("orphans: %+v", m.lm.orphans.snapshot())

	// 3. S3 back. The take-back claim is written with the renewal's nonce;
	// the delayed renewal reaches S3 just before it.
	var claimNonce string
	sc.mu.Lock()
	sc.failGets = false
	sc.onPut = func(ctx context.Context, in *s3.PutObjectInput, body []byte) (bool, *s3.PutObjectOutput, error) {
		r, _ := decodeRecord(body)
		if r != nil && r.held() && r.Generation == g+1 {
			claimNonce = r.Nonce
			if held != nil {
				_, err := sc.next.PutObject(ctx, held)
				t.Logf("delayed renewal lands: %v", err)
				held = nil
			}
		}
		return false, nil, nil
	}
	sc.mu.Unlock()
	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("take-back TryLock: %v", err)
	}
	t.Logf("renewal nonce %s, take-back nonce %s", heldNonce, claimNonce)
	st, err := Inspect(ctx, srv.Client(), srv.Bucket(), key)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Token() = %d, S3 record generation = %d", m.Token(), st.Generation)
	if m.Token() != st.Generation {
		// Show the consequence: after expiry another Mutex gets the same token.
		other, _ := New(srv.Client(), srv.Bucket(), key, WithTTL(time.Second), WithExpiryMargin(100*time.Millisecond))
		tok := m.Token()
		deadline := time.Now().Add(5 * time.Second)
		t0 := time.Now()
		for {
			if err := other.TryLock(ctx); err == nil {
				t.Logf("other got it after %v; m's SafeUntil in %v", time.Since(t0), time.Until(m.SafeUntil()))
				break
			} else if !errors.Is(err, ErrLocked) || time.Now().After(deadline) {
				t.Fatalf("other.TryLock: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("two holds with fencing token %d: this Mutex's take-back (Token %d, record in S3 at %d) and the next holder's (Token %d)", tok, tok, st.Generation, other.Token())
	}
}

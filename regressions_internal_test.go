package s3lock

// Regression tests for what an adversarial review of the hardening and
// fairness changes found: a take-back that reused a pending renewal's
// nonce (a duplicated fencing token), a renewal that gave up after two
// reservations, a salvaged record whose mistyped ttl_ms hid its
// generation, and S3 failures that did not match ErrUnavailable.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/s3lock/s3lock/s3locktest"
)

type failingBody struct{}

func (failingBody) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }
func (failingBody) Close() error             { return nil }

type bodyFails struct{ S3API }

func (c bodyFails) GetObject(ctx context.Context, in *s3.GetObjectInput, o ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	out, err := c.S3API.GetObject(ctx, in, o...)
	if err == nil {
		out.Body.Close()
		out.Body = failingBody{}
	}
	return out, err
}

// TestBodyReadFailureIsUnavailable: a connection that drops while the
// lock object's body is read is an S3 failure like any other, but the
// error Lock returns (ctx ending, or WithFailureTimeout) does not match
// ErrUnavailable as Lock's doc promises.
func TestBodyReadFailureIsUnavailable(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	key := "locks/review-body"
	holder, _ := New(srv.Client(), srv.Bucket(), key)
	if err := holder.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	defer holder.Unlock(ctx)
	m, err := New(bodyFails{srv.Client()}, srv.Bucket(), key, WithRetryInterval(20*time.Millisecond), WithFailureTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	err = m.Lock(ctx)
	t.Logf("Lock() = %v", err)
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Lock() after WithFailureTimeout = %v; want it to match ErrUnavailable", err)
	}
}

// scripted wraps an S3API and lets a test intercept PUTs by body content.
type scripted struct {
	next S3API
	mu   sync.Mutex
	// onPut, when set, is called before a PUT is forwarded; it may return
	// (handled=true, out, err) to answer it without forwarding.
	onPut    func(ctx context.Context, in *s3.PutObjectInput, body []byte) (bool, *s3.PutObjectOutput, error)
	failGets bool
}

func (c *scripted) GetObject(ctx context.Context, in *s3.GetObjectInput, o ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	c.mu.Lock()
	fail := c.failGets
	c.mu.Unlock()
	if fail {
		return nil, &smithy.GenericAPIError{Code: "InternalError", Message: "injected"}
	}
	return c.next.GetObject(ctx, in, o...)
}

func (c *scripted) PutObject(ctx context.Context, in *s3.PutObjectInput, o ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	body, _ := io.ReadAll(in.Body)
	in.Body = bytes.NewReader(body)
	c.mu.Lock()
	f := c.onPut
	c.mu.Unlock()
	if f != nil {
		if handled, out, err := f(ctx, in, body); handled {
			return out, err
		}
	}
	in.Body = bytes.NewReader(body)
	return c.next.PutObject(ctx, in, o...)
}

func copyPut(in *s3.PutObjectInput, body []byte) *s3.PutObjectInput {
	c := *in
	c.Body = bytes.NewReader(body)
	return &c
}

// TestTakeBackDoesNotReuseRenewalNonce: a take-back of our own stranded
// record reuses the nonce of an unresolved renewal (orphanNonce treats the
// renewal orphan, landed=false, as a lendable claim nonce). If the delayed
// renewal lands instead of the take-back, the read-back finds "our" nonce
// and the Mutex believes it holds generation g+1 while S3 says g; after
// expiry another Mutex is granted g+1 too: one fencing token, two holds.
func TestTakeBackDoesNotReuseRenewalNonce(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	key := "locks/review-renewal-nonce"
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
	t.Logf("orphans: %+v", m.lm.orphans)

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

// TestRenewalOutlastsSeveralReservations: two waiters reserve in turn (a younger,
// then an older one taking the reservation over) while a renewal is under
// way. renew() makes two writes, both meet a 412, and it returns nil
// although the lease was not extended.
func TestRenewalOutlastsSeveralReservations(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	key := "locks/review-renew-two-reservations"
	sc := &scripted{next: srv.Client()}
	m, err := New(sc, srv.Bucket(), key, WithTTL(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	l := m.hold
	waiter := &leaseManager{client: srv.Client(), bucket: srv.Bucket(), key: key, ttl: time.Second, margin: time.Second, clock: systemClock{}, log: m.lm.log}
	n := 0
	sc.onPut = func(ctx context.Context, in *s3.PutObjectInput, body []byte) (bool, *s3.PutObjectOutput, error) {
		if aws.ToString(in.IfMatch) == "" || n >= 2 {
			return false, nil, nil
		}
		n++
		// A waiter reserves just before the holder's write arrives.
		s, err := waiter.read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		w := waiter.newWaiter(time.Second)
		w.arrived, w.arrival = true, 0 // old enough to reserve and take over
		waiter.reserve(ctx, s, w)
		return false, nil, nil
	}
	before := l.safeUntil()
	time.Sleep(20 * time.Millisecond)
	err = l.renew(ctx)
	after := l.safeUntil()
	t.Logf("renew() = %v; SafeUntil moved by %v; reservations %d", err, after.Sub(before), n)
	if err == nil && !after.After(before) {
		t.Fatalf("renew() returned nil but the lease was not extended")
	}
}

// TestSalvageKeepsReadableGeneration: docs/record-format.md rule 4
// says a record whose generation can be read as a number continues the
// generations; salvageRecord drops everything when any other field it
// reads (ttl_ms) has another JSON type, as a newer schema that changed
// ttl_ms's unit or type would write.
func TestSalvageKeepsReadableGeneration(t *testing.T) {
	for _, body := range []string{
		`{"s3lock":2,"state":"held","nonce":"x","generation":7,"ttl_ms":"60s"}`,
		`{"s3lock":2,"state":"held","nonce":"x","generation":7,"ttl_ms":60000.5}`,
		`{"s3lock":2,"state":"held","nonce":"x","generation":7,"ttl_ms":null}`,
	} {
		sv := salvageRecord([]byte(body))
		t.Logf("%s -> %+v", body, sv)
		if !sv.hasGen || sv.generation != 7 {
			t.Errorf("salvageRecord(%s) = %+v; want generation 7 kept", body, sv)
		}
	}
}

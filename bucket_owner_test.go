package s3lock_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

const (
	ownerAccount = "111122223333"
	otherAccount = "444455556666"
)

// ownerRecorder records the x-amz-expected-bucket-owner header of every
// request a client sends.
type ownerRecorder struct {
	next http.RoundTripper

	mu   sync.Mutex // protects seen
	seen []string   // "METHOD header", one per request
}

func (r *ownerRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.seen = append(r.seen, req.Method+" "+req.Header.Get("X-Amz-Expected-Bucket-Owner"))
	r.mu.Unlock()
	return r.next.RoundTrip(req)
}

// without returns the requests that did not carry want.
func (r *ownerRecorder) without(want string) (n int, bad []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.seen {
		if _, h, _ := strings.Cut(s, " "); h != want {
			bad = append(bad, s)
		}
	}
	return len(r.seen), bad
}

func recordingClient(srv *s3locktest.Server) (*s3.Client, *ownerRecorder) {
	rec := &ownerRecorder{next: srv.HTTPClient().Transport}
	return srv.Client(func(o *s3.Options) { o.HTTPClient = &http.Client{Transport: rec} }), rec
}

// TestExpectedBucketOwner runs against a server that refuses requests
// expecting another owner, as AWS does.
func TestExpectedBucketOwner(t *testing.T) {
	ctx := context.Background()
	t.Run("right owner: every request carries it", func(t *testing.T) {
		srv := s3locktest.New(t, s3locktest.WithBucketOwner(ownerAccount))
		c, rec := recordingClient(srv)
		m := newMutex(t, c, srv.Bucket(), "locks/a", s3lock.WithExpectedBucketOwner(ownerAccount), s3lock.WithProbe())
		if err := m.Lock(ctx); err != nil {
			t.Fatalf("Lock() = %v", err)
		}
		if err := m.Unlock(ctx); err != nil {
			t.Fatalf("Unlock() = %v", err)
		}
		if n, bad := rec.without(ownerAccount); n < 100 || len(bad) > 0 {
			t.Errorf("%d requests (the probe's and the lock's), %d without the expected owner: %v; want all with it", n, len(bad), bad)
		}
	})
	t.Run("wrong owner: ErrAccessDenied naming it", func(t *testing.T) {
		srv := s3locktest.New(t, s3locktest.WithBucketOwner(ownerAccount))
		m := newMutex(t, srv.Client(), srv.Bucket(), "locks/a", s3lock.WithExpectedBucketOwner(otherAccount))
		err := m.TryLock(ctx)
		if !errors.Is(err, s3lock.ErrAccessDenied) || errors.Is(err, s3lock.ErrLocked) {
			t.Fatalf("TryLock() = %v; want ErrAccessDenied (not ErrLocked)", err)
		}
		if msg := err.Error(); !strings.Contains(msg, otherAccount) || !strings.Contains(msg, "owned by another account") {
			t.Errorf("TryLock() = %q; want it to name the expected owner %s and say why", msg, otherAccount)
		}
		if err := m.Lock(ctx); !errors.Is(err, s3lock.ErrAccessDenied) {
			t.Errorf("Lock() = %v; want ErrAccessDenied at once", err)
		}
		if st, err := s3lock.Inspect(ctx, srv.Client(), srv.Bucket(), "locks/a"); err != nil || st.Exists {
			t.Errorf("Inspect() without the header = %+v, %v; want no lock object written", st, err)
		}
	})
	t.Run("no expected owner: the header is not sent", func(t *testing.T) {
		srv := s3locktest.New(t, s3locktest.WithBucketOwner(ownerAccount))
		c, rec := recordingClient(srv)
		m := newMutex(t, c, srv.Bucket(), "locks/a")
		if err := m.TryLock(ctx); err != nil {
			t.Fatalf("TryLock() = %v", err)
		}
		if err := m.Unlock(ctx); err != nil {
			t.Fatalf("Unlock() = %v", err)
		}
		if n, bad := rec.without(""); len(bad) > 0 {
			t.Errorf("%d requests, with an expected owner: %v; want none", n, bad)
		}
	})
	t.Run("Probe, Inspect, ForceUnlock, CheckVersioning", func(t *testing.T) {
		srv := s3locktest.New(t, s3locktest.WithBucketOwner(ownerAccount))
		m := newMutex(t, srv.Client(), srv.Bucket(), "locks/b")
		if err := m.TryLock(ctx); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			owner   string
			wantErr error
		}{{ownerAccount, nil}, {otherAccount, s3lock.ErrAccessDenied}} {
			c, rec := recordingClient(srv)
			pinned, err := s3lock.ExpectBucketOwner(c, tc.owner)
			if err != nil {
				t.Fatalf("ExpectBucketOwner() = %v", err)
			}
			check := func(op string, err error) {
				t.Helper()
				if !errors.Is(err, tc.wantErr) || (tc.wantErr != nil && !strings.Contains(err.Error(), tc.owner)) {
					t.Errorf("owner %s: %s = %v; want %v naming the owner", tc.owner, op, err, tc.wantErr)
				}
			}
			check("Probe()", s3lock.Probe(ctx, pinned, srv.Bucket(), "locks/"))
			st, err := s3lock.Inspect(ctx, pinned, srv.Bucket(), "locks/b")
			check("Inspect()", err)
			if err == nil {
				_, err = s3lock.ForceUnlock(ctx, pinned, srv.Bucket(), "locks/b", st.ETag)
				check("ForceUnlock()", err)
			}
			r, err := s3lock.CheckVersioning(ctx, pinned, srv.Bucket(), "locks/")
			switch {
			case err != nil:
				t.Errorf("owner %s: CheckVersioning() = %v; want a report", tc.owner, err)
			case (r.Skipped != nil) != (tc.wantErr != nil):
				t.Errorf("owner %s: CheckVersioning() skipped = %v; want skipped only for the wrong owner", tc.owner, r.Skipped)
			}
			if n, bad := rec.without(tc.owner); len(bad) > 0 {
				t.Errorf("owner %s: %d requests, %d without the header: %v", tc.owner, n, len(bad), bad)
			}
		}
		if err := m.Unlock(ctx); !errors.Is(err, s3lock.ErrLeaseLost) {
			t.Errorf("Unlock() after ForceUnlock with the right owner = %v; want ErrLeaseLost", err)
		}
	})
	t.Run("invalid", func(t *testing.T) {
		srv := s3locktest.New(t)
		for _, id := range []string{"", "has space", strings.Repeat("1", 65), "ünïcode"} {
			if _, err := s3lock.New(srv.Client(), srv.Bucket(), "k", s3lock.WithExpectedBucketOwner(id)); !errors.Is(err, s3lock.ErrInvalidArgument) {
				t.Errorf("New(WithExpectedBucketOwner(%q)) = %v; want ErrInvalidArgument", id, err)
			}
			if _, err := s3lock.ExpectBucketOwner(srv.Client(), id); !errors.Is(err, s3lock.ErrInvalidArgument) {
				t.Errorf("ExpectBucketOwner(%q) = %v; want ErrInvalidArgument", id, err)
			}
		}
		if _, err := s3lock.ExpectBucketOwner(nil, ownerAccount); !errors.Is(err, s3lock.ErrInvalidArgument) {
			t.Errorf("ExpectBucketOwner(nil) = %v; want ErrInvalidArgument", err)
		}
	})
}

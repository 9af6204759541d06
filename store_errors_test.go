package s3lock_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/internal/s3http"
	"github.com/s3lock/s3lock/s3locktest"
)

// frontStore puts a proxy in front of srv that answers every request that
// refuse() picks with an S3 XML error, and passes the rest through. It
// returns a client for the proxy.
func frontStore(t *testing.T, srv *s3locktest.Server, status int, code string, refuse func(*http.Request) bool) *s3.Client {
	t.Helper()
	front := s3http.Proxy(t, srv.URL(), func(w http.ResponseWriter, r *http.Request) bool {
		if refuse(r) {
			s3http.WriteError(w, status, code, "refused by test store")
			return true
		}
		return false
	})
	return srv.Client(func(o *s3.Options) { o.BaseEndpoint = aws.String(front) })
}

func TestStoreErrors(t *testing.T) {
	all := func(*http.Request) bool { return true }
	for _, tc := range []struct {
		name   string
		status int
		code   string
		refuse func(*http.Request) bool
		want   error
	}{
		{"conditional writes not implemented", http.StatusNotImplemented, "NotImplemented", s3http.IsConditionalWrite, s3lock.ErrConditionalWritesUnsupported},
		{"access denied", http.StatusForbidden, "AccessDenied", all, s3lock.ErrAccessDenied},
		{"access denied on write only", http.StatusForbidden, "AccessDenied", s3http.IsConditionalWrite, s3lock.ErrAccessDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := s3locktest.New(t)
			client := frontStore(t, srv, tc.status, tc.code, tc.refuse)
			m := newMutex(t, client, srv.Bucket(), "locks/store")
			err := m.TryLock(context.Background())
			if !errors.Is(err, tc.want) || errors.Is(err, s3lock.ErrLocked) {
				t.Fatalf("TryLock() = %v; want %v and not ErrLocked", err, tc.want)
			}
			// The SDK error stays reachable.
			var coded interface{ ErrorCode() string }
			if !errors.As(err, &coded) || coded.ErrorCode() != tc.code {
				t.Errorf("TryLock() error does not wrap the SDK error with code %s: %v", tc.code, err)
			}
			// Lock does not retry what retrying cannot fix.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := m.Lock(ctx); !errors.Is(err, tc.want) {
				t.Errorf("Lock() = %v; want %v at once", err, tc.want)
			}
			if m.Token() != 0 {
				t.Errorf("Token() = %d after a refused acquire; want 0", m.Token())
			}
		})
	}
}

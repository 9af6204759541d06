package s3locktest

import (
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/s3lock/s3lock/internal/s3http"
)

// WithBucketOwner makes the server behave as if every bucket belonged to
// the AWS account accountID: a request whose x-amz-expected-bucket-owner
// header names another account is refused with 403 AccessDenied, as AWS
// does. Requests without the header are served.
// The default ignores the header, as gofakes3 does.
func WithBucketOwner(accountID string) Option {
	return func(c *config) { c.bucketOwner = accountID }
}

// ownerCheck refuses requests that expect another bucket owner.
func ownerCheck(owner string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header.Get("X-Amz-Expected-Bucket-Owner"); got != "" && got != owner {
			s3http.WriteError(w, http.StatusForbidden, "AccessDenied", "Access Denied")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// lifecycle serves the bucket lifecycle configuration API (PUT, GET and
// DELETE on /bucket?lifecycle), which gofakes3 lacks (it would answer a GET
// with an object listing), storing each bucket's configuration document as
// it was sent.
type lifecycle struct {
	next http.Handler

	mu    sync.Mutex // protects confs
	confs map[string][]byte
}

func newLifecycle(next http.Handler) *lifecycle {
	return &lifecycle{next: next, confs: map[string][]byte{}}
}

func (l *lifecycle) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if _, ok := r.URL.Query()["lifecycle"]; !ok || bucket == "" || key != "" {
		l.next.ServeHTTP(w, r)
		return
	}
	switch r.Method {
	case http.MethodPut:
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			s3http.WriteError(w, http.StatusBadRequest, "IncompleteBody", err.Error())
			return
		}
		l.mu.Lock()
		l.confs[bucket] = body
		l.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	case http.MethodGet:
		l.mu.Lock()
		body, ok := l.confs[bucket]
		l.mu.Unlock()
		if !ok {
			s3http.WriteError(w, http.StatusNotFound, "NoSuchLifecycleConfiguration", "The lifecycle configuration does not exist")
			return
		}
		w.Header().Set("Content-Type", "application/xml")
		_, _ = w.Write(body)
	case http.MethodDelete:
		l.mu.Lock()
		delete(l.confs, bucket)
		l.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		s3http.WriteError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "The specified method is not allowed against this resource.")
	}
}

package s3locktest

import (
	"bytes"
	"io"
	"net/http"
	"sort"
	"sync"

	"github.com/s3lock/s3lock/internal/s3http"
)

// Stats counts requests by HTTP method and status. A Server counts every
// request it answers in its own Stats, at the HTTP layer, independently of
// any client-side counter; [Stats.Handler] and [Stats.Transport] count
// other traffic the same way. The zero value is ready to use, and a Stats
// is safe for concurrent use.
type Stats struct {
	mu     sync.Mutex // protects counts
	counts map[Request]int64
}

// Request is one kind of request: an HTTP method and the status answered.
type Request struct {
	Method string
	Status int
}

func (s *Stats) record(method string, status int) {
	s.mu.Lock()
	if s.counts == nil {
		s.counts = map[Request]int64{}
	}
	s.counts[Request{method, status}]++
	s.mu.Unlock()
}

// Handler returns a handler that serves each request with next and then
// counts it, with the status next answered (200 when it set none).
func (s *Stats) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := s3http.NewStatusRecorder(w)
		next.ServeHTTP(rec, r)
		s.record(r.Method, rec.Status)
	})
}

// Transport returns a RoundTripper that sends each request with next and
// counts it, on the client side, with the status of the response (0 when
// there was none: a network error).
func (s *Stats) Transport(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(r)
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		s.record(r.Method, status)
		return resp, err
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Snapshot returns a copy of the counters.
func (s *Stats) Snapshot() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := make(map[Request]int64, len(s.counts))
	for k, v := range s.counts {
		c[k] = v
	}
	return Counts(c)
}

// Reset zeroes the counters.
func (s *Stats) Reset() {
	s.mu.Lock()
	clear(s.counts)
	s.mu.Unlock()
}

// Counts is a snapshot of a Server's request counters.
type Counts map[Request]int64

// Method returns how many requests used method (any status).
func (c Counts) Method(method string) int64 {
	var n int64
	for k, v := range c {
		if k.Method == method {
			n += v
		}
	}
	return n
}

// Status returns how many requests were answered with status.
func (c Counts) Status(status int) int64 {
	var n int64
	for k, v := range c {
		if k.Status == status {
			n += v
		}
	}
	return n
}

// Total returns the number of requests.
func (c Counts) Total() int64 {
	var n int64
	for _, v := range c {
		n += v
	}
	return n
}

// Sub returns c minus base, for counting the requests of one phase.
func (c Counts) Sub(base Counts) Counts {
	d := Counts{}
	for k, v := range c {
		if v -= base[k]; v != 0 {
			d[k] = v
		}
	}
	return d
}

// Methods returns the methods present, sorted.
func (c Counts) Methods() []string {
	seen := map[string]bool{}
	for k := range c {
		seen[k.Method] = true
	}
	var ms []string
	for m := range seen {
		ms = append(ms, m)
	}
	sort.Strings(ms)
	return ms
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

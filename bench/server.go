package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/s3lock/s3lock/internal/s3http"
	"github.com/s3lock/s3lock/s3locktest"
)

// lockPrefix is where the bench keeps lock objects; every other key is
// data (the counters the critical sections update).
const lockPrefix = "locks/"

// benchBucket is the embedded server's bucket.
const benchBucket = "s3lock-bench"

// server is the embedded S3 the bench runs against by default: an
// s3locktest.Server (gofakes3 in memory, a fixed latency added to every
// request) with a middleware that counts the requests to lock objects, by
// method and status, and watches each lock's hand-offs.
//
// Requests to one lock key are handled one at a time (after the added
// latency), which S3 guarantees anyway for conditional writes to one key;
// it lets the middleware know the lock's state at the instant each write
// is decided, to count conditional writes that failed while it was free.
type server struct {
	*s3locktest.Server
	locks s3locktest.Stats // requests to lock objects

	mu   sync.Mutex // protects keys
	keys map[string]*lockKey
}

// lockKey is what the server knows of one lock object.
type lockKey struct {
	mu sync.Mutex // serializes the requests to this key, protects the rest
	// free is true while the object holds a free record (state "free").
	free bool
	// releasedAt is when the last release was written, firstFreeGET when
	// a GET first found it free afterwards, and freeGETs how many did.
	releasedAt   time.Time
	firstFreeGET time.Time
	freeGETs     int64
	handoffs     handoffs
}

// handoffs sums what the server saw of hand-offs: conditional writes
// answered 412 or 409 while the lock was free; acquires that followed a
// release, the time from each release to that acquire and to the first
// GET that found the lock free, and the GETs that found it free.
type handoffs struct {
	failedWhileFree int64
	n               int64
	time, detect    time.Duration
	freeGETs        int64
}

func (h handoffs) sub(o handoffs) handoffs {
	return handoffs{h.failedWhileFree - o.failedWhileFree, h.n - o.n, h.time - o.time, h.detect - o.detect, h.freeGETs - o.freeGETs}
}

func (h *handoffs) add(o handoffs) {
	h.failedWhileFree += o.failedWhileFree
	h.n += o.n
	h.time += o.time
	h.detect += o.detect
	h.freeGETs += o.freeGETs
}

func startServer() (*server, error) {
	s := &server{keys: map[string]*lockKey{}}
	srv, err := s3locktest.Start(s3locktest.WithBucket(benchBucket), s3locktest.WithMiddleware(s.middleware))
	if err != nil {
		return nil, err
	}
	s.Server = srv
	return s, nil
}

// middleware counts and watches the requests to lock objects; the others
// pass through.
func (s *server) middleware(next http.Handler) http.Handler {
	counted := s.locks.Handler(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, ok := objectKey(r.URL.Path, benchBucket)
		if !ok || !strings.HasPrefix(key, lockPrefix) {
			next.ServeHTTP(w, r)
			return
		}
		var body []byte
		if r.Method == http.MethodPut {
			var err error
			if body, err = io.ReadAll(r.Body); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		lk := s.lockKey(key)
		lk.mu.Lock()
		defer lk.mu.Unlock()
		sw := s3http.NewStatusRecorder(w)
		counted.ServeHTTP(sw, r)
		lk.observe(r.Method, sw.Status, body)
	})
}

// observe updates what is known of the lock after a request answered with
// status. lk.mu is held.
func (lk *lockKey) observe(method string, status int, body []byte) {
	switch {
	case method == http.MethodGet && status == http.StatusOK && lk.free:
		if lk.firstFreeGET.IsZero() {
			lk.firstFreeGET = time.Now()
		}
		lk.freeGETs++
	case method == http.MethodPut && status == http.StatusOK:
		var rec struct {
			State string `json:"state"`
		}
		_ = json.Unmarshal(body, &rec)
		now := time.Now()
		if rec.State == "free" {
			lk.releasedAt, lk.firstFreeGET, lk.freeGETs = now, time.Time{}, 0
		} else if lk.free && !lk.releasedAt.IsZero() {
			lk.handoffs.n++
			lk.handoffs.time += now.Sub(lk.releasedAt)
			if !lk.firstFreeGET.IsZero() {
				lk.handoffs.detect += lk.firstFreeGET.Sub(lk.releasedAt)
			}
			lk.handoffs.freeGETs += lk.freeGETs
		}
		lk.free = rec.State == "free"
	case method == http.MethodPut && (status == http.StatusPreconditionFailed || status == http.StatusConflict):
		if lk.free {
			lk.handoffs.failedWhileFree++
		}
	}
}

func (s *server) lockKey(key string) *lockKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	lk := s.keys[key]
	if lk == nil {
		lk = &lockKey{}
		s.keys[key] = lk
	}
	return lk
}

// snapshot returns the server's counters.
func (s *server) snapshot() stats {
	st := stats{counts: s.locks.Snapshot()}
	s.mu.Lock()
	keys := make([]*lockKey, 0, len(s.keys))
	for _, lk := range s.keys {
		keys = append(keys, lk)
	}
	s.mu.Unlock()
	for _, lk := range keys {
		lk.mu.Lock()
		st.handoffs.add(lk.handoffs)
		lk.mu.Unlock()
	}
	return st
}

// stats are the lock-object counters at one instant: requests by method
// and status, and hand-offs (embedded server only).
type stats struct {
	counts   s3locktest.Counts
	handoffs handoffs
}

func (s stats) sub(base stats) stats {
	return stats{counts: s.counts.Sub(base.counts), handoffs: s.handoffs.sub(base.handoffs)}
}

// objectKey returns the key of a path-style request for bucket, and false
// for other buckets and bucket-level requests.
func objectKey(path, bucket string) (string, bool) {
	key, ok := strings.CutPrefix(strings.TrimPrefix(path, "/"), bucket+"/")
	return key, ok && key != ""
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// lockPrefix is where the bench keeps lock objects; every other key is
// data (the counters the critical sections update).
const lockPrefix = "locks/"

// server is the embedded S3 the bench runs against by default: gofakes3
// with its in-memory backend (the same as s3locktest) behind a handler that
// adds a fixed latency to every request and counts every request at the
// HTTP layer, by key class (lock or data), method and status.
//
// Requests to one lock key are handled one at a time (after the added
// latency), which S3 guarantees anyway for conditional writes to one key;
// it lets the handler know the lock's state at the instant each write is
// decided, to count conditional writes that failed while the lock was free.
type server struct {
	http    *http.Server
	ln      net.Listener
	url     string
	bucket  string
	faker   http.Handler
	latency atomic.Int64 // time.Duration
	done    chan struct{}

	mu     sync.Mutex // protects counts, keys
	counts map[reqKind]int64
	keys   map[string]*lockKey
}

// reqKind is one kind of request the server answered.
type reqKind struct {
	Class  string // "lock" or "data"
	Method string
	Status int
}

// lockKey is what the server knows of one lock object.
type lockKey struct {
	mu sync.Mutex // serializes the requests to this key
	// free is true while the object holds a free record (state "free").
	free bool
	// failedWhileFree counts conditional writes answered 412 or 409 while
	// the object held a free record.
	failedWhileFree int64
	// handoff measures hand-offs: the time from a release to the next
	// acquire, and from a release to the first GET that found it free.
	releasedAt    time.Time
	firstFreeGET  time.Time
	freeGETs      int64
	handoffs      int64
	handoffSum    time.Duration
	detectSum     time.Duration
	freeGETsTotal int64
}

func startServer(bucket string, latency time.Duration) (*server, error) {
	backend := s3mem.New()
	if err := backend.CreateBucket(bucket); err != nil {
		return nil, fmt.Errorf("creating bucket %q: %w", bucket, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &server{
		ln:     ln,
		url:    "http://" + ln.Addr().String(),
		bucket: bucket,
		faker:  gofakes3.New(backend, gofakes3.WithTimeSkewLimit(0)).Server(),
		done:   make(chan struct{}),
		counts: map[reqKind]int64{},
		keys:   map[string]*lockKey{},
	}
	s.latency.Store(int64(latency))
	s.http = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.done)
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Println("s3lock-bench: server:", err)
		}
	}()
	return s, nil
}

func (s *server) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.http.Shutdown(ctx)
	<-s.done
}

func (s *server) setLatency(d time.Duration) { s.latency.Store(int64(d)) }

// ServeHTTP serves one path-style S3 request.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if d := time.Duration(s.latency.Load()); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	key := objectKey(r.URL.Path, s.bucket)
	class := "data"
	var lk *lockKey
	var body []byte
	if strings.HasPrefix(key, lockPrefix) {
		class = "lock"
		lk = s.lockKey(key)
		if r.Method == http.MethodPut {
			var err error
			if body, err = io.ReadAll(r.Body); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		lk.mu.Lock()
		defer lk.mu.Unlock()
	}
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	s.faker.ServeHTTP(rec, r)
	if lk != nil && r.Method == http.MethodGet && lk.free && rec.status == http.StatusOK {
		if lk.firstFreeGET.IsZero() {
			lk.firstFreeGET = time.Now()
		}
		lk.freeGETs++
	}
	if lk != nil && r.Method == http.MethodPut {
		switch {
		case rec.status == http.StatusOK:
			var state struct {
				State string `json:"state"`
			}
			_ = json.Unmarshal(body, &state)
			now := time.Now()
			if state.State == "free" {
				lk.releasedAt, lk.firstFreeGET, lk.freeGETs = now, time.Time{}, 0
			} else if lk.free && !lk.releasedAt.IsZero() {
				lk.handoffs++
				lk.handoffSum += now.Sub(lk.releasedAt)
				if !lk.firstFreeGET.IsZero() {
					lk.detectSum += lk.firstFreeGET.Sub(lk.releasedAt)
				}
				lk.freeGETsTotal += lk.freeGETs
			}
			lk.free = state.State == "free"
		case rec.status == http.StatusPreconditionFailed || rec.status == http.StatusConflict:
			if lk.free {
				lk.failedWhileFree++
			}
		}
	}
	s.mu.Lock()
	s.counts[reqKind{class, r.Method, rec.status}]++
	s.mu.Unlock()
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

// objectKey returns the key of a path-style request for bucket ("" for
// bucket-level requests).
func objectKey(path, bucket string) string {
	p := strings.TrimPrefix(path, "/")
	if !strings.HasPrefix(p, bucket+"/") {
		return ""
	}
	return strings.TrimPrefix(p, bucket+"/")
}

// stats are the server's counters at one instant.
type stats struct {
	counts counts
	// failedWhileFree counts conditional lock writes answered 412 or 409
	// while the lock object held a free record.
	failedWhileFree int64
	// handoffs counts acquires that followed a release; handoffTime sums
	// the time from each release to that acquire (both as decided by the
	// server), detectTime the time from the release to the first GET that
	// found the lock free, and freeGETs the GETs that found it free.
	handoffs    int64
	handoffTime time.Duration
	detectTime  time.Duration
	freeGETs    int64
}

func (s stats) sub(base stats) stats {
	return stats{
		counts:          s.counts.sub(base.counts),
		failedWhileFree: s.failedWhileFree - base.failedWhileFree,
		handoffs:        s.handoffs - base.handoffs,
		handoffTime:     s.handoffTime - base.handoffTime,
		detectTime:      s.detectTime - base.detectTime,
		freeGETs:        s.freeGETs - base.freeGETs,
	}
}

// snapshot returns the server's counters.
func (s *server) snapshot() stats {
	s.mu.Lock()
	st := stats{counts: make(counts, len(s.counts))}
	for k, v := range s.counts {
		st.counts[k] = v
	}
	keys := make([]*lockKey, 0, len(s.keys))
	for _, lk := range s.keys {
		keys = append(keys, lk)
	}
	s.mu.Unlock()
	for _, lk := range keys {
		lk.mu.Lock()
		st.failedWhileFree += lk.failedWhileFree
		st.handoffs += lk.handoffs
		st.handoffTime += lk.handoffSum
		st.detectTime += lk.detectSum
		st.freeGETs += lk.freeGETsTotal
		lk.mu.Unlock()
	}
	return st
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.ResponseWriter.Write(b)
}

// counts are request counters by kind.
type counts map[reqKind]int64

// sub returns c minus base.
func (c counts) sub(base counts) counts {
	d := counts{}
	for k, v := range c {
		if v -= base[k]; v != 0 {
			d[k] = v
		}
	}
	return d
}

// add adds o to c.
func (c counts) add(o counts) {
	for k, v := range o {
		c[k] += v
	}
}

// n returns how many requests of class used method (any method when
// method is ""), with status (any status when status is 0).
func (c counts) n(class, method string, status int) int64 {
	var n int64
	for k, v := range c {
		if k.Class == class && (method == "" || k.Method == method) && (status == 0 || k.Status == status) {
			n += v
		}
	}
	return n
}

// countingTransport counts requests on the client side, for endpoints
// whose server the bench cannot instrument.
type countingTransport struct {
	next   http.RoundTripper
	bucket string
	mu     sync.Mutex // protects counts
	counts counts
}

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	class := "data"
	key := objectKey(r.URL.Path, t.bucket)
	if key == "" {
		// Virtual-hosted style: the path is the key.
		key = strings.TrimPrefix(r.URL.Path, "/")
	}
	if strings.HasPrefix(key, lockPrefix) {
		class = "lock"
	}
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	t.mu.Lock()
	t.counts[reqKind{class, r.Method, status}]++
	t.mu.Unlock()
	return resp, err
}

func (t *countingTransport) snapshot() counts {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := make(counts, len(t.counts))
	for k, v := range t.counts {
		c[k] = v
	}
	return c
}

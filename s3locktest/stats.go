package s3locktest

import (
	"bytes"
	"io"
	"sort"
	"sync"
)

// Stats counts the requests a Server answered, by HTTP method and status.
// It counts at the HTTP layer, independently of any client-side counter.
type Stats struct {
	mu     sync.Mutex // protects counts
	counts map[Request]int64
}

// Request is one kind of request: an HTTP method and the status answered.
type Request struct {
	Method string
	Status int
}

func newStats() *Stats { return &Stats{counts: map[Request]int64{}} }

func (s *Stats) record(method string, status int) {
	s.mu.Lock()
	s.counts[Request{method, status}]++
	s.mu.Unlock()
}

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

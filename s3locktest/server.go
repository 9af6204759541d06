// Package s3locktest runs an S3 server in-process, for tests and examples
// of code that uses s3lock. It serves real S3 HTTP on a loopback port
// (gofakes3 with its in-memory backend), so requests go through the real
// AWS SDK client, its signing, retries and error decoding.
//
// gofakes3 honours If-None-Match and If-Match on PutObject atomically, but
// ignores If-Match on DeleteObject and answers 412 (not 404) to If-Match on
// a missing key. s3lock does not rely on either. It supports bucket
// versioning; this package adds the bucket lifecycle configuration API,
// and options for random ETags ([WithRandomETags]) and a bucket owner
// ([WithBucketOwner]).
package s3locktest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// DefaultBucket is the bucket a Server creates unless told otherwise.
const DefaultBucket = "s3lock-test"

// Server is an in-process S3 server with one bucket. Its methods are safe
// for concurrent use.
type Server struct {
	backend *s3mem.Backend
	http    *httptest.Server
	bucket  string
	stats   *Stats

	mu         sync.Mutex // protects latency, faults, transports, closed
	latency    time.Duration
	faults     *Faults
	transports []*http.Transport
	closed     bool
}

// Option configures a Server.
type Option func(*config)

type config struct {
	bucket      string
	latency     time.Duration
	middleware  func(http.Handler) http.Handler
	randomETags bool
	bucketOwner string
}

// WithBucket names the bucket the server creates.
// The default is DefaultBucket.
func WithBucket(name string) Option { return func(c *config) { c.bucket = name } }

// WithLatency delays every request by d before the server handles it, to
// model the round trip to a real S3 region.
// The default is no added latency.
func WithLatency(d time.Duration) Option { return func(c *config) { c.latency = d } }

// WithMiddleware wraps the handler that answers S3 requests with mw, to
// observe or alter them (a benchmark that tracks each lock's state, say).
// The wrapped handler runs after the added latency and any [Faults], and
// the server's [Stats] count what it answers.
// The default is no middleware.
func WithMiddleware(mw func(http.Handler) http.Handler) Option {
	return func(c *config) { c.middleware = mw }
}

// Start starts a server. Close it when done. Tests should prefer New.
func Start(opts ...Option) (*Server, error) {
	c := config{bucket: DefaultBucket}
	for _, o := range opts {
		o(&c)
	}
	backend := s3mem.New()
	if err := backend.CreateBucket(c.bucket); err != nil {
		return nil, fmt.Errorf("s3locktest: creating bucket %q: %w", c.bucket, err)
	}
	faker := gofakes3.New(backend, gofakes3.WithTimeSkewLimit(0))
	s := &Server{backend: backend, bucket: c.bucket, latency: c.latency, stats: &Stats{}}
	var handler http.Handler = faker.Server()
	if c.randomETags {
		handler = newRandomETags(handler)
	}
	handler = newLifecycle(handler)
	if c.bucketOwner != "" {
		handler = ownerCheck(c.bucketOwner, handler)
	}
	if c.middleware != nil {
		handler = c.middleware(handler)
	}
	serve := s.stats.Handler(handler)
	s.http = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		d := s.latency
		f := s.faults
		s.mu.Unlock()
		if d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
			}
		}
		if f != nil {
			f.serveHTTP(w, r, serve)
			return
		}
		serve.ServeHTTP(w, r)
	}))
	return s, nil
}

// New starts a server for the test and closes it in tb.Cleanup. It fails
// the test if the server cannot start.
func New(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	s, err := Start(opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}

// Close stops the server and closes the idle connections of every client
// it made, so no goroutine is left behind.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	trs := s.transports
	s.mu.Unlock()
	s.http.Close()
	for _, tr := range trs {
		tr.CloseIdleConnections()
	}
}

// URL returns the server's base URL (http://127.0.0.1:port).
func (s *Server) URL() string { return s.http.URL }

// Bucket returns the name of the server's bucket.
func (s *Server) Bucket() string { return s.bucket }

// SetLatency changes the delay added to every request.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	s.latency = d
	s.mu.Unlock()
}

// CreateBucket adds another bucket.
func (s *Server) CreateBucket(name string) error { return s.backend.CreateBucket(name) }

// Stats returns the server's request counters.
func (s *Server) Stats() *Stats { return s.stats }

// Client returns a new S3 client for this server: path-style addressing,
// dummy static credentials, region us-east-1, checksums only where S3
// requires them, and its own HTTP transport (closed with the server).
// optFns adjust the client's options further; to put a fault-injecting
// transport in front, wrap o.HTTPClient there or use [Server.HTTPClient].
func (s *Server) Client(optFns ...func(*s3.Options)) *s3.Client {
	return s3.New(s.Options(), optFns...)
}

// Options returns the s3.Options that Client uses, for building a client
// by hand.
func (s *Server) Options() s3.Options {
	return s3.Options{
		Region:                     "us-east-1",
		BaseEndpoint:               aws.String(s.http.URL),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider("s3locktest", "s3locktest", ""),
		HTTPClient:                 s.HTTPClient(),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	}
}

// HTTPClient returns a new *http.Client whose transport the server closes
// with itself.
func (s *Server) HTTPClient() *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	}
	s.mu.Lock()
	s.transports = append(s.transports, tr)
	s.mu.Unlock()
	return &http.Client{Transport: tr}
}

// PutObject stores body at key in the server's bucket with a plain,
// unconditional PUT (for planting corrupt or foreign lock objects in
// tests).
func (s *Server) PutObject(ctx context.Context, key string, body []byte) error {
	_, err := s.Client().PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(s.bucket), Key: aws.String(key), Body: bytesReader(body),
	})
	return err
}

// Package s3http holds HTTP-level helpers for this project's own tests and
// tools that talk to S3 endpoints: match functions for requests, an S3
// error answer, a misbehaving reverse proxy, a counter of lock writes and
// a ResponseWriter that remembers its status. Users' tests do not need
// them; they use package s3locktest.
package s3http

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// IsConditionalWrite reports whether r is a PUT carrying If-Match or
// If-None-Match: a lock write. It is a ready-made match function for
// s3locktest.Faults.Inject and s3locktest.FaultConfig.Match.
func IsConditionalWrite(r *http.Request) bool {
	return r.Method == http.MethodPut && (r.Header.Get("If-Match") != "" || r.Header.Get("If-None-Match") != "")
}

// IsMethod returns a match function that selects requests with the given
// HTTP method.
func IsMethod(method string) func(*http.Request) bool {
	return func(r *http.Request) bool { return r.Method == method }
}

// WriteError answers a request with an S3 error: status, and an XML body
// with code and msg, which the AWS SDK decodes into an error carrying both
// (smithy.APIError). It is meant for a [Proxy]'s intercept or an
// s3locktest.WithMiddleware handler.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	var esc bytes.Buffer
	_ = xml.EscapeText(&esc, []byte(msg)) // writes to a bytes.Buffer do not fail
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n<Error><Code>%s</Code><Message>%s</Message></Error>", code, esc.String())
}

// Proxy starts a reverse proxy on loopback in front of the S3 endpoint at
// target (such as s3locktest's Server.URL) and returns the proxy's URL, to
// use as a client's endpoint. It models a store, or something between
// client and store, that misbehaves in a way s3locktest's Faults do not
// cover.
//
// intercept sees every request first. It may answer the request itself
// (see [WriteError]) and return true, or return false to pass the request
// on, with any changes it made to r (dropped headers, say). A nil
// intercept passes everything on. The proxy does not check or redo
// signatures, which the in-process server does not check either.
//
// The proxy and its connections are closed in tb.Cleanup. Proxy fails the
// test if target is not a URL.
func Proxy(tb testing.TB, target string, intercept func(w http.ResponseWriter, r *http.Request) bool) string {
	tb.Helper()
	u, err := url.Parse(target)
	if err != nil {
		tb.Fatalf("s3http.Proxy: target %q: %v", target, err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	tr := &http.Transport{}
	rp.Transport = tr
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if intercept == nil || !intercept(w, r) {
			rp.ServeHTTP(w, r)
		}
	}))
	tb.Cleanup(func() {
		front.Close()
		tr.CloseIdleConnections()
	})
	return front.URL
}

// WriteCounter is an s3.HTTPClient that counts the conditional writes a
// client sends: every SDK attempt, whether or not it reaches S3. Install
// puts it in front of a client's HTTP client.
type WriteCounter struct {
	next   s3.HTTPClient
	writes atomic.Int64
}

// Install is a client option (pass c.Install to s3.NewFromConfig or
// s3locktest's Server.Client) that sends the client's requests through c.
// Options applied after it see c as the HTTP client.
func (c *WriteCounter) Install(o *s3.Options) {
	c.next = o.HTTPClient
	o.HTTPClient = c
}

// Do counts r if it is a conditional write and sends it on.
func (c *WriteCounter) Do(r *http.Request) (*http.Response, error) {
	if IsConditionalWrite(r) {
		c.writes.Add(1)
	}
	return c.next.Do(r)
}

// Writes returns how many conditional writes c has seen.
func (c *WriteCounter) Writes() int64 { return c.writes.Load() }

// StatusRecorder is an http.ResponseWriter that remembers the status its
// handler answered: the first one written, or 200 when the handler wrote
// none. Make one with [NewStatusRecorder].
type StatusRecorder struct {
	http.ResponseWriter
	Status int
	wrote  bool
}

// NewStatusRecorder returns a StatusRecorder passing writes on to w.
func NewStatusRecorder(w http.ResponseWriter) *StatusRecorder {
	return &StatusRecorder{ResponseWriter: w, Status: http.StatusOK}
}

// WriteHeader records code, if it is the first status, and passes it on.
func (r *StatusRecorder) WriteHeader(code int) {
	if !r.wrote {
		r.Status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

// Write passes b on; a status is written first if none was.
func (r *StatusRecorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.ResponseWriter.Write(b)
}

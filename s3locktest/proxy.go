package s3locktest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
)

// Proxy starts a reverse proxy on loopback in front of the S3 endpoint at
// target (such as [Server.URL]) and returns the proxy's URL, to use as a
// client's endpoint. It models a store, or something between client and
// store, that misbehaves in a way [Faults] do not cover.
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
		tb.Fatalf("s3locktest.Proxy: target %q: %v", target, err)
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

// WriteError answers a request with an S3 error: status, and an XML body
// with code and msg, which the AWS SDK decodes into an error carrying both
// (smithy.APIError). It is meant for a [Proxy]'s intercept or a
// [WithMiddleware] handler.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n<Error><Code>%s</Code><Message>%s</Message></Error>", code, xmlEscape(msg))
}

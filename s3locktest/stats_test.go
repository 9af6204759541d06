package s3locktest_test

import (
	"context"
	"maps"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock/s3locktest"
)

// TestMiddlewareAndStats checks that WithMiddleware sees every request and
// can answer in the server's place, and that the server's Stats count what
// the middleware answered, as a Stats.Transport on the client does.
func TestMiddlewareAndStats(t *testing.T) {
	var seen atomic.Int64
	deny := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen.Add(1)
			if strings.HasSuffix(r.URL.Path, "/forbidden") {
				w.WriteHeader(http.StatusTeapot)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	srv := s3locktest.New(t, s3locktest.WithMiddleware(deny))
	var client s3locktest.Stats // the zero value is ready to use
	c := srv.Client(func(o *s3.Options) {
		hc := srv.HTTPClient()
		hc.Transport = client.Transport(hc.Transport)
		o.HTTPClient = hc
	})
	ctx := context.Background()
	if err := srv.PutObject(ctx, "k", []byte("v")); err != nil {
		t.Fatalf("PutObject() = %v", err)
	}
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(srv.Bucket()), Key: aws.String("k")})
	if err != nil {
		t.Fatalf("GetObject(k) = %v", err)
	}
	out.Body.Close()
	// The SDK does not retry a 418: one request, one count.
	_, err = c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(srv.Bucket()), Key: aws.String("forbidden")})
	if err == nil {
		t.Fatal("GetObject(forbidden) = nil; want the middleware's 418")
	}

	got := srv.Stats().Snapshot()
	want := s3locktest.Counts{
		{Method: http.MethodPut, Status: http.StatusOK}:     1,
		{Method: http.MethodGet, Status: http.StatusOK}:     1,
		{Method: http.MethodGet, Status: http.StatusTeapot}: 1,
	}
	if !maps.Equal(got, want) {
		t.Errorf("server counts = %v; want %v", got, want)
	}
	if n := seen.Load(); n != got.Total() {
		t.Errorf("middleware saw %d requests; the server counted %d", n, got.Total())
	}
	// The client's Transport counted the same GETs (the PUT went through
	// another client).
	cl := client.Snapshot()
	if cl.Method(http.MethodGet) != got.Method(http.MethodGet) || cl.Method(http.MethodPut) != 0 {
		t.Errorf("client counts = %v; want the server's GETs %v and no PUT", cl, got)
	}
}

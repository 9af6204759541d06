package main

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/s3lock/s3lock/internal/s3http"
)

func TestProbe(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.run(nil, "probe", h.url("probes/"))
	if r.code != 0 || !strings.Contains(r.stdout, "conditional writes are honoured") || r.stderr != "" {
		t.Errorf("probe of gofakes3: exit code %d, stdout %q, stderr %q; want 0, honoured", r.code, r.stdout, r.stderr)
	}
	// A bucket without prefix works too.
	if r := h.run(nil, "probe", "s3://"+h.srv.Bucket()); r.code != 0 {
		t.Errorf("probe of a bare bucket: exit code %d, stderr %q", r.code, r.stderr)
	}

	// A store that ignores the conditions, as some S3-compatible stores
	// do: a proxy drops the headers (gofakes3 does not check signatures).
	h.endpoint = s3http.Proxy(t, h.srv.URL(), func(_ http.ResponseWriter, r *http.Request) bool {
		r.Header.Del("If-None-Match")
		r.Header.Del("If-Match")
		return false
	})
	r = h.run(nil, "probe", h.url("probes/"))
	if r.code != exitFailure {
		t.Errorf("probe of a store ignoring conditions: exit code %d; want %d (stdout %q, stderr %q)", r.code, exitFailure, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "NOT honoured") || !strings.Contains(r.stdout, "FAIL") || !strings.Contains(r.stdout, "If-None-Match") {
		t.Errorf("probe of a store ignoring conditions: stdout %q; want the failed step", r.stdout)
	}
	if ls := lines(r.stderr); len(ls) != 1 || !strings.Contains(ls[0], "does not support conditional writes") {
		t.Errorf("probe of a store ignoring conditions: stderr %q; want one line", r.stderr)
	}

}

// TestProbeWarnsOfDateAhead: behind a gateway whose Date runs an hour
// ahead of the store's Last-Modified, the probe passes (s3lock is safe
// there) and warns of what it costs.
func TestProbeWarnsOfDateAhead(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	target, err := url.Parse(h.srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(r *http.Response) error {
		r.Header.Set("Date", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
		return nil
	}
	gw := httptest.NewServer(rp)
	t.Cleanup(gw.Close)
	h.endpoint = gw.URL
	r := h.run(nil, "probe", h.url("probes/"))
	if r.code != 0 || !strings.Contains(r.stdout, "conditional writes are honoured") {
		t.Errorf("probe behind a gateway an hour ahead: exit code %d, stdout %q, stderr %q; want 0, honoured", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "WARNING") || !strings.Contains(r.stdout, "Last-Modified") {
		t.Errorf("probe behind a gateway an hour ahead: stdout %q; want a warning about Date and Last-Modified", r.stdout)
	}
}

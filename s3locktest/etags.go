package s3locktest

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
	"sync"
)

// WithRandomETags makes the server answer with a fresh random ETag for
// every object write, as S3 Express One Zone (directory buckets) does,
// instead of gofakes3's MD5 of the body: two writes of identical bodies
// get different ETags, and no ETag can be computed from a body. If-Match
// on PutObject is evaluated against these ETags, atomically (requests on
// one key are serialized). Code that assumes ETag = MD5(body), or that an
// unchanged body keeps its ETag, fails against it.
// The default is gofakes3's MD5 ETags.
func WithRandomETags() Option { return func(c *config) { c.randomETags = true } }

// randomETags sits in front of gofakes3 and replaces its ETags with random
// ones, one per write.
type randomETags struct {
	next http.Handler

	mu   sync.Mutex // protects keys
	keys map[string]*etagState
}

// etagState is what randomETags knows of one object.
type etagState struct {
	mu   sync.Mutex // serializes requests on the key, and protects etag
	etag string     // the quoted random ETag of the current object; "" when unknown
}

func newRandomETags(next http.Handler) *randomETags {
	return &randomETags{next: next, keys: map[string]*etagState{}}
}

func (e *randomETags) state(path string) *etagState {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.keys[path]
	if st == nil {
		st = &etagState{}
		e.keys[path] = st
	}
	return st
}

func (e *randomETags) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Path-style addressing: /bucket/key. Bucket-level requests pass.
	_, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if key == "" {
		e.next.ServeHTTP(w, r)
		return
	}
	st := e.state(r.URL.Path)
	st.mu.Lock()
	defer st.mu.Unlock()
	rw := &etagWriter{ResponseWriter: w, method: r.Method, st: st}
	if r.Method == http.MethodPut {
		if im := r.Header.Get("If-Match"); im != "" && im != "*" {
			r = r.Clone(r.Context())
			if st.etag != "" && unquote(im) == unquote(st.etag) {
				// The check is ours, and requests on the key are
				// serialized: the write may go ahead unconditionally.
				r.Header.Del("If-Match")
			} else {
				// No object, or another version: let gofakes3 refuse
				// it as it would any wrong ETag (412, or 404).
				r.Header.Set("If-Match", `"s3locktest-no-such-etag"`)
			}
		}
	}
	e.next.ServeHTTP(rw, r)
	if !rw.wrote {
		rw.WriteHeader(http.StatusOK)
	}
}

// etagWriter rewrites the ETag header of an answer, and records the ETag
// of a successful write.
type etagWriter struct {
	http.ResponseWriter
	method string
	st     *etagState
	wrote  bool
}

func (w *etagWriter) WriteHeader(code int) {
	if w.wrote {
		return
	}
	w.wrote = true
	h := w.Header()
	switch {
	case w.method == http.MethodPut && code == http.StatusOK:
		w.st.etag = newRandomETag()
		h.Set("ETag", w.st.etag)
	case w.method == http.MethodDelete && code < 300:
		w.st.etag = ""
	case (w.method == http.MethodGet || w.method == http.MethodHead) && h.Get("ETag") != "":
		if w.st.etag == "" {
			// Written before this wrapper knew of it (not through
			// the server): give the current object an ETag now.
			w.st.etag = newRandomETag()
		}
		h.Set("ETag", w.st.etag)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *etagWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func newRandomETag() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return `"` + hex.EncodeToString(b) + `"`
}

func unquote(etag string) string {
	return strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(etag, "W/"), `"`), `"`)
}

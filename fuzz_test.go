package s3lock_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock"
)

// fuzzStatuses are the statuses the fuzzed GET answer can have.
var fuzzStatuses = []int{200, 404, 403, 412, 409, 500, 503, 301, 400, 206, 304}

// lockAnswer is the GET answer a fuzzing store gives for the lock key.
type lockAnswer struct {
	status             int
	etag, lastModified string
	date               string
	body               []byte
}

// answerStore is an HTTP server speaking just enough S3 for a Mutex: GET
// returns the current fuzzed answer, PUT is recorded and succeeds.
type answerStore struct {
	mu     sync.Mutex
	answer lockAnswer
	puts   []http.Header
	// The scratch object of a clock check: written and read back as a
	// store would, under the fuzzed Date.
	scratch         []byte
	scratchModified time.Time
}

func (s *answerStore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, ".s3lock-clock") {
		s.serveScratch(w, r)
		return
	}
	s.mu.Lock()
	a := s.answer
	if r.Method == http.MethodPut {
		s.puts = append(s.puts, r.Header.Clone())
	}
	n := len(s.puts)
	s.mu.Unlock()
	h := w.Header()
	switch r.Method {
	case http.MethodGet:
		if a.etag != "" {
			h.Set("ETag", a.etag)
		}
		if a.lastModified != "" {
			h.Set("Last-Modified", a.lastModified)
		}
		if a.date != "" {
			h.Set("Date", a.date)
		} else {
			h["Date"] = nil // no Date header at all
		}
		if a.status != 200 {
			h.Set("Content-Type", "application/xml")
		}
		w.WriteHeader(a.status)
		_, _ = w.Write(a.body)
	case http.MethodPut:
		h.Set("ETag", fmt.Sprintf(`"put-%d"`, n))
		w.WriteHeader(http.StatusOK)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

// serveScratch answers the clock check's PUT and GET of its scratch
// object, dated with the fuzzed Date: the check then agrees only when that
// Date agrees with the time of the write.
func (s *answerStore) serveScratch(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.answer.date != "" {
		w.Header().Set("Date", s.answer.date)
	}
	switch r.Method {
	case http.MethodPut:
		s.scratch, _ = io.ReadAll(r.Body)
		s.scratchModified = time.Now()
		w.Header().Set("ETag", `"scratch"`)
		w.WriteHeader(http.StatusOK)
	case http.MethodGet:
		if s.scratch == nil {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Header().Set("ETag", `"scratch"`)
		w.Header().Set("Last-Modified", s.scratchModified.UTC().Format(http.TimeFormat))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(s.scratch)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

func (s *answerStore) set(a lockAnswer) {
	s.mu.Lock()
	s.answer, s.puts = a, nil
	s.mu.Unlock()
}

func (s *answerStore) writes() []http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]http.Header(nil), s.puts...)
}

// FuzzLockAnswer feeds whatever a store might answer to the lock object's
// GET (status, ETag, Last-Modified, Date, body) through the real SDK client
// to Inspect and TryLock, and checks that the Mutex never panics, writes
// only conditionally, and writes exactly when S3's answer shows the lock
// absent, free or expired.
func FuzzLockAnswer(f *testing.F) {
	store := &answerStore{}
	ts := httptest.NewServer(store)
	tr := &http.Transport{DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}
	f.Cleanup(func() {
		ts.Close()
		tr.CloseIdleConnections()
	})
	client := s3.New(s3.Options{
		Region:                     "us-east-1",
		BaseEndpoint:               aws.String(ts.URL),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider("fuzz", "fuzz", ""),
		HTTPClient:                 &http.Client{Transport: tr},
		RetryMaxAttempts:           1,
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})

	now := time.Now().UTC()
	held := `{"s3lock":1,"state":"held","owner":"h","nonce":"n1","generation":7,"ttl_ms":1000,"written_at":"2025-01-01T00:00:00Z"}`
	free := `{"s3lock":1,"state":"free","owner":"h","nonce":"n2","generation":7,"ttl_ms":1000,"written_at":"2025-01-01T00:00:00Z"}`
	fresh, old := now.Format(http.TimeFormat), now.Add(-time.Hour).Format(http.TimeFormat)
	date := now.Format(http.TimeFormat)
	f.Add(uint8(0), `"e1"`, fresh, date, []byte(held))                                           // held, not expired
	f.Add(uint8(0), `"e1"`, old, date, []byte(held))                                             // held, expired by S3's clock
	f.Add(uint8(0), `"e1"`, old, "", []byte(held))                                               // no Date: cannot tell
	f.Add(uint8(0), `"e1"`, fresh, date, []byte(free))                                           // free
	f.Add(uint8(0), ``, old, date, []byte(free))                                                 // free, no ETag
	f.Add(uint8(0), `"e1"`, old, date, []byte("garbage"))                                        // invalid, old
	f.Add(uint8(0), `"e1"`, fresh, date, []byte("garbage"))                                      // invalid, fresh
	f.Add(uint8(0), `"e1"`, "yesterday", "tomorrow", []byte(held))                               // unparsable times
	f.Add(uint8(1), ``, ``, date, []byte("<Error><Code>NoSuchKey</Code></Error>"))               // absent
	f.Add(uint8(1), ``, ``, date, []byte("<Error><Code>NoSuchBucket</Code></Error>"))            // no bucket
	f.Add(uint8(2), ``, ``, date, []byte("<Error><Code>AccessDenied</Code></Error>"))            // denied
	f.Add(uint8(5), ``, ``, date, []byte("<Error><Code>InternalError</Code></Error>"))           // 5xx
	f.Add(uint8(7), ``, ``, date, []byte("<Error><Code>PermanentRedirect</Code><Endpoint>x</E")) // bad XML
	f.Fuzz(func(t *testing.T, statusSel uint8, etag, lastModified, date string, body []byte) {
		a := lockAnswer{status: fuzzStatuses[int(statusSel)%len(fuzzStatuses)], etag: etag, lastModified: lastModified, date: date, body: body}
		store.set(a)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, ierr := s3lock.Inspect(ctx, client, "bucket", "lock")

		m := newMutex(t, client, "bucket", "lock", s3lock.WithOwner("fuzz"))
		lerr := m.TryLock(ctx)
		puts := store.writes()
		for _, h := range puts {
			inm, im := h.Get("If-None-Match"), h.Get("If-Match")
			if (inm == "") == (im == "") || (inm != "" && inm != "*") {
				t.Fatalf("PUT with If-None-Match %q and If-Match %q; want exactly one condition", inm, im)
			}
			// HTTP drops the spaces and tabs around a header's value: the
			// ETag the client received is the served one, trimmed.
			if served := strings.Trim(etag, " \t"); im != "" && im != served {
				t.Fatalf("PUT with If-Match %q; want the ETag served, %q", im, served)
			}
			// classify takes the error code NoSuchKey for "no object" on any
			// status (the SDK matches codes without regard to case); the
			// create is conditional, so that is safe either way.
			noSuchKey := bytes.Contains(bytes.ToLower(a.body), []byte("<code>nosuchkey</code>"))
			if inm != "" && a.status != http.StatusNotFound && !noSuchKey {
				t.Fatalf("create (If-None-Match) after a %d answer; want it only after 404", a.status)
			}
		}
		wrote := len(puts) > 0
		if lerr == nil && !wrote {
			t.Fatal("TryLock() = nil without writing")
		}
		if lerr != nil && errors.Is(lerr, s3lock.ErrLocked) && wrote {
			t.Fatalf("TryLock() = %v after writing", lerr)
		}

		// What Inspect saw decides whether a write was allowed.
		switch {
		case ierr != nil:
			if wrote {
				t.Fatalf("TryLock() wrote although Inspect could not read the lock: %v", ierr)
			}
			if lerr == nil {
				t.Fatalf("TryLock() = nil although Inspect failed: %v", ierr)
			}
		case !st.Exists || (st.Invalid == nil && !st.Held):
			if lerr != nil {
				t.Fatalf("lock absent or free (%+v) but TryLock() = %v", st, lerr)
			}
		case st.Expired:
			if st.ETag != "" && lerr != nil && !errors.Is(lerr, s3lock.ErrLocked) {
				t.Fatalf("hold expired by S3's clock (%+v) but TryLock() = %v", st, lerr)
			}
		default:
			// Held and not expired by S3's clock; a fresh Mutex has not
			// watched it, so it must not write.
			if wrote {
				t.Fatalf("TryLock() wrote over a live hold: %+v", st)
			}
			var le *s3lock.LockedError
			if !errors.As(lerr, &le) {
				t.Fatalf("TryLock() on a live hold = %v; want a *LockedError", lerr)
			}
			if le.Generation != st.Generation || le.Owner != st.Owner || (le.Invalid == nil) != (st.Invalid == nil) {
				t.Fatalf("TryLock() and Inspect disagree: %+v vs %+v", le, st)
			}
		}
		if lerr == nil {
			if err := m.Unlock(ctx); err != nil {
				t.Fatalf("Unlock() = %v", err)
			}
		}
	})
}

package s3lock_test

// The lock record as other versions and other writers leave it: invalid
// objects, records of newer versions, the largest generation
// (docs/record-format.md).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

func TestInvalidLockObjects(t *testing.T) {
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"corrupt", []byte("{not json")},
		{"foreign JSON", []byte(`{"owner":"someone","expires":"2030-01-01T00:00:00Z"}`)},
		{"newer schema", []byte(`{"s3lock":3,"state":"held","owner":"x","nonce":"n","generation":3,"ttl_ms":1000,"written_at":"2026-01-01T00:00:00Z"}`)},
		{"value too long", []byte(`{"s3lock":2,"state":"held","owner":"x","nonce":"n","generation":3,"ttl_ms":1000,"value":"` + strings.Repeat("x", s3lock.MaxValueLen+1) + `"}`)},
		{"value not a string", []byte(`{"s3lock":2,"state":"held","owner":"x","nonce":"n","generation":3,"ttl_ms":1000,"value":42}`)},
		{"oversized", bytes.Repeat([]byte("x"), 4096+100)}, // the largest record is 4 KiB
		{"empty", []byte{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := s3locktest.New(t)
			ctx := context.Background()
			if err := srv.PutObject(ctx, "locks/invalid", tc.body); err != nil {
				t.Fatal(err)
			}
			m := newMutex(t, srv.Client(), srv.Bucket(), "locks/invalid", s3lock.WithTTL(time.Second))
			err := m.TryLock(ctx)
			le := wantLocked(t, err)
			if !errors.Is(err, s3lock.ErrInvalidLockObject) || le.Invalid == nil {
				t.Fatalf("TryLock() = %v; want it to match ErrInvalidLockObject too", err)
			}
			if !errors.Is(le.Invalid, s3lock.ErrInvalidLockObject) || le.Key != "locks/invalid" {
				t.Errorf("LockedError = %+v; want Key locks/invalid and Invalid matching ErrInvalidLockObject", le)
			}
			// Lock takes it over, but only once S3 shows it older than the TTL.
			start := time.Now()
			lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := m.Lock(lctx); err != nil {
				t.Fatalf("Lock() over an invalid object = %v", err)
			}
			if waited := time.Since(start); waited < time.Second {
				t.Errorf("took the invalid object over after %v; want ≥ TTL", waited)
			}
			if err := m.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// maxGenerationBody is a lock record at the largest generation, 2^64-1.
func maxGenerationBody(state string) []byte {
	return fmt.Appendf(nil, `{"s3lock":1,"state":%q,"owner":"o","nonce":"n-%s","generation":18446744073709551615,"ttl_ms":1000,"written_at":"2025-01-01T00:00:00Z"}`, state, state)
}

// TestGenerationNeverWraps: a record at generation
// 2^64-1 cannot be granted again without the fencing token wrapping to 0.
// TryLock, Lock and ForceUnlock refuse it with ErrInvalidLockObject and
// write nothing; Lock does so at once instead of retrying.
func TestGenerationNeverWraps(t *testing.T) {
	for _, state := range []string{"free", "held"} {
		t.Run(state, func(t *testing.T) {
			srv := s3locktest.New(t)
			ctx := context.Background()
			const key = "locks/max-generation"
			if err := srv.PutObject(ctx, key, maxGenerationBody(state)); err != nil {
				t.Fatal(err)
			}
			before := lockState(t, srv, key)
			if before.Generation != 1<<64-1 {
				t.Fatalf("planted record has generation %d; want 2^64-1", before.Generation)
			}
			m := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("m"), s3lock.WithTTL(time.Second),
				s3lock.WithExpiryMargin(0), s3lock.WithRetryInterval(50*time.Millisecond))

			err := m.TryLock(ctx)
			if state == "held" {
				// Wait until the hold is expired for m: only then would
				// m write.
				wantLocked(t, err)
				deadline := time.Now().Add(10 * time.Second)
				for errors.Is(err, s3lock.ErrLocked) && time.Now().Before(deadline) {
					time.Sleep(50 * time.Millisecond)
					err = m.TryLock(ctx)
				}
			}
			if err == nil {
				tok := m.Token()
				_ = m.Unlock(ctx)
				t.Fatalf("TryLock() = nil with Token() %d; want an error matching ErrInvalidLockObject", tok)
			}
			if !errors.Is(err, s3lock.ErrInvalidLockObject) || errors.Is(err, s3lock.ErrLocked) {
				t.Fatalf("TryLock() = %v; want an error matching ErrInvalidLockObject, not ErrLocked", err)
			}

			lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			err = m.Lock(lctx)
			if err == nil {
				tok := m.Token()
				_ = m.Unlock(ctx)
				t.Fatalf("Lock() = nil with Token() %d; want an error matching ErrInvalidLockObject", tok)
			}
			if !errors.Is(err, s3lock.ErrInvalidLockObject) || lctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Lock() = %v; want an error matching ErrInvalidLockObject before its context ends", err)
			}

			if _, err := s3lock.ForceUnlock(ctx, srv.Client(), srv.Bucket(), key, before.ETag); !errors.Is(err, s3lock.ErrInvalidLockObject) {
				t.Errorf("ForceUnlock() = %v; want an error matching ErrInvalidLockObject", err)
			}
			if after := lockState(t, srv, key); after.ETag != before.ETag {
				t.Errorf("lock object rewritten (ETag %s, generation %d, held %v); want it unchanged", after.ETag, after.Generation, after.Held)
			}
		})
	}
}

// foreignRecord is a record this version may not fully understand, as a
// newer version (a rolling deploy) could write it.
func foreignRecord(kind string, state string, ttlMillis int64) []byte {
	schema, extra := 1, ""
	switch kind {
	case "unknown field":
		extra = `,"queue":[{"owner":"w","since":"2025-01-01T00:00:00Z"}]`
	case "schema 2":
		schema = 2
	case "unknown state":
		state = "draining"
	}
	return fmt.Appendf(nil, `{"s3lock":%d,"state":%q,"owner":"o","nonce":"n-%d","generation":7,"ttl_ms":%d,"written_at":"2025-01-01T00:00:00Z"%s}`,
		schema, state, time.Now().UnixNano(), ttlMillis, extra)
}

var foreignKinds = []string{"unknown field", "schema 2", "unknown state"}

// TestNewerRecordHonoured: a held record of a newer version whose ttl_ms
// and generation can be read is not taken over before its own TTL, even
// by a Mutex with a much shorter one (nor after that Mutex's own TTL plus
// the margin).
func TestNewerRecordHonoured(t *testing.T) {
	for _, kind := range foreignKinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			srv := s3locktest.New(t)
			ctx := context.Background()
			const key = "locks/newer-held"
			if err := srv.PutObject(ctx, key, foreignRecord(kind, "held", 60000)); err != nil {
				t.Fatal(err)
			}
			before := lockState(t, srv, key)
			m := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("m"), s3lock.WithTTL(time.Second))
			// Now, and after m's own TTL plus margin (2 s) has passed.
			for _, wait := range []time.Duration{0, 3 * time.Second} {
				time.Sleep(wait)
				err := m.TryLock(ctx)
				if err == nil {
					tok := m.Token()
					_ = m.Unlock(ctx)
					t.Fatalf("TryLock() after %v = nil (took over at generation %d); want ErrLocked, generation 7", wait, tok)
				}
				if le := wantLocked(t, err); le.Generation != 7 {
					t.Errorf("TryLock() after %v = %v (generation %d); want ErrLocked, generation 7", wait, err, le.Generation)
				}
			}
			if after := lockState(t, srv, key); after.ETag != before.ETag {
				t.Errorf("lock object rewritten (generation %d); want it unchanged", after.Generation)
			}
		})
	}
}

// TestNewerRecordGenerationContinues: a grant over a record of a newer
// version continues its generations (8 after 7), both over a free record
// with an unknown field and when taking over an expired hold that this
// version cannot accept: the fencing token never goes backwards (as it
// would if the grant restarted at generation 1).
func TestNewerRecordGenerationContinues(t *testing.T) {
	type row struct {
		name, kind, state string
	}
	rows := []row{{"free, unknown field", "unknown field", "free"}}
	for _, kind := range foreignKinds {
		rows = append(rows, row{"expired held, " + kind, kind, "held"})
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := s3locktest.New(t)
			ctx := context.Background()
			const key = "locks/newer-expired"
			if err := srv.PutObject(ctx, key, foreignRecord(tc.kind, tc.state, 1000)); err != nil {
				t.Fatal(err)
			}
			m := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("m"), s3lock.WithTTL(time.Second),
				s3lock.WithRetryInterval(100*time.Millisecond))
			var err error
			if tc.state == "free" {
				err = m.TryLock(ctx)
			} else {
				lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				err = m.Lock(lctx)
				cancel()
			}
			if err != nil {
				t.Fatalf("acquire = %v; want nil", err)
			}
			if got := m.Token(); got != 8 {
				t.Errorf("Token() = %d; want 8 (after the record's generation 7)", got)
			}
			if err := m.Unlock(ctx); err != nil {
				t.Errorf("Unlock() = %v; want nil", err)
			}
			if st := lockState(t, srv, key); st.Held || st.Generation != 8 {
				t.Errorf("after Unlock the lock is %+v; want free at generation 8", st)
			}
		})
	}
}

// TestWritersDropUnknownFields (record rule 2): a record that carries a
// field this version does not know is read as usual, and the next write
// (a grant) carries only this version's fields.
func TestWritersDropUnknownFields(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "locks/rule2"
	body := `{"s3lock":1,"state":"free","owner":"o","nonce":"n","generation":3,"ttl_ms":1000,"written_at":"2025-01-01T00:00:00Z","later_hint":{"x":1}}`
	if err := srv.PutObject(ctx, key, []byte(body)); err != nil {
		t.Fatal(err)
	}
	m := newMutex(t, srv.Client(), srv.Bucket(), key)
	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("TryLock() over a record with an unknown field = %v; want nil", err)
	}
	defer m.Unlock(ctx)
	rec, _ := rawRecord(t, srv, key)
	if _, ok := rec["later_hint"]; ok || rec["generation"] != float64(4) {
		t.Errorf("record after the grant = %v; want generation 4 and no later_hint", rec)
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/s3lock/s3lock"
)

// statusJSONOf runs status --json and decodes it, also checking that the
// output has exactly the documented fields.
func statusJSONOf(t *testing.T, h *harness, key string) statusJSON {
	t.Helper()
	r := h.run(nil, "status", "--json", h.url(key))
	if r.code != 0 {
		t.Fatalf("status --json: exit code %d (stderr: %s)", r.code, r.stderr)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil {
		t.Fatalf("status --json output %q: %v", r.stdout, err)
	}
	documented := map[string]bool{"url": true, "bucket": true, "key": true, "state": true, "exists": true,
		"held": true, "expired": true, "owner": true, "generation": true, "ttl_ms": true, "since": true,
		"last_modified": true, "expires_at": true, "server_time": true, "etag": true, "invalid": true, "value": true,
		"shared": true, "limit": true, "units": true, "holders": true}
	for k := range raw {
		if !documented[k] {
			t.Errorf("status --json has undocumented field %q", k)
		}
	}
	for _, k := range []string{"url", "bucket", "key", "state", "exists", "held", "expired", "owner", "generation"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("status --json lacks field %q: %s", k, r.stdout)
		}
	}
	var j statusJSON
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		t.Fatalf("status --json output %q: %v", r.stdout, err)
	}
	return j
}

func TestStatusAndUnlock(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	key := "locks/status"

	// No object yet.
	r := h.run(nil, "status", h.url(key))
	if r.code != 0 || !strings.Contains(r.stdout, h.url(key)+": free") {
		t.Errorf("status of a missing lock: exit code %d, stdout %q; want 0 and free", r.code, r.stdout)
	}
	if j := statusJSONOf(t, h, key); j.State != "free" || j.Exists || j.Held || j.Generation != 0 || j.URL != h.url(key) || j.Bucket != h.srv.Bucket() || j.Key != key {
		t.Errorf("status --json of a missing lock = %+v", j)
	}

	// Held by a library Mutex.
	m, err := s3lock.New(h.srv.Client(), h.srv.Bucket(), key, s3lock.WithOwner("lib-holder"), s3lock.WithTTL(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	want := inspect(t, h, key)
	r = h.run(nil, "status", h.url(key))
	for _, s := range []string{h.url(key) + ": held", "owner:       lib-holder", "generation:  1", "expires:     " + want.Until.UTC().Format(time.RFC3339), "ttl:         30s"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("status of a held lock: stdout %q lacks %q", r.stdout, s)
		}
	}
	j := statusJSONOf(t, h, key)
	if j.State != "held" || !j.Held || j.Expired || !j.Exists || j.Owner != "lib-holder" || j.Generation != 1 ||
		j.TTLMillis != 30000 || j.ETag != want.ETag || !j.ExpiresAt.Equal(want.Until) ||
		!j.LastModified.Equal(want.LastModified) || j.Since.IsZero() || j.ServerTime.IsZero() {
		t.Errorf("status --json of a held lock = %+v; want it to match %+v", j, want)
	}

	// unlock without --force refuses and shows the hold.
	r = h.run(nil, "unlock", h.url(key))
	if r.code != exitUsage || !strings.Contains(r.stdout, "lib-holder") || len(lines(r.stderr)) != 1 || !strings.Contains(r.stderr, "--force") {
		t.Errorf("unlock without --force: exit code %d, stdout %q, stderr %q; want 2, the hold shown, one line asking for --force", r.code, r.stdout, r.stderr)
	}
	if st := inspect(t, h, key); !st.Held || st.ETag != want.ETag {
		t.Fatalf("unlock without --force changed the lock: %+v", st)
	}

	// unlock --force breaks it and says what it broke.
	r = h.run(nil, "unlock", "--force", h.url(key))
	if r.code != 0 || !strings.Contains(r.stdout, `"lib-holder"`) || !strings.Contains(r.stdout, "generation 1") {
		t.Errorf("unlock --force: exit code %d, stdout %q, stderr %q; want 0 naming owner and generation", r.code, r.stdout, r.stderr)
	}
	st := inspect(t, h, key)
	if st.Held || st.Generation != 2 {
		t.Errorf("after unlock --force: held=%v generation=%d; want free at generation 2", st.Held, st.Generation)
	}
	if err := m.Unlock(ctx); !errors.Is(err, s3lock.ErrLeaseLost) {
		t.Errorf("the broken holder's Unlock() = %v; want ErrLeaseLost", err)
	}
	if j := statusJSONOf(t, h, key); j.State != "free" || j.Held || !j.Exists || j.Generation != 2 {
		t.Errorf("status --json after unlock = %+v; want free, generation 2", j)
	}

	// Nothing to break now.
	freeTag := inspect(t, h, key).ETag
	r = h.run(nil, "unlock", "--force", h.url(key))
	if r.code != 0 || !strings.Contains(r.stdout, "nothing to break") {
		t.Errorf("unlock of a free lock: exit code %d, stdout %q; want 0, nothing to break", r.code, r.stdout)
	}
	if st := inspect(t, h, key); st.Generation != 2 || st.ETag != freeTag {
		t.Errorf("unlock of a free lock changed it: %+v", st)
	}
}

func TestStatusInvalidAndExpired(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	if err := h.srv.PutObject(ctx, "locks/garbage", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	r := h.run(nil, "status", h.url("locks/garbage"))
	if r.code != 0 || !strings.Contains(r.stdout, "not an s3lock lock") {
		t.Errorf("status of an invalid object: exit code %d, stdout %q", r.code, r.stdout)
	}
	if j := statusJSONOf(t, h, "locks/garbage"); j.State != "held" || j.Invalid == "" {
		t.Errorf("status --json of an invalid object = %+v; want held with invalid set", j)
	}
	r = h.run(nil, "unlock", "--force", h.url("locks/garbage"))
	if r.code != 0 || !strings.Contains(r.stdout, "invalid lock object") {
		t.Errorf("unlock --force of an invalid object: exit code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if st := inspect(t, h, "locks/garbage"); st.Held || st.Invalid != nil {
		t.Errorf("after unlock --force the object is %+v; want a free record", st)
	}

	// A 1 s hold that nobody renews shows as expired once S3's clock says
	// so (TTL + margin + 1 s of timestamp resolution).
	m, err := s3lock.New(h.srv.Client(), h.srv.Bucket(), "locks/expiring", s3lock.WithOwner("gone"), s3lock.WithTTL(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Unlock(ctx) }()
	var j statusJSON
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if j = statusJSONOf(t, h, "locks/expiring"); j.State == "expired" {
			break
		}
	}
	if j.State != "expired" || !j.Expired || !j.Held || j.Owner != "gone" {
		t.Fatalf("status --json of an abandoned 1s hold = %+v; want expired", j)
	}
	r = h.run(nil, "status", h.url("locks/expiring"))
	if !strings.Contains(r.stdout, ": expired") || !strings.Contains(r.stdout, "ago)") {
		t.Errorf("status of an expired hold: stdout %q", r.stdout)
	}
	r = h.run(nil, "unlock", "--force", h.url("locks/expiring"))
	if r.code != 0 || !strings.Contains(r.stdout, "it had expired") {
		t.Errorf("unlock --force of an expired hold: exit code %d, stdout %q", r.code, r.stdout)
	}
}

// TestEndpointFromEnvironment configures the endpoint and region only
// through the SDK's environment variables.
func TestEndpointFromEnvironment(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, v := range []string{"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"} {
		env := append(h.baseEnv(), v+"="+h.srv.URL(), "AWS_REGION=us-east-1")
		r := runCmd(t, h.rawCommand(ctx, env, "status", "--path-style", h.url("locks/env-endpoint")))
		if r.code != 0 || !strings.Contains(r.stdout, ": free") {
			t.Errorf("status with %s: exit code %d, stdout %q, stderr %q", v, r.code, r.stdout, r.stderr)
		}
	}
}

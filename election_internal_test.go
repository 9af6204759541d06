package s3lock

import (
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock/s3locktest"
)

func rawFields(t *testing.T, srv *s3locktest.Server, key string) map[string]any {
	t.Helper()
	out, err := srv.Client().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(srv.Bucket()), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	body, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("lock object %q: %v", body, err)
	}
	return m
}

// TestKeptFieldsSurviveReservationAndRenewal (record rule 2): a held record
// carrying a value and a field this version does not know keeps both
// through a waiter's reservation and the holder's renewal; the release
// keeps the unknown field, drops the value and writes schema 1.
func TestKeptFieldsSurviveReservationAndRenewal(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "elect/kept-fields"
	body := `{"s3lock":2,"state":"held","owner":"o","nonce":"n1","generation":3,"ttl_ms":60000,"written_at":"2025-01-01T00:00:00Z","value":"10.0.0.1:80","later_hint":{"x":[1,2]}}`
	if err := srv.PutObject(ctx, key, []byte(body)); err != nil {
		t.Fatal(err)
	}
	o := defaultOptions()
	o.owner = "o"
	holder, err := newLockObject(srv.Client(), srv.Bucket(), key, &o)
	if err != nil {
		t.Fatal(err)
	}
	s, err := holder.read(ctx)
	if err != nil || s.rec == nil {
		t.Fatalf("read() = %+v, %v; want the schema-2 record accepted", s, err)
	}
	// The hold is ours, as if we had written it.
	l := holder.newLease(s.etag, s.rec, now())

	check := func(stage string, want map[string]any) {
		t.Helper()
		got := rawFields(t, srv, key)
		for k, v := range want {
			gj, _ := json.Marshal(got[k])
			wj, _ := json.Marshal(v)
			if string(gj) != string(wj) {
				t.Errorf("after %s: %s = %s; want %s (record %v)", stage, k, gj, wj, got)
			}
		}
	}
	hint := map[string]any{"x": []any{1.0, 2.0}}

	waiterLM, err := newLockObject(srv.Client(), srv.Bucket(), key, &o)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := waiterLM.read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w := waiterLM.newWaiter(time.Second)
	waiterLM.reserve(ctx, ws, w)
	if !w.reserved {
		t.Fatal("reserve() did not land")
	}
	check("a reservation", map[string]any{"s3lock": 2.0, "nonce": "n1", "value": "10.0.0.1:80", "later_hint": hint, "next": w.id})

	// A waiter of a later version reserves too, adding a field of its own.
	rs, err := waiterLM.read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	later := *rs.rec
	later.extra = map[string]json.RawMessage{"later_hint": json.RawMessage(`{"x":[1,2]}`), "later_waiter": json.RawMessage(`"w2"`)}
	if _, f, err := waiterLM.put(ctx, &later, condition{etag: rs.etag}); f != failNone {
		t.Fatalf("later waiter's reservation: %v", err)
	}
	if err := l.renew(ctx); err != nil {
		t.Fatalf("renew() = %v", err)
	}
	got := rawFields(t, srv, key)
	if got["nonce"] == "n1" {
		t.Fatalf("renew() left the record unrenewed: %v", got)
	}
	check("a renewal", map[string]any{"s3lock": 2.0, "state": "held", "generation": 3.0, "value": "10.0.0.1:80", "later_hint": hint, "later_waiter": "w2", "next": w.id})

	l.halt()
	if _, err := l.release(ctx); err != nil {
		t.Fatalf("release() = %v", err)
	}
	check("the release", map[string]any{"s3lock": 1.0, "state": "free", "generation": 3.0, "value": nil, "later_hint": hint, "later_waiter": "w2"})
}

// TestProclaimSettlesOnOldValue: a Proclaim whose write settles on an
// earlier renewal of ours whose answer was lost (it carried the old value)
// writes again, so that it never returns nil with the old value in S3.
func TestProclaimSettlesOnOldValue(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "elect/proclaim-settle"
	e, err := NewElection(srv.Client(), srv.Bucket(), key, WithAutoRenew(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Campaign(ctx, "old"); err != nil {
		t.Fatal(err)
	}
	defer e.Resign(ctx)
	// A renewal whose answer was lost had landed: S3 holds a record with
	// its nonce and the old value.
	l := e.m.hold
	l.mu.Lock()
	rec := l.rec
	rec.Nonce = newNonce()
	l.pending = renewal{nonce: rec.Nonce, etag: l.etag, start: now()}
	l.mu.Unlock()
	if err := srv.PutObject(ctx, key, encodeRecord(&rec)); err != nil {
		t.Fatal(err)
	}
	if err := e.Proclaim(ctx, "new"); err != nil {
		t.Fatalf("Proclaim() = %v", err)
	}
	if got := rawFields(t, srv, key)["value"]; got != "new" {
		t.Errorf("value in S3 after Proclaim = %v; want new", got)
	}
}

package s3lock

import (
	"bytes"
	"encoding/json"
	"maps"
	"strings"
	"testing"
	"time"
)

// sameRecord reports whether a and b hold the same values (times compared
// as instants).
func sameRecord(a, b *record) bool {
	return a.Schema == b.Schema && a.State == b.State && a.Owner == b.Owner && a.Nonce == b.Nonce &&
		a.Generation == b.Generation && a.TTLMillis == b.TTLMillis &&
		a.AcquiredAt.Equal(b.AcquiredAt) && a.WrittenAt.Equal(b.WrittenAt) && a.Value == b.Value
}

// FuzzDecodeRecord: decodeRecord never panics, rejects bodies larger than
// maxRecordSize, accepts only records that satisfy the record invariants,
// and every record it accepts survives its own encoding unchanged.
func FuzzDecodeRecord(f *testing.F) {
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.UTC)
	for _, r := range []*record{
		{Schema: 1, State: stateHeld, Owner: "host:1:abcd", Nonce: newNonce(), Generation: 1, TTLMillis: 30000, AcquiredAt: t0, WrittenAt: t0},
		{Schema: 1, State: stateFree, Owner: "o", Nonce: "n", Generation: 0, TTLMillis: 1, WrittenAt: t0},
		{Schema: 1, State: stateHeld, Owner: strings.Repeat("<&>", 85), Nonce: "x", Generation: 1<<64 - 1, TTLMillis: maxTTL.Milliseconds(), WrittenAt: t0.In(time.FixedZone("", -9*3600))},
	} {
		f.Add(encodeRecord(r))
	}
	for _, s := range []string{
		``, `null`, `{}`, `[]`, `"s3lock"`, `{"s3lock":1}`,
		`{"s3lock":2,"state":"held","owner":"o","nonce":"n","generation":1,"ttl_ms":1000,"written_at":"2025-01-01T00:00:00Z"}`,
		`{"s3lock":1,"state":"held","owner":"o","nonce":"n","generation":0,"ttl_ms":1000,"written_at":"2025-01-01T00:00:00Z"}`,
		`{"s3lock":1,"state":"held","owner":"o","nonce":"n","generation":1,"ttl_ms":-5,"written_at":"2025-01-01T00:00:00Z"}`,
		`{"s3lock":1,"state":"gone","owner":"o","nonce":"n","generation":1,"ttl_ms":1000,"written_at":"2025-01-01T00:00:00Z"}`,
		`{"s3lock":1,"state":"free","owner":"o","nonce":"n","generation":1,"ttl_ms":1000,"written_at":"2025-01-01T00:00:00Z","extra":1}`,
		`{"s3lock":1,"state":"free","owner":"o","nonce":"n","generation":1,"ttl_ms":1000,"written_at":"2025-01-01T00:00:00Z"} {}`,
		`{"s3lock":1,"state":"free","owner":"o","nonce":"n","generation":1,"ttl_ms":1000,"written_at":"0000-01-01T00:00:00+23:59"}`,
		`{"s3lock":1,"state":"free","owner":"\ud800","nonce":"n","generation":1,"ttl_ms":1000,"written_at":"2025-01-01T00:00:00.1234567891Z"}`,
		`{"s3lock":2,"state":"held","owner":"o","nonce":"n","generation":1,"ttl_ms":1000,"value":"10.0.0.1:80","later":[1,{"a":"b"}],"Value2":null}`,
		`{"s3lock":2,"state":"free","owner":"o","nonce":"n","generation":1,"ttl_ms":1000,"value":"v"}`,
		`{"s3lock":3,"state":"held","owner":"o","nonce":"n","generation":1,"ttl_ms":1000}`,
		`{"S3LOCK":1,"STATE":"free","Owner":"o","nonce":"n","generation":1,"ttl_ms":1000,"written_at":"2025-01-01T00:00:00Z"}`,
	} {
		f.Add([]byte(s))
	}
	f.Add(bytes.Repeat([]byte(" "), maxRecordSize+1))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := decodeRecord(body)
		if err != nil {
			if r != nil {
				t.Fatalf("decodeRecord() = %+v, %v; want no record with an error", r, err)
			}
			return
		}
		if len(body) > maxRecordSize {
			t.Fatalf("decodeRecord() accepted %d bytes; want refusal above maxRecordSize (%d)", len(body), maxRecordSize)
		}
		switch {
		case r.Schema != recordSchema && r.Schema != valueSchema, r.State != stateHeld && r.State != stateFree, r.Nonce == "",
			r.TTLMillis <= 0, r.ttl() > maxTTL, r.held() && r.Generation == 0, len(r.Value) > MaxValueLen:
			t.Fatalf("decodeRecord() accepted a record breaking the invariants: %+v", r)
		}
		enc := encodeRecord(r)
		if len(enc) > maxRecordSize {
			// Only records with fields larger than s3lock ever writes
			// (JSON escaping can grow a string sixfold) get here.
			if len(r.Owner) <= 256 && len(r.Nonce) <= 64 {
				t.Fatalf("a record with a %d-byte owner and a %d-byte nonce encodes to %d bytes, more than maxRecordSize", len(r.Owner), len(r.Nonce), len(enc))
			}
			return
		}
		r2, err := decodeRecord(enc)
		if err != nil {
			t.Fatalf("decodeRecord(encodeRecord(%+v)) = %v; want it accepted", r, err)
		}
		// What encoding changes: a free record loses its value, and the
		// schema says whether there is one.
		want := *r
		if !want.held() {
			want.Value = ""
		}
		want.Schema = recordSchema
		if want.Value != "" {
			want.Schema = valueSchema
		}
		if !sameRecord(&want, r2) {
			t.Fatalf("round trip changed the record:\n%+v\n%+v", &want, r2)
		}
		// Unknown fields come back as they were, or (when they would not
		// fit in maxRecordSize) not at all.
		if r2.extra != nil && !maps.EqualFunc(r.extra, r2.extra, func(a, b json.RawMessage) bool { return bytes.Equal(a, b) }) {
			t.Fatalf("round trip changed the unknown fields:\n%s\n%s", r.extra, r2.extra)
		}
		if enc2 := encodeRecord(r2); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable:\n%s\n%s", enc, enc2)
		}
	})
}

// TestSalvageKeepsReadableGeneration: docs/record-format.md rule 4 says a
// record whose generation can be read as a number continues the
// generations. salvageRecord keeps the generation when another field it
// reads (ttl_ms) has another JSON type, as a newer schema that changed
// ttl_ms's unit or type would write.
func TestSalvageKeepsReadableGeneration(t *testing.T) {
	for _, body := range []string{
		`{"s3lock":2,"state":"held","nonce":"x","generation":7,"ttl_ms":"60s"}`,
		`{"s3lock":2,"state":"held","nonce":"x","generation":7,"ttl_ms":60000.5}`,
		`{"s3lock":2,"state":"held","nonce":"x","generation":7,"ttl_ms":null}`,
	} {
		sv := salvageRecord([]byte(body))
		t.Logf("%s -> %+v", body, sv)
		if !sv.hasGen || sv.generation != 7 {
			t.Errorf("salvageRecord(%s) = %+v; want generation 7 kept", body, sv)
		}
	}
}

package lastrelease

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// maxRecordSize is the largest lock object s3lock will read. A larger object
// is not an s3lock record: it counts as held and is reported as
// [ErrInvalidLockObject].
const maxRecordSize = 4096

// recordSchema is the schema of a record without a value; valueSchema that
// of a record carrying one (an election's). This version reads both and
// treats records of any other schema as foreign. A record is written with
// valueSchema exactly when it carries a value, so that the previous
// release, which accepts only schema 1, counts it as held and never
// rewrites it (see docs/record-format.md).
const (
	recordSchema = 1
	valueSchema  = 2
)

// MaxValueLen is the longest value, in bytes, an [Election] publishes with
// its term.
const MaxValueLen = 1024

// Lock states as written in a record.
const (
	stateHeld = "held"
	stateFree = "free"
)

// record is the JSON document kept in the lock object. Every write carries a
// fresh Nonce, so no two writes have the same body and therefore the same
// ETag (ETags are opaque: the MD5 of the body on many stores, random on S3
// Express One Zone).
type record struct {
	Schema     int       `json:"s3lock"`
	State      string    `json:"state"`
	Owner      string    `json:"owner"`
	Nonce      string    `json:"nonce"`
	Generation uint64    `json:"generation"`
	TTLMillis  int64     `json:"ttl_ms"`
	AcquiredAt time.Time `json:"acquired_at,omitzero"` // holder's clock, for humans
	WrittenAt  time.Time `json:"written_at"`           // writer's clock, for humans
	// Waited is how many grants the holder waited through (as counted by
	// generations) before this one; absent (0) when it did not wait. A
	// release keeps it. Waiters compare it with their own count to queue
	// in order (see wait.go); it is a scheduling hint only, never used to
	// decide whether the lock may be taken.
	Waited uint64 `json:"waited,omitempty"`
	// Next is the id of a waiter that has reserved the next turn, and
	// NextWaited how many grants it had waited through when it did (see
	// wait.go). A waiter writes them into the held record, keeping every
	// other field; the holder's release keeps them, and the free record is
	// then left to that waiter for a bounded time. A scheduling hint only,
	// never used to decide whether the lock may be taken.
	Next       string `json:"next,omitempty"`
	NextWaited uint64 `json:"next_waited,omitempty"`
	// LeaseStart is S3's Last-Modified of the holder's own last write,
	// set by the waiter whose reservation rewrote the record (which moved
	// Last-Modified without extending the lease). Readers date the lease
	// from it. The holder's own writes leave it out: their Last-Modified
	// is the start of the lease. See leaseStart.
	LeaseStart time.Time `json:"lease_start,omitzero"`
	// Value is what an elected leader publishes with its term (see
	// election.go); "" for a Mutex. A free record never carries one.
	Value string `json:"value,omitempty"`
	// extra holds the top-level fields this version does not know, as
	// read. A rewrite of the same hold (a reservation, a renewal, a
	// Proclaim, the release) writes them back; a new grant does not.
	extra map[string]json.RawMessage
}

// knownFields are the JSON names of record's fields. A key that matches
// one of them regardless of case is not kept as an extra field (encoding/
// json matches keys case-insensitively, so it was decoded into the field).
// They are read from the struct's tags, so that a field added to record is
// never also kept (stale) as an extra field.
var knownFields = func() []string {
	var names []string
	t := reflect.TypeFor[record]()
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}()

func (r *record) ttl() time.Duration { return time.Duration(r.TTLMillis) * time.Millisecond }

func (r *record) held() bool { return r.State == stateHeld }

// marshalJSON is json.Marshal without HTML escaping: "&", "<" and ">" in
// an owner or value take one byte in the body, not six.
func marshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// escapedLen is how many bytes s takes in a record's JSON body, quotes
// excluded.
func escapedLen(s string) int {
	b, _ := marshalJSON(s)
	return len(b) - 2
}

// encodeRecord renders r as the lock object's body. A free record is
// written without a value; the schema is valueSchema when the record
// carries a value, recordSchema otherwise. Extra fields kept from the
// record read are appended, unless the body would then exceed
// maxRecordSize (they are then dropped: they can only be hints).
func encodeRecord(r *record) []byte {
	c := *r
	if !c.held() {
		c.Value = ""
	}
	c.Schema = recordSchema
	if c.Value != "" {
		c.Schema = valueSchema
	}
	b, err := marshalJSON(&c)
	if err != nil {
		// A record holds only strings, integers and times; Marshal cannot
		// fail on it except for times outside year 0..9999, which the
		// clock seam could produce. Fall back to no timestamps.
		c.AcquiredAt, c.WrittenAt = time.Time{}, time.Time{}
		b, _ = marshalJSON(&c)
	}
	if len(c.extra) == 0 {
		return b
	}
	out := bytes.TrimSuffix(bytes.Clone(b), []byte("}"))
	keys := make([]string, 0, len(c.extra))
	for k := range c.extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		name, _ := json.Marshal(k)
		out = append(append(append(append(out, ','), name...), ':'), c.extra[k]...)
	}
	out = append(out, '}')
	if len(out) > maxRecordSize || !json.Valid(out) {
		return b
	}
	return out
}

// decodeRecord parses a lock object's body. It accepts only complete
// records of the current schema; anything else is reported with a reason.
// Fields it does not know are ignored (see docs/record-format.md for the
// compatibility rules).
func decodeRecord(body []byte) (*record, error) {
	if len(body) > maxRecordSize {
		return nil, fmt.Errorf("object larger than %d bytes", maxRecordSize)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	// The hint fields are decoded on their own: one that does not parse
	// is ignored, rather than making the whole record invalid.
	var w struct {
		record
		Waited     json.RawMessage `json:"waited"`
		Next       json.RawMessage `json:"next"`
		NextWaited json.RawMessage `json:"next_waited"`
		LeaseStart json.RawMessage `json:"lease_start"`
	}
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("not an s3lock record: %v", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("not an s3lock record: trailing data")
	}
	r := w.record
	hint(w.Waited, &r.Waited)
	hint(w.Next, &r.Next)
	hint(w.NextWaited, &r.NextWaited)
	hint(w.LeaseStart, &r.LeaseStart)
	switch {
	case r.Schema != recordSchema && r.Schema != valueSchema:
		return nil, fmt.Errorf("unknown record schema %d", r.Schema)
	case len(r.Value) > MaxValueLen:
		return nil, fmt.Errorf("record value longer than %d bytes", MaxValueLen)
	case r.State != stateHeld && r.State != stateFree:
		return nil, fmt.Errorf("unknown state %q", r.State)
	case r.Nonce == "":
		return nil, fmt.Errorf("record without nonce")
	case r.TTLMillis <= 0:
		return nil, fmt.Errorf("record with non-positive ttl_ms %d", r.TTLMillis)
	case r.TTLMillis > int64(maxTTL/time.Millisecond):
		return nil, fmt.Errorf("record ttl_ms %d exceeds the maximum", r.TTLMillis)
	case r.State == stateHeld && r.Generation == 0:
		return nil, fmt.Errorf("held record with generation 0")
	}
	r.extra = extraFields(body)
	return &r, nil
}

// extraFields returns the top-level fields of body that record does not
// know (nil when there are none).
func extraFields(body []byte) map[string]json.RawMessage {
	var all map[string]json.RawMessage
	if json.Unmarshal(body, &all) != nil {
		return nil
	}
	for k := range all {
		if slices.ContainsFunc(knownFields, func(f string) bool { return strings.EqualFold(f, k) }) || !utf8.ValidString(k) {
			delete(all, k)
		}
	}
	if len(all) == 0 {
		return nil
	}
	return all
}

// hint decodes a hint field into v, leaving v zero if it does not parse.
func hint[T any](raw json.RawMessage, v *T) {
	if len(raw) > 0 && json.Unmarshal(raw, v) != nil {
		var zero T
		*v = zero
	}
}

// salvage is what can still be read from a lock object that is not a
// record this version accepts (a newer schema, an unknown state, a field
// out of range): its generation and TTL, when they are present as JSON
// numbers of the right kind. Such an object counts as held, is not taken
// over before max(own TTL, its TTL) plus the margins, and the next grant
// continues its generations (see docs/record-format.md).
type salvage struct {
	generation uint64
	hasGen     bool
	ttl        time.Duration // 0 when unknown; at most maxTTL
}

// salvageRecord reads what it can of an object decodeRecord refused.
// Each field is read on its own, so one of another type does not hide the
// other.
func salvageRecord(body []byte) salvage {
	var raw struct {
		Generation json.RawMessage `json:"generation"`
		TTLMillis  json.RawMessage `json:"ttl_ms"`
	}
	var sv salvage
	if len(body) > maxRecordSize || json.Unmarshal(body, &raw) != nil {
		return sv
	}
	var gen uint64
	if len(raw.Generation) > 0 && json.Unmarshal(raw.Generation, &gen) == nil {
		sv.generation, sv.hasGen = gen, true
	}
	var ms int64
	if len(raw.TTLMillis) > 0 && json.Unmarshal(raw.TTLMillis, &ms) == nil && ms > 0 {
		sv.ttl = maxTTL
		if ms < maxTTL.Milliseconds() {
			sv.ttl = time.Duration(ms) * time.Millisecond
		}
	}
	return sv
}

// newNonce returns 128 random bits in hex.
func newNonce() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

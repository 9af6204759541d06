package s3lock

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// maxRecordSize is the largest lock object s3lock will read. A larger object
// is not an s3lock record: it counts as held and is reported as
// [ErrInvalidLockObject].
const maxRecordSize = 4096

// recordSchema is the value of the "s3lock" field in every record this
// version writes; records of any other schema are treated as foreign.
const recordSchema = 1

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
}

func (r *record) ttl() time.Duration { return time.Duration(r.TTLMillis) * time.Millisecond }

func (r *record) held() bool { return r.State == stateHeld }

// encodeRecord renders r as the lock object's body.
func encodeRecord(r *record) []byte {
	b, err := json.Marshal(r)
	if err != nil {
		// A record holds only strings, integers and times; Marshal cannot
		// fail on it except for times outside year 0..9999, which the
		// clock seam could produce. Fall back to no timestamps.
		c := *r
		c.AcquiredAt, c.WrittenAt = time.Time{}, time.Time{}
		b, _ = json.Marshal(&c)
	}
	return b
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
	case r.Schema != recordSchema:
		return nil, fmt.Errorf("unknown record schema %d", r.Schema)
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
	return &r, nil
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

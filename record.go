package s3lock

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// MaxRecordSize is the largest lock object s3lock will read. A larger object
// is not an s3lock record: it counts as held and is reported as
// [ErrInvalidLockObject].
const MaxRecordSize = 4096

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
func decodeRecord(body []byte) (*record, error) {
	if len(body) > MaxRecordSize {
		return nil, fmt.Errorf("object larger than %d bytes", MaxRecordSize)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var r record
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("not an s3lock record: %v", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("not an s3lock record: trailing data")
	}
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

// newNonce returns 128 random bits in hex.
func newNonce() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

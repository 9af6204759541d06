package s3lock

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
	// sharedSchema is that of a record held by several holders at once
	// (semaphores and read locks, see shared.go): schema 1 plus limit and
	// holders. Releases before it read such a record as another version's
	// hold (rule 4 of docs/record-format.md): held, honouring its ttl_ms
	// and generation, never rewritten.
	sharedSchema = 3
)

// maxHolders bounds the holders a shared record lists; the 4 KiB record
// is full well before that (see docs/record-format.md).
const maxHolders = 64

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
	// Limit is the number of units a shared record's holders share (a
	// Semaphore's limit), or 0 for the shared holds of an RWMutex (any
	// number of readers). Only a shared record carries it.
	Limit int64 `json:"limit,omitempty"`
	// Holders lists the holds of a shared record (schema 3), each with its
	// own lease; empty for every other record.
	Holders []holder `json:"holders,omitempty"`
	// NextUnits is how many units the waiter named by Next needs (0: all
	// of them, an exclusive hold). A scheduling hint like Next.
	NextUnits int64 `json:"next_units,omitempty"`
	// NextSeq counts the refreshes of the reservation in Next: a waiter
	// that stays reserved on a shared hold rewrites it every
	// reservationRefresh, and one unchanged for reservationStale is
	// ignored (its waiter has gone). A scheduling hint like Next.
	NextSeq uint64 `json:"next_seq,omitempty"`
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

// keepHints copies into r what a waiter may have written into a record of
// the same hold: its reservation of the next turn, and the fields this
// version does not know.
func (r *record) keepHints(from *record) {
	r.Next, r.NextWaited, r.NextUnits, r.NextSeq, r.extra = from.Next, from.NextWaited, from.NextUnits, from.NextSeq, from.extra
}

// stampFor prepares r, a copy of the record in s, for a rewrite that is
// not the holders' own (a waiter's reservation or its withdrawal): it
// keeps when their leases began, by S3's clock, in LeaseStart or, in a
// shared record, in each holder's Since.
func (r *record) stampFor(s *snapshot) {
	switch {
	case !r.held():
	case r.shared():
		r.Holders = s.stampOthers(nil)
	default:
		r.LeaseStart = s.leaseStart()
	}
}

// shared reports a record held by the holders it lists (schema 3).
func (r *record) shared() bool { return len(r.Holders) > 0 }

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
	if !c.held() {
		c.Holders, c.Limit = nil, 0
	}
	c.Schema = recordSchema
	switch {
	case c.shared():
		c.Schema = sharedSchema
	case c.Value != "":
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
	out := appendExtra(b, c.extra)
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
		NextUnits  json.RawMessage `json:"next_units"`
		NextSeq    json.RawMessage `json:"next_seq"`
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
	hint(w.NextUnits, &r.NextUnits)
	hint(w.NextSeq, &r.NextSeq)
	hint(w.LeaseStart, &r.LeaseStart)
	if r.NextUnits < 0 {
		r.NextUnits = 0
	}
	switch {
	case r.Schema != recordSchema && r.Schema != valueSchema && r.Schema != sharedSchema:
		return nil, fmt.Errorf("unknown record schema %d", r.Schema)
	case r.Schema != sharedSchema && (len(r.Holders) > 0 || r.Limit != 0):
		return nil, fmt.Errorf("schema %d record with holders or a limit", r.Schema)
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
	// After the checks every record passes: a shared record's bounds
	// (its entries' ttl_ms below its own) rest on them.
	if r.Schema == sharedSchema {
		if err := checkShared(&r); err != nil {
			return nil, err
		}
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

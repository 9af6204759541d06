// The shared record (schema 3): several holds in one lock object, each
// with its own lease.

package s3lock

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// maxEntryOwner bounds the owner a holder writes into its entry: the
// record is at most 4 KiB and shared by all holders. A holder whose entry
// would not fit even so writes it without an owner.
const maxEntryOwner = 32

// holder is one hold in a shared record.
//
// Since is the moment, by S3's clock (Unix seconds, the resolution of
// Last-Modified), of the holder's last write: its lease counts from it.
// The holder's own writes leave it out (their Last-Modified is the start
// of its lease); every other write of the record stamps the entries that
// lack it with the Last-Modified of the version it replaces, which is
// never earlier than their last write. So a holder's lease is dated from
// Since when present, else from the object's Last-Modified: never
// earlier than it began.
//
// Nonce is fresh for every write of the holder's own (acquire, renew):
// an entry whose nonce has not changed for TTL + margin on a reader's
// monotonic clock belongs to a holder that has not renewed.
type holder struct {
	ID        string `json:"id"`
	Owner     string `json:"owner,omitempty"`
	Units     int64  `json:"units"`
	Token     uint64 `json:"token"`
	TTLMillis int64  `json:"ttl_ms"`
	Nonce     string `json:"nonce"`
	Since     int64  `json:"since,omitempty"`
	// extra keeps the fields of the entry this version does not know; a
	// writer writes them back unchanged (docs/record-format.md, rule 2).
	extra map[string]json.RawMessage
}

// holderFields are the JSON names of holder's fields.
var holderFields = func() []string {
	var names []string
	t := reflect.TypeFor[holder]()
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}()

// holderJSON is holder without its methods, for encoding/json.
type holderJSON holder

// UnmarshalJSON decodes an entry, keeping the fields it does not know.
func (h *holder) UnmarshalJSON(b []byte) error {
	var v holderJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	for k := range all {
		if slices.ContainsFunc(holderFields, func(f string) bool { return strings.EqualFold(f, k) }) || !utf8.ValidString(k) {
			delete(all, k)
		}
	}
	*h = holder(v)
	h.extra = nil
	if len(all) > 0 {
		h.extra = all
	}
	return nil
}

// MarshalJSON encodes an entry with the fields it kept.
func (h holder) MarshalJSON() ([]byte, error) {
	b, err := marshalJSON(holderJSON(h))
	if err != nil || len(h.extra) == 0 {
		return b, err
	}
	return appendExtra(b, h.extra), nil
}

func (h *holder) ttl() time.Duration { return time.Duration(h.TTLMillis) * time.Millisecond }

// key names this write of the holder's for the monotonic expiry rule.
func (h *holder) key() string { return "holder:" + h.ID + ":" + h.Nonce }

// checkShared validates a schema-3 record.
func checkShared(r *record) error {
	switch {
	case r.State != stateHeld:
		return fmt.Errorf("shared record in state %q", r.State)
	case len(r.Holders) == 0:
		return fmt.Errorf("shared record without holders")
	case len(r.Holders) > maxHolders:
		return fmt.Errorf("shared record with %d holders, more than %d", len(r.Holders), maxHolders)
	case r.Limit < 0:
		return fmt.Errorf("shared record with negative limit %d", r.Limit)
	case r.Value != "":
		return fmt.Errorf("shared record with a value")
	}
	var units int64
	seen := make(map[string]bool, len(r.Holders))
	for i := range r.Holders {
		h := &r.Holders[i]
		switch {
		case h.ID == "" || len(h.ID) > 64:
			return fmt.Errorf("holder %d: id of %d bytes", i, len(h.ID))
		case seen[h.ID]:
			return fmt.Errorf("holder %q listed twice", h.ID)
		case h.Units <= 0 || (r.Limit > 0 && h.Units > r.Limit) || (r.Limit == 0 && h.Units != 1):
			return fmt.Errorf("holder %q: %d units", h.ID, h.Units)
		case h.Token == 0 || h.Token > r.Generation:
			return fmt.Errorf("holder %q: token %d outside 1..%d", h.ID, h.Token, r.Generation)
		case h.TTLMillis <= 0 || h.TTLMillis > r.TTLMillis:
			return fmt.Errorf("holder %q: ttl_ms %d outside 1..%d", h.ID, h.TTLMillis, r.TTLMillis)
		case h.Nonce == "":
			return fmt.Errorf("holder %q without nonce", h.ID)
		case h.Since < 0:
			return fmt.Errorf("holder %q: negative since", h.ID)
		}
		seen[h.ID] = true
		if units > math.MaxInt64-h.Units {
			return fmt.Errorf("shared record whose units overflow")
		}
		units += h.Units
	}
	if r.Limit > 0 && units > r.Limit {
		return fmt.Errorf("shared record with %d units held, more than its limit %d", units, r.Limit)
	}
	return nil
}

// appendExtra appends the fields in extra, sorted by name, to the JSON
// object b.
func appendExtra(b []byte, extra map[string]json.RawMessage) []byte {
	out := b[: len(b)-1 : len(b)-1] // without "}", never writing into b
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		name, _ := json.Marshal(k)
		out = append(append(append(append(out, ','), name...), ':'), extra[k]...)
	}
	return append(out, '}')
}

// entryOwner is owner cut to maxEntryOwner bytes at a character boundary.
func entryOwner(owner string) string {
	if len(owner) <= maxEntryOwner {
		return owner
	}
	cut := maxEntryOwner
	for cut > 0 && !utf8.RuneStart(owner[cut]) {
		cut--
	}
	return owner[:cut]
}

// stampOthers returns the holders of s's record for a write that does not
// renew them: each entry without Since gets the Last-Modified of the
// version in s (see holder). Holders for whom keep returns false are left
// out. The entries are copies.
func (s *snapshot) stampOthers(keep func(*holder) bool) []holder {
	var out []holder
	for _, h := range s.rec.Holders {
		if keep != nil && !keep(&h) {
			continue
		}
		if h.Since == 0 && !s.lastModified.IsZero() {
			h.Since = s.lastModified.Unix()
		}
		out = append(out, h)
	}
	return out
}

// holderStart is when, by S3's clock, the lease of h (an entry of s's
// record) began at the latest: its Since, or the object's Last-Modified.
func (s *snapshot) holderStart(h *holder) time.Time {
	if h.Since > 0 {
		if t := time.Unix(h.Since, 0); t.Before(s.lastModified) {
			return t
		}
	}
	return s.lastModified
}

// holderOwners names the holders in hs for a *LockedError: their owners,
// the first few of them.
func holderOwners(hs []holder) string {
	const show = 3
	var names []string
	for i := range min(len(hs), show) {
		names = append(names, cmp.Or(hs[i].Owner, hs[i].ID))
	}
	s := strings.Join(names, ", ")
	if len(hs) > show {
		s += fmt.Sprintf(" and %d more", len(hs)-show)
	}
	return s
}

// maxHolderTTL is the TTL a shared record carries at its top level: the
// longest of its holders'. Releases that cannot read the holders honour
// it for the whole object.
func maxHolderTTL(hs []holder) int64 {
	var m int64
	for _, h := range hs {
		m = max(m, h.TTLMillis)
	}
	return m
}

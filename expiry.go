// Judging from what S3 answered how long a hold seen in it has left: the
// monotonic expiry watch, and the arithmetic on S3's timestamps.

package s3lock

import (
	"sync"
	"time"
)

// expiryWatch implements the monotonic expiry rule: the versions of the
// leases in the object last seen (see watchKeys) and when, on this
// process's monotonic clock, each was first seen.
type expiryWatch struct {
	mu    sync.Mutex // protects first
	first map[string]time.Time
}

// observe remembers when each of the versions in keys was first seen, and
// forgets the versions no longer in the object.
func (w *expiryWatch) observe(keys []string, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	next := make(map[string]time.Time, len(keys))
	for _, k := range keys {
		if t, ok := w.first[k]; ok && !t.IsZero() {
			next[k] = t
		} else {
			next[k] = at
		}
	}
	w.first = next
}

// since returns when the version key was first seen, if it is one watched.
func (w *expiryWatch) since(key string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.first[key]
	return t, ok && !t.IsZero()
}

// seenLease is one lease a snapshot shows: the hold of a record or of an
// invalid object, or one holder's of a shared record.
type seenLease struct {
	key   string        // its version, for the monotonic rule
	start time.Time     // when it began by S3's clock, at the latest (zero: unknown)
	ttl   time.Duration // the TTL it is judged by
	h     *holder       // the entry, in a shared record
}

// leases returns the leases held in s (none for no object or a free
// record); own is the reader's TTL (see holdTTL).
func (s *snapshot) leases(own time.Duration) []seenLease {
	switch {
	case !s.exists || (s.rec != nil && !s.rec.held()):
		return nil
	case s.rec != nil && s.rec.shared():
		out := make([]seenLease, len(s.rec.Holders))
		for i := range s.rec.Holders {
			h := &s.rec.Holders[i]
			out[i] = seenLease{key: h.key(), start: s.holderStart(h), ttl: h.ttl(), h: h}
		}
		return out
	}
	return []seenLease{{key: s.versionKey(), start: s.leaseStart(), ttl: s.holdTTL(own)}}
}

// watchKeys are the versions of s the monotonic rule watches.
func (s *snapshot) watchKeys() []string {
	if s.rec != nil && s.rec.shared() {
		return recordKeys(s.rec)
	}
	return []string{s.versionKey()}
}

// recordKeys are the versions of the leases in rec.
func recordKeys(rec *record) []string {
	if !rec.shared() {
		return []string{recordKey(rec)}
	}
	keys := make([]string, len(rec.Holders))
	for i := range rec.Holders {
		keys[i] = rec.Holders[i].key()
	}
	return keys
}

// holdLeft returns how long until every lease held in s may be judged
// expired (<= 0: all are, or none is held).
func (lm *lockObject) holdLeft(s *snapshot) time.Duration {
	var left time.Duration
	for _, l := range s.leases(lm.ttl) {
		left = max(left, lm.leaseLeft(s, l))
	}
	return left
}

// leaseLeft is untilExpired for one lease seen in s.
func (lm *lockObject) leaseLeft(s *snapshot, l seenLease) time.Duration {
	need := l.ttl + lm.margin
	left := need
	if since, ok := lm.watch.since(l.key); ok {
		left = need - s.seenAt.Sub(since)
	}
	if byS3, ok := s.untilByS3(l.start, need); ok && byS3 < left && lm.clockTrustedFor(s) {
		left = byS3
	}
	return left
}

// untilExpired returns how long until a hold seen in s, with the given TTL,
// may be judged expired; <= 0 means it is expired now. Two rules, each safe
// on its own, and the earlier wins:
//   - this process's monotonic clock: the same version (the holder's
//     nonce, see versionKey) has been seen for ttl + margin since it was
//     first seen (the holder's write happened before).
//   - S3's clock, once this process has seen it agree with the store's
//     own stamps (see clock.go): Date - the start of the lease >= ttl +
//     margin + 1s. Both are truncated to the second, so this proves the
//     holder's write is older than ttl + margin.
//
// Neither rule reads a client's wall clock.
func (lm *lockObject) untilExpired(s *snapshot, ttl time.Duration) time.Duration {
	return lm.leaseLeft(s, seenLease{key: s.versionKey(), start: s.leaseStart(), ttl: ttl})
}

// untilExpiredByS3 is the S3-clock rule of untilExpired: how long, by the
// Date of the answer in s, until the hold's lease started need + 1 s
// before. ok is false when s lacks either time.
func (s *snapshot) untilExpiredByS3(need time.Duration) (left time.Duration, ok bool) {
	return s.untilByS3(s.leaseStart(), need)
}

// untilByS3 is untilExpiredByS3 for a lease that began at start.
func (s *snapshot) untilByS3(start time.Time, need time.Duration) (left time.Duration, ok bool) {
	if s.serverDate.IsZero() || start.IsZero() {
		return 0, false
	}
	// Only a positive age counts: Sub saturates at ±292 years, and
	// subtracting a saturated negative age would overflow.
	age := max(s.serverDate.Sub(start), 0)
	return need + time.Second - age, true
}

// leaseStart is when, by S3's clock, the holder made the write its lease
// counts from: the object's Last-Modified, or, when a waiter's
// reservation rewrote the record since, the Last-Modified that waiter
// copied into it (never later than the object's own).
func (s *snapshot) leaseStart() time.Time {
	if s.rec != nil && !s.rec.LeaseStart.IsZero() && s.rec.LeaseStart.Before(s.lastModified) {
		return s.rec.LeaseStart
	}
	return s.lastModified
}

// expiresAt is the earliest time, by S3's clock, at which a hold seen in s
// with the given TTL can end (zero when S3 gave no Last-Modified).
func (s *snapshot) expiresAt(ttl time.Duration) time.Time {
	if start := s.leaseStart(); !start.IsZero() {
		return start.Add(ttl)
	}
	return time.Time{}
}

// holdTTL is the TTL a hold seen in s is judged by: the record's own, or
// for an object that is not a record this version accepts, the longer of
// own and the TTL it carries (see docs/record-format.md).
func (s *snapshot) holdTTL(own time.Duration) time.Duration {
	if s.rec != nil {
		return s.rec.ttl()
	}
	return max(own, s.salvaged.ttl)
}

// generation is the generation of the record in s, or what could be read
// of it from an invalid object (0 when none).
func (s *snapshot) generation() uint64 {
	if s.rec != nil {
		return s.rec.Generation
	}
	return s.salvaged.generation
}

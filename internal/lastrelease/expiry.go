// Judging from what S3 answered how long a hold seen in it has left: the
// monotonic expiry watch, and the arithmetic on S3's timestamps.

package lastrelease

import (
	"sync"
	"time"
)

// expiryWatch implements the monotonic expiry rule: the version of the
// object last seen (see versionKey) and when, on this process's monotonic
// clock, it was first seen.
type expiryWatch struct {
	mu    sync.Mutex // protects the fields below
	key   string
	first time.Time
}

// observe remembers when a version of the object was first seen.
func (w *expiryWatch) observe(key string, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if key != w.key || w.first.IsZero() {
		w.key, w.first = key, at
	}
}

// since returns when the version key was first seen, if it is the one
// watched.
func (w *expiryWatch) since(key string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.first, w.key == key && !w.first.IsZero()
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
	need := ttl + lm.margin
	left := need
	if since, ok := lm.watch.since(s.versionKey()); ok {
		left = need - s.seenAt.Sub(since)
	}
	if byS3, ok := s.untilExpiredByS3(need); ok && byS3 < left && lm.clockTrustedFor(s) {
		left = byS3
	}
	return left
}

// untilExpiredByS3 is the S3-clock rule of untilExpired: how long, by the
// Date of the answer in s, until the hold's lease started need + 1 s
// before. ok is false when s lacks either time.
func (s *snapshot) untilExpiredByS3(need time.Duration) (left time.Duration, ok bool) {
	start := s.leaseStart()
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

package s3lock

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// LockStatus describes a lock object as S3 returned it.
type LockStatus struct {
	Bucket, Key string
	// Exists is false when there is no object at the key.
	Exists bool
	// ETag identifies this version of the object; pass it to ForceUnlock.
	ETag string
	// Held reports a record in the held state (expired or not), or an
	// invalid object (which counts as held).
	Held bool
	// Expired reports that the hold is over by S3's clock: the answer's
	// Date is at least TTL + margin + 1 s after the lease began. A
	// contender acts on that only once it has seen S3's Date agree with
	// the store's Last-Modified (see the package documentation).
	Expired bool
	// Owner, Generation and TTL come from the record.
	Owner      string
	Generation uint64
	TTL        time.Duration
	// Value is what the holder published with its hold (see [WithValue]
	// and [Election.Campaign]); "" when none.
	Value string
	// Since is when the holder acquired the lock, by the holder's own
	// clock (for humans; zero when unknown or not held). It is the Since
	// a [LockedError] reports for the same hold.
	Since time.Time
	// Until is the earliest end of the lease by S3's clock: TTL after the
	// holder's last write (its Last-Modified, which a waiter's reservation
	// in the record does not move), zero when not held. It is the Until a
	// [LockedError] reports for the same hold.
	Until time.Time
	// LastModified and ServerTime are S3's clock: when the object was last
	// written, and the Date of the answer.
	LastModified time.Time
	ServerTime   time.Time
	// AcquiredAt is Since under its old name.
	//
	// Deprecated: use Since.
	AcquiredAt time.Time
	// ExpiresAt is Until under its old name.
	//
	// Deprecated: use Until.
	ExpiresAt time.Time
	// Invalid is why the object is not an s3lock record, when it is not.
	Invalid error
	// Holders lists the holds of a shared record (a Semaphore's or an
	// RWMutex's readers), nil otherwise. For such a record Owner names
	// the first few holders, Until is the latest end of their leases,
	// and Expired reports that every one of them is over by S3's clock.
	Holders []HolderStatus
	// Limit is the units a Semaphore's holders share (0 for readers, or
	// for a record that is not shared), and Units how many they hold.
	Limit, Units int64
}

// HolderStatus describes one holder of a shared record.
type HolderStatus struct {
	// ID names the holder in the record; pass it to ForceUnlockHolder.
	ID    string
	Owner string
	// Units is how many units it holds (1 for a reader), Token the
	// fencing token of its grant, TTL its lease.
	Units int64
	Token uint64
	TTL   time.Duration
	// Until is the earliest end of its lease by S3's clock, and Expired
	// reports that it is over by S3's clock (see LockStatus.Expired).
	Until   time.Time
	Expired bool
}

// Inspect reads the lock object at bucket/key with one GET and describes
// it. It writes nothing. A missing object is a status with Exists false,
// not an error; a missing bucket matches ErrBucketNotFound.
func Inspect(ctx context.Context, client S3API, bucket, key string) (*LockStatus, error) {
	lm, err := inspector(client, bucket, key)
	if err != nil {
		return nil, err
	}
	s, err := lm.read(ctx)
	if err != nil {
		return nil, err
	}
	return lm.status(s), nil
}

// ForceUnlock breaks the hold on the lock object at bucket/key, but only if
// the object still has the given ETag (as returned by Inspect): it never
// breaks a hold the caller did not see. It overwrites the object with a free
// record whose generation is one more than the broken hold's, so a holder
// that comes back finds its lease lost and its fencing token outdated.
// It returns the status of what it broke. On an ETag mismatch it returns an
// error matching ErrChanged and writes nothing; when S3's answer is lost or
// ambiguous, it reads the object back and reports whether its break
// landed. When the object is not a record this version accepts but carries
// a generation (a newer version's record, say), the free record continues
// from it. Only when no generation can be read at all does the free record
// start again at generation 0, so fencing tokens restart at 1 (a protected
// resource that remembers the largest token it saw will then refuse them
// until told otherwise; that errs on the safe side). Acquiring over such an
// object after its TTL does the same. A record at the largest generation
// (2^64−1) is refused with an error matching [ErrInvalidLockObject]: its
// fencing token cannot grow.
func ForceUnlock(ctx context.Context, client S3API, bucket, key, etag string) (*LockStatus, error) {
	lm, err := inspector(client, bucket, key)
	if err != nil {
		return nil, err
	}
	if etag == "" {
		return nil, fmt.Errorf("%w: empty ETag", ErrInvalidArgument)
	}
	s, err := lm.read(ctx)
	if err != nil {
		return nil, err
	}
	if !s.exists || s.etag != etag {
		return nil, fmt.Errorf("%w: %s has ETag %q, not %q", ErrChanged, lm.name(), s.etag, etag)
	}
	st := lm.status(s)
	rec := &record{
		Schema:    recordSchema,
		State:     stateFree,
		Owner:     "s3lock-force-unlock",
		Nonce:     newNonce(),
		TTLMillis: DefaultTTL.Milliseconds(),
		WrittenAt: lm.clock.Now(),
	}
	if rec.Generation, err = lm.nextGeneration(s); err != nil {
		return nil, err
	}
	if s.rec != nil {
		rec.TTLMillis = s.rec.TTLMillis
	}
	_, f, err := lm.put(ctx, rec, condition{etag: etag})
	switch f {
	case failNone:
		return st, nil
	case failPermanent:
		return nil, err
	}
	// A 412 or 409 can answer the SDK's retry of a write that was applied,
	// and a lost answer says nothing: read back to learn whether the break
	// is ours.
	rctx, cancel := resolveContext(ctx, lm.resolveTimeout)
	defer cancel()
	now, rerr := lm.read(rctx)
	switch {
	case rerr != nil:
		return nil, errors.Join(err, rerr)
	case now.rec != nil && now.rec.Nonce == rec.Nonce:
		return st, nil
	case f == failPrecondition || f == failNotFound || f == failConflict:
		return nil, fmt.Errorf("%w: %w", ErrChanged, err)
	}
	return nil, err
}

// ForceUnlockHolder breaks one hold of a shared record (a Semaphore's or
// an RWMutex reader's): it removes the holder with the given ID (as
// Inspect lists it in Holders) from the object, but only if the object
// still has the given ETag, so it never breaks what the caller did not
// see. The other holders keep their holds. The record's generation grows
// by one, as for every grant. The holder finds its hold lost at its next
// renewal or release. When it was the last holder, the object is left
// free. It returns the status of what it found. On an ETag mismatch it
// returns an error matching ErrChanged and writes nothing; when the
// object is not a shared record or does not list id, one matching
// [ErrNotHeld].
func ForceUnlockHolder(ctx context.Context, client S3API, bucket, key, etag, id string) (*LockStatus, error) {
	lm, err := inspector(client, bucket, key)
	if err != nil {
		return nil, err
	}
	if etag == "" || id == "" {
		return nil, fmt.Errorf("%w: empty ETag or holder ID", ErrInvalidArgument)
	}
	s, err := lm.read(ctx)
	if err != nil {
		return nil, err
	}
	if !s.exists || s.etag != etag {
		return nil, fmt.Errorf("%w: %s has ETag %q, not %q", ErrChanged, lm.name(), s.etag, etag)
	}
	if s.rec == nil || !s.rec.shared() || !slices.ContainsFunc(s.rec.Holders, func(h holder) bool { return h.ID == id }) {
		return nil, fmt.Errorf("%w: %s does not list holder %q", ErrNotHeld, lm.name(), id)
	}
	st := lm.status(s)
	rec := *s.rec
	if rec.Generation, err = lm.nextGeneration(s); err != nil {
		return nil, err
	}
	rec.Nonce, rec.WrittenAt = newNonce(), lm.clock.Now()
	rec.Holders = s.stampOthers(func(h *holder) bool { return h.ID != id })
	if len(rec.Holders) == 0 {
		rec.State, rec.Limit = stateFree, 0
	} else {
		rec.TTLMillis = maxHolderTTL(rec.Holders)
	}
	_, f, err := lm.put(ctx, &rec, condition{etag: etag})
	switch f {
	case failNone:
		return st, nil
	case failPermanent:
		return nil, err
	}
	rctx, cancel := resolveContext(ctx, lm.resolveTimeout)
	defer cancel()
	now, rerr := lm.read(rctx)
	switch {
	case rerr != nil:
		return nil, errors.Join(err, rerr)
	case now.rec != nil && now.rec.Nonce == rec.Nonce:
		return st, nil
	case f == failPrecondition || f == failNotFound || f == failConflict:
		return nil, fmt.Errorf("%w: %w", ErrChanged, err)
	}
	return nil, err
}

// inspector is the lease manager Inspect and ForceUnlock read and write
// through: default options, no owner.
func inspector(client S3API, bucket, key string) (*lockObject, error) {
	o := defaultOptions()
	return newLockObject(client, bucket, key, &o)
}

func (lm *lockObject) status(s *snapshot) *LockStatus {
	st := &LockStatus{
		Bucket: lm.bucket, Key: lm.key, Exists: s.exists, ETag: s.etag,
		LastModified: s.lastModified, ServerTime: s.serverDate, Invalid: s.invalid,
	}
	if !s.exists {
		return st
	}
	ttl := s.holdTTL(lm.ttl)
	st.Generation, st.TTL = s.generation(), ttl
	if s.rec != nil {
		st.Owner, st.Since = s.rec.Owner, s.rec.AcquiredAt
		st.Value = s.rec.Value
		st.Held = s.rec.held()
	} else {
		st.Held = true
	}
	switch {
	case s.rec != nil && s.rec.shared():
		st.Owner, st.Limit, st.Expired = holderOwners(s.rec.Holders), s.rec.Limit, true
		for _, l := range s.leases(lm.ttl) {
			left, ok := s.untilByS3(l.start, l.ttl+lm.margin)
			hs := HolderStatus{ID: l.h.ID, Owner: l.h.Owner, Units: l.h.Units, Token: l.h.Token, TTL: l.ttl, Expired: ok && left <= 0}
			if !l.start.IsZero() {
				hs.Until = l.start.Add(l.ttl)
			}
			if hs.Until.After(st.Until) {
				st.Until = hs.Until
			}
			st.Expired = st.Expired && hs.Expired
			st.Units += hs.Units
			st.Holders = append(st.Holders, hs)
		}
	case st.Held:
		st.Until = s.expiresAt(ttl)
		left, ok := s.untilExpiredByS3(ttl + lm.margin)
		st.Expired = ok && left <= 0
	}
	st.AcquiredAt, st.ExpiresAt = st.Since, st.Until
	return st
}

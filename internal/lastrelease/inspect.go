package lastrelease

import (
	"context"
	"errors"
	"fmt"
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
	if st.Held {
		st.Until = s.expiresAt(ttl)
		left, ok := s.untilExpiredByS3(ttl + lm.margin)
		st.Expired = ok && left <= 0
	}
	st.AcquiredAt, st.ExpiresAt = st.Since, st.Until
	return st
}

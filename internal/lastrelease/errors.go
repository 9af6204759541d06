package lastrelease

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors. Match them with [errors.Is]; the typed errors below wrap
// them and carry the details.
var (
	// ErrLocked means another owner holds the lock (or another goroutine of
	// this process holds it through the same Mutex). TryLock returns it as a
	// *LockedError.
	ErrLocked = errors.New("s3lock: locked")

	// ErrNotHeld means Unlock (or another operation that needs a hold) was
	// called on a Mutex that does not hold the lock.
	ErrNotHeld = errors.New("s3lock: lock not held by this mutex")

	// ErrLeaseLost means this Mutex held the lock but its lease ran out and
	// the lock object now belongs to someone else (or the holder could not
	// prove in time that it still held it). Whatever was done under the lock
	// may have overlapped with another holder: use [Mutex.Token] to fence.
	ErrLeaseLost = errors.New("s3lock: lease lost")

	// ErrInvalidLockObject means the object at the lock's key is not an
	// s3lock record this version accepts: corrupt, written by something
	// else, of a newer schema, or larger than 4 KiB. Such an object counts
	// as held (see [LockedError.Invalid]); it is taken over only once S3
	// shows it older than the TTL (see docs/record-format.md). Acquire and
	// ForceUnlock also return it for a record whose fencing token cannot
	// grow.
	ErrInvalidLockObject = errors.New("s3lock: invalid lock object")

	// ErrChanged means the lock object was not what the caller last saw:
	// its ETag differs, so ForceUnlock did not touch it.
	ErrChanged = errors.New("s3lock: lock object changed since it was inspected")

	// ErrInvalidArgument means New was given an argument or option that it
	// cannot accept. Nothing was written to S3.
	ErrInvalidArgument = errors.New("s3lock: invalid argument")

	// ErrBucketNotFound means the bucket does not exist (S3 NoSuchBucket).
	ErrBucketNotFound = errors.New("s3lock: bucket not found")

	// ErrAccessDenied means S3 refused the request (403): check the IAM
	// policy (s3:GetObject and s3:PutObject on the lock key).
	ErrAccessDenied = errors.New("s3lock: access denied")

	// ErrUnavailable means S3 could not be reached or failed in a way a
	// retry may fix: a network error, a 5xx answer, throttling. The error
	// also carries the SDK's own error.
	ErrUnavailable = errors.New("s3lock: S3 unavailable")

	// ErrConditionalWritesUnsupported means the store does not implement
	// conditional writes (If-None-Match / If-Match on PutObject), or was
	// seen ignoring them. A lock on such a store would not exclude anyone,
	// so s3lock refuses to use it.
	ErrConditionalWritesUnsupported = errors.New("s3lock: store does not support conditional writes")

	// ErrClockSkew means the store's answers carry a Date that runs ahead
	// of the Last-Modified it stamps on writes (a gateway with its own
	// clock, say). s3lock is safe on such a store: it judges expiry there
	// by each contender's own clock, so a dead holder's lock is taken over
	// one TTL + margin after a contender first sees it. [Probe] returns it
	// as a *ClockSkewError.
	ErrClockSkew = errors.New("s3lock: S3's Date disagrees with its Last-Modified")
)

// ClockSkewError reports a store whose answers are dated by another clock
// than the one that stamps Last-Modified. It unwraps to [ErrClockSkew].
type ClockSkewError struct {
	// Bucket and Key name the object written.
	Bucket, Key string
	// Date is the Date of the answer to the write; LastModified is what
	// the store reported for that write afterwards.
	Date, LastModified time.Time
}

// Error implements error.
func (e *ClockSkewError) Error() string {
	return fmt.Sprintf("%v: a write to s3://%s/%s was answered with Date %s but stamped Last-Modified %s (%v ahead)",
		ErrClockSkew, e.Bucket, e.Key, e.Date.UTC().Format(time.RFC3339), e.LastModified.UTC().Format(time.RFC3339), e.Date.Sub(e.LastModified))
}

// Unwrap returns ErrClockSkew.
func (e *ClockSkewError) Unwrap() error { return ErrClockSkew }

// LockedError reports that the lock is held by someone else. It unwraps to
// [ErrLocked], and also to [ErrInvalidLockObject] when the object at the key
// could not be parsed (Invalid is then set).
type LockedError struct {
	// Key is the lock's object key.
	Key string
	// Owner is the holder's owner name, as recorded in the lock object
	// ("" when unknown).
	Owner string
	// Local is true when the hold belongs to this same *Mutex (another
	// goroutine of this process), so no S3 request was made.
	Local bool
	// Generation is the fencing generation of the current hold (0 when
	// unknown).
	Generation uint64
	// Since is when the current holder acquired the lock, by the holder's
	// own clock (for humans; zero when unknown).
	Since time.Time
	// Until is the earliest time at which the hold can expire, by S3's
	// clock: the holder's last write (its Last-Modified; a waiter's
	// reservation rewriting the record does not move it) plus the hold's
	// TTL (zero when unknown). A contender takes over only after Until
	// plus a safety margin, judged without any client's wall clock.
	Until time.Time
	// RetryAfter is how long, by this process's monotonic clock, until the
	// hold can be judged expired if it is not renewed or released first
	// (0 when unknown or already due).
	RetryAfter time.Duration
	// Invalid tells why the lock object is not a record this version
	// accepts, when it is not (it matches [ErrInvalidLockObject]); nil for
	// a normal hold.
	Invalid error
}

// Error implements error.
func (e *LockedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "s3lock: %q is locked", e.Key)
	switch {
	case e.Local:
		b.WriteString(" by this mutex (another goroutine holds it)")
	case e.Invalid != nil:
		fmt.Fprintf(&b, " by an object s3lock cannot parse (%v)", e.Invalid)
	case e.Owner != "":
		fmt.Fprintf(&b, " by %q", e.Owner)
	}
	if e.Generation != 0 {
		fmt.Fprintf(&b, ", generation %d", e.Generation)
	}
	if !e.Until.IsZero() {
		fmt.Fprintf(&b, ", lease runs at least until %s (S3 time)", e.Until.UTC().Format(time.RFC3339))
	}
	return b.String()
}

// Unwrap returns ErrLocked, plus the parse failure for invalid objects.
func (e *LockedError) Unwrap() []error {
	if e.Invalid != nil {
		return []error{ErrLocked, e.Invalid}
	}
	return []error{ErrLocked}
}

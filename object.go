// The lock object in S3: reading it, writing it conditionally, and
// judging from what S3 answered how long a hold seen in it has left.

package s3lock

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// S3API is the part of *s3.Client that s3lock calls, with the SDK's exact
// signatures. *s3.Client satisfies it; tests may wrap one.
type S3API interface {
	GetObject(ctx context.Context, params *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	PutObject(ctx context.Context, params *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
}

var _ S3API = (*s3.Client)(nil)

// snapshot is the lock object as one GET (or one of our writes) left it.
type snapshot struct {
	exists       bool
	etag         string
	rec          *record       // nil when the object is absent or invalid
	invalid      error         // why the object is not a record, when it is not
	salvaged     salvage       // what could be read of an invalid object
	lastModified time.Time     // S3's clock, 1 s resolution
	serverDate   time.Time     // S3's clock (Date header), 1 s resolution
	seenAt       time.Time     // this process's clock (monotonic) when the answer arrived
	rtt          time.Duration // how long the GET took (0 for our own writes)
}

// condition is the precondition of a PUT.
type condition struct {
	create bool   // If-None-Match: *
	etag   string // If-Match: etag (when !create)
}

// holds reports whether s satisfies c: a write under c could still land.
func (c condition) holds(s *snapshot) bool {
	if c.create {
		return !s.exists
	}
	return s.exists && s.etag == c.etag
}

// read GETs the lock object, reading at most maxRecordSize+1 bytes.
// A missing object is a snapshot with exists == false, not an error.
func (lm *leaseManager) read(ctx context.Context) (*snapshot, error) {
	sent := time.Now()
	out, err := lm.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &lm.bucket, Key: &lm.key})
	seenAt := time.Now()
	lm.hooks.request(ctx, lm, http.MethodGet, sent, err)
	if err != nil {
		f, mapped := classify(err, lm.bucket)
		if f == failNotFound {
			lm.observe("", seenAt)
			s := &snapshot{seenAt: seenAt, rtt: seenAt.Sub(sent)}
			lm.pruneOrphans(s)
			return s, nil
		}
		return nil, fmt.Errorf("s3lock: reading %s: %w", lm.name(), mapped)
	}
	defer out.Body.Close()
	body, err := io.ReadAll(io.LimitReader(out.Body, maxRecordSize+1))
	if err != nil {
		return nil, fmt.Errorf("s3lock: reading %s: %w: %w", lm.name(), ErrUnavailable, err)
	}
	s := &snapshot{
		exists:       true,
		etag:         aws.ToString(out.ETag),
		lastModified: aws.ToTime(out.LastModified),
		serverDate:   responseDate(out.ResultMetadata),
		seenAt:       seenAt,
		rtt:          seenAt.Sub(sent),
	}
	rec, perr := decodeRecord(body)
	switch {
	case perr != nil:
		s.invalid = fmt.Errorf("%w: %v", ErrInvalidLockObject, perr)
		s.salvaged = salvageRecord(body)
	case s.etag == "":
		s.invalid = fmt.Errorf("%w: the store returned no ETag", ErrInvalidLockObject)
	default:
		s.rec = rec
	}
	lm.observe(s.versionKey(), seenAt)
	lm.pruneOrphans(s)
	return s, nil
}

// responseDate returns the Date header of the raw HTTP response, or zero.
func responseDate(md middleware.Metadata) time.Time {
	raw, ok := awsmiddleware.GetRawResponse(md).(*smithyhttp.Response)
	if !ok || raw == nil {
		return time.Time{}
	}
	t, err := http.ParseTime(raw.Header.Get("Date"))
	if err != nil {
		return time.Time{}
	}
	return t
}

// put writes rec under cond. On success it returns the new ETag.
func (lm *leaseManager) put(ctx context.Context, rec *record, cond condition, optFns ...func(*s3.Options)) (string, failure, error) {
	if !cond.create && cond.etag == "" {
		// An If-Match with no ETag would be sent as an unconditional
		// PUT: never let that happen.
		return "", failPermanent, fmt.Errorf("s3lock: internal error: conditional write without an ETag")
	}
	body := encodeRecord(rec)
	in := &s3.PutObjectInput{
		Bucket:        &lm.bucket,
		Key:           &lm.key,
		Body:          bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))),
		ContentType:   aws.String("application/json"),
		CacheControl:  aws.String("no-store"),
	}
	if cond.create {
		in.IfNoneMatch = aws.String("*")
	} else {
		in.IfMatch = aws.String(cond.etag)
	}
	sent := lm.hooks.now()
	out, err := lm.client.PutObject(ctx, in, optFns...)
	lm.hooks.request(ctx, lm, http.MethodPut, sent, err)
	if err != nil {
		f, mapped := classify(err, lm.bucket)
		lm.log.Debug("s3lock: write failed", "key", lm.key, "state", rec.State, "generation", rec.Generation, "error", err)
		return "", f, fmt.Errorf("s3lock: writing %s: %w", lm.name(), mapped)
	}
	etag := aws.ToString(out.ETag)
	lm.log.Debug("s3lock: wrote", "key", lm.key, "state", rec.State, "generation", rec.Generation, "etag", etag)
	if etag == "" {
		// Some stores omit the ETag; learn it by reading our record back.
		s, rerr := lm.read(ctx)
		if rerr != nil || s.rec == nil || s.rec.Nonce != rec.Nonce {
			return "", failTransient, fmt.Errorf("s3lock: writing %s: the store returned no ETag and the record could not be read back: %w", lm.name(), errors.Join(rerr, ErrUnavailable, errNoETag))
		}
		etag = s.etag
	}
	lm.observe(recordKey(rec), time.Now())
	return etag, failNone, nil
}

var errNoETag = errors.New("no ETag")

// observe feeds the monotonic expiry rule: it remembers when a version of
// the object was first seen.
func (lm *leaseManager) observe(key string, at time.Time) {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	if key != lm.watchKey || lm.watchSince.IsZero() {
		lm.watchKey, lm.watchSince = key, at
	}
}

// versionKey names the version of the object in s for the monotonic
// expiry rule. For a record it is the nonce and state, not the ETag: a
// waiter that reserves the next turn rewrites the held record but keeps
// its nonce, and that must not restart the watch of a holder that may be
// dead. Only the holder writes a new nonce (every renewal does), so the
// nonce first seen at some moment was written by the holder before it.
func (s *snapshot) versionKey() string {
	switch {
	case s.rec != nil:
		return recordKey(s.rec)
	case s.etag == "":
		// Nothing tells one version from another: never the same.
		return "unknown:" + strconv.FormatInt(s.seenAt.UnixNano(), 10)
	}
	return "etag:" + s.etag
}

func recordKey(r *record) string { return r.State + ":" + r.Nonce }

// untilExpired returns how long until a hold seen in s, with the given TTL,
// may be judged expired; <= 0 means it is expired now. Two rules, each safe
// on its own, and the earlier wins:
//   - S3's clock: Date - Last-Modified >= ttl + margin + 1s. Both headers
//     are truncated to the second, so this proves the object is older than
//     ttl + margin.
//   - this process's monotonic clock: the same version (the holder's
//     nonce, see versionKey) has been seen for ttl + margin since it was
//     first seen (the holder's write happened before).
//
// Neither rule reads a client's wall clock.
func (lm *leaseManager) untilExpired(s *snapshot, ttl time.Duration) time.Duration {
	need := ttl + lm.margin
	lm.mu.Lock()
	since := lm.watchSince
	same := lm.watchKey == s.versionKey()
	lm.mu.Unlock()
	left := need
	if same && !since.IsZero() {
		left = need - s.seenAt.Sub(since)
	}
	if !s.serverDate.IsZero() && !s.lastModified.IsZero() {
		// Only a positive age counts: Sub saturates at ±292 years, and
		// subtracting a saturated negative age would overflow.
		if age := s.serverDate.Sub(s.lastModified); age > 0 {
			if byS3 := need + time.Second - age; byS3 < left {
				left = byS3
			}
		}
	}
	return left
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

// countAttempts returns an option that counts the HTTP attempts the SDK
// makes for one call (its retries included).
func countAttempts(n *atomic.Int32) func(*s3.Options) {
	return func(o *s3.Options) {
		// Clip: never append into the client's own APIOptions array.
		o.APIOptions = append(slices.Clip(o.APIOptions), func(st *middleware.Stack) error {
			return st.Finalize.Insert(middleware.FinalizeMiddlewareFunc("s3lock:countAttempts",
				func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
					n.Add(1)
					return next.HandleFinalize(ctx, in)
				}), "Retry", middleware.After)
		})
	}
}

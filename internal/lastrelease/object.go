// The lock object in S3: reading it, writing it conditionally, and
// judging from what S3 answered how long a hold seen in it has left.

package lastrelease

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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

// lockObject is the lock object in S3 as one Mutex reads and writes it:
// every S3 request of the Mutex goes through it. It reads the object,
// judges whether it may be taken, and writes it only with conditional
// PUTs: If-None-Match: * to create, If-Match: <etag> to replace. It never
// deletes. What it learns from S3 is kept by four small parts, each with
// its own lock: the expiry watch, the orphans, the pacing of polls and
// what is known of S3's clock; the warm path keeps the free record a
// release of ours left.
type lockObject struct {
	client      S3API
	bucket, key string
	owner       string
	ttl         time.Duration
	margin      time.Duration
	clock       Clock
	log         *slog.Logger
	hooks       *Hooks // nil when none (see hooks.go)
	// resolveTimeout bounds the read that settles an ambiguous write when
	// the caller's context has already ended.
	resolveTimeout time.Duration

	watch   expiryWatch // the monotonic expiry rule (expiry.go)
	orphans orphanSet   // held records of ours that no lease holds (orphans.go)
	pace    pacer       // round trips, grant periods, our holds (pace.go)
	warm    warmPath    // the free record of our last release (wait.go)
	s3clock clockTrust  // what is known of S3's clock (s3clock.go)

	// value is the Value of the records claim writes: WithValue's, or an
	// Election's (election.go). Campaign sets it while it holds the
	// Mutex's turn, before it acquires; claim runs only under the turn.
	value string
}

// newLockObject checks the lock's location and returns its lock object
// with the options in o (already validated). On failure the error matches
// [ErrInvalidArgument].
func newLockObject(client S3API, bucket, key string, o *options) (*lockObject, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: nil S3 client", ErrInvalidArgument)
	}
	if err := validateBucket(bucket); err != nil {
		return nil, err
	}
	if err := validateKey(key); err != nil {
		return nil, err
	}
	if err := validateValue(o.value); err != nil {
		return nil, err
	}
	return &lockObject{
		value:          o.value,
		client:         o.client(client),
		bucket:         bucket,
		key:            key,
		owner:          o.owner,
		ttl:            o.ttl,
		margin:         o.expiryMargin,
		clock:          o.clock,
		log:            o.logger,
		hooks:          mergeHooks(o.hooks),
		resolveTimeout: o.releaseTimeout,
	}, nil
}

func (lm *lockObject) name() string { return "s3://" + lm.bucket + "/" + lm.key }

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
func (lm *lockObject) read(ctx context.Context) (*snapshot, error) {
	sent := time.Now()
	out, err := lm.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &lm.bucket, Key: &lm.key})
	seenAt := time.Now()
	lm.hooks.request(ctx, lm, http.MethodGet, sent, err)
	if err != nil {
		f, mapped := classify(err, lm.bucket)
		if f == failNotFound {
			lm.watch.observe("", seenAt)
			s := &snapshot{seenAt: seenAt, rtt: seenAt.Sub(sent)}
			lm.orphans.prune(s)
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
	lm.watch.observe(s.versionKey(), seenAt)
	lm.orphans.prune(s)
	lm.checkOwnWrite(s)
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
func (lm *lockObject) put(ctx context.Context, rec *record, cond condition, optFns ...func(*s3.Options)) (string, failure, error) {
	if !cond.create && cond.etag == "" {
		// An If-Match with no ETag would be sent as an unconditional
		// PUT: never let that happen.
		return "", failPermanent, fmt.Errorf("s3lock: internal error: conditional write without an ETag")
	}
	body := encodeRecord(rec)
	if len(body) > maxRecordSize {
		// Every reader would take it for an invalid object, and a held
		// one could be taken over with its generation lost: never write
		// it. (Owner and value are bounded so that this cannot happen
		// but for a waiter's hint pushing a full record over.)
		return "", failPermanent, fmt.Errorf("%w: the record for %s would take %d bytes, more than %d", ErrInvalidArgument, lm.name(), len(body), maxRecordSize)
	}
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
		// A waiter may have reserved the next turn in our record since:
		// keep its reservation in our next writes over this version.
		etag = s.etag
		rec.Next, rec.NextWaited, rec.extra = s.rec.Next, s.rec.NextWaited, s.rec.extra
	} else {
		lm.noteWrite(etag, responseDate(out.ResultMetadata))
	}
	lm.watch.observe(recordKey(rec), time.Now())
	return etag, failNone, nil
}

var errNoETag = errors.New("no ETag")

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

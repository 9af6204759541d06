package s3lock

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
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

// maxWriteAttempts bounds how many conditional writes one acquire or
// release makes when the object keeps changing under it (409 conflicts, or
// a lost race followed by a free lock).
const maxWriteAttempts = 5

// maxOrphans bounds how many unresolved writes a Mutex remembers. Every
// read prunes the writes that can no longer be in S3 nor land there, and
// writes made under the same condition share one nonce, so a Mutex holds
// only a few; the bound is a backstop.
const maxOrphans = 16

// leaseManager makes every S3 request of one Mutex. It reads the lock
// object, judges whether it may be taken, and writes it only with
// conditional PUTs: If-None-Match: * to create, If-Match: <etag> to
// replace. It never deletes.
type leaseManager struct {
	client      S3API
	bucket, key string
	owner       string
	ttl         time.Duration
	margin      time.Duration
	clock       Clock
	log         *slog.Logger
	// resolveTimeout bounds the read that settles an ambiguous write when
	// the caller's context has already ended.
	resolveTimeout time.Duration

	mu sync.Mutex // protects the fields below
	// free is a free record this Mutex wrote or saw last; when set, the
	// next acquire first tries one If-Match PUT over it (the warm path).
	free *snapshot
	// watchKey and watchSince implement the monotonic expiry rule: the
	// version of the object last seen (see versionKey) and when
	// (monotonic) it was first seen.
	watchKey   string
	watchSince time.Time
	// orphans are held records this Mutex wrote, or may have written,
	// that it no longer holds through a lease: a record carrying one of
	// their nonces is ours to take back.
	orphans []orphan
	// pace is what Lock remembers to pace its polls (see wait.go).
	pace pacing
}

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

// orphan is a held record of ours that no lease holds: nonce is its nonce.
// Either it landed (a lease's last record, in S3 while the object has the
// ETag in cond), or it is a write whose outcome is unknown, made under
// cond and first sent at start. Such a record can be in S3, or land there
// later, only while the object carries its nonce or still satisfies cond;
// any other read proves it gone for good, since ETags never repeat (every
// body has a fresh nonce).
type orphan struct {
	nonce  string
	cond   condition
	landed bool
	start  instant // of the first write with this nonce (unknown writes)
}

func (lm *leaseManager) name() string { return "s3://" + lm.bucket + "/" + lm.key }

// setFree remembers the free record a release of ours wrote, for the next
// acquire's warm path.
func (lm *leaseManager) setFree(s *snapshot) {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	lm.free = s
}

// read GETs the lock object, reading at most MaxRecordSize+1 bytes.
// A missing object is a snapshot with exists == false, not an error.
func (lm *leaseManager) read(ctx context.Context) (*snapshot, error) {
	sent := time.Now()
	out, err := lm.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &lm.bucket, Key: &lm.key})
	seenAt := time.Now()
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
	body, err := io.ReadAll(io.LimitReader(out.Body, MaxRecordSize+1))
	if err != nil {
		return nil, fmt.Errorf("s3lock: reading %s: %w", lm.name(), err)
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
		s.invalid = &InvalidLockObjectError{Key: lm.key, Reason: perr.Error()}
		s.salvaged = salvageRecord(body)
	case s.etag == "":
		s.invalid = &InvalidLockObjectError{Key: lm.key, Reason: "the store returned no ETag"}
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
	out, err := lm.client.PutObject(ctx, in, optFns...)
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
			return "", failTransient, fmt.Errorf("s3lock: writing %s: the store returned no ETag and the record could not be read back: %w", lm.name(), errors.Join(rerr, errNoETag))
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

// judge decides whether s may be claimed. It returns nil when it may (no
// object, a free record, an expired hold, or an orphan of ours) and a
// *LockedError otherwise.
func (lm *leaseManager) judge(s *snapshot) *LockedError {
	if !s.exists {
		return nil
	}
	if s.rec != nil && (!s.rec.held() || lm.isOrphan(s.rec.Nonce)) {
		return nil
	}
	ttl := s.holdTTL(lm.ttl)
	left := lm.untilExpired(s, ttl)
	if left <= 0 {
		if s.rec != nil {
			lm.log.Info("s3lock: taking over an expired hold", "key", lm.key, "owner", s.rec.Owner, "generation", s.rec.Generation)
		} else {
			lm.log.Warn("s3lock: taking over an invalid lock object older than the TTL", "key", lm.key, "reason", s.invalid)
		}
		return nil
	}
	le := &LockedError{Key: lm.key, RetryAfter: left, Invalid: s.invalid}
	if s.rec != nil {
		le.Owner, le.Generation, le.Since = s.rec.Owner, s.rec.Generation, s.rec.AcquiredAt
	} else if s.salvaged.hasGen {
		le.Generation = s.salvaged.generation
	}
	if !s.lastModified.IsZero() {
		le.Until = s.lastModified.Add(ttl)
	}
	return le
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

// errGenerationExhausted marks a lock whose generation cannot grow.
var errGenerationExhausted = errors.New("generation exhausted")

// nextGeneration is the generation of a grant or break written over s.
// It refuses a record at the largest generation: the fencing token must
// never wrap or go back.
func (lm *leaseManager) nextGeneration(s *snapshot) (uint64, error) {
	g := s.generation()
	if g == math.MaxUint64 {
		return 0, fmt.Errorf("%w: %s is at generation %d, the largest fencing token; it cannot be granted again without the token wrapping (%w)",
			ErrInvalidLockObject, lm.name(), g, errGenerationExhausted)
	}
	return g + 1, nil
}

func (lm *leaseManager) isOrphan(nonce string) bool {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	return slices.ContainsFunc(lm.orphans, func(o orphan) bool { return o.nonce == nonce })
}

// orphanNonce returns the nonce of an unresolved write of ours made under
// cond and when the first write with it was sent, or a fresh nonce and a
// zero instant. Of all writes under one condition at most one can land,
// so they may share a nonce: that keeps one orphan per condition. A
// record that landed never lends its nonce: a write over it must be told
// apart from it, by a read-back and by contenders' expiry watch.
func (lm *leaseManager) orphanNonce(cond condition) (string, instant) {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	for _, o := range lm.orphans {
		if o.cond == cond && !o.landed {
			return o.nonce, o.start
		}
	}
	return newNonce(), instant{}
}

// addOrphans remembers records of ours whose fate is unknown.
func (lm *leaseManager) addOrphans(os ...orphan) {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	for _, o := range os {
		known := slices.ContainsFunc(lm.orphans, func(k orphan) bool { return k.nonce == o.nonce && k.cond == o.cond })
		if o.nonce != "" && !known {
			lm.orphans = append(lm.orphans, o)
		}
	}
	if len(lm.orphans) > maxOrphans {
		lm.orphans = slices.Delete(lm.orphans, 0, len(lm.orphans)-maxOrphans)
	}
}

// pruneOrphans drops the orphans that s proves gone for good: s carries
// another nonce and does not satisfy their condition.
func (lm *leaseManager) pruneOrphans(s *snapshot) {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	lm.orphans = slices.DeleteFunc(lm.orphans, func(o orphan) bool {
		return !(s.rec != nil && s.rec.Nonce == o.nonce) && !o.cond.holds(s)
	})
}

// clearOrphans forgets every orphan: a write of ours has just replaced
// the state they were written over, so none of them can be in S3 or land.
func (lm *leaseManager) clearOrphans() {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	lm.orphans = nil
}

// resolveContext returns ctx, or, when ctx is already done, a context
// without its cancellation bounded by timeout: finding out what a write did
// must not be skipped because the caller gave up.
func resolveContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if ctx.Err() == nil {
		return ctx, func() {}
	}
	return context.WithTimeout(context.WithoutCancel(ctx), timeout)
}

// acquire makes one attempt to take the lock. On success it returns the
// new lease. When the lock is held by someone else it returns a
// *LockedError; other errors come from S3. For Lock, w is its waiter: it
// may leave a lock that judge finds claimable to an earlier waiter, and
// acquire then returns a *deferral (see wait.go); TryLock passes nil.
func (lm *leaseManager) acquire(ctx context.Context, w *waiter) (*lease, error) {
	s := lm.takeFree(w)
	for attempt := 0; ; attempt++ {
		if s == nil {
			var err error
			if s, err = lm.read(ctx); err != nil {
				return nil, err
			}
		}
		le := lm.judge(s)
		var waited uint64
		if w != nil {
			claim, n := w.decide(s, le)
			switch {
			case le != nil && w.reserve:
				lm.reserve(ctx, s, w)
				return nil, le
			case le != nil:
				return nil, le
			case !claim:
				return nil, &deferral{}
			}
			waited = n
		} else if le != nil {
			return nil, le
		}
		if attempt == maxWriteAttempts {
			// Every write lost a race to another writer, each of which
			// released again before we read: the lock is busy, so say
			// so, as TryLock promises (Lock simply polls again).
			le := &LockedError{Key: lm.key}
			if s.rec != nil {
				le.Owner, le.Generation = s.rec.Owner, s.rec.Generation
			}
			return nil, le
		}
		l, next, err := lm.claim(ctx, s, waited)
		if l != nil || err != nil {
			return l, err
		}
		s = next
	}
}

// reserve writes w's reservation of the next turn into the held record in
// s: the same record with Next and NextWaited set, under If-Match, so it
// lands only over the version w judged. Its outcome needs no resolving:
// the next poll shows whether the record names w.
func (lm *leaseManager) reserve(ctx context.Context, s *snapshot, w *waiter) {
	rec := *s.rec
	rec.Next, rec.NextWaited = w.id, w.age(rec.Generation)
	if _, f, _ := lm.put(ctx, &rec, condition{etag: s.etag}); f == failNone {
		w.reserved, w.rank = true, 0
	}
}

// claim writes a held record over s, with waited as its Waited. It returns
// the lease when the write is ours, or the snapshot to judge next when the
// object changed under us (nil: read it again), or an error.
func (lm *leaseManager) claim(ctx context.Context, s *snapshot, waited uint64) (*lease, *snapshot, error) {
	gen, err := lm.nextGeneration(s)
	if err != nil {
		return nil, nil, err
	}
	cond := condition{create: !s.exists, etag: s.etag}
	nonce, first := lm.orphanNonce(cond)
	wall := lm.clock.Now()
	rec := &record{
		Schema:     recordSchema,
		State:      stateHeld,
		Owner:      lm.owner,
		Nonce:      nonce,
		Generation: gen,
		TTLMillis:  lm.ttl.Milliseconds(),
		AcquiredAt: wall,
		WrittenAt:  wall,
		Waited:     waited,
	}
	start := now() // the lease counts from before the request is sent
	if first.mono.IsZero() {
		first = start
	}
	etag, f, err := lm.put(ctx, rec, cond)
	switch f {
	case failNone:
		lm.noteRTT(time.Since(start.mono))
		lm.clearOrphans()
		return lm.confirm(ctx, lm.newLease(etag, rec, start))
	case failConflict:
		// Nothing was written by the attempt that got the 409; but when
		// it was an SDK retry, an earlier attempt may have been applied.
		pause(ctx)
	case failPermanent:
		return nil, nil, err
	}
	// 412/404: someone else wrote first, or the SDK retried a write of ours
	// that had been applied. 409s, transport errors, 5xx, cancellation: the
	// write may or may not have been applied. Until a read settles it, the
	// record is an orphan: ours to take back if it turns up.
	lm.addOrphans(orphan{nonce: rec.Nonce, cond: cond, start: first})
	rctx, cancel := resolveContext(ctx, lm.resolveTimeout)
	defer cancel()
	now2, rerr := lm.read(rctx)
	if rerr != nil {
		return nil, nil, errors.Join(err, rerr)
	}
	if now2.rec != nil && now2.rec.Nonce == rec.Nonce {
		// Which of the writes with this nonce landed is unknown: count
		// the lease from the first.
		lm.log.Warn("s3lock: a write reported as failed had been applied; the lock is ours", "key", lm.key, "error", err)
		lm.clearOrphans()
		return lm.confirm(ctx, lm.newLease(now2.etag, rec, first))
	}
	if f == failCanceled {
		return nil, nil, err
	}
	return nil, now2, nil
}

// confirm returns l if its lease still has time left. Finding out whether
// a write was applied can take longer than the TTL; such a hold is renewed
// once before it is returned (safe: the renewal lands only if nobody wrote
// since our record), and if that fails the hold is given up as an orphan
// this Mutex takes back on its next acquire.
func (lm *leaseManager) confirm(ctx context.Context, l *lease) (*lease, *snapshot, error) {
	if time.Now().Before(l.safeUntil()) {
		return l, nil, nil
	}
	lm.log.Warn("s3lock: the hold ran out while its acquisition was being confirmed; renewing it", "key", lm.key)
	rctx, cancel := resolveContext(ctx, lm.resolveTimeout)
	defer cancel()
	err := l.renew(rctx)
	if err == nil && time.Now().Before(l.safeUntil()) {
		return l, nil, nil
	}
	l.orphan()
	l.cancel(ErrLeaseLost)
	if err == nil {
		err = fmt.Errorf("%w: renewed, but the TTL (%v) is shorter than S3 takes to answer", ErrLeaseLost, lm.ttl)
	}
	return nil, nil, fmt.Errorf("s3lock: acquiring %s: the hold ran out before it could be confirmed: %w", lm.name(), err)
}

// pause waits a little (0-20 ms) after a 409 conflict, so the conflicting
// write can finish before we read again.
func pause(ctx context.Context) {
	t := time.NewTimer(time.Duration(rand.Int64N(int64(20 * time.Millisecond))))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// drift is how much earlier than its TTL a holder considers its lease over,
// for clock-rate differences between it and S3 (as in redsync: 1% + 2 ms).
func drift(ttl time.Duration) time.Duration { return ttl/100 + 2*time.Millisecond }

func (lm *leaseManager) newLease(etag string, rec *record, start instant) *lease {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &lease{
		lm:       lm,
		ctx:      ctx,
		cancel:   cancel,
		etag:     etag,
		rec:      *rec,
		deadline: start.mono.Add(lm.ttl - drift(lm.ttl)),
		from:     start,
		began:    start.mono,
	}
}

// lease is one hold of the lock: the record we wrote last, its ETag, and
// when (monotonic) it stops being safe. Its context is cancelled with cause
// ErrLeaseLost at that deadline, or as soon as a renewal finds someone
// else's record; with ErrNotHeld when it is released.
type lease struct {
	lm     *leaseManager
	ctx    context.Context
	cancel context.CancelCauseFunc

	mu       sync.Mutex // protects etag, rec, deadline, from, pending, timer, halted
	etag     string
	rec      record
	deadline time.Time // monotonic; less the time suspended since from
	from     instant   // when the write that set the deadline was sent
	began    time.Time // when the write that acquired the lock was sent
	// pending is the renewal over etag whose outcome is unknown (zero when
	// none). Every renewal over the same ETag reuses its nonce, since at
	// most one of them can land, and start is that of the first, so the
	// deadline of whichever landed is never overestimated.
	pending renewal

	timer      *time.Timer        // without renewal: cancels ctx at the deadline
	halted     bool               // halt was called
	stopCtx    context.Context    // with renewal: cancelled to stop the renewer
	stopRenew  context.CancelFunc // with renewal: cancels stopCtx
	renewerEnd chan struct{}      // with renewal: closed when the renewer has returned
}

// start arms the deadline, and the renewer when interval > 0.
func (l *lease) start(interval time.Duration) {
	if interval <= 0 {
		l.watchDeadline()
		return
	}
	l.stopCtx, l.stopRenew = context.WithCancel(context.Background())
	l.renewerEnd = make(chan struct{})
	go l.renewLoop(interval)
}

// halt stops the deadline timer or the renewer, waiting for the renewer to
// return.
func (l *lease) halt() {
	l.mu.Lock()
	l.halted = true
	if l.timer != nil {
		l.timer.Stop()
	}
	l.mu.Unlock()
	if l.stopRenew != nil {
		l.stopRenew()
		<-l.renewerEnd
	}
}

// watchDeadline cancels the hold's context once the lease has run out,
// looking again at least every suspendCheck in case the system was
// suspended meanwhile.
func (l *lease) watchDeadline() {
	left := time.Until(l.safeUntil())
	if left <= 0 {
		l.cancel(ErrLeaseLost)
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.halted {
		l.timer = time.AfterFunc(min(left, suspendCheck), l.watchDeadline)
	}
}

func (l *lease) generation() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rec.Generation
}

// safeUntil returns the end of the lease on the monotonic clock, brought
// forward by the time the system was suspended since it was set.
func (l *lease) safeUntil() time.Time {
	l.mu.Lock()
	d, from := l.deadline, l.from
	l.mu.Unlock()
	return d.Add(-from.suspendedSince())
}

// renewLoop renews every interval until stopped, the lease is lost, or
// its deadline passes without a successful renewal. It uses one timer.
func (l *lease) renewLoop(interval time.Duration) {
	defer close(l.renewerEnd)
	timer := time.NewTimer(interval)
	defer timer.Stop()
	var failing failureRun
	for {
		select {
		case <-l.stopCtx.Done():
			return
		case <-timer.C:
		}
		deadline := l.safeUntil()
		if !time.Now().Before(deadline) {
			l.lm.log.Warn("s3lock: lease expired before it could be renewed", "key", l.lm.key)
			l.cancel(ErrLeaseLost)
			return
		}
		rctx, cancel := context.WithDeadline(l.stopCtx, deadline)
		err := l.renew(rctx)
		cancel()
		if errors.Is(err, ErrLeaseLost) {
			return
		}
		wait := interval
		if err != nil {
			failing.failed(l.lm.log, l.lm.key, err)
			wait = interval / 4
		} else {
			failing.recovered(l.lm.log, l.lm.key)
		}
		if left := time.Until(l.safeUntil()); left < wait {
			wait = max(left, 0)
		}
		timer.Reset(wait)
	}
}

// renewal is a renewal write: its nonce, the ETag it was conditioned on,
// and when (monotonic) the first attempt was sent.
type renewal struct {
	nonce, etag string
	start       instant
}

// renew rewrites our record with a fresh nonce (or the nonce of an
// unresolved renewal over the same ETag), extending the lease from the
// moment before the request. On ErrLeaseLost the lease's context has been
// cancelled.
func (l *lease) renew(ctx context.Context) error {
	again, err := l.renewOnce(ctx)
	if again {
		// A waiter had reserved the next turn in our record, which our
		// write was not conditioned on: renew over its version.
		_, err = l.renewOnce(ctx)
	}
	return err
}

// renewOnce makes one renewal write. again reports that it found our
// record unrenewed but rewritten (by a waiter reserving the next turn).
func (l *lease) renewOnce(ctx context.Context) (again bool, err error) {
	start := now()
	l.mu.Lock()
	rec, etag := l.rec, l.etag
	p := l.pending
	if p.nonce == "" || p.etag != etag {
		p = renewal{nonce: newNonce(), etag: etag, start: start}
	}
	l.mu.Unlock()
	rec.Nonce = p.nonce
	rec.WrittenAt = l.lm.clock.Now()
	newETag, f, err := l.lm.put(ctx, &rec, condition{etag: etag})
	if f == failNone {
		l.extend(newETag, &rec, start)
		return false, nil
	}
	// Whatever the error, an earlier attempt of the SDK's may have been
	// applied (a 409 or 412 can answer a retry of an applied write):
	// remember the renewal, so a later read recognizes the record as ours.
	l.mu.Lock()
	l.pending = p
	l.mu.Unlock()
	switch {
	case f == failConflict || f == failPermanent:
		return false, err
	case f != failPrecondition && f != failNotFound && ctx.Err() != nil:
		return false, err
	}
	s, rerr := l.lm.read(ctx)
	if rerr != nil {
		return false, errors.Join(err, rerr)
	}
	l.mu.Lock()
	again = s.rec != nil && s.rec.held() && s.rec.Nonce == l.rec.Nonce && s.etag != l.etag
	l.mu.Unlock()
	return again, l.adopt(s)
}

// extend records a successful write of ours.
func (l *lease) extend(etag string, rec *record, start instant) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.etag, l.rec = etag, *rec
	if d := start.mono.Add(l.lm.ttl - drift(l.lm.ttl)); d.After(l.deadline) {
		l.deadline, l.from = d, start
	}
	l.pending = renewal{}
}

// adopt takes s as the current state of our hold if it is a record of ours
// (our last one, or a renewal whose answer was lost); otherwise the lease
// is lost.
func (l *lease) adopt(s *snapshot) error {
	l.mu.Lock()
	var ours bool
	var start instant
	if s.rec != nil && s.rec.held() {
		if s.rec.Nonce == l.rec.Nonce {
			ours = true
		} else if s.rec.Nonce == l.pending.nonce {
			ours, start = true, l.pending.start
		}
	}
	l.mu.Unlock()
	if ours {
		if start.mono.IsZero() {
			// Our record, rewritten by a waiter that reserved the next
			// turn: keep the reservation in our next writes.
			l.mu.Lock()
			l.etag = s.etag
			l.rec.Next, l.rec.NextWaited = s.rec.Next, s.rec.NextWaited
			l.mu.Unlock()
		} else {
			l.extend(s.etag, s.rec, start)
		}
		return nil
	}
	err := l.lostError(s)
	l.cancel(err)
	return err
}

func (l *lease) lostError(s *snapshot) error {
	switch {
	case !s.exists:
		return fmt.Errorf("%w: %s was deleted", ErrLeaseLost, l.lm.name())
	case s.rec == nil:
		return fmt.Errorf("%w: %s was overwritten by an invalid object", ErrLeaseLost, l.lm.name())
	case s.rec.held():
		return fmt.Errorf("%w: %s is now held by %q (generation %d)", ErrLeaseLost, l.lm.name(), s.rec.Owner, s.rec.Generation)
	default:
		return fmt.Errorf("%w: %s was released by someone else (generation %d)", ErrLeaseLost, l.lm.name(), s.rec.Generation)
	}
}

// release overwrites our record with a free one (same generation, so the
// next holder gets generation+1). On success it returns the free record,
// which the next acquire of this Mutex tries first.
func (l *lease) release(ctx context.Context) (*snapshot, error) {
	var lastErr error
	// sent holds the nonces of the free records this release has tried to
	// write; uncertain is set once one of them may have been applied
	// without our hearing of it (a lost answer, a 5xx, or a 412/409 that
	// came after an SDK retry).
	var sent []string
	uncertain := false
	for attempt := 0; attempt < maxWriteAttempts; attempt++ {
		l.mu.Lock()
		rec, etag := l.rec, l.etag
		l.mu.Unlock()
		rec.State = stateFree
		rec.Nonce = newNonce()
		rec.AcquiredAt = time.Time{}
		rec.WrittenAt = l.lm.clock.Now()
		var attempts atomic.Int32
		if attempt == 0 {
			l.lm.noteHold(time.Since(l.began))
		}
		newETag, f, err := l.lm.put(ctx, &rec, condition{etag: etag}, countAttempts(&attempts))
		sent = append(sent, rec.Nonce)
		switch f {
		case failNone:
			return &snapshot{exists: true, etag: newETag, rec: &rec}, nil
		case failPrecondition, failNotFound, failConflict:
			// A plain refusal, unless the SDK had retried.
			uncertain = uncertain || attempts.Load() != 1
		case failPermanent:
		default:
			uncertain = true
		}
		switch f {
		case failConflict:
			lastErr = err
			pause(ctx)
			continue
		case failPermanent:
			l.orphan()
			return nil, err
		}
		rctx, cancel := resolveContext(ctx, l.lm.resolveTimeout)
		s, rerr := l.lm.read(rctx)
		cancel()
		if rerr != nil {
			l.orphan()
			return nil, errors.Join(err, rerr)
		}
		if s.rec != nil && slices.Contains(sent, s.rec.Nonce) {
			return s, nil
		}
		if uncertain && l.landed(s) {
			l.lm.log.Warn("s3lock: a release reported as failed had been applied; the next holder has moved in", "key", l.lm.key, "error", err)
			return nil, nil
		}
		if aerr := l.adopt(s); aerr != nil {
			return nil, aerr
		}
		// A renewal of ours had been applied after all: release over it.
		lastErr = err
	}
	l.orphan()
	return nil, fmt.Errorf("s3lock: releasing %s: gave up after %d attempts: %w", l.lm.name(), maxWriteAttempts, lastErr)
}

// orphan hands the held records this lease may have left in S3 (its last
// record, and a renewal whose outcome is unknown) to the lease manager, so
// the next acquire of this Mutex can take its own stranded hold back at
// once instead of waiting out the TTL. The free records a failed release
// may have left need no such care: a free record is anyone's to take.
func (l *lease) orphan() {
	l.mu.Lock()
	os := []orphan{{nonce: l.rec.Nonce, cond: condition{etag: l.etag}, landed: true}}
	if p := l.pending; p.nonce != "" {
		os = append(os, orphan{nonce: p.nonce, cond: condition{etag: p.etag}, start: p.start})
	}
	l.mu.Unlock()
	l.lm.addOrphans(os...)
}

// landed reports whether s, read back after a release attempt whose
// outcome is unknown, proves that the release was applied: the object
// carries a later generation than ours, and was read before our lease
// could have expired, so no contender can have taken our hold over by
// expiry; only our release let the later holders in. (An operator's
// ForceUnlock racing the release would look the same; the release is then
// reported done.)
func (l *lease) landed(s *snapshot) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return s.rec != nil && s.rec.Generation > l.rec.Generation && s.seenAt.Before(l.deadline)
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

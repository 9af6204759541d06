// Whose clock is trusted when: S3's Date header only once this process has
// seen it agree with the store's own Last-Modified stamps.

package lastrelease

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// The S3-clock rule of untilExpired compares two headers: the Date of a GET
// answer and the object's Last-Modified. It is safe only if both come
// from one clock. A gateway in front of the store (a proxy, or a front end
// on another host with a broken NTP) can answer with its own Date: an hour
// ahead, every hold looks an hour old, and a fresh contender would take a
// live hold at once. So the rule is used only while the clock is trusted:
// this process has seen the Date of the answer to a PUT of its own agree
// with the Last-Modified that S3 then reported for that write.
//
// Agreement means Date − Last-Modified ≤ margin − 1 s on the truncated
// headers, which bounds how far Date can run ahead of the store's clock to
// under the margin, the slack the rule already allows (an answer's Date is
// never earlier than the write it answers, so a Date running behind only
// makes the rule later, never unsafe). Evidence comes for free when a read
// shows the version a write of ours left; otherwise a contender that finds
// a hold S3's clock calls expired, and its own monotonic clock not yet,
// checks with one PUT and one GET of a scratch object (the key +
// clockCheckSuffix). Until the clock is trusted, expiry is judged by the
// monotonic rule alone: a fresh process then waits one TTL + margin before
// it takes over even a hold abandoned long ago.

// clockCheckSuffix names the scratch object of a clock check, after the
// lock's key (so a policy that grants key* covers it, as for the probe).
const clockCheckSuffix = ".s3lock-clock"

// clockTrustFor is how long one agreement keeps S3's clock trusted
// without new evidence.
const clockTrustFor = 15 * time.Minute

// clockRecheck is how long after a check that did not establish trust
// (disagreement, or a failed request) the next may be made.
const clockRecheck = time.Minute

// clockCheckTries bounds the writes of one check: an answer's Date and the
// write's Last-Modified fall in different seconds now and then on a good
// store; a Date that is really ahead disagrees every time.
const clockCheckTries = 3

// clockTrust is what a lock object knows of S3's clock.
type clockTrust struct {
	mu        sync.Mutex // protects the fields below
	trustedAt time.Time  // monotonic: last agreement (zero: none)
	checkedAt time.Time  // monotonic: last check that did not establish trust
	// The ETag our last write left and the Date of its answer, so that a
	// read showing that version is evidence about the clock.
	writeETag string
	writeDate time.Time
	writeAt   time.Time // monotonic: when that answer arrived
	// The Date of the answer that last agreed, and when (monotonic) it
	// arrived: every later answer's Date must follow the monotonic clock
	// from there (see clockTrustedFor).
	agreedDate time.Time
}

// clockAgrees reports whether a write's answer dated date and its
// Last-Modified lastModified agree within margin (see above).
func clockAgrees(date, lastModified time.Time, margin time.Duration) bool {
	return date.Sub(lastModified) <= margin-time.Second
}

// trusted reports whether a check has agreed lately (ct.mu held).
func (ct *clockTrust) trusted() bool {
	return !ct.trustedAt.IsZero() && time.Since(ct.trustedAt) < clockTrustFor
}

// clockTrustedFor reports whether the S3-clock rule may be used on s: the
// clock is trusted, and s's Date is no further ahead of the answer that
// last agreed than this process's monotonic clock has moved since (plus a
// second of truncation and 0.1% for clock rates). A Date that jumped
// ahead since (a gateway switched in, a clock stepped) withdraws trust at
// once, before a live hold can look expired by it.
func (lm *lockObject) clockTrustedFor(s *snapshot) bool {
	lm.s3clock.mu.Lock()
	defer lm.s3clock.mu.Unlock()
	ct := &lm.s3clock
	if !ct.trusted() || s.serverDate.IsZero() {
		return false
	}
	elapsed := s.seenAt.Sub(ct.trustedAt)
	if bound := ct.agreedDate.Add(elapsed + elapsed/1000 + time.Second); !s.serverDate.After(bound) {
		return true
	}
	lm.log.Warn("s3lock: S3's Date has jumped ahead since it was checked; judging expiry by this process's clock alone",
		"key", lm.key, "ahead_by", s.serverDate.Sub(ct.agreedDate)-elapsed)
	ct.trustedAt, ct.checkedAt = time.Time{}, time.Now()
	return false
}

// noteClock records one comparison of a write's answer Date with its
// Last-Modified; at is when (monotonic) the answer dated date arrived. A
// disagreement withdraws trust at once.
func (lm *lockObject) noteClock(date, lastModified, at time.Time) bool {
	ok := clockAgrees(date, lastModified, lm.margin)
	lm.s3clock.mu.Lock()
	defer lm.s3clock.mu.Unlock()
	if ok {
		lm.s3clock.trustedAt, lm.s3clock.agreedDate = at, date
	} else {
		if !lm.s3clock.trustedAt.IsZero() {
			lm.log.Warn("s3lock: S3's Date disagrees with its Last-Modified; judging expiry by this process's clock alone",
				"key", lm.key, "date_minus_last_modified", date.Sub(lastModified))
		}
		lm.s3clock.trustedAt = time.Time{}
		lm.s3clock.checkedAt = time.Now()
	}
	return ok
}

// noteWrite remembers the ETag a write of ours left and its answer's Date.
func (lm *lockObject) noteWrite(etag string, date time.Time) {
	lm.s3clock.mu.Lock()
	defer lm.s3clock.mu.Unlock()
	lm.s3clock.writeETag, lm.s3clock.writeDate, lm.s3clock.writeAt = etag, date, time.Now()
}

// checkOwnWrite compares the Date of our last write's answer with the
// Last-Modified of s, when s is the version that write left.
func (lm *lockObject) checkOwnWrite(s *snapshot) {
	lm.s3clock.mu.Lock()
	etag, date, at := lm.s3clock.writeETag, lm.s3clock.writeDate, lm.s3clock.writeAt
	lm.s3clock.mu.Unlock()
	if etag == "" || s.etag != etag || date.IsZero() || s.lastModified.IsZero() {
		return
	}
	lm.noteClock(laterDate(date, s.serverDate, s.seenAt.Sub(at)), s.lastModified, at)
}

// laterDate returns the Date of a write's answer, or that of a later
// read's answer taken back by the time between the two answers (elapsed,
// and a second of truncation) if that is later: a read dated further
// ahead than the write is dated by another clock, and must not agree.
func laterDate(writeDate, readDate time.Time, elapsed time.Duration) time.Time {
	if readDate.IsZero() {
		return writeDate
	}
	if back := readDate.Add(-elapsed - time.Second); back.After(writeDate) {
		return back
	}
	return writeDate
}

// wantsClockCheck reports whether checking S3's clock could change the
// verdict on s: S3's clock would call the hold expired now, the monotonic
// rule does not, the clock is not trusted, and no check failed lately.
func (lm *lockObject) wantsClockCheck(s *snapshot) bool {
	if !s.exists || (s.rec != nil && (!s.rec.held() || lm.orphans.has(s.rec.Nonce))) {
		return false
	}
	ttl := s.holdTTL(lm.ttl)
	byS3, ok := s.untilExpiredByS3(ttl + lm.margin)
	if !ok || byS3 > 0 || lm.untilExpired(s, ttl) <= 0 {
		return false
	}
	lm.s3clock.mu.Lock()
	defer lm.s3clock.mu.Unlock()
	return lm.s3clock.checkedAt.IsZero() || time.Since(lm.s3clock.checkedAt) >= clockRecheck
}

// checkClock writes the scratch object and reads it back, up to
// clockCheckTries times, until Date and Last-Modified agree. It returns
// whether they did; a failed request counts as no.
func (lm *lockObject) checkClock(ctx context.Context) bool {
	key := lm.key + clockCheckSuffix
	if validateKey(key) != nil {
		lm.noteClockFailure(fmt.Errorf("scratch key %q too long", key))
		return false
	}
	var ahead time.Duration // Date − Last-Modified of the last try
	for range clockCheckTries {
		date, lastModified, at, err := lm.measureClock(ctx, key)
		if err != nil {
			if ctx.Err() == nil {
				// A check cut short by the caller's context says nothing
				// of the clock: the next acquire may check again.
				lm.noteClockFailure(err)
			}
			return false
		}
		if lm.noteClock(date, lastModified, at) {
			return true
		}
		if ahead = date.Sub(lastModified); ahead > lm.margin {
			break // more than a boundary between seconds: really ahead
		}
	}
	lm.log.Info("s3lock: S3's Date runs ahead of its Last-Modified; judging expiry by this process's clock alone",
		"key", lm.key, "date_minus_last_modified", ahead)
	return false
}

func (lm *lockObject) noteClockFailure(err error) {
	lm.s3clock.mu.Lock()
	lm.s3clock.checkedAt = time.Now()
	lm.s3clock.mu.Unlock()
	lm.log.Info("s3lock: could not check S3's clock; judging expiry by this process's clock alone", "key", lm.key, "error", err)
}

// measureClock PUTs a small object at key and reads it back. It returns the
// Date of the PUT's answer (or the read's, taken back by the time between
// the two answers, if that is later) and the Last-Modified the read
// reports for that write. Both requests are reported to the hooks as requests of the lock.
func (lm *lockObject) measureClock(ctx context.Context, key string) (date, lastModified, answered time.Time, err error) {
	client, bucket := lm.client, lm.bucket
	body := []byte("s3lock clock check " + newNonce() + "; safe to delete\n")
	sent := lm.hooks.now()
	out, err := client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        &bucket,
		Key:           &key,
		Body:          bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))),
		ContentType:   aws.String("text/plain"),
		CacheControl:  aws.String("no-store"),
	})
	lm.hooks.request(ctx, lm, http.MethodPut, sent, err)
	if err != nil {
		_, mapped := classify(err, bucket)
		return date, lastModified, answered, fmt.Errorf("s3lock: clock check: writing s3://%s/%s: %w", bucket, key, mapped)
	}
	date = responseDate(out.ResultMetadata)
	answered = time.Now()
	sent = lm.hooks.now()
	get, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	lm.hooks.request(ctx, lm, http.MethodGet, sent, err)
	if err != nil {
		_, mapped := classify(err, bucket)
		return date, lastModified, answered, fmt.Errorf("s3lock: clock check: reading s3://%s/%s: %w", bucket, key, mapped)
	}
	got, rerr := io.ReadAll(io.LimitReader(get.Body, int64(len(body))+1))
	get.Body.Close()
	switch {
	case rerr != nil:
		return date, lastModified, answered, fmt.Errorf("s3lock: clock check: reading s3://%s/%s: %w: %w", bucket, key, ErrUnavailable, rerr)
	case !bytes.Equal(got, body):
		return date, lastModified, answered, fmt.Errorf("s3lock: clock check: s3://%s/%s was rewritten before it could be read back", bucket, key)
	case date.IsZero() || get.LastModified == nil:
		return date, lastModified, answered, fmt.Errorf("s3lock: clock check: the store sent no Date or no Last-Modified")
	}
	// The read's answer must be dated by the same clock as the write's:
	// taken back by the time between the two answers (and a second of
	// truncation), its Date is not later than the write's. A read dated
	// further ahead counts as the write's Date, so it cannot agree.
	date = laterDate(date, responseDate(get.ResultMetadata), time.Since(answered))
	return date, *get.LastModified, answered, nil
}

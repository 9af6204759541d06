// Following an election: polling the lock object with conditional GETs.

package lastrelease

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Observe follows the office of the election: it returns a channel that
// delivers the current state as soon as S3 first answers, then every
// change: a new leader (another Token), a new value, or a vacancy (a
// Leader with Owner ""), including the vacancy left by a leader that
// stopped without resigning, once its hold is judged expired (as a
// contender judges it: possibly a little after its TTL, never before).
//
// It never writes the lock. To call a hold expired by S3's clock it first
// checks that clock, as a contender does (one PUT and one GET of key +
// ".s3lock-clock", at most once a minute; see the package documentation).
//
// It polls with one GET per retry interval (see [WithRetryInterval]),
// sooner when a hold is due to expire, with If-None-Match: <last ETag>,
// so an unchanged object costs no body where the store answers 304. It
// reports only states it read: changes between two polls may be
// coalesced, and when the receiver is slow only the latest state is kept
// for it, so the poller never blocks and the last state before a pause is
// always delivered. When S3 fails, or the object is not a record this
// version reads, it keeps polling and reports nothing (no vacancy is
// invented). The channel is closed, and the poller's goroutine returns,
// when ctx ends.
func (e *Election) Observe(ctx context.Context) <-chan Leader {
	ch := make(chan Leader)
	inm := &ifNoneMatch{S3API: e.client}
	lm, err := newLockObject(inm, e.m.lm.bucket, e.m.lm.key, &e.m.opts)
	if err != nil { // cannot happen: NewElection validated the same arguments
		close(ch)
		return ch
	}
	go observe(ctx, lm, inm, e.m.opts.retryInterval, ch)
	return ch
}

// observe is Observe's poller.
func observe(ctx context.Context, lm *lockObject, inm *ifNoneMatch, interval time.Duration, ch chan<- Leader) {
	defer close(ch)
	var (
		last       *snapshot // the last snapshot read
		sent       Leader    // the last state delivered
		hasSent    bool
		pending    Leader // the state to deliver next
		hasPending bool
	)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		var out chan<- Leader
		if hasPending {
			out = ch
		}
		select {
		case <-ctx.Done():
			return
		case out <- pending:
			sent, hasSent, hasPending = pending, true, false
			continue
		case <-timer.C:
		}
		next := interval
		if s, err := pollOnce(ctx, lm, inm, last); err == nil {
			last = s
			if lm.wantsClockCheck(s) {
				lm.checkClock(ctx)
			}
			ld, left, lerr := lm.leaderOf(s)
			if lerr == nil || errors.Is(lerr, ErrNoLeader) {
				hasPending = !hasSent || !ld.same(sent)
				if hasPending {
					pending = ld
				}
				if lerr == nil && left < next {
					// Look again when the hold may be judged expired.
					next = max(left+10*time.Millisecond, 10*time.Millisecond)
				}
			}
		}
		timer.Reset(next)
	}
}

// pollOnce reads the lock object, sending If-None-Match with the ETag of
// last. When S3 answers 304 the object is still the one in last: pollOnce
// returns last as seen now (with the answer's Date), and feeds the
// monotonic expiry rule as a read would.
func pollOnce(ctx context.Context, lm *lockObject, inm *ifNoneMatch, last *snapshot) (*snapshot, error) {
	etag := ""
	if last != nil && last.exists {
		etag = last.etag
	}
	inm.set(etag)
	s, err := lm.read(ctx)
	if err == nil {
		return s, nil
	}
	if f, _ := classify(err, lm.bucket); f != failNotModified || etag == "" {
		return nil, err
	}
	c := *last
	c.seenAt = time.Now()
	c.serverDate, c.rtt = time.Time{}, 0
	c.serverDate = errorDate(err)
	lm.watch.observe(c.versionKey(), c.seenAt)
	return &c, nil
}

// ifNoneMatch is the S3 client of an Observe: it sends its GETs with
// If-None-Match set to the last ETag seen.
type ifNoneMatch struct {
	S3API
	mu   sync.Mutex // protects etag
	etag string
}

func (c *ifNoneMatch) set(etag string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.etag = etag
}

func (c *ifNoneMatch) GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	c.mu.Lock()
	etag := c.etag
	c.mu.Unlock()
	if etag != "" {
		cp := *in
		cp.IfNoneMatch = &etag
		in = &cp
	}
	return c.S3API.GetObject(ctx, in, optFns...)
}

// When Lock polls: what a Mutex learns of round trips, grant periods and
// its own holds, and the pause each waiter takes before its next poll.

package lastrelease

import (
	"sync"
	"time"
)

// minPoll is the shortest pause between two polls.
const minPoll = time.Millisecond

// pacer is what a Mutex learns, across Lock calls, to pace its polls:
// the round trip of its requests, the period between grants it observes,
// and the length of its own holds.
type pacer struct {
	mu     sync.Mutex    // protects the fields below
	rtt    time.Duration // EWMA of the duration of our GETs
	period time.Duration // EWMA of the observed time between grants (0: unknown)
	hold   time.Duration // EWMA of this Mutex's own holds (0: none yet)
}

// ewma moves avg a quarter of the way to sample (to sample if avg is 0).
func ewma(avg, sample time.Duration) time.Duration {
	if avg == 0 {
		return sample
	}
	return avg + (sample-avg)/4
}

// noteHold feeds the estimate of a hold's length with one of our own,
// from the acquiring write to the release.
func (p *pacer) noteHold(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hold = ewma(p.hold, d)
}

// noteRTT feeds the round-trip time with the duration of one request.
func (p *pacer) noteRTT(d time.Duration) {
	if d <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rtt = ewma(p.rtt, d)
}

// notePeriod feeds the grant period with one sample.
func (p *pacer) notePeriod(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.period = ewma(p.period, d)
}

// estimates returns the round trip, the grant period and our hold (each 0
// while unknown).
func (p *pacer) estimates() (rtt, period, hold time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rtt, p.period, p.hold
}

// pollPlan is when one waiter polls next: what its polls have shown of
// the grants, and what its last decision asks of the next poll.
type pollPlan struct {
	pace     *pacer        // what the Mutex has learnt across Lock calls
	interval time.Duration // the current retry interval

	lastGen uint64    // generation of the last poll, for the grant period
	lastAt  time.Time // when that poll answered (zero: none yet)
	// The last change of generation seen, for the grant period: its
	// generation and when it happened (estimated between two polls).
	changeGen uint64
	changeAt  time.Time
	// holdSince is the earliest the hold the last poll found can have
	// begun (zero: unknown).
	holdSince time.Time
	fastPolls int // fast polls of the held record the last poll found

	// What the last decision asks of the next poll.
	deferred  bool          // leaving a free lock to older waiters
	deferLeft time.Duration // how much longer to leave it
	rank      int64         // polls of a held lock: grants ahead of us (<= 0: next)
	reserved  bool          // the held record names this waiter as Next
	settle    time.Duration // wait this long before reserving (0: no)
}

// observe feeds the round-trip time and the grant period, and estimates
// when the hold in s began.
func (w *pollPlan) observe(s *snapshot, gen uint64) {
	w.pace.noteRTT(s.rtt)
	if s.seenAt.IsZero() {
		return
	}
	if !w.lastAt.IsZero() && gen > w.lastGen && s.seenAt.After(w.lastAt) {
		// The generation changed between the last poll and this one.
		at := w.lastAt.Add(s.seenAt.Sub(w.lastAt) / 2)
		if !w.changeAt.IsZero() && gen > w.changeGen {
			w.pace.notePeriod(at.Sub(w.changeAt) / time.Duration(gen-w.changeGen))
		}
		w.changeGen, w.changeAt = gen, at
		w.holdSince = w.lastAt
	} else if gen != w.lastGen || w.lastAt.IsZero() {
		w.holdSince = time.Time{}
	}
	w.lastGen, w.lastAt = gen, s.seenAt
}

// fast is the pause between polls of the waiter next in line.
func (w *pollPlan) fast() time.Duration {
	rtt, _, _ := w.pace.estimates()
	f := w.interval / 4
	if rtt > 0 {
		f = min(f, rtt/2)
	}
	return max(f, minPoll)
}

// unit is how long a waiter leaves a free lock to each older waiter: one
// fast poll of theirs plus a GET and a PUT, and a round trip's worth of
// slack for the time clients take between requests.
func (w *pollPlan) unit() time.Duration {
	rtt, _, _ := w.pace.estimates()
	if rtt == 0 {
		rtt = w.interval / 4
	}
	return w.fast() + 3*rtt
}

// pollIn returns how long to wait before the next poll, given the retry
// interval the backoff asks for. It is never more than interval.
func (w *pollPlan) pollIn(interval time.Duration) time.Duration {
	w.interval = interval
	switch {
	case w.deferred:
		return max(min(interval, w.deferLeft), minPoll)
	case w.settle > 0:
		return max(min(interval, w.settle), minPoll)
	case w.rank <= 0:
		limit := interval
		if w.reserved {
			// The free record will be ours only for reservationTTL.
			limit = min(limit, reservationTTL/4)
		}
		return max(min(limit, w.nearEnd()), minPoll)
	case w.rank == 1 && !w.holdSince.IsZero():
		// Second in line: see the coming hand-off as it happens, so the
		// start of the next hold, the one to wait out, is known closely.
		return max(min(interval, w.soon(), w.nearEnd()), minPoll)
	case w.rank == 1:
		return min(interval, w.soon())
	case w.rank < 1<<20:
		// Further back: look again about when second in line.
		_, period, _ := w.pace.estimates()
		if period > 0 {
			return min(interval, max(w.soon(), time.Duration(w.rank-1)*period))
		}
	}
	return interval
}

// soon is the pace of a waiter one grant from its turn: about twice per
// grant period (when known), so it sees every grant.
func (w *pollPlan) soon() time.Duration {
	_, period, _ := w.pace.estimates()
	if period <= 0 {
		return w.interval
	}
	return max(w.fast(), period/2)
}

// nearEnd paces the polls of the waiter next in line: it halves the time
// to the expected end of the hold (its estimated start plus the observed
// grant period, less the hand-off's requests), polls fast around it, and
// backs off by half the overdue time after it. Without an estimate it
// doubles the pause after each fast poll of a hold.
func (w *pollPlan) nearEnd() time.Duration {
	fast := w.fast()
	rtt, period, hold := w.pace.estimates()
	if period > 0 {
		// The hold ends a hand-off before the next grant.
		period -= 2 * rtt
	}
	if hold > 0 && (period <= 0 || hold < period) {
		period = hold
	}
	if period <= 0 || w.holdSince.IsZero() {
		// Nothing to aim at: poll fast, then twice as long each time.
		d := fast << min(w.fastPolls, 20)
		w.fastPolls++
		return d
	}
	left := time.Until(w.holdSince.Add(period))
	switch {
	case left > 2*fast:
		return left / 2
	case left > -4*fast:
		return fast
	}
	// Overdue: back off by half of it, but keep looking a few times per
	// hold, as the estimate of when it began may be off by a poll's gap.
	return max(fast, min(-left/2, period/4))
}

// When Lock polls: what a Mutex learns of round trips, grant periods and
// its own holds, and the pause each waiter takes before its next poll.

package prevrelease

import (
	"time"
)

// minPoll is the shortest pause between two polls.
const minPoll = time.Millisecond

// pacing is what a Mutex remembers between Lock calls to pace its polls.
// It is protected by leaseManager.mu.
type pacing struct {
	rtt    time.Duration // EWMA of the duration of our GETs
	period time.Duration // EWMA of the observed time between grants (0: unknown)
	hold   time.Duration // EWMA of this Mutex's own holds (0: none yet)
	streak int           // consecutive warm re-acquires
	cool   int           // Locks left that read first (see coolDown)
}

// noteHold feeds the estimate of a hold's length with one of our own,
// from the acquiring write to the release.
func (lm *leaseManager) noteHold(d time.Duration) {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	if lm.pace.hold == 0 {
		lm.pace.hold = d
	} else {
		lm.pace.hold += (d - lm.pace.hold) / 4
	}
}

// noteRTT feeds the round-trip time with the duration of one request.
func (lm *leaseManager) noteRTT(d time.Duration) {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	lm.pace.noteRTT(d)
}

func (p *pacing) noteRTT(d time.Duration) {
	switch {
	case d <= 0:
	case p.rtt == 0:
		p.rtt = d
	default:
		p.rtt += (d - p.rtt) / 4
	}
}

// observe feeds the round-trip time and the grant period, and estimates
// when the hold in s began.
func (w *waiter) observe(s *snapshot, gen uint64) {
	lm := w.lm
	lm.mu.Lock()
	defer lm.mu.Unlock()
	lm.pace.noteRTT(s.rtt)
	if s.seenAt.IsZero() {
		return
	}
	if !w.lastAt.IsZero() && gen > w.lastGen && s.seenAt.After(w.lastAt) {
		// The generation changed between the last poll and this one.
		at := w.lastAt.Add(s.seenAt.Sub(w.lastAt) / 2)
		if !w.changeAt.IsZero() && gen > w.changeGen {
			sample := at.Sub(w.changeAt) / time.Duration(gen-w.changeGen)
			if lm.pace.period == 0 {
				lm.pace.period = sample
			} else {
				lm.pace.period += (sample - lm.pace.period) / 4
			}
		}
		w.changeGen, w.changeAt = gen, at
		w.holdSince = w.lastAt
	} else if gen != w.lastGen || w.lastAt.IsZero() {
		w.holdSince = time.Time{}
	}
	w.lastGen, w.lastAt = gen, s.seenAt
}

// fast is the pause between polls of the waiter next in line.
func (w *waiter) fast() time.Duration {
	w.lm.mu.Lock()
	rtt := w.lm.pace.rtt
	w.lm.mu.Unlock()
	f := w.interval / 4
	if rtt > 0 {
		f = min(f, rtt/2)
	}
	return max(f, minPoll)
}

// unit is how long a waiter leaves a free lock to each older waiter: one
// fast poll of theirs plus a GET and a PUT, and a round trip's worth of
// slack for the time clients take between requests.
func (w *waiter) unit() time.Duration {
	w.lm.mu.Lock()
	rtt := w.lm.pace.rtt
	w.lm.mu.Unlock()
	if rtt == 0 {
		rtt = w.interval / 4
	}
	return w.fast() + 3*rtt
}

// pollIn returns how long to wait before the next poll, given the retry
// interval the backoff asks for. It is never more than interval.
func (w *waiter) pollIn(interval time.Duration) time.Duration {
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
		w.lm.mu.Lock()
		period := w.lm.pace.period
		w.lm.mu.Unlock()
		if period > 0 {
			return min(interval, max(w.soon(), time.Duration(w.rank-1)*period))
		}
	}
	return interval
}

// soon is the pace of a waiter one grant from its turn: about twice per
// grant period (when known), so it sees every grant.
func (w *waiter) soon() time.Duration {
	w.lm.mu.Lock()
	period := w.lm.pace.period
	w.lm.mu.Unlock()
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
func (w *waiter) nearEnd() time.Duration {
	fast := w.fast()
	w.lm.mu.Lock()
	period, rtt, hold := w.lm.pace.period, w.lm.pace.rtt, w.lm.pace.hold
	w.lm.mu.Unlock()
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

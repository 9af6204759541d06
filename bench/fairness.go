package main

import (
	"slices"
	"sort"
	"time"
)

// contention is what the Lock calls of one contended run show about the
// measured window [measure, stop).
//
// Grants per worker and the Lock latencies are those of the calls granted
// in the window. A wait counts when it was under way in the window: it
// ended with a grant in the window, or it had not ended when the run
// stopped (a worker starved from the start has one such wait, begun in
// the warm-up).
//
// The bypass of a wait is the number of grants that went to others while
// it waited. It is counted with fencing tokens, not with clock readings,
// because every grant gets a larger token than the one before (the lock
// generation goes up by one with every claim, and a duplicate token is
// reported as a failed check):
//
//   - b is the largest token among the grants whose Lock call had
//     returned, by the shared wall clock, before the wait began: those
//     grants were surely made before it;
//   - g is the token of the grant that ended the wait (no bound when the
//     run stopped first);
//   - the bypass is the number of grants, by all workers, with a token
//     strictly between b and g. None of them is the waiter's own: it held
//     no grant between its previous one (token ≤ b) and g.
//
// A grant made just before the wait began whose Lock call returned just
// after it is counted too, so a bypass is over-counted by at most the one
// grant in flight at the wait's start; the lock cannot be granted twice at
// once, so never by more. A worker that releases and at once waits again,
// behind N−1 others in strict arrival order, sees a bypass of N−1.
//
// The longest wait includes the waits that had not ended when the run
// stopped, counted up to the stop: for them it is a lower bound.
type contention struct {
	grants      []float64 // per worker, granted in the window
	latencies   []float64 // ms, of the Lock calls granted in the window
	longestWait time.Duration
	maxBypass   int
	dupTokens   int
}

func analyze(results []workerResult, measure, stop time.Time) contention {
	m, s := measure.UnixNano(), stop.UnixNano()
	c := contention{grants: make([]float64, len(results))}
	// All grants of the run, by token and by the time Lock returned.
	type grant struct {
		at    int64
		token uint64
	}
	var byTime []grant
	var tokens []uint64
	for i, res := range results {
		for _, l := range res.Locks {
			if l.Granted == 0 {
				continue
			}
			byTime = append(byTime, grant{l.Granted, l.Token})
			tokens = append(tokens, l.Token)
			if l.Granted >= m && l.Granted < s {
				c.grants[i]++
				c.latencies = append(c.latencies, ms(time.Duration(l.Granted-l.Start)))
			}
		}
	}
	slices.Sort(tokens)
	for i := 1; i < len(tokens); i++ {
		if tokens[i] == tokens[i-1] {
			c.dupTokens++
		}
	}
	sort.Slice(byTime, func(i, j int) bool { return byTime[i].at < byTime[j].at })
	// before[i] is the largest token among the first i grants by time.
	before := make([]uint64, len(byTime)+1)
	for i, g := range byTime {
		before[i+1] = max(before[i], g.token)
	}
	for _, res := range results {
		for _, l := range res.Locks {
			if l.Start >= s || (l.Granted != 0 && l.Granted < m) {
				continue // not under way in the window
			}
			end := l.Granted
			if end == 0 {
				end = s
			}
			c.longestWait = max(c.longestWait, time.Duration(end-l.Start))
			// Grants whose Lock returned before the wait began.
			n := sort.Search(len(byTime), func(i int) bool { return byTime[i].at >= l.Start })
			b := before[n]
			lo := sort.Search(len(tokens), func(i int) bool { return tokens[i] > b })
			hi := len(tokens)
			if l.Granted != 0 {
				hi = sort.Search(len(tokens), func(i int) bool { return tokens[i] >= l.Token })
			}
			c.maxBypass = max(c.maxBypass, hi-lo)
		}
	}
	return c
}

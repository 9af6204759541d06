package lastrelease

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// The racing part of the probe: probeRounds rounds, each racing
// probeRacers If-None-Match creates of a fresh key and then probeRacers
// If-Match overwrites of the ETag the winner left. Once probeRaceBudget has
// passed since the first round started, no new round starts, but at least
// probeMinRounds run. A round costs 2*probeRacers PUTs, 2 GETs and, for the
// cleanup, 1 DELETE.
const (
	probeRacers     = 8
	probeRounds     = 8
	probeMinRounds  = 2
	probeRaceBudget = 20 * time.Second
)

// raceKind is one of the two races of a probe round.
type raceKind struct {
	name   string // the ProbeStep name
	create bool   // If-None-Match: * on a fresh key; else If-Match
}

var (
	raceCreate = raceKind{name: "racing If-None-Match creates", create: true}
	raceMatch  = raceKind{name: "racing If-Match writes"}
)

// raceWant is the Want of the race steps.
var raceWant = fmt.Sprintf("exactly one winner per round, the others 412 or 409 (%d racers)", probeRacers)

// race runs the racing rounds after the sequential steps have passed.
func (p *prober) race(ctx context.Context) error {
	start := time.Now()
	done := 0
	for round := 1; round <= probeRounds; round++ {
		if round > probeMinRounds && time.Since(start) >= probeRaceBudget {
			break
		}
		key := p.key + "-race-" + strconv.Itoa(round)
		p.raceKeys = append(p.raceKeys, key)
		etag, err := p.raceRound(ctx, raceCreate, key, round, "", "")
		if err != nil {
			return err
		}
		if _, err := p.raceRound(ctx, raceMatch, key, round, etag.etag, etag.body); err != nil {
			return err
		}
		done = round
	}
	got := fmt.Sprintf("exactly one winner in each of %d rounds", done)
	if done < probeRounds {
		got += fmt.Sprintf(" (no round started after %v)", probeRaceBudget)
	}
	for _, k := range []raceKind{raceCreate, raceMatch} {
		p.steps = append(p.steps, ProbeStep{Name: k.name, Want: raceWant, Got: got, OK: true})
	}
	return nil
}

// raceResult is what one racer saw.
type raceResult struct {
	body string
	err  error
}

// raceState is the object a race left: its body and ETag.
type raceState struct{ body, etag string }

// raceRound races probeRacers conditional PUTs on key (If-None-Match: *
// when kind.create, else If-Match: etag over an object holding base), reads
// the object back, and fails the probe unless exactly one racer won. It
// returns the object the race left.
func (p *prober) raceRound(ctx context.Context, kind raceKind, key string, round int, etag, base string) (raceState, error) {
	results := make([]raceResult, probeRacers)
	startc := make(chan struct{})
	var wg sync.WaitGroup
	for i := range results {
		results[i].body = fmt.Sprintf("s3lock probe race %d/%d racer %d %s", round, probeRounds, i, newNonce())
		in := &s3.PutObjectInput{Bucket: &p.bucket, Key: aws.String(key)}
		if kind.create {
			in.IfNoneMatch = aws.String("*")
		} else {
			in.IfMatch = aws.String(etag)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-startc
			_, results[i].err = p.putKey(ctx, in, results[i].body)
		}()
	}
	close(startc)
	wg.Wait()

	fail := func(got string, err error) (raceState, error) {
		return raceState{}, p.fail(ProbeStep{Name: kind.name, Want: raceWant, Got: got}, err)
	}
	where := fmt.Sprintf("round %d of %d", round, probeRounds)
	winners := map[int]bool{}
	refused := false // some racer got 412 (a claim that another one won)
	for i, r := range results {
		if r.err == nil {
			winners[i] = true
			continue
		}
		f, mapped := classify(r.err, p.bucket)
		switch {
		case f == failPrecondition:
			refused = true
		case f == failConflict, f == failTransient:
			// A 409 wrote nothing; a transient error may or may not
			// have: the read back below tells.
		case errors.Is(mapped, ErrConditionalWritesUnsupported):
			return fail(fmt.Sprintf("racer %d got %s in %s", i, describe(r.err), where), r.err)
		case f == failNotFound:
			return fail(fmt.Sprintf("racer %d got %s in %s (the object exists)", i, describe(r.err), where), r.err)
		default: // permanent or canceled
			return raceState{}, mapped
		}
	}
	body, newETag, err := p.readKey(ctx, key)
	switch {
	case err == nil:
	case kind.create && len(winners) == 0:
		if f, _ := classify(err, p.bucket); f == failNotFound {
			if refused {
				return fail("no winner in "+where+", yet 412 for a create of a missing key", nil)
			}
			return raceState{}, p.inconclusive(fmt.Errorf("no racer's write was applied in %s (409 conflicts or transient errors)", where))
		}
		fallthrough
	default:
		f, mapped := classify(err, p.bucket)
		if f == failNotFound {
			return fail(fmt.Sprintf("no object after %d successful writes in %s", len(winners), where), nil)
		}
		return raceState{}, p.inconclusive(mapped)
	}
	// The racer whose body is stored won, whatever it was told (a 412
	// can be the SDK's retry of its own applied write).
	stored := -1
	for i, r := range results {
		if r.body == body {
			stored = i
			winners[i] = true
		}
	}
	switch {
	case len(winners) >= 2:
		return fail(fmt.Sprintf("%d winners in %s", len(winners), where), nil)
	case stored < 0 && (kind.create || body != base):
		return fail(fmt.Sprintf("a body no racer wrote (%.40q) in %s", body, where), nil)
	case stored < 0 && len(winners) == 1:
		return fail("the winner's write was lost in "+where, nil)
	case stored < 0 && refused:
		// Nothing applied, yet someone was told another write won.
		return fail("no winner in "+where+", yet 412 with the current ETag", nil)
	case stored < 0:
		return raceState{}, p.inconclusive(fmt.Errorf("no racer's write was applied in %s (409 conflicts or transient errors)", where))
	}
	if newETag == "" {
		return fail("no ETag on the read back in "+where, nil)
	}
	return raceState{body: body, etag: newETag}, nil
}

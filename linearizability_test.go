package s3lock_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/internal/s3servers"
	"github.com/s3lock/s3lock/s3locktest"
)

// Linearizability: many goroutines, each with its own Mutex on one key,
// record every TryLock, Lock, Unlock and Inspect they make (call and return
// times on one monotonic clock, and what came back). Porcupine then checks
// that the history is linearizable with respect to a sequential lock whose
// state is (holder, generation):
//   - a successful TryLock/Lock is legal only when the lock is free, and
//     returns generation+1 as its token;
//   - TryLock's *LockedError is legal only when another Mutex holds the lock,
//     and names that hold's generation and owner;
//   - Unlock succeeds only for the holder and frees the lock (generation
//     kept); ErrNotHeld only for a non-holder;
//   - Inspect reports exactly the state: held or not, generation, owner.
//
// TTLs are long, so no hold expires: expiry is outside this model.

type linOp int

const (
	linTryLock linOp = iota
	linLock
	linUnlock
	linInspect
)

func (o linOp) String() string {
	return [...]string{"TryLock", "Lock", "Unlock", "Inspect"}[o]
}

// linInput is what a client asked.
type linInput struct {
	op     linOp
	client int
}

// linOutcome classifies what came back.
type linOutcome int

const (
	linOK      linOutcome = iota // acquired / released / inspected
	linLocked                    // *LockedError
	linNotHeld                   // ErrNotHeld
	linOther                     // anything else (never legal)
)

// linOutput is what came back.
type linOutput struct {
	outcome linOutcome
	token   uint64 // acquire: Token(); LockedError: Generation; Inspect: Generation
	owner   string // LockedError: Owner; Inspect: Owner (when held)
	held    bool   // Inspect: Held
	err     string // linOther: the error
}

// linState is the sequential lock: holder (-1 when free) and the
// generation of the last grant.
type linState struct {
	holder int
	gen    uint64
}

func linOwner(client int) string { return fmt.Sprintf("lin-%d", client) }

// linModel is the sequential lock. An acquire that failed with an error
// other than *LockedError (for example TryLock giving up after losing
// several races in a row, or an S3 error whose write may have been applied)
// may or may not have taken the lock: the model allows both. Unlock and
// Inspect errors are never legal here: nothing injects faults and no hold
// expires.
var linModel = (&porcupine.NondeterministicModel{
	Init: func() []any { return []any{linState{holder: -1}} },
	Step: func(state, input, output any) []any {
		s, in, out := state.(linState), input.(linInput), output.(linOutput)
		acquire := in.op == linTryLock || in.op == linLock
		switch {
		case acquire && out.outcome == linOK:
			if s.holder == -1 && out.token == s.gen+1 {
				return []any{linState{holder: in.client, gen: out.token}}
			}
		case acquire && out.outcome == linOther:
			if s.holder == -1 {
				return []any{s, linState{holder: in.client, gen: s.gen + 1}}
			}
			return []any{s}
		case in.op == linTryLock && out.outcome == linLocked:
			if s.holder != -1 && s.holder != in.client && out.token == s.gen && out.owner == linOwner(s.holder) {
				return []any{s}
			}
		case in.op == linUnlock && out.outcome == linOK:
			if s.holder == in.client {
				return []any{linState{holder: -1, gen: s.gen}}
			}
		case in.op == linUnlock && out.outcome == linNotHeld:
			if s.holder != in.client {
				return []any{s}
			}
		case in.op == linInspect && out.outcome == linOK:
			held := s.holder != -1
			if out.held == held && out.token == s.gen && (!held || out.owner == linOwner(s.holder)) {
				return []any{s}
			}
		}
		return nil
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(linInput), output.(linOutput)
		return fmt.Sprintf("c%d %v -> %+v", in.client, in.op, out)
	},
	DescribeState: func(state any) string {
		s := state.(linState)
		if s.holder == -1 {
			return fmt.Sprintf("free (gen %d)", s.gen)
		}
		return fmt.Sprintf("held by c%d (gen %d)", s.holder, s.gen)
	},
}).ToModel()

// linRecorder collects operations on one monotonic clock, and the
// Mutexes' debug logs (shown only when the check fails).
type linRecorder struct {
	t0  time.Time
	mu  sync.Mutex // protects ops, log
	ops []porcupine.Operation
	log bytes.Buffer
}

// Write implements io.Writer for the log handler.
func (r *linRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log.Write(p)
}

// logger returns a debug logger for client c whose times are on the
// history's clock (ns since t0).
func (r *linRecorder) logger(c int) *slog.Logger {
	h := slog.NewTextHandler(r, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Int64("t", a.Value.Time().Sub(r.t0).Nanoseconds())
			}
			return a
		},
	})
	return slog.New(h).With("client", c)
}

func (r *linRecorder) now() int64 { return time.Since(r.t0).Nanoseconds() }

func (r *linRecorder) add(client int, in linInput, call int64, out linOutput) {
	ret := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
}

func linAcquireOutput(m *s3lock.Mutex, err error) linOutput {
	var le *s3lock.LockedError
	switch {
	case err == nil:
		return linOutput{outcome: linOK, token: m.Token()}
	case errors.As(err, &le) && !le.Local:
		return linOutput{outcome: linLocked, token: le.Generation, owner: le.Owner}
	default:
		return linOutput{outcome: linOther, err: err.Error()}
	}
}

// linRecord runs the workload against one bucket and returns its history.
func linRecord(t *testing.T, client func(optFns ...func(*s3.Options)) *s3.Client, bucket, key string, rounds int) *linRecorder {
	const clients = 8
	rec := &linRecorder{t0: time.Now()}
	ctx := context.Background()
	var wg sync.WaitGroup
	for c := range clients {
		m := newMutex(t, client(), bucket, key, s3lock.WithOwner(linOwner(c)),
			s3lock.WithTTL(10*time.Minute), s3lock.WithRetryInterval(5*time.Millisecond), s3lock.WithLogger(rec.logger(c)))
		inspector := client()
		rng := rand.New(rand.NewPCG(uint64(c), 42))
		wg.Add(1)
		go func() {
			defer wg.Done()
			inspect := func() {
				call := rec.now()
				st, err := s3lock.Inspect(ctx, inspector, bucket, key)
				out := linOutput{outcome: linOther}
				if err == nil {
					out = linOutput{outcome: linOK, held: st.Held, token: st.Generation}
					if st.Held {
						out.owner = st.Owner
					}
				} else {
					out.err = err.Error()
				}
				rec.add(c, linInput{op: linInspect, client: c}, call, out)
			}
			unlock := func() {
				call := rec.now()
				err := m.Unlock(ctx)
				out := linOutput{outcome: linOK}
				switch {
				case errors.Is(err, s3lock.ErrNotHeld):
					out.outcome = linNotHeld
				case err != nil:
					out = linOutput{outcome: linOther, err: err.Error()}
				}
				rec.add(c, linInput{op: linUnlock, client: c}, call, out)
			}
			for range rounds {
				switch rng.IntN(6) {
				case 0:
					inspect()
					continue
				case 1:
					unlock() // not holding: ErrNotHeld
					continue
				}
				op := linTryLock
				if rng.IntN(3) == 0 {
					op = linLock
				}
				call := rec.now()
				var err error
				if op == linLock {
					lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
					err = m.Lock(lctx)
					cancel()
				} else {
					err = m.TryLock(ctx)
				}
				rec.add(c, linInput{op: op, client: c}, call, linAcquireOutput(m, err))
				if err != nil {
					time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
					continue
				}
				if rng.IntN(2) == 0 {
					inspect()
				}
				time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
				unlock()
			}
		}()
	}
	wg.Wait()
	return rec
}

// linCheck runs porcupine on ops and returns its verdict.
func linCheck(ops []porcupine.Operation) porcupine.CheckResult {
	return porcupine.CheckOperationsTimeout(linModel, ops, time.Minute)
}

func linSummary(ops []porcupine.Operation) string {
	counts := map[string]int{}
	for _, op := range ops {
		in, out := op.Input.(linInput), op.Output.(linOutput)
		name := in.op.String()
		switch out.outcome {
		case linOK:
			name += " ok"
		case linLocked:
			name += " locked"
		case linNotHeld:
			name += " not-held"
		default:
			name += " error(" + out.err + ")"
		}
		counts[name]++
	}
	var parts []string
	for _, k := range []string{"TryLock ok", "TryLock locked", "Lock ok", "Unlock ok", "Unlock not-held", "Inspect ok"} {
		parts = append(parts, fmt.Sprintf("%s=%d", k, counts[k]))
		delete(counts, k)
	}
	for k, v := range counts {
		parts = append(parts, fmt.Sprintf("%s=%d", k, v))
	}
	return strings.Join(parts, " ")
}

func TestLinearizability(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rounds int    // per client; moto (Python) is much slower than the others
		racy   string // why a second winner is a known store defect (s3servers.MotoRace)
		start  func(t *testing.T) (func(...func(*s3.Options)) *s3.Client, string)
	}{
		{"gofakes3", 50, "", func(t *testing.T) (func(...func(*s3.Options)) *s3.Client, string) {
			srv := s3locktest.New(t)
			return srv.Client, srv.Bucket()
		}},
		{"versitygw", 50, "", func(t *testing.T) (func(...func(*s3.Options)) *s3.Client, string) {
			srv := s3servers.Versitygw(t)
			return srv.Client, srv.Bucket()
		}},
		{"seaweedfs", 20, "", func(t *testing.T) (func(...func(*s3.Options)) *s3.Client, string) {
			srv := s3servers.SeaweedFS(t)
			return srv.Client, srv.Bucket()
		}},
		{"moto", 20, s3servers.MotoRace, func(t *testing.T) (func(...func(*s3.Options)) *s3.Client, string) {
			srv := s3servers.Moto(t)
			return srv.Client, srv.Bucket()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client, bucket := tc.start(t)
			rec := linRecord(t, client, bucket, "lin/lock", tc.rounds)
			ops := rec.ops
			start := time.Now()
			res := linCheck(ops)
			t.Logf("%d operations (%s); porcupine: %s in %v", len(ops), linSummary(ops), res, time.Since(start).Round(time.Millisecond))
			if res != porcupine.Ok {
				if dup := linDuplicateGrants(ops); dup != "" && tc.racy != "" {
					t.Skipf("history not linearizable because %s, which is a known store defect: %s", dup, tc.racy)
				}
				linReport(t, ops)
				t.Logf("Mutex logs (t = ns on the history's clock):\n%s", rec.log.String())
				t.Fatalf("porcupine.CheckOperations = %s; want Ok", res)
			}
			// Negative control: the same history with one forged grant in the
			// middle of someone's hold must be rejected, so the check above
			// can fail.
			forged, ok := linForgeOverlap(ops)
			if !ok {
				t.Fatalf("no hold in the history to forge an overlap into")
			}
			if res := linCheck(forged); res != porcupine.Illegal {
				t.Errorf("history with a forged overlapping grant: porcupine = %s; want Illegal", res)
			}
			dup, ok := linForgeDuplicateToken(ops)
			if !ok {
				t.Fatalf("no two grants in the history")
			}
			if res := linCheck(dup); res != porcupine.Illegal {
				t.Errorf("history with a repeated fencing token: porcupine = %s; want Illegal", res)
			}
		})
	}
}

// linDuplicateGrants describes the first fencing token granted to two
// acquires, or returns "".
func linDuplicateGrants(ops []porcupine.Operation) string {
	seen := map[uint64]int{}
	for _, op := range ops {
		in, out := op.Input.(linInput), op.Output.(linOutput)
		if (in.op != linTryLock && in.op != linLock) || out.outcome != linOK {
			continue
		}
		if c, dup := seen[out.token]; dup {
			return fmt.Sprintf("token %d was granted to both c%d and c%d", out.token, c, in.client)
		}
		seen[out.token] = in.client
	}
	return ""
}

// linReport logs a failed history and writes porcupine's visualization
// of it to a file that outlives the test.
func linReport(t *testing.T, ops []porcupine.Operation) {
	t.Helper()
	for _, op := range ops {
		t.Logf("  c%d [%d, %d] %s", op.ClientId, op.Call, op.Return, linModel.DescribeOperation(op.Input, op.Output))
	}
	_, info := porcupine.CheckOperationsVerbose(linModel, ops, time.Minute)
	f, err := os.CreateTemp("", "s3lock-linearizability-*.html")
	if err != nil {
		t.Logf("cannot write the visualization: %v", err)
		return
	}
	defer f.Close()
	if err := porcupine.Visualize(linModel, info, f); err != nil {
		t.Logf("cannot write the visualization: %v", err)
		return
	}
	t.Logf("porcupine visualization of the history: %s", f.Name())
}

// linForgeOverlap adds to a copy of ops a successful TryLock by a new
// client, entirely inside the first hold that has room (after the holder's
// acquire returned, before its Unlock was called).
func linForgeOverlap(ops []porcupine.Operation) ([]porcupine.Operation, bool) {
	for _, acq := range ops {
		in, out := acq.Input.(linInput), acq.Output.(linOutput)
		if (in.op != linTryLock && in.op != linLock) || out.outcome != linOK {
			continue
		}
		// The holder's next Unlock.
		var rel *porcupine.Operation
		for i := range ops {
			u := &ops[i]
			if u.Input.(linInput) == (linInput{op: linUnlock, client: in.client}) && u.Output.(linOutput).outcome == linOK &&
				u.Call > acq.Return && (rel == nil || u.Call < rel.Call) {
				rel = u
			}
		}
		if rel == nil || rel.Call-acq.Return < 3 {
			continue
		}
		forged := append([]porcupine.Operation(nil), ops...)
		forged = append(forged, porcupine.Operation{
			ClientId: 99,
			Input:    linInput{op: linTryLock, client: 99},
			Call:     acq.Return + 1,
			Output:   linOutput{outcome: linOK, token: out.token + 1},
			Return:   rel.Call - 1,
		})
		return forged, true
	}
	return nil, false
}

// linForgeDuplicateToken returns a copy of ops in which the last grant
// reports the same token as the one before it.
func linForgeDuplicateToken(ops []porcupine.Operation) ([]porcupine.Operation, bool) {
	forged := append([]porcupine.Operation(nil), ops...)
	var grants []int
	for i, op := range forged {
		in, out := op.Input.(linInput), op.Output.(linOutput)
		if (in.op == linTryLock || in.op == linLock) && out.outcome == linOK {
			grants = append(grants, i)
		}
	}
	if len(grants) < 2 {
		return nil, false
	}
	// Find the grant with the highest token and give it the token of the
	// grant below it.
	byToken := map[uint64]int{}
	var top uint64
	for _, i := range grants {
		tok := forged[i].Output.(linOutput).token
		byToken[tok] = i
		top = max(top, tok)
	}
	i, ok := byToken[top]
	if !ok || top < 2 {
		return nil, false
	}
	out := forged[i].Output.(linOutput)
	out.token = top - 1
	forged[i].Output = out
	return forged, true
}

// TestLinearizabilityModel checks the model on small hand-written
// histories, legal and illegal.
func TestLinearizabilityModel(t *testing.T) {
	acq := func(c int, call, ret int64, tok uint64) porcupine.Operation {
		return porcupine.Operation{ClientId: c, Input: linInput{op: linTryLock, client: c}, Call: call, Return: ret,
			Output: linOutput{outcome: linOK, token: tok}}
	}
	locked := func(c int, call, ret int64, gen uint64, holder int) porcupine.Operation {
		return porcupine.Operation{ClientId: c, Input: linInput{op: linTryLock, client: c}, Call: call, Return: ret,
			Output: linOutput{outcome: linLocked, token: gen, owner: linOwner(holder)}}
	}
	rel := func(c int, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: c, Input: linInput{op: linUnlock, client: c}, Call: call, Return: ret,
			Output: linOutput{outcome: linOK}}
	}
	notHeld := func(c int, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: c, Input: linInput{op: linUnlock, client: c}, Call: call, Return: ret,
			Output: linOutput{outcome: linNotHeld}}
	}
	inspect := func(c int, call, ret int64, held bool, gen uint64, holder int) porcupine.Operation {
		out := linOutput{outcome: linOK, held: held, token: gen}
		if held {
			out.owner = linOwner(holder)
		}
		return porcupine.Operation{ClientId: c, Input: linInput{op: linInspect, client: c}, Call: call, Return: ret, Output: out}
	}
	for _, tc := range []struct {
		name string
		ops  []porcupine.Operation
		want porcupine.CheckResult
	}{
		{"sequential", []porcupine.Operation{acq(0, 0, 1, 1), locked(1, 2, 3, 1, 0), rel(0, 4, 5), acq(1, 6, 7, 2), inspect(2, 8, 9, true, 2, 1), rel(1, 10, 11), inspect(2, 12, 13, false, 2, 0)}, porcupine.Ok},
		{"concurrent acquires, one after the other's release", []porcupine.Operation{acq(0, 0, 10, 1), acq(1, 0, 10, 2), rel(0, 2, 5)}, porcupine.Ok},
		{"locked seen before the grant it names, overlapping", []porcupine.Operation{locked(1, 0, 10, 1, 0), acq(0, 0, 5, 1)}, porcupine.Ok},
		{"unlock by non-holder", []porcupine.Operation{acq(0, 0, 1, 1), notHeld(1, 2, 3), rel(0, 4, 5)}, porcupine.Ok},
		{"two holders", []porcupine.Operation{acq(0, 0, 1, 1), acq(1, 2, 3, 2), rel(0, 4, 5)}, porcupine.Illegal},
		{"token not incremented", []porcupine.Operation{acq(0, 0, 1, 1), rel(0, 2, 3), acq(1, 4, 5, 1)}, porcupine.Illegal},
		{"token skips", []porcupine.Operation{acq(0, 0, 1, 1), rel(0, 2, 3), acq(1, 4, 5, 3)}, porcupine.Illegal},
		{"locked while free", []porcupine.Operation{acq(0, 0, 1, 1), rel(0, 2, 3), locked(1, 4, 5, 1, 0)}, porcupine.Illegal},
		{"locked names wrong owner", []porcupine.Operation{acq(0, 0, 1, 1), locked(1, 2, 3, 1, 2)}, porcupine.Illegal},
		{"unlock by non-holder succeeds", []porcupine.Operation{acq(0, 0, 1, 1), rel(1, 2, 3)}, porcupine.Illegal},
		{"holder told not held", []porcupine.Operation{acq(0, 0, 1, 1), notHeld(0, 2, 3)}, porcupine.Illegal},
		{"inspect misses a hold", []porcupine.Operation{acq(0, 0, 1, 1), inspect(1, 2, 3, false, 1, 0)}, porcupine.Illegal},
		{"failed acquire that took effect", []porcupine.Operation{
			{ClientId: 0, Input: linInput{op: linTryLock}, Output: linOutput{outcome: linOther, err: "timeout"}, Call: 0, Return: 1},
			locked(1, 2, 3, 1, 0)}, porcupine.Ok},
		{"failed acquire without effect", []porcupine.Operation{
			{ClientId: 0, Input: linInput{op: linTryLock}, Output: linOutput{outcome: linOther, err: "gave up"}, Call: 0, Return: 1},
			acq(1, 2, 3, 1)}, porcupine.Ok},
		{"unlock error", []porcupine.Operation{acq(0, 0, 1, 1),
			{ClientId: 0, Input: linInput{op: linUnlock}, Output: linOutput{outcome: linOther, err: "boom"}, Call: 2, Return: 3}}, porcupine.Illegal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := linCheck(tc.ops); got != tc.want {
				t.Errorf("check = %s; want %s", got, tc.want)
			}
		})
	}
}

// Hooks: what a Mutex tells an observer (metrics, traces, logs) about its
// operations, holds and S3 requests.

package s3lock

import (
	"context"
	"errors"
	"time"
)

// Hooks are functions a Mutex calls as it works, for metrics, traces and
// logs (the module github.com/s3lock/s3lock/s3lockotel builds OpenTelemetry
// metrics and spans from them). Every field is optional: a nil field is
// skipped, and a Mutex without Hooks pays nothing for them. Install them
// with [WithHooks].
//
// The hooks are called synchronously, from the goroutine doing the work
// (each field's comment says which), so they must be safe for concurrent
// use, return quickly and not block; they must not call the Mutex that
// calls them. The infos they get are values; their Err fields hold the
// error the operation returns (or met), to inspect with errors.Is and
// errors.As.
//
// Every operation that calls Start ends with exactly one call of its end
// hook (Acquire for [OpLock], [OpTryLock], [OpCampaign], [OpAcquire],
// [OpTryAcquire], [OpRLock] and [OpTryRLock]; Release for [OpUnlock],
// [OpResign], [OpRelease] and [OpRUnlock]; Renew for [OpRenew] and
// [OpProclaim]), with
// the context Start returned, from the same goroutine. A hook that panics
// is recovered and logged (WithLogger), so the lock's own work is never
// left half done; fix the hook.
type Hooks struct {
	// Start is called when an operation begins, before its first S3
	// request: Lock, TryLock and Unlock from the caller's goroutine, and
	// each renewal (with [WithAutoRenew]) from the hold's renewer
	// goroutine. The context it returns (ctx or one derived from it) is
	// the one the operation's S3 requests, its Request and Reserve hooks
	// and its end hook get: a tracer starts a span here. Returning nil
	// keeps ctx.
	Start func(ctx context.Context, info StartInfo) context.Context

	// Acquire is called once when Lock or TryLock returns, from the
	// caller's goroutine, after the hold is in place when it succeeded
	// (so its hold context and renewer already run).
	Acquire func(ctx context.Context, info AcquireInfo)

	// Release is called once when Unlock returns, from the caller's
	// goroutine, whatever the outcome (also when Unlock finds nothing
	// held: then Token and Held are zero and Err matches [ErrNotHeld]).
	Release func(ctx context.Context, info ReleaseInfo)

	// Renew is called after each renewal write of a hold kept with
	// [WithAutoRenew] (one renewal may be several S3 requests), from the
	// hold's renewer goroutine.
	Renew func(ctx context.Context, info RenewInfo)

	// LeaseLost is called at most once per hold, when the hold ends
	// without Unlock having released it: right after its context (see
	// [Mutex.Context]) is cancelled with cause [ErrLeaseLost]. It is
	// called from the goroutine that found out: the renewer (a renewal
	// found someone else's record, or failed until the lease ran out), a
	// timer goroutine (without renewal, when the TTL runs out), or the
	// goroutine calling Unlock (the release found someone else's record).
	// A release that fails for other reasons (S3 unreachable) is not a
	// loss: Release reports it; nor is a hold that ran out before Lock or
	// TryLock could return it: Acquire reports that failure.
	LeaseLost func(info LeaseLostInfo)

	// Reserve is called after each attempt of Lock to reserve the next
	// turn in a held record (one conditional PUT, see the package
	// documentation), from the goroutine calling Lock.
	Reserve func(ctx context.Context, info ReserveInfo)

	// Request is called after each S3 request of the Mutex returns (a
	// GetObject or PutObject call, whose SDK retries are part of it), from
	// the goroutine that made it: the caller's, or the renewer's. The
	// requests of the store probe ([WithProbe]) are not reported.
	Request func(ctx context.Context, info RequestInfo)
}

// Op names an operation in the hooks' infos. Its values are the method
// names, fit for span names ("s3lock." + Op) and metric attributes.
type Op string

// The operations reported to [Hooks].
const (
	OpLock    Op = "Lock"
	OpTryLock Op = "TryLock"
	OpUnlock  Op = "Unlock"
	OpRenew   Op = "Renew"
	// The Election's operations: Campaign is an acquire (Acquire hook),
	// Proclaim a renewal carrying a value (Renew hook), Resign a release
	// (Release hook).
	OpCampaign Op = "Campaign"
	OpProclaim Op = "Proclaim"
	OpResign   Op = "Resign"
	// The shared holds' operations: a Semaphore's Acquire, TryAcquire and
	// Release, an RWMutex's RLock, TryRLock and RUnlock (its Lock,
	// TryLock and Unlock report OpLock, OpTryLock and OpUnlock). They
	// report Start, Acquire or Release, and LeaseLost; their renewals and
	// reservations are not reported.
	OpAcquire    Op = "Acquire"
	OpTryAcquire Op = "TryAcquire"
	OpRelease    Op = "Release"
	OpRLock      Op = "RLock"
	OpTryRLock   Op = "TryRLock"
	OpRUnlock    Op = "RUnlock"
)

// StartInfo describes an operation that begins (see [Hooks.Start]).
type StartInfo struct {
	Op          Op
	Bucket, Key string
	Token       uint64 // the hold's fencing token (Unlock, Renew); 0 for Lock and TryLock
}

// Outcome is how an acquire ended (see [AcquireInfo]).
type Outcome string

// The outcomes of Lock and TryLock.
const (
	// OutcomeAcquired: the lock is held.
	OutcomeAcquired Outcome = "acquired"
	// OutcomeLocked: someone else holds it (the error matches
	// [ErrLocked]), and ctx did not end.
	OutcomeLocked Outcome = "locked"
	// OutcomeCanceled: ctx ended first (the error matches
	// context.Canceled or context.DeadlineExceeded, even when it also
	// matches ErrLocked).
	OutcomeCanceled Outcome = "canceled"
	// OutcomeError: any other failure (S3, configuration).
	OutcomeError Outcome = "error"
)

// AcquireInfo describes a Lock or TryLock that returned (see
// [Hooks.Acquire]).
type AcquireInfo struct {
	Op          Op // OpLock, OpTryLock or OpCampaign
	Bucket, Key string
	Outcome     Outcome
	// Waited is how long the call took, from its start to its return.
	Waited time.Duration
	Token  uint64 // the new hold's fencing token; 0 unless acquired
	Err    error  // what the call returned
}

// ReleaseInfo describes an Unlock that returned (see [Hooks.Release]).
type ReleaseInfo struct {
	Op          Op // OpUnlock
	Bucket, Key string
	Token       uint64 // the released hold's fencing token; 0 when none was held
	// Held is how long the hold lasted: from the sending of the write that
	// acquired it to the end of Unlock.
	Held     time.Duration
	Duration time.Duration // how long Unlock took
	Err      error         // what Unlock returned
}

// RenewInfo describes one renewal of a hold (see [Hooks.Renew]).
type RenewInfo struct {
	Op          Op // OpRenew, or OpProclaim for an Election's Proclaim
	Bucket, Key string
	Token       uint64
	Duration    time.Duration
	// Err is nil when the lease was extended. A renewal that failed is
	// retried while the lease lasts; one that matches [ErrLeaseLost]
	// ended the hold (and LeaseLost was called).
	Err error
}

// LeaseLostInfo describes a hold that ended without Unlock (see
// [Hooks.LeaseLost]).
type LeaseLostInfo struct {
	Bucket, Key string
	Token       uint64
	Held        time.Duration // from the write that acquired it until the loss was found
	// Cause matches [ErrLeaseLost] and says why (see [Mutex.Context]).
	Cause error
}

// ReserveInfo describes an attempt to reserve the next turn (see
// [Hooks.Reserve]).
type ReserveInfo struct {
	Bucket, Key string
	// Token is the fencing token of the hold the reservation was written
	// into (the next holder gets a larger one).
	Token uint64
	// Reserved reports that the reservation was written. When it was
	// not (the record changed first, or the write failed), the Request
	// hook has seen why.
	Reserved bool
}

// RequestOutcome classifies the answer to one S3 request (see
// [RequestInfo]).
type RequestOutcome string

// The outcomes of S3 requests.
const (
	RequestOK RequestOutcome = "ok"
	// RequestPreconditionFailed: a conditional PUT was refused because
	// the object had changed (412, or 409 for a concurrent conditional
	// write). Nothing was written.
	RequestPreconditionFailed RequestOutcome = "precondition_failed"
	// RequestNotFound: no object (a GET of a lock never written is one).
	RequestNotFound RequestOutcome = "not_found"
	// RequestError: any other failure, the caller's context ending
	// included (such a request may never have reached S3).
	RequestError RequestOutcome = "error"
)

// RequestInfo describes one S3 request (see [Hooks.Request]).
type RequestInfo struct {
	Verb        string // "GET" or "PUT"
	Bucket, Key string
	Outcome     RequestOutcome
	Duration    time.Duration // until S3's answer (the headers) arrived
	Err         error         // the SDK's error; nil when Outcome is RequestOK
}

// WithHooks makes the Mutex call the functions in h (see [Hooks]). h is
// copied: changing it afterwards has no effect. Several WithHooks
// compose: every one's functions are called, in the order given, and
// each Start gets the context the previous one returned. A nil h adds
// nothing.
// The default is no hooks.
func WithHooks(h *Hooks) Option {
	return func(o *options) {
		if h != nil {
			o.hooks = append(o.hooks, *h)
		}
	}
}

// mergeHooks returns the hooks a Mutex calls for hs: nil when there are
// none, so that every call site costs one nil check.
func mergeHooks(hs []Hooks) *Hooks {
	switch len(hs) {
	case 0:
		return nil
	case 1:
		h := hs[0]
		return &h
	}
	var m Hooks
	for _, h := range hs {
		m.Start = chainStart(m.Start, h.Start)
		m.Acquire = chain(m.Acquire, h.Acquire)
		m.Release = chain(m.Release, h.Release)
		m.Renew = chain(m.Renew, h.Renew)
		m.Reserve = chain(m.Reserve, h.Reserve)
		m.Request = chain(m.Request, h.Request)
		switch a, b := m.LeaseLost, h.LeaseLost; {
		case a == nil:
			m.LeaseLost = b
		case b != nil:
			m.LeaseLost = func(i LeaseLostInfo) { a(i); b(i) }
		}
	}
	return &m
}

func chain[I any](a, b func(context.Context, I)) func(context.Context, I) {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	return func(ctx context.Context, i I) { a(ctx, i); b(ctx, i) }
}

func chainStart(a, b func(context.Context, StartInfo) context.Context) func(context.Context, StartInfo) context.Context {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	return func(ctx context.Context, i StartInfo) context.Context {
		if c := a(ctx, i); c != nil {
			ctx = c
		}
		if c := b(ctx, i); c != nil {
			ctx = c
		}
		return ctx
	}
}

// start calls h.Start and returns the context the operation goes on with.
func (h *Hooks) start(ctx context.Context, op Op, lm *lockObject, token uint64) context.Context {
	if h.Start == nil {
		return ctx
	}
	var c context.Context
	lm.guard("Start", func() { c = h.Start(ctx, StartInfo{Op: op, Bucket: lm.bucket, Key: lm.key, Token: token}) })
	if c != nil {
		return c
	}
	return ctx
}

// heldHold is what the hooks read of a hold: a Mutex's lease or a shared
// hold (Semaphore, RWMutex reader).
type heldHold interface {
	*lease | *share
	generation() uint64
	startedAt() time.Time
}

func (l *lease) startedAt() time.Time  { return l.began }
func (sh *share) generation() uint64   { return sh.token }
func (sh *share) startedAt() time.Time { return sh.began }

// acquire runs f, an acquire of op, between the Start and Acquire hooks.
func (h *Hooks) acquire(ctx context.Context, op Op, lm *lockObject, f func(context.Context) (*lease, error)) error {
	return hookAcquire(h, ctx, op, lm, f)
}

// release runs f, an Unlock of the hold whose token is token, between the
// Start and Release hooks.
func (h *Hooks) release(ctx context.Context, op Op, lm *lockObject, token uint64, f func(context.Context) (*lease, error)) error {
	return hookRelease(h, ctx, op, lm, token, f)
}

// hookAcquire runs f, an acquire of op, between the Start and Acquire
// hooks.
func hookAcquire[H heldHold](h *Hooks, ctx context.Context, op Op, lm *lockObject, f func(context.Context) (H, error)) error {
	begin := time.Now()
	ctx = h.start(ctx, op, lm, 0)
	l, err := f(ctx)
	if h.Acquire != nil {
		info := AcquireInfo{Op: op, Bucket: lm.bucket, Key: lm.key, Waited: time.Since(begin), Err: err}
		switch {
		case err == nil:
			info.Outcome, info.Token = OutcomeAcquired, l.generation()
		case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
			info.Outcome = OutcomeCanceled
		case errors.Is(err, ErrLocked):
			info.Outcome = OutcomeLocked
		default:
			info.Outcome = OutcomeError
		}
		lm.guard("Acquire", func() { h.Acquire(ctx, info) })
	}
	return err
}

// hookRelease runs f, a release of the hold whose token is token, between
// the Start and Release hooks.
func hookRelease[H heldHold](h *Hooks, ctx context.Context, op Op, lm *lockObject, token uint64, f func(context.Context) (H, error)) error {
	begin := time.Now()
	ctx = h.start(ctx, op, lm, token)
	l, err := f(ctx)
	if h.Release != nil {
		info := ReleaseInfo{Op: op, Bucket: lm.bucket, Key: lm.key, Duration: time.Since(begin), Err: err}
		if var0 := *new(H); l != var0 {
			info.Token, info.Held = l.generation(), time.Since(l.startedAt())
		}
		lm.guard("Release", func() { h.Release(ctx, info) })
	}
	return err
}

// renewObserved is l.renew between the Start and Renew hooks.
func (l *lease) renewObserved(ctx context.Context) error {
	return l.observeRenewal(ctx, OpRenew, l.renew)
}

// observeRenewal runs write, a renewal of l (op: OpRenew or OpProclaim),
// between the Start and Renew hooks.
func (l *lease) observeRenewal(ctx context.Context, op Op, write func(context.Context) error) error {
	h := l.lm.hooks
	if h == nil {
		return write(ctx)
	}
	begin := time.Now()
	token := l.generation()
	ctx = h.start(ctx, op, l.lm, token)
	err := write(ctx)
	if h.Renew != nil {
		l.lm.guard("Renew", func() {
			h.Renew(ctx, RenewInfo{Op: op, Bucket: l.lm.bucket, Key: l.lm.key, Token: token, Duration: time.Since(begin), Err: err})
		})
	}
	return err
}

// lose ends the hold for cause, which matches ErrLeaseLost, and reports
// the loss to the LeaseLost hook unless the hold had already ended (for
// another loss, reported then, or by Unlock).
func (l *lease) lose(cause error) {
	l.cancel(cause)
	h := l.lm.hooks
	if h == nil || h.LeaseLost == nil {
		return
	}
	// The context keeps the first cause: report only a loss that ended
	// the hold, and only once whoever finds it.
	final := context.Cause(l.ctx)
	if !errors.Is(final, ErrLeaseLost) {
		return
	}
	l.mu.Lock()
	first := !l.lossReported
	l.lossReported = true
	token := l.rec.Generation
	l.mu.Unlock()
	if first {
		l.lm.guard("LeaseLost", func() {
			h.LeaseLost(LeaseLostInfo{Bucket: l.lm.bucket, Key: l.lm.key, Token: token, Held: time.Since(l.began), Cause: final})
		})
	}
}

// now returns the time when there are hooks, and the zero time (without
// reading the clock) otherwise.
func (h *Hooks) now() time.Time {
	if h == nil || h.Request == nil {
		return time.Time{}
	}
	return time.Now()
}

// request reports an S3 request sent at sent that returned err.
func (h *Hooks) request(ctx context.Context, lm *lockObject, verb string, sent time.Time, err error) {
	if h == nil || h.Request == nil {
		return
	}
	info := RequestInfo{Verb: verb, Bucket: lm.bucket, Key: lm.key, Duration: time.Since(sent), Err: err, Outcome: RequestOK}
	if err != nil {
		switch f, _ := classify(err, lm.bucket); f {
		case failPrecondition, failConflict:
			info.Outcome = RequestPreconditionFailed
		case failNotFound:
			info.Outcome = RequestNotFound
		case failNotModified:
			// An unchanged object's answer to a conditional GET: the
			// request did what it was for.
			info.Outcome, info.Err = RequestOK, nil
		default:
			info.Outcome = RequestError
		}
	}
	lm.guard("Request", func() { h.Request(ctx, info) })
}

// reserve reports a reservation attempt over s.
func (h *Hooks) reserve(ctx context.Context, lm *lockObject, s *snapshot, reserved bool) {
	if h == nil || h.Reserve == nil {
		return
	}
	lm.guard("Reserve", func() {
		h.Reserve(ctx, ReserveInfo{Bucket: lm.bucket, Key: lm.key, Token: s.generation(), Reserved: reserved})
	})
}

// guard runs a hook. A hook that panics must not leave the lock half
// done (a hold in S3 that the Mutex does not know of, a turn never given
// back): the panic is recovered and logged at Error, and the operation
// goes on.
func (lm *lockObject) guard(hook string, call func()) {
	defer func() {
		if r := recover(); r != nil {
			lm.log.Error("s3lock: a hook panicked; the panic was recovered and the operation goes on", "hook", hook, "key", lm.key, "panic", r)
		}
	}()
	call()
}

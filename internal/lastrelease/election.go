package lastrelease

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
	"unicode/utf8"
)

// ErrNoLeader means the office of an [Election] is vacant: its lock object
// is absent, free, or held by a lease that has expired.
var ErrNoLeader = errors.New("s3lock: no leader")

// Election elects one leader among the processes campaigning on the same
// bucket and key. It is a [Mutex] whose hold is a term of office: the
// leader publishes a value with it (its address, say) that everyone can
// read with [Election.Leader] or follow with [Election.Observe], and its
// fencing token is [Election.Token]. An Election and a Mutex on the same
// key exclude each other.
//
// A leader renews its lease by itself (every TTL/3 unless [WithAutoRenew]
// says otherwise) until it resigns or its term is lost; [Election.Context]
// is cancelled then. An Election is safe for concurrent use. Create it
// with [NewElection].
type Election struct {
	m      *Mutex
	client S3API       // as given to NewElection
	view   *lockObject // reads for Leader, apart from m's waiting

	opMu sync.Mutex // serialises Proclaim and Resign
}

// Leader is the state of an election's office as one read of the lock
// object found it. Owner is "" when the office is vacant; the other
// fields are then zero.
type Leader struct {
	// Owner is the leader's owner name (see [WithOwner]).
	Owner string
	// Value is what the leader published with Campaign or Proclaim.
	Value string
	// Token is the fencing token of the term: larger than that of every
	// earlier term (and every earlier Mutex hold) on this key.
	Token uint64
	// Since is when the term began, by the leader's own clock (for
	// humans; zero when unknown).
	Since time.Time
	// LastModified is when the leader last wrote its record (its grant,
	// a renewal or a Proclaim), by S3's clock, to the second.
	LastModified time.Time
	// TTL is the leader's lease: unless it writes again, the term ends
	// no earlier than LastModified + TTL by S3's clock.
	TTL time.Duration
}

// same reports whether l and o describe the same term with the same value.
func (l Leader) same(o Leader) bool {
	return l.Owner == o.Owner && l.Value == o.Value && l.Token == o.Token
}

// WithValue sets the value a [Mutex] publishes with each of its holds, in
// the lock object, where [Election.Leader], [Election.Observe], [Inspect]
// and "s3lock status" show it (the holder's address, a job id...). It must
// be valid UTF-8 of at most [MaxValueLen] bytes. A record carrying a value
// is one the release before this one counts as held without rewriting it
// (see docs/record-format.md). For an Election, Campaign's value takes its
// place. The default is no value.
func WithValue(value string) Option {
	return func(o *options) { o.value = value }
}

// NewElection returns an Election on the lock object at bucket/key, with
// the same options as [New]. Auto-renewal is on, every TTL/3, unless
// [WithAutoRenew] sets another interval (0 turns it off: the term then
// ends after one TTL; with a TTL under 3 × [MinAutoRenewInterval] that is
// the only choice). It makes no S3 request. On failure it returns an error
// that matches [ErrInvalidArgument].
func NewElection(client S3API, bucket, key string, opts ...Option) (*Election, error) {
	const unset = time.Duration(math.MinInt64) // tells whether WithAutoRenew was given
	scratch := defaultOptions()
	scratch.autoRenew = unset
	for _, opt := range opts {
		if opt == nil {
			return nil, fmt.Errorf("%w: nil Option", ErrInvalidArgument)
		}
		opt(&scratch)
	}
	if scratch.autoRenew == unset {
		opts = append(opts[:len(opts):len(opts)], WithAutoRenew(scratch.ttl/3))
	}
	m, err := New(client, bucket, key, opts...)
	if err != nil {
		return nil, err
	}
	view, err := newLockObject(client, bucket, key, &m.opts)
	if err != nil {
		return nil, err
	}
	return &Election{m: m, client: client, view: view}, nil
}

// Campaign waits until e leads, then returns nil: e's record, carrying
// value, is in the lock object. It waits like [Mutex.Lock] (in turn with
// the other candidates and Mutexes, polling at most one retry interval
// apart, through S3 failures); ctx bounds only the wait, and cancelling
// it after Campaign returned does not end the term.
//
// A value longer than [MaxValueLen] bytes, not valid UTF-8, or taking
// more than 2 × MaxValueLen bytes in JSON (control characters) is refused
// with an error matching [ErrInvalidArgument]. If e already leads, or
// another Campaign of e is under way, Campaign returns a *LockedError with
// Local set (matching [ErrLocked]) at once. In those cases nothing is
// written. A term that was lost (Context cancelled with ErrLeaseLost) no
// longer counts as leading: Campaign ends it (one release attempt) and
// campaigns again. Otherwise on failure e does not lead and the error is as
// [Mutex.Lock]'s: when ctx ends first it matches ctx.Err().
func (e *Election) Campaign(ctx context.Context, value string) error {
	if err := validateValue(value); err != nil {
		return err
	}
	if h := e.m.lm.hooks; h != nil {
		return h.acquire(ctx, OpCampaign, e.m.lm, func(ctx context.Context) (*lease, error) { return e.campaign(ctx, value) })
	}
	_, err := e.campaign(ctx, value)
	return err
}

// campaign is Campaign once the value is checked; it returns the term's
// lease.
func (e *Election) campaign(ctx context.Context, value string) (*lease, error) {
	m := e.m
	if m.Token() != 0 && errors.Is(context.Cause(m.Context()), ErrLeaseLost) {
		// A term that was lost still holds the Mutex's turn: end it here
		// (its release frees the record if it is still ours, and finds it
		// someone else's otherwise), so that a new campaign can start.
		_, _ = m.unlock(ctx)
	}
	select {
	case m.turn <- struct{}{}:
	default:
		return nil, &LockedError{Key: m.lm.key, Owner: m.lm.owner, Local: true, Generation: m.Token()}
	}
	if err := ctx.Err(); err != nil {
		<-m.turn
		return nil, fmt.Errorf("s3lock: Campaign %s: %w", m.lm.name(), err)
	}
	m.lm.value = value // read by claim, in this goroutine
	if err := m.checkStoreRetrying(ctx); err != nil {
		<-m.turn
		return nil, err
	}
	l, err := m.wait(ctx)
	if err != nil {
		<-m.turn
		return nil, err
	}
	m.install(l)
	return l, nil
}

func validateValue(value string) error {
	switch {
	case len(value) > MaxValueLen:
		return fmt.Errorf("%w: value of %d bytes, longer than %d", ErrInvalidArgument, len(value), MaxValueLen)
	case !utf8.ValidString(value):
		return fmt.Errorf("%w: value is not valid UTF-8", ErrInvalidArgument)
	case escapedLen(value) > 2*MaxValueLen:
		// Control characters take six bytes each in the record's JSON:
		// bound what the value adds to the 4 KiB record.
		return fmt.Errorf("%w: value takes %d bytes in JSON, more than %d (too many control characters)", ErrInvalidArgument, escapedLen(value), 2*MaxValueLen)
	}
	return nil
}

// Proclaim publishes value as the leader's value, in the same term (same
// token): one conditional PUT, a renewal carrying the new value, made in
// turn with the background renewals. When its answer is lost it reads
// the object back to learn whether it landed, as renewals do.
//
// It returns an error matching [ErrNotHeld] when e does not lead, and one
// matching [ErrInvalidArgument] for a bad value (see Campaign); nothing is
// written then. It returns an error matching [ErrLeaseLost] when the term
// is over (Context is cancelled). On other failures (S3 unreachable) e
// still leads and keeps value as its value: the next renewal publishes it.
func (e *Election) Proclaim(ctx context.Context, value string) error {
	if err := validateValue(value); err != nil {
		return err
	}
	e.opMu.Lock()
	defer e.opMu.Unlock()
	e.m.mu.Lock()
	l := e.m.hold
	e.m.mu.Unlock()
	if l == nil {
		return fmt.Errorf("s3lock: Proclaim %s: %w", e.m.lm.name(), ErrNotHeld)
	}
	if err := l.observeRenewal(ctx, OpProclaim, func(ctx context.Context) error { return l.proclaim(ctx, value) }); err != nil {
		return fmt.Errorf("s3lock: Proclaim %s: %w", e.m.lm.name(), err)
	}
	return nil
}

// proclaim sets the lease's value and renews until a record carrying it
// is in S3. A renewal can settle on an earlier write of ours whose outcome
// was unknown, carrying the old value: it then writes once more.
func (l *lease) proclaim(ctx context.Context, value string) error {
	for range 2 {
		if err := context.Cause(l.ctx); err != nil {
			return err
		}
		deadline := l.safeUntil()
		if !time.Now().Before(deadline) {
			l.lose(ErrLeaseLost)
			return context.Cause(l.ctx)
		}
		// Set the value once no renewal is in flight, so that a renewal
		// that started before cannot put the old value back.
		l.writeMu.Lock()
		l.mu.Lock()
		l.rec.Value = value
		l.mu.Unlock()
		rctx, cancel := context.WithDeadline(ctx, deadline)
		err := l.renewLocked(rctx)
		cancel()
		l.writeMu.Unlock()
		if err != nil {
			if cause := context.Cause(l.ctx); cause != nil && !errors.Is(err, ErrLeaseLost) {
				err = errors.Join(cause, err)
			}
			return err
		}
		l.mu.Lock()
		done := l.rec.Value == value
		l.mu.Unlock()
		if done {
			return nil
		}
	}
	return fmt.Errorf("%w: the value could not be written", ErrUnavailable)
}

// Resign ends e's term with one conditional PUT that marks the lock object
// free (without a value), so that another candidate can take the office at
// once. It returns an error matching [ErrNotHeld] when e does not lead
// (nothing is written), and otherwise what [Mutex.Unlock] returns: nil, or
// an error matching [ErrLeaseLost] when the term had already been lost.
// Whatever it returns, e no longer leads afterwards and Context is
// cancelled.
func (e *Election) Resign(ctx context.Context) error {
	e.opMu.Lock()
	defer e.opMu.Unlock()
	if e.m.Token() == 0 {
		return fmt.Errorf("s3lock: Resign %s: %w", e.m.lm.name(), ErrNotHeld)
	}
	if h := e.m.lm.hooks; h != nil {
		return h.release(ctx, OpResign, e.m.lm, e.m.Token(), e.m.unlock)
	}
	_, err := e.m.unlock(ctx)
	return err
}

// Context returns the context of e's current term: cancelled with cause
// [ErrLeaseLost] when the term is lost (its lease ran out, a renewal found
// someone else's record), and with cause [ErrNotHeld] after Resign. When e
// does not lead, it is already cancelled with cause ErrNotHeld.
func (e *Election) Context() context.Context { return e.m.Context() }

// Token returns the fencing token of e's current term, or 0 when e does
// not lead (see [Mutex.Token]).
func (e *Election) Token() uint64 {
	if e.m.Context().Err() != nil {
		return 0 // the term ended (lost): e does not lead
	}
	return e.m.Token()
}

// Leader reads the lock object with one GET and returns the current
// leader. It returns an error matching [ErrNoLeader] when the office is
// vacant: no object, a free record, or a hold that has expired (judged as
// a contender judges it, never by a client's wall clock, so an expired
// hold may be reported as leading a little longer than its TTL, never
// shorter). An object this version cannot read (not a record, or a newer
// schema) is reported with an error matching [ErrInvalidLockObject];
// other errors come from S3 or ctx.
func (e *Election) Leader(ctx context.Context) (Leader, error) {
	s, err := e.view.read(ctx)
	if err != nil {
		return Leader{}, err
	}
	if e.view.wantsClockCheck(s) {
		e.view.checkClock(ctx)
	}
	ld, _, err := e.view.leaderOf(s)
	return ld, err
}

// leaderOf tells what s says of the office: its leader, and for a live
// hold how long until it may be judged expired. A vacancy is a zero
// Leader with an error matching ErrNoLeader.
func (lm *lockObject) leaderOf(s *snapshot) (Leader, time.Duration, error) {
	switch {
	case !s.exists:
		return Leader{}, 0, fmt.Errorf("s3lock: %s: %w (no lock object)", lm.name(), ErrNoLeader)
	case s.rec == nil:
		return Leader{}, 0, fmt.Errorf("s3lock: %s: %w", lm.name(), s.invalid)
	case !s.rec.held():
		return Leader{}, 0, fmt.Errorf("s3lock: %s: %w (free since generation %d)", lm.name(), ErrNoLeader, s.rec.Generation)
	}
	left := lm.untilExpired(s, s.rec.ttl())
	if left <= 0 {
		return Leader{}, 0, fmt.Errorf("s3lock: %s: %w (the hold of %q, generation %d, has expired)", lm.name(), ErrNoLeader, s.rec.Owner, s.rec.Generation)
	}
	owner := s.rec.Owner
	if owner == "" {
		owner = "(unnamed)" // Owner "" would read as a vacancy
	}
	return Leader{
		Owner:        owner,
		Value:        s.rec.Value,
		Token:        s.rec.Generation,
		Since:        s.rec.AcquiredAt,
		LastModified: s.lastModified,
		TTL:          s.rec.ttl(),
	}, left, nil
}

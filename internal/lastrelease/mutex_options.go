package lastrelease

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Defaults for the options. They are what a Mutex uses when the matching
// option is not given.
const (
	// DefaultTTL is how long a hold lasts after its last write to S3 unless
	// renewed or released.
	DefaultTTL = 30 * time.Second

	// DefaultRetryInterval is the longest Lock waits between two polls of
	// a held lock.
	DefaultRetryInterval = 500 * time.Millisecond

	// DefaultExpiryMargin is the safety margin a contender adds to a hold's
	// TTL (on top of S3's 1-second timestamp resolution) before it judges
	// the hold expired.
	DefaultExpiryMargin = time.Second

	// MinAutoRenewInterval is the shortest renewal interval WithAutoRenew
	// accepts: each renewal is a PUT, and a shorter interval would be a
	// tight loop of them (some stores allow one write per second per key).
	MinAutoRenewInterval = 100 * time.Millisecond

	// DefaultReleaseTimeout bounds the release that Unlock and WithLock make
	// when the caller's context is already done.
	DefaultReleaseTimeout = 10 * time.Second
)

// maxTTL bounds WithTTL: a longer lease is almost certainly a unit mistake.
const maxTTL = 7 * 24 * time.Hour

// Clock supplies wall-clock time. s3lock uses it only for the human-readable
// timestamps it writes into lock records; expiry is never judged by a
// client's wall clock (see the package documentation). Tests use it to
// show that skewed clients still behave.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Option configures a Mutex in [New].
type Option func(*options)

type options struct {
	ttl            time.Duration
	owner          string
	ownerSet       bool
	retryInterval  time.Duration
	retrySet       bool
	backoff        backoff.BackOff
	backoffSet     bool
	logger         *slog.Logger
	clock          Clock
	expiryMargin   time.Duration
	autoRenew      time.Duration
	releaseTimeout time.Duration
	failureTimeout time.Duration
	probe          bool
	bucketOwner    string
	bucketOwnerSet bool
	hooks          []Hooks
	value          string // see WithValue (election.go)
}

// WithTTL sets the lock timeout: how long a hold lasts after its last
// successful write unless it is renewed or released. Contenders take over
// a hold only after it has been unchanged in S3 for longer than its TTL
// plus a margin. It must be at least 1 ms and at most 7 days (the lock
// record keeps whole milliseconds: a fraction of one is dropped); New
// returns an error matching [ErrInvalidArgument] otherwise.
// The default is [DefaultTTL].
func WithTTL(ttl time.Duration) Option {
	return func(o *options) { o.ttl = ttl }
}

// WithOwner sets the name recorded in the lock object while this Mutex holds
// the lock, for humans and diagnostics (it appears in [LockedError.Owner]).
// It need not be unique: ownership is proven by a random per-write nonce,
// never by this name. It must be 1 to 256 bytes.
// The default is "host:pid:random".
func WithOwner(owner string) Option {
	return func(o *options) { o.owner, o.ownerSet = owner, true }
}

// WithRetryInterval sets the longest Lock waits between two polls of a
// lock held by someone else (it polls faster when its turn is near, see
// [Mutex.Lock]). Each poll is one GET; the lock is written only when a
// poll finds it free or expired. It caps every pause, a [WithBackoff]
// policy's included: to let a backoff wait longer, raise it too.
// The default is [DefaultRetryInterval].
func WithRetryInterval(d time.Duration) Option {
	return func(o *options) { o.retryInterval = d; o.retrySet = true }
}

// WithBackoff makes Lock wait between polls as b says (for example
// backoff.NewExponentialBackOff() for exponential waits with jitter). b is
// Reset at the start of every Lock. When b returns backoff.Stop, Lock gives
// up and returns the last *LockedError. Lock calls on one Mutex never use b
// concurrently, but b must not be shared between Mutex values. Lock still
// polls faster when its turn is near, and the retry interval
// ([WithRetryInterval], default [DefaultRetryInterval]) caps every pause,
// so that a waiter never polls less often than the queue expects.
// The default is a constant [DefaultRetryInterval].
func WithBackoff(b backoff.BackOff) Option {
	return func(o *options) { o.backoff, o.backoffSet = b, true }
}

// WithLogger sets where the Mutex logs what it does: S3 writes and their
// outcomes at Debug, takeovers of expired holds and ambiguous outcomes at
// Warn/Info.
// The default discards all logs.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithClock replaces the wall clock used for the human-readable timestamps
// in lock records. It never affects expiry or lease timing, which use
// S3's timestamps and this process's monotonic clock.
// The default is the system clock.
func WithClock(c Clock) Option {
	return func(o *options) { o.clock = c }
}

// WithExpiryMargin sets the safety margin added to a hold's TTL before a
// contender may judge it expired. Raise it for stores whose Date and
// Last-Modified headers disagree by more than a second.
// The default is [DefaultExpiryMargin]; it must not be negative.
func WithExpiryMargin(d time.Duration) Option {
	return func(o *options) { o.expiryMargin = d }
}

// WithAutoRenew makes every hold renew itself in the background every
// interval, so it outlives one TTL for as long as the process is alive and
// can reach S3. The interval must be at least [MinAutoRenewInterval] and at
// most TTL/3, so a renewal can fail twice and still be retried before the
// lease runs out.
// The renewer is one goroutine per hold; Unlock stops it and waits for it.
// If renewal keeps failing until the lease's safe deadline, or finds that
// someone else took the lock, the hold's context ([Mutex.Context], and the
// context WithLock passes to fn) is cancelled with cause [ErrLeaseLost].
// The default is no renewal: a hold lasts one TTL.
func WithAutoRenew(interval time.Duration) Option {
	return func(o *options) { o.autoRenew = interval }
}

// WithProbe makes the Mutex check, once, before its first acquire, that
// the store honours conditional writes (see [Probe]); on a store that does
// not, TryLock and Lock return an error matching
// [ErrConditionalWritesUnsupported] and never write the lock. The probe,
// sequential checks and then racing rounds of concurrent conditional
// writes, costs at most 132 PUTs, 17 GETs and 9 DELETEs and takes at most
// about 20 seconds more than one round on a slow store, on scratch objects
// named after the key (key + ".s3lock-probe-…", so a policy granting
// "key*" covers them); its verdict is kept for the life of the Mutex. A
// pass is evidence, not proof: see [Probe]. A probe that fails for a
// transient reason is retried by the next acquire (Lock retries it at the
// retry interval).
// The default is no probe.
func WithProbe() Option {
	return func(o *options) { o.probe = true }
}

// WithExpectedBucketOwner makes every request of the Mutex carry
// x-amz-expected-bucket-owner: accountID (see [ExpectBucketOwner]), so
// that AWS refuses to read or write the lock in a bucket that another
// account owns, such as one created under the same name by someone else.
// Such a refusal is an error matching [ErrAccessDenied] that names the
// expected owner. On AWS accountID is the 12-digit ID of the account that
// owns the bucket.
// The default sends no expected owner.
func WithExpectedBucketOwner(accountID string) Option {
	return func(o *options) { o.bucketOwner, o.bucketOwnerSet = accountID, true }
}

// client returns the client a Mutex uses: c, wrapped to send the expected
// bucket owner when one is set. Call it only after validate.
func (o *options) client(c S3API) S3API {
	if !o.bucketOwnerSet {
		return c
	}
	return &ownerPinned{next: c, owner: o.bucketOwner}
}

// WithReleaseTimeout bounds the release that Unlock makes when its context
// is already done, and that WithLock makes after its caller's context was
// cancelled. It must be positive.
// The default is [DefaultReleaseTimeout].
func WithReleaseTimeout(d time.Duration) Option {
	return func(o *options) { o.releaseTimeout = d }
}

// WithFailureTimeout makes Lock give up once its S3 requests have failed
// for d without a break (network errors, 5xx, throttling; each is retried
// at the retry interval), returning the last failure, which matches
// [ErrUnavailable]. A poll that reaches S3, even one that finds the lock
// held, ends the run of failures. It must not be negative.
// The default is 0: Lock retries through failures until its context ends,
// and then its error carries the last failure too.
func WithFailureTimeout(d time.Duration) Option {
	return func(o *options) { o.failureTimeout = d }
}

func defaultOptions() options {
	return options{
		ttl:            DefaultTTL,
		retryInterval:  DefaultRetryInterval,
		clock:          systemClock{},
		expiryMargin:   DefaultExpiryMargin,
		releaseTimeout: DefaultReleaseTimeout,
		logger:         slog.New(slog.DiscardHandler),
	}
}

func defaultOwner() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	return fmt.Sprintf("%s:%d:%s", host, os.Getpid(), newNonce()[:8])
}

// validate checks the options once, in New.
func (o *options) validate() error {
	switch {
	case o.ttl <= 0:
		return fmt.Errorf("%w: TTL must be positive, got %v", ErrInvalidArgument, o.ttl)
	case o.ttl < time.Millisecond:
		return fmt.Errorf("%w: TTL must be at least 1ms, got %v", ErrInvalidArgument, o.ttl)
	case o.ttl > maxTTL:
		return fmt.Errorf("%w: TTL must be at most %v, got %v", ErrInvalidArgument, maxTTL, o.ttl)
	case len(o.owner) > 256:
		return fmt.Errorf("%w: owner must be at most 256 bytes, got %d", ErrInvalidArgument, len(o.owner))
	case escapedLen(o.owner) > 512:
		return fmt.Errorf("%w: owner takes %d bytes in JSON, more than 512 (too many control characters)", ErrInvalidArgument, escapedLen(o.owner))
	case o.backoffSet && o.backoff == nil:
		return fmt.Errorf("%w: nil backoff", ErrInvalidArgument)
	case o.retryInterval <= 0:
		return fmt.Errorf("%w: retry interval must be positive, got %v", ErrInvalidArgument, o.retryInterval)
	case o.logger == nil:
		return fmt.Errorf("%w: nil logger", ErrInvalidArgument)
	case o.clock == nil:
		return fmt.Errorf("%w: nil clock", ErrInvalidArgument)
	case o.expiryMargin < 0:
		return fmt.Errorf("%w: expiry margin must not be negative, got %v", ErrInvalidArgument, o.expiryMargin)
	case o.autoRenew < 0:
		return fmt.Errorf("%w: auto-renew interval must be positive, got %v", ErrInvalidArgument, o.autoRenew)
	case o.autoRenew > 0 && o.autoRenew < MinAutoRenewInterval:
		return fmt.Errorf("%w: auto-renew interval must be at least %v, got %v", ErrInvalidArgument, MinAutoRenewInterval, o.autoRenew)
	case o.autoRenew > o.ttl/3:
		return fmt.Errorf("%w: auto-renew interval %v must be at most TTL/3 (%v)", ErrInvalidArgument, o.autoRenew, o.ttl/3)
	case o.failureTimeout < 0:
		return fmt.Errorf("%w: failure timeout must not be negative, got %v", ErrInvalidArgument, o.failureTimeout)
	case o.releaseTimeout <= 0:
		return fmt.Errorf("%w: release timeout must be positive, got %v", ErrInvalidArgument, o.releaseTimeout)
	}
	if o.bucketOwnerSet {
		return validateAccountID(o.bucketOwner)
	}
	return nil
}

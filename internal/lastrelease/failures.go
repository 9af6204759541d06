package lastrelease

import (
	"log/slog"
	"time"
)

// warnEvery is how often a run of identical failures is logged again after
// its first warning.
const warnEvery = 10 * time.Second

// failureRun tracks consecutive failures of one kind of S3 request, so
// that a loop retrying them can give up after a bounded time and logs the
// first failure, then one line every warnEvery with the count, and one
// when the run ends, instead of one line per retry.
type failureRun struct {
	since  time.Time // first failure of the run (zero: not failing)
	warned time.Time // last warning
	count  int       // failures in the run
	logged int       // failures already told in a warning
}

// failed records a failure and returns how long the run has lasted.
func (f *failureRun) failed(log *slog.Logger, key string, err error) time.Duration {
	now := time.Now()
	f.count++
	if f.since.IsZero() {
		f.since, f.warned, f.logged = now, now, 1
		log.Warn("s3lock: S3 request failed; retrying", "key", key, "error", err)
		return 0
	}
	if now.Sub(f.warned) >= warnEvery {
		log.Warn("s3lock: S3 still failing; retrying", "key", key, "failures", f.count,
			"since", now.Sub(f.since).Round(time.Millisecond), "error", err)
		f.warned, f.logged = now, f.count
	}
	return now.Sub(f.since)
}

// recovered ends a run of failures, if one was under way.
func (f *failureRun) recovered(log *slog.Logger, key string) {
	if f.since.IsZero() {
		return
	}
	if f.count > 1 {
		log.Info("s3lock: S3 answers again", "key", key, "failures", f.count,
			"after", time.Since(f.since).Round(time.Millisecond))
	}
	*f = failureRun{}
}

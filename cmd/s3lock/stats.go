package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/s3lock/s3lock"
)

// runStats collects, from the Mutex's hooks, what --stats reports.
type runStats struct {
	mu sync.Mutex // protects s
	s  statsSummary
}

// statsSummary is the --stats line.
type statsSummary struct {
	Acquires      int           // Lock/TryLock calls
	Waited        time.Duration // their total duration
	Held          time.Duration // total time held (until Unlock, or until the lease was lost)
	Renewals      int
	RenewFailures int
	LeasesLost    int
	GETs, PUTs    int
	Refused       int // 412/409 answers: another writer won
	Failed        int // requests that failed (S3 errors, cancellations)
}

func (r *runStats) hooks() *s3lock.Hooks {
	return &s3lock.Hooks{
		Acquire: func(_ context.Context, i s3lock.AcquireInfo) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.s.Acquires++
			r.s.Waited += i.Waited
		},
		Release: func(_ context.Context, i s3lock.ReleaseInfo) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.s.Held += i.Held
		},
		Renew: func(_ context.Context, i s3lock.RenewInfo) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.s.Renewals++
			if i.Err != nil {
				r.s.RenewFailures++
			}
		},
		LeaseLost: func(s3lock.LeaseLostInfo) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.s.LeasesLost++
		},
		Request: func(_ context.Context, i s3lock.RequestInfo) {
			r.mu.Lock()
			defer r.mu.Unlock()
			switch i.Verb {
			case http.MethodGet:
				r.s.GETs++
			case http.MethodPut:
				r.s.PUTs++
			}
			switch i.Outcome {
			case s3lock.RequestPreconditionFailed:
				r.s.Refused++
			case s3lock.RequestError:
				r.s.Failed++
			}
		},
	}
}

func (r *runStats) summary() statsSummary {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.s
}

// String is the summary as one line of text.
func (s statsSummary) String() string {
	line := fmt.Sprintf("waited %v, held %v, renewals %d (%d failed), requests %d (%d GET, %d PUT; %d refused, %d failed)",
		s.Waited.Round(time.Millisecond), s.Held.Round(time.Millisecond), s.Renewals, s.RenewFailures,
		s.GETs+s.PUTs, s.GETs, s.PUTs, s.Refused, s.Failed)
	if s.LeasesLost > 0 {
		line += fmt.Sprintf(", lease lost %d", s.LeasesLost)
	}
	return line
}

// attrs is the summary as log attributes (durations in seconds).
func (s statsSummary) attrs() []any {
	return []any{
		slog.Float64("waited_s", s.Waited.Seconds()),
		slog.Float64("held_s", s.Held.Seconds()),
		slog.Int("renewals", s.Renewals),
		slog.Int("renewals_failed", s.RenewFailures),
		slog.Int("leases_lost", s.LeasesLost),
		slog.Int("requests", s.GETs+s.PUTs),
		slog.Int("get", s.GETs),
		slog.Int("put", s.PUTs),
		slog.Int("refused", s.Refused),
		slog.Int("failed", s.Failed),
	}
}

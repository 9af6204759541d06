package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/s3lock/s3lock"
)

const watchHelp = `Usage:
  s3lock watch [--json] [flags] s3://bucket/key

Follows a lock or an election's office: prints its current state, then one
line for every change (a new holder or leader, a new value, a release, or
a hold that expired because its holder stopped without releasing it),
until interrupted (Ctrl-C, SIGTERM), when it exits 0. It polls with one
GET per --interval, sending the last ETag (If-None-Match) so that an
unchanged object costs no body where the store allows it. It never writes
the lock (to tell an expired hold by S3's clock it may write the small
object <key>.s3lock-clock, at most once a minute). While S3 fails it keeps polling and prints nothing; it never
reports a release that did not happen. Changes faster than --interval may
be seen as one.

Each line: the time (this machine's clock), the state, and for a hold its
owner, generation (fencing token) and value. With --json, one object per
line:
  {"time", "state": "free"|"held"|"expired"|"vacant", "owner", "value",
   "generation", "last_modified"}
"expired" means held but not renewed in time: the next contender takes it
over; "vacant" (rare) means not held, when the read that tells a release
from an expiry failed. Exit codes: 0 when interrupted; 2 bad usage, missing bucket or
denied access.
`

const watchMore = `
Examples:
  s3lock watch s3://ops-locks/leaders/scheduler
  s3lock watch --json s3://ops-locks/leaders/scheduler | jq -r .value
`

// watchJSON is one line of "s3lock watch --json".
type watchJSON struct {
	Time         time.Time `json:"time"`
	State        string    `json:"state"`
	Owner        string    `json:"owner,omitempty"`
	Value        string    `json:"value,omitempty"`
	Generation   uint64    `json:"generation"`
	LastModified time.Time `json:"last_modified,omitzero"`
}

type watchOpts struct {
	aws      awsFlags
	json     bool
	interval time.Duration
	tele     telemetryFlags // --log-format, --stats
}

func newWatchCommand(sio streams) *cobra.Command {
	o := &watchOpts{}
	c := newCommand("watch", "print a lock's state, then every change, until interrupted", watchHelp, watchMore)
	c.Flags().BoolVar(&o.json, "json", false, "print each state as one JSON object per line")
	c.Flags().DurationVar(&o.interval, "interval", time.Second, "poll every `duration`")
	o.aws.register(c)
	o.tele.register(c)
	c.Args = urlArgs(true)
	c.RunE = func(c *cobra.Command, args []string) error { return o.run(c, args, sio) }
	return c
}

// run implements "s3lock watch".
func (o *watchOpts) run(c *cobra.Command, args []string, sio streams) error {
	pos, _, _ := splitDash(c, args)
	u, err := oneURL(c, pos, true)
	if err != nil {
		return err
	}
	if o.interval < 10*time.Millisecond {
		return usageErr("--interval must be at least 10ms, got %v", o.interval)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	client, err := o.aws.lockClient(ctx)
	if err != nil {
		return err
	}
	// A first read reports what Observe would retry forever: a missing
	// bucket, denied access.
	if _, err := s3lock.Inspect(ctx, client, u.bucket, u.key); err != nil && isConfigError(err) {
		return s3Error(err)
	}
	opts := append([]s3lock.Option{s3lock.WithRetryInterval(o.interval),
		s3lock.WithLogger(o.tele.logger(sio.stderr, slog.LevelWarn))}, o.tele.options()...)
	e, err := s3lock.NewElection(client, u.bucket, u.key, opts...)
	if err != nil {
		return withCode(exitUsage, err)
	}
	defer o.tele.report(sio.stderr, "watch")
	var lastHeld uint64 // generation of the last hold reported
	for ld := range e.Observe(ctx) {
		line := watchJSON{Time: time.Now().UTC(), State: "held", Owner: ld.Owner, Value: ld.Value,
			Generation: ld.Token, LastModified: ld.LastModified.UTC()}
		if ld.Owner == "" {
			line = vacancy(ctx, client, u, line.Time, lastHeld)
		} else {
			lastHeld = ld.Token
		}
		if o.json {
			if err := json.NewEncoder(sio.stdout).Encode(line); err != nil {
				return err
			}
			continue
		}
		printWatch(sio.stdout, line)
	}
	return nil
}

// vacancy describes an office Observe reported vacant: free, or a hold
// that has expired (one more GET tells which).
func vacancy(ctx context.Context, client s3lock.S3API, u s3URL, now time.Time, lastHeld uint64) watchJSON {
	line := watchJSON{Time: now, State: "vacant"}
	st, err := s3lock.Inspect(ctx, client, u.bucket, u.key)
	if err != nil {
		return line // nobody holds it, but whether released or expired is unknown
	}
	line.State = "free"
	line.Generation, line.LastModified = st.Generation, st.LastModified.UTC()
	switch {
	case st.Held && st.Generation != lastHeld && lastHeld != 0:
		// A new leader took the office since Observe saw it vacant: say
		// only that it was vacant; Observe reports the new leader next.
		return watchJSON{Time: now, State: "vacant"}
	case st.Held:
		// Observe judged the hold expired (possibly on this machine's
		// monotonic clock, before S3's clock shows it).
		line.State, line.Owner = "expired", st.Owner
	}
	return line
}

func printWatch(w io.Writer, l watchJSON) {
	t := l.Time.Format(timeFormat)
	switch l.State {
	case "free":
		fmt.Fprintf(w, "%s free (generation %d)\n", t, l.Generation)
	case "expired":
		fmt.Fprintf(w, "%s expired: %s stopped renewing (generation %d)\n", t, l.Owner, l.Generation)
	case "vacant":
		fmt.Fprintf(w, "%s not held (released or expired: S3 did not say which)\n", t)
	default:
		fmt.Fprintf(w, "%s held by %s (generation %d)", t, l.Owner, l.Generation)
		if l.Value != "" {
			fmt.Fprintf(w, ", value %q", l.Value)
		}
		fmt.Fprintln(w)
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/s3lock/s3lock"
)

// Defaults of run's flags.
const (
	defaultKillGrace = 10 * time.Second
	// defaultFailureTimeout is how long run waits through an S3 that
	// keeps failing before it exits 69, whatever --wait says.
	defaultFailureTimeout = 2 * time.Minute
	// releaseTimeout bounds the release after the child has exited.
	releaseTimeout = 30 * time.Second
)

// runOpts are run's flags.
type runOpts struct {
	aws          awsFlags
	ttl          time.Duration
	renew        time.Duration
	wait         waitFlag
	nonblock     bool
	conflictCode int
	owner        string
	command      string
	shell        string
	killGrace    time.Duration
	failTimeout  time.Duration
	verbose      bool
	tele         telemetryFlags // --log-format, --stats
	value        string
	slots        int64 // --slots: a Semaphore of this limit (when slotsSet)
	slotsSet     bool
	shared       bool // --shared: a read hold of an RWMutex
}

// waitFlag is --wait: unset means wait for as long as it takes.
type waitFlag struct {
	d   time.Duration
	set bool
}

// Type names the value in the help, as pflag.Value requires.
func (w *waitFlag) Type() string { return "duration" }

func (w *waitFlag) String() string {
	if w == nil || !w.set {
		return "forever"
	}
	return w.d.String()
}

// Set accepts a Go duration ("90s", "5m") or a number of seconds ("10",
// "0.5"), as flock -w does.
func (w *waitFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil {
			return errors.New("want a duration such as 0, 30s or 5m")
		}
		d = time.Duration(f * float64(time.Second))
	}
	if d < 0 {
		return errors.New("must not be negative")
	}
	w.d, w.set = d, true
	return nil
}

// newRunCommand returns "s3lock run".
func newRunCommand(sio streams) *cobra.Command {
	o := &runOpts{}
	c := newCommand("run", "take the lock, run the command while renewing the lease, release", runHelp, runMore)
	fs := c.Flags()
	fs.DurationVar(&o.ttl, "ttl", s3lock.DefaultTTL, "lease `duration`: how long the lock outlives s3lock if it dies without releasing it")
	fs.DurationVar(&o.renew, "renew-interval", 0, "renew the lease every `duration`; at most TTL/3 (default TTL/3)")
	fs.VarP(&o.wait, "wait", "w", "wait at most `duration` for the lock (0: fail at once if it is held)")
	fs.BoolVarP(&o.nonblock, "nonblock", "n", false, "fail at once if the lock is held (same as --wait 0)")
	fs.IntVarP(&o.conflictCode, "conflict-exit-code", "E", exitConflict, "exit `code` when the lock is held and --wait runs out")
	fs.StringVar(&o.owner, "owner", "", "`name` recorded in the lock for humans (default host:pid:random)")
	fs.StringVarP(&o.command, "command", "c", "", "run `string` with the shell (--shell) instead of a command after --")
	fs.StringVar(&o.shell, "shell", "/bin/sh", "`path` of the shell that runs -c strings, as shell -c string")
	fs.DurationVar(&o.killGrace, "kill-grace", defaultKillGrace, "after a lost lease, wait `duration` between SIGTERM and SIGKILL")
	fs.DurationVar(&o.failTimeout, "failure-timeout", defaultFailureTimeout, "exit 69 once S3 has failed for `duration` without a break while waiting, whatever --wait says")
	fs.BoolVarP(&o.verbose, "verbose", "v", false, "log every S3 write of the lock on stderr")
	o.tele.register(c)
	fs.StringVar(&o.value, "value", "", "publish `text` with the hold (at most 1024 bytes), shown by status and watch")
	fs.Int64Var(&o.slots, "slots", 0, "hold one of `N` slots (a semaphore): up to N commands run at once on the key")
	fs.BoolVar(&o.shared, "shared", false, "take a shared (reader) hold: shared holds run together, plain run excludes them")
	o.aws.register(c)
	c.Args = func(c *cobra.Command, args []string) error {
		_, _, err := o.target(c, args)
		return err
	}
	c.RunE = func(c *cobra.Command, args []string) error { return o.run(c, args, sio) }
	return c
}

// target returns the lock's URL and the command to run, from the
// positional arguments, "--" and -c.
func (o *runOpts) target(c *cobra.Command, args []string) (s3URL, []string, error) {
	pos, tail, dashdash := splitDash(c, args)
	argv, err := o.childArgs(pos, tail, dashdash)
	if err != nil {
		return s3URL{}, nil, err
	}
	u, err := oneURL(c, pos, true)
	if err != nil {
		return s3URL{}, nil, err
	}
	return u, argv, nil
}

// run implements "s3lock run". When the child exits with a code other
// than 0, it returns a *childExitError with that code; any other error
// carries s3lock's own.
func (o *runOpts) run(c *cobra.Command, args []string, sio streams) error {
	u, argv, err := o.target(c, args)
	if err != nil {
		return err
	}
	o.slotsSet = c.Flags().Changed("slots")
	if err := o.validate(); err != nil {
		return err
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return withCode(exitNotFound, fmt.Errorf("command not found: %w", err))
		}
		return withCode(exitCannotExec, fmt.Errorf("cannot run command: %w", err))
	}

	ctx := c.Context()
	client, err := o.aws.client(ctx)
	if err != nil {
		return err
	}
	m, err := o.newHold(client, u, o.lockOptions(sio.stderr))
	if err != nil {
		return withCode(exitUsage, err)
	}
	defer o.tele.report(sio.stderr, "run")

	// From here on the signals that would stop s3lock are caught: while
	// waiting they abandon the wait, while the child runs they are
	// forwarded to it.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwardedSignals...)
	defer signal.Stop(sigs)

	if err := o.acquire(ctx, m, u, sigs); err != nil {
		return err
	}
	return o.runHeld(m, u, path, argv, sio, sigs)
}

// childArgs returns the command to run, from -c or after "--".
func (o *runOpts) childArgs(pos, tail []string, dashdash bool) ([]string, error) {
	switch {
	case o.command != "" && dashdash:
		return nil, usageErr("give the command either with -c or after \"--\", not both")
	case o.command != "":
		if len(pos) > 1 {
			return nil, usageErr("unexpected arguments after %s: %q (with -c the whole command is its string)", pos[0], pos[1:])
		}
		return []string{o.shell, "-c", o.command}, nil
	case !dashdash && len(pos) > 1:
		return nil, usageErr("missing \"--\" before the command: s3lock run [flags] s3://bucket/key -- %s", shellQuote(pos[1:]))
	case !dashdash:
		return nil, usageErr("missing \"--\" and the command to run: s3lock run [flags] s3://bucket/key -- command [args...]")
	case len(tail) == 0:
		return nil, usageErr("missing the command after \"--\"")
	}
	return tail, nil
}

func (o *runOpts) validate() error {
	switch {
	case o.conflictCode < 0 || o.conflictCode > 255:
		return usageErr("--conflict-exit-code must be 0..255, got %d", o.conflictCode)
	case o.killGrace <= 0:
		return usageErr("--kill-grace must be positive, got %v", o.killGrace)
	case o.failTimeout <= 0:
		return usageErr("--failure-timeout must be positive, got %v", o.failTimeout)
	case o.ttl < time.Second:
		return usageErr("--ttl must be at least 1s, got %v", o.ttl)
	case o.renew < 0:
		return usageErr("--renew-interval must be positive, got %v", o.renew)
	case o.renew > 0 && o.renew < s3lock.MinAutoRenewInterval:
		return usageErr("--renew-interval must be at least %v, got %v", s3lock.MinAutoRenewInterval, o.renew)
	case o.renew > o.ttl/3:
		return usageErr("--renew-interval %v must be at most TTL/3 (%v)", o.renew, o.ttl/3)
	case o.nonblock && o.wait.set && o.wait.d != 0:
		return usageErr("--nonblock and --wait %v contradict each other", o.wait.d)
	case o.slotsSet && o.shared:
		return usageErr("--slots and --shared exclude each other: a key is either a semaphore or a reader/writer lock")
	case o.slotsSet && o.slots < 1:
		return usageErr("--slots must be at least 1, got %d", o.slots)
	case o.value != "" && (o.slotsSet || o.shared):
		return usageErr("--value is for exclusive holds; it cannot be used with --slots or --shared")
	}
	if o.nonblock {
		o.wait = waitFlag{d: 0, set: true}
	}
	if o.renew == 0 {
		o.renew = o.ttl / 3
	}
	return nil
}

func (o *runOpts) lockOptions(stderr io.Writer) []s3lock.Option {
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	opts := []s3lock.Option{
		s3lock.WithTTL(o.ttl),
		s3lock.WithAutoRenew(o.renew),
		s3lock.WithFailureTimeout(o.failTimeout),
		s3lock.WithLogger(o.tele.logger(stderr, level)),
	}
	opts = append(opts, o.tele.options()...)
	if o.owner != "" {
		opts = append(opts, s3lock.WithOwner(o.owner))
	}
	if o.aws.bucketOwner != "" {
		opts = append(opts, s3lock.WithExpectedBucketOwner(o.aws.bucketOwner))
	}
	if o.value != "" {
		opts = append(opts, s3lock.WithValue(o.value))
	}
	return opts
}

// errInterrupted is the cause of the wait's context when a signal ends it.
var errInterrupted = errors.New("interrupted")

// acquire takes the lock as --wait says. A terminating signal abandons the
// wait (and releases the lock if it was taken meanwhile).
func (o *runOpts) acquire(ctx context.Context, m lockHold, u s3URL, sigs <-chan os.Signal) error {
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := make(chan struct{})
	got := make(chan os.Signal, 1)
	go func() {
		defer close(got)
		for {
			select {
			case s := <-sigs:
				if terminating(s) {
					got <- s
					cancel(errInterrupted)
					return
				}
			case <-stop:
				return
			}
		}
	}()
	var err error
	switch {
	case o.wait.set && o.wait.d == 0:
		err = m.tryAcquire(actx)
	case o.wait.set:
		// When the wait runs out while someone else holds the lock, Lock's
		// error matches both the deadline and ErrLocked.
		wctx, wcancel := context.WithTimeout(actx, o.wait.d)
		err = m.acquire(wctx)
		wcancel()
	default:
		err = m.acquire(actx)
	}
	close(stop)
	if s, ok := <-got; ok {
		if err == nil {
			rctx, rcancel := context.WithTimeout(ctx, releaseTimeout)
			_ = m.release(rctx)
			rcancel()
		}
		return withCode(exitSignal+signalNumber(s), fmt.Errorf("%v while waiting for %s; the command was not run", s, u))
	}
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, s3lock.ErrLimitConflict):
		return withCode(exitLimitConflict, fmt.Errorf("%s is used with another limit (%w); every run on a key must give the same --slots, or all --shared; the command was not run", u, err))
	case errors.Is(err, s3lock.ErrLocked):
		how := "--wait 0"
		if o.wait.d > 0 {
			how = "waited " + o.wait.d.String()
		}
		return withCode(o.conflictCode, fmt.Errorf("%s %s (%s): %w", u, m.busy(), how, err))
	case isConfigError(err):
		return withCode(exitUsage, err)
	}
	return withCode(exitUnavailable, fmt.Errorf("acquiring %s: %w", u, err))
}

// runHeld runs the child while m is held, then releases it. It
// returns nil when the child exited 0, and a *childExitError when it
// exited with another code.
func (o *runOpts) runHeld(m lockHold, u s3URL, path string, argv []string, sio streams, sigs <-chan os.Signal) error {
	var lost error
	release := func() error {
		timeout := releaseTimeout
		if lost != nil {
			// The lock frees itself within a TTL anyway; do not keep
			// a failing store busy for longer than that.
			timeout = min(timeout, o.ttl)
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return m.release(ctx)
	}
	hold := m.Context()
	cmd := exec.Command(path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = sio.stdin, sio.stdout, sio.stderr
	cmd.Env = append(os.Environ(),
		"S3LOCK_TOKEN="+strconv.FormatUint(m.Token(), 10),
		"S3LOCK_OWNER="+m.owner(),
		"S3LOCK_KEY="+u.key,
		"S3LOCK_BUCKET="+u.bucket,
	)
	proc := prepareChild(cmd, sio.stdin)
	if hold.Err() != nil {
		// Lost between the acquire and now (a very long stall): never
		// start the command without the lock.
		_ = release()
		return withCode(exitLeaseLost, fmt.Errorf("%s before the command was started; it was not run", lostReason(context.Cause(hold), u)))
	}
	if err := cmd.Start(); err != nil {
		_ = release()
		return withCode(exitCannotExec, fmt.Errorf("cannot run %s: %w", argv[0], err))
	}
	waited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the exit status is read from cmd.ProcessState
		close(waited)
	}()

	var killAt <-chan time.Time
	holdDone := hold.Done()
	for running := true; running; {
		select {
		case s := <-sigs:
			proc.forward(s)
		case <-holdDone:
			holdDone = nil
			lost = context.Cause(hold)
			fmt.Fprintf(sio.stderr, "s3lock run: %s; sending SIGTERM to the command, SIGKILL in %v\n", lostReason(lost, u), o.killGrace)
			proc.terminate()
			killAt = time.After(o.killGrace)
		case <-killAt:
			killAt = nil
			fmt.Fprintf(sio.stderr, "s3lock run: the command is still running %v after SIGTERM; sending SIGKILL\n", o.killGrace)
			proc.kill()
		case <-waited:
			running = false
		}
	}
	code := exitStatus(cmd.ProcessState)
	uerr := release()
	if lost != nil {
		return withCode(exitLeaseLost, fmt.Errorf("%s; the command was stopped (its status: %s)", lostReason(lost, u), cmd.ProcessState))
	}
	if uerr != nil {
		if errors.Is(uerr, s3lock.ErrLeaseLost) {
			return withCode(exitLeaseLost, fmt.Errorf("lease on %s was lost before the command ended (%w): the command (exit %d) may have overlapped another holder", u, uerr, code))
		}
		fmt.Fprintf(sio.stderr, "s3lock run: warning: could not release %s (%v); it stays held until its TTL (%v) runs out\n", u, oneLine(uerr.Error()), o.ttl)
	}
	if code != exitOK {
		return &childExitError{code: code}
	}
	return nil
}

// lostReason says why a hold ended, from its context's cause. The bare
// ErrLeaseLost means renewal failed until the safe deadline, and says
// nothing more; the causes that wrap it say who took or broke the lock,
// so errors.Is, which matches them all, cannot tell the two apart.
func lostReason(cause error, u s3URL) string {
	if cause == nil || cause == s3lock.ErrLeaseLost {
		return fmt.Sprintf("lease lost: %s could not be renewed before its safe deadline", u)
	}
	return strings.TrimPrefix(cause.Error(), "s3lock: ")
}

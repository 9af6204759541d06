package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/s3lock/s3lock"
)

// defaultTimeout bounds status, unlock and probe.
const defaultTimeout = 30 * time.Second

// statusJSON is the shape of "s3lock status --json". Times are RFC 3339;
// those marked S3 are S3's clock (Last-Modified, Date), since is the
// holder's own clock. Zero times are left out.
type statusJSON struct {
	URL    string `json:"url"`
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	// State is "free" (no object, or released), "held", or "expired"
	// (held, but not renewed for longer than its TTL plus margins: the
	// next contender takes it over).
	State        string    `json:"state"`
	Exists       bool      `json:"exists"`
	Held         bool      `json:"held"`
	Expired      bool      `json:"expired"`
	Owner        string    `json:"owner"`
	Generation   uint64    `json:"generation"`
	TTLMillis    int64     `json:"ttl_ms,omitempty"`
	Since        time.Time `json:"since,omitzero"`
	LastModified time.Time `json:"last_modified,omitzero"`
	ExpiresAt    time.Time `json:"expires_at,omitzero"`
	ServerTime   time.Time `json:"server_time,omitzero"`
	ETag         string    `json:"etag,omitempty"`
	Invalid      string    `json:"invalid,omitempty"`
	Value        string    `json:"value,omitempty"` // what the holder published (run --value)
}

func toJSON(u s3URL, st *s3lock.LockStatus) statusJSON {
	j := statusJSON{
		URL: u.String(), Bucket: st.Bucket, Key: st.Key, State: stateOf(st),
		Exists: st.Exists, Held: st.Held, Expired: st.Expired, Owner: st.Owner,
		Generation: st.Generation, TTLMillis: st.TTL.Milliseconds(),
		Since: st.AcquiredAt.UTC(), LastModified: st.LastModified.UTC(),
		ExpiresAt: st.ExpiresAt.UTC(), ServerTime: st.ServerTime.UTC(), ETag: st.ETag,
		Value: st.Value,
	}
	if st.Invalid != nil {
		j.Invalid = st.Invalid.Error()
	}
	return j
}

func stateOf(st *s3lock.LockStatus) string {
	switch {
	case !st.Held:
		return "free"
	case st.Expired:
		return "expired"
	}
	return "held"
}

const timeFormat = time.RFC3339

// describe writes the human form of st.
func describe(w io.Writer, u s3URL, st *s3lock.LockStatus) {
	switch {
	case !st.Exists:
		fmt.Fprintf(w, "%s: free (no lock object yet)\n", u)
		return
	case !st.Held:
		fmt.Fprintf(w, "%s: free\n", u)
		fmt.Fprintf(w, "  generation:  %d (the next holder gets %d)\n", st.Generation, st.Generation+1)
		if st.Owner != "" {
			fmt.Fprintf(w, "  released by: %s\n", st.Owner)
		}
		if !st.LastModified.IsZero() {
			fmt.Fprintf(w, "  released:    %s (S3's clock)\n", st.LastModified.UTC().Format(timeFormat))
		}
		return
	case st.Invalid != nil:
		fmt.Fprintf(w, "%s: held by an object that is not an s3lock lock (%v)\n", u, st.Invalid)
	case st.Expired:
		fmt.Fprintf(w, "%s: expired (held, but not renewed in time: the next contender takes it over)\n", u)
	default:
		fmt.Fprintf(w, "%s: held\n", u)
	}
	if st.Invalid == nil {
		fmt.Fprintf(w, "  owner:       %s\n", st.Owner)
		fmt.Fprintf(w, "  generation:  %d\n", st.Generation)
	}
	if st.Value != "" {
		fmt.Fprintf(w, "  value:       %q\n", st.Value)
	}
	if !st.AcquiredAt.IsZero() {
		fmt.Fprintf(w, "  since:       %s (the holder's clock)\n", st.AcquiredAt.UTC().Format(timeFormat))
	}
	if !st.LastModified.IsZero() {
		fmt.Fprintf(w, "  last write:  %s (S3's clock)\n", st.LastModified.UTC().Format(timeFormat))
	}
	if !st.ExpiresAt.IsZero() {
		rel := ""
		if !st.ServerTime.IsZero() {
			if d := st.ExpiresAt.Sub(st.ServerTime); d > 0 {
				rel = fmt.Sprintf("; in %v unless renewed", d)
			} else {
				rel = fmt.Sprintf("; %v ago", -d)
			}
		}
		fmt.Fprintf(w, "  expires:     %s (S3's clock%s)\n", st.ExpiresAt.UTC().Format(timeFormat), rel)
	}
	if st.TTL > 0 {
		fmt.Fprintf(w, "  ttl:         %v\n", st.TTL)
	}
}

// s3Flags are the flags of the commands that make a few S3 requests.
type s3Flags struct {
	aws     awsFlags
	timeout time.Duration
}

func (f *s3Flags) register(c *cobra.Command) {
	c.Flags().DurationVar(&f.timeout, "timeout", defaultTimeout, "give up after `duration`")
	f.aws.register(c)
}

func (f *s3Flags) context() (context.Context, context.CancelFunc, error) {
	if f.timeout <= 0 {
		return nil, nil, usageErr("--timeout must be positive, got %v", f.timeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	return ctx, cancel, nil
}

// session is what status, unlock and probe share: the one s3:// URL they
// take, a context bounded by --timeout, and an S3 client.
type session struct {
	url    s3URL
	ctx    context.Context
	cancel context.CancelFunc
	client s3lock.S3API
}

// open parses args for a command that takes one s3:// URL and no "--",
// then sets up the context and client. On success the caller must call
// cancel.
func (f *s3Flags) open(c *cobra.Command, args []string, needKey bool) (*session, error) {
	if err := versionRequested(c); err != nil {
		return nil, err
	}
	pos, _, dashdash := splitDash(c, args)
	if dashdash {
		return nil, usageErr("unexpected \"--\"")
	}
	u, err := oneURL(c, pos, needKey)
	if err != nil {
		return nil, err
	}
	ctx, cancel, err := f.context()
	if err != nil {
		return nil, err
	}
	client, err := f.aws.lockClient(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	return &session{url: u, ctx: ctx, cancel: cancel, client: client}, nil
}

type statusOpts struct {
	s3Flags
	json bool
}

func newStatusCommand(sio streams) *cobra.Command {
	o := &statusOpts{}
	c := newCommand("status", "show whether the lock is free or held, by whom, until when", statusHelp, statusMore)
	c.Flags().BoolVar(&o.json, "json", false, "print the status as one JSON object")
	o.register(c)
	c.RunE = func(c *cobra.Command, args []string) error { return o.run(c, args, sio) }
	return c
}

// run implements "s3lock status".
func (o *statusOpts) run(c *cobra.Command, args []string, sio streams) error {
	ss, err := o.open(c, args, true)
	if err != nil {
		return err
	}
	defer ss.cancel()
	u := ss.url
	st, err := s3lock.Inspect(ss.ctx, ss.client, u.bucket, u.key)
	if err != nil {
		return s3Error(err)
	}
	if o.json {
		enc := json.NewEncoder(sio.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(toJSON(u, st))
	}
	describe(sio.stdout, u, st)
	warnVersioning(ss.ctx, sio, ss.client, u.bucket, u.key)
	return nil
}

// warnVersioning prints, on stderr, the versioned-bucket warning of
// s3lock.CheckVersioning, if any. Errors and skipped checks print nothing:
// the check is advice, not the command's job.
func warnVersioning(ctx context.Context, sio streams, client s3lock.S3API, bucket, prefix string) {
	r, err := s3lock.CheckVersioning(ctx, client, bucket, prefix)
	if err == nil && r.NeedsRule() {
		fmt.Fprintf(sio.stderr, "s3lock: warning: %s\n", r.Warning())
	}
}

type unlockOpts struct {
	s3Flags
	force bool
}

func newUnlockCommand(sio streams) *cobra.Command {
	o := &unlockOpts{}
	c := newCommand("unlock", "break a stale or foreign hold (needs --force)", unlockHelp, unlockMore)
	c.Flags().BoolVarP(&o.force, "force", "f", false, "really break the hold (without it, unlock only shows what it would break)")
	o.register(c)
	c.RunE = func(c *cobra.Command, args []string) error { return o.run(c, args, sio) }
	return c
}

// run implements "s3lock unlock --force".
func (o *unlockOpts) run(c *cobra.Command, args []string, sio streams) error {
	ss, err := o.open(c, args, true)
	if err != nil {
		return err
	}
	defer ss.cancel()
	u, ctx, client := ss.url, ss.ctx, ss.client
	st, err := s3lock.Inspect(ctx, client, u.bucket, u.key)
	if err != nil {
		return s3Error(err)
	}
	if !st.Held {
		describe(sio.stdout, u, st)
		fmt.Fprintf(sio.stdout, "nothing to break: %s is not held\n", u)
		return nil
	}
	if !o.force {
		describe(sio.stdout, u, st)
		return usageErr("refusing to break the hold of %s on %s without --force", holderName(st), u)
	}
	broken, err := s3lock.ForceUnlock(ctx, client, u.bucket, u.key, st.ETag)
	if errors.Is(err, s3lock.ErrChanged) {
		return withCode(exitFailure, fmt.Errorf("%s changed after it was read (renewed, released or taken); nothing was broken: run 's3lock status %s' and try again", u, u))
	}
	if err != nil {
		return s3Error(err)
	}
	fmt.Fprintf(sio.stdout, "broke the hold of %s on %s: generation %d", holderName(broken), u, broken.Generation)
	if !broken.AcquiredAt.IsZero() {
		fmt.Fprintf(sio.stdout, ", held since %s", broken.AcquiredAt.UTC().Format(timeFormat))
	}
	if !broken.ExpiresAt.IsZero() {
		fmt.Fprintf(sio.stdout, ", expiring %s (S3's clock)", broken.ExpiresAt.UTC().Format(timeFormat))
	}
	if broken.Expired {
		fmt.Fprint(sio.stdout, "; it had expired")
	} else {
		fmt.Fprint(sio.stdout, "; it was live: its holder finds its lease lost at its next renewal")
	}
	fmt.Fprintln(sio.stdout, ".")
	if now, err := s3lock.Inspect(ctx, client, u.bucket, u.key); err == nil {
		fmt.Fprintf(sio.stdout, "now %s, generation %d\n", stateOf(now), now.Generation)
	}
	return nil
}

func holderName(st *s3lock.LockStatus) string {
	if st.Invalid != nil {
		return "an invalid lock object"
	}
	return fmt.Sprintf("%q", st.Owner)
}

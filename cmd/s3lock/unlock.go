package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/s3lock/s3lock"
)

// unlockOpts are unlock's flags.
type unlockOpts struct {
	s3Flags
	force bool
}

func newUnlockCommand(sio streams) *cobra.Command {
	o := &unlockOpts{}
	c := newCommand("unlock", "break a stale or foreign hold (needs --force)", unlockHelp, unlockMore)
	c.Flags().BoolVarP(&o.force, "force", "f", false, "really break the hold (without it, unlock only shows what it would break)")
	o.register(c)
	c.Args = urlArgs(true)
	c.RunE = func(c *cobra.Command, args []string) error {
		return o.withTarget(c, args, true, func(ctx context.Context, t target) error { return o.run(ctx, t, sio) })
	}
	return c
}

// run implements "s3lock unlock --force".
func (o *unlockOpts) run(ctx context.Context, t target, sio streams) error {
	u, client := t.url, t.client
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
	if !broken.Since.IsZero() {
		fmt.Fprintf(sio.stdout, ", held since %s", broken.Since.UTC().Format(timeFormat))
	}
	if !broken.Until.IsZero() {
		fmt.Fprintf(sio.stdout, ", expiring %s (S3's clock)", broken.Until.UTC().Format(timeFormat))
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

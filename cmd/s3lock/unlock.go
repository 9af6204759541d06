package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/s3lock/s3lock"
)

// unlockOpts are unlock's flags.
type unlockOpts struct {
	s3Flags
	force  bool
	holder string // --holder: break only this holder of a shared hold
}

func newUnlockCommand(sio streams) *cobra.Command {
	o := &unlockOpts{}
	c := newCommand("unlock", "break a stale or foreign hold (needs --force)", unlockHelp, unlockMore)
	c.Flags().BoolVarP(&o.force, "force", "f", false, "really break the hold (without it, unlock only shows what it would break)")
	c.Flags().StringVar(&o.holder, "holder", "", "break only the holder with this `ID` (as status lists it) of a shared hold; the others keep theirs")
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
		if o.holder != "" {
			return usageErr("refusing to break holder %s of %s without --force", o.holder, u)
		}
		return usageErr("refusing to break the hold of %s on %s without --force", holderName(st), u)
	}
	if o.holder != "" {
		return o.breakHolder(ctx, t, st, sio)
	}
	broken, err := s3lock.ForceUnlock(ctx, client, u.bucket, u.key, st.ETag)
	if errors.Is(err, s3lock.ErrChanged) {
		return changedErr(u)
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

// breakHolder breaks holder o.holder of the shared hold st, on condition
// that the lock is still as st shows it.
func (o *unlockOpts) breakHolder(ctx context.Context, t target, st *s3lock.LockStatus, sio streams) error {
	u := t.url
	found, err := s3lock.ForceUnlockHolder(ctx, t.client, u.bucket, u.key, st.ETag, o.holder)
	switch {
	case errors.Is(err, s3lock.ErrChanged):
		return changedErr(u)
	case errors.Is(err, s3lock.ErrNotHeld):
		if len(st.Holders) == 0 {
			return withCode(exitFailure, fmt.Errorf("%s is not a shared hold, so it has no holder %s; nothing was broken (without --holder, unlock --force breaks the whole hold)", u, o.holder))
		}
		ids := make([]string, len(st.Holders))
		for i, h := range st.Holders {
			ids[i] = h.ID
		}
		return withCode(exitFailure, fmt.Errorf("%s does not list holder %s (its holders: %s); nothing was broken", u, o.holder, strings.Join(ids, ", ")))
	case err != nil:
		return s3Error(err)
	}
	fmt.Fprintf(sio.stdout, "broke holder %s of %s", o.holder, u)
	// What ForceUnlockHolder found lists the holder it broke.
	if i := slices.IndexFunc(found.Holders, func(h s3lock.HolderStatus) bool { return h.ID == o.holder }); i >= 0 {
		describeBroken(sio, found.Holders[i], len(found.Holders)-1)
	}
	fmt.Fprintln(sio.stdout, ".")
	if now, err := s3lock.Inspect(ctx, t.client, u.bucket, u.key); err == nil {
		fmt.Fprintf(sio.stdout, "now %s, generation %d, %d holder(s)\n", stateOf(now), now.Generation, len(now.Holders))
	}
	return nil
}

// describeBroken completes unlock --holder's line about the holder h it
// broke; others is how many holders keep their holds.
func describeBroken(sio streams, h s3lock.HolderStatus, others int) {
	fmt.Fprintf(sio.stdout, ": owner %q, %d unit(s), token %d", h.Owner, h.Units, h.Token)
	if !h.Until.IsZero() {
		fmt.Fprintf(sio.stdout, ", expiring %s (S3's clock)", h.Until.UTC().Format(timeFormat))
	}
	if h.Expired {
		fmt.Fprint(sio.stdout, "; it had expired")
	} else {
		fmt.Fprint(sio.stdout, "; it was live: its holder finds its lease lost at its next renewal")
	}
	fmt.Fprintf(sio.stdout, "; the other %d holder(s) keep theirs", others)
}

// changedErr is unlock's answer to s3lock.ErrChanged.
func changedErr(u s3URL) error {
	return withCode(exitFailure, fmt.Errorf("%s changed after it was read (renewed, released or taken); nothing was broken: run 's3lock status %s' and try again", u, u))
}

func holderName(st *s3lock.LockStatus) string {
	if st.Invalid != nil {
		return "an invalid lock object"
	}
	if n := len(st.Holders); n > 0 {
		return fmt.Sprintf("%d shared holder(s) (%q)", n, st.Owner)
	}
	return fmt.Sprintf("%q", st.Owner)
}

package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/s3lock/s3lock"
)

func newProbeCommand(sio streams) *cobra.Command {
	o := &s3Flags{}
	c := newCommand("probe", "check that a store honours conditional writes", probeHelp, probeMore)
	o.register(c)
	c.Args = urlArgs(false)
	c.RunE = func(c *cobra.Command, args []string) error {
		return o.withTarget(c, args, false, func(ctx context.Context, t target) error { return probe(ctx, t, sio) })
	}
	return c
}

// probe implements "s3lock probe".
func probe(ctx context.Context, t target, sio streams) error {
	u := t.url
	err := s3lock.Probe(ctx, t.client, u.bucket, u.key)
	var skew *s3lock.ClockSkewError
	if errors.As(err, &skew) {
		// Safe to use; say what it costs.
		fmt.Fprintf(sio.stdout, "%s: WARNING: the store's Date runs %v ahead of the Last-Modified it stamps (Date %s, Last-Modified %s): contenders judge expiry by their own clock alone, so a dead holder's lock is taken over one TTL + margin after a contender first looks\n",
			u, skew.Date.Sub(skew.LastModified), skew.Date.UTC().Format(time.RFC3339), skew.LastModified.UTC().Format(time.RFC3339))
		err = nil
	}
	switch {
	case err == nil:
		fmt.Fprintf(sio.stdout, "%s: conditional writes are honoured (If-None-Match and If-Match on PutObject, alone and racing): s3lock can use this store\n", u)
		warnVersioning(ctx, sio, t)
		return nil
	case errors.Is(err, s3lock.ErrConditionalWritesUnsupported):
		fmt.Fprintf(sio.stdout, "%s: conditional writes are NOT honoured: a lock here would not exclude anyone\n", u)
		var pe *s3lock.ProbeError
		if errors.As(err, &pe) {
			for i, s := range pe.Steps {
				mark := "ok  "
				if !s.OK {
					mark = "FAIL"
				}
				fmt.Fprintf(sio.stdout, "  %s %d. %s: got %s, want %s\n", mark, i+1, s.Name, s.Got, s.Want)
			}
		}
		return withCode(exitFailure, err)
	}
	return s3Error(err)
}

package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/s3lock/s3lock"
)

// defaultTimeout bounds status, unlock and probe.
const defaultTimeout = 30 * time.Second

// s3Flags are the flags of the commands that make a few S3 requests on one
// s3:// URL: status, unlock and probe.
type s3Flags struct {
	aws     awsFlags
	timeout time.Duration
}

func (f *s3Flags) register(c *cobra.Command) {
	c.Flags().DurationVar(&f.timeout, "timeout", defaultTimeout, "give up after `duration`")
	f.aws.register(c)
}

// urlArgs validates the arguments of a command that takes one s3:// URL
// (with a key when needKey is set) and no "--".
func urlArgs(needKey bool) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		pos, _, dashdash := splitDash(c, args)
		if dashdash {
			return usageErr("unexpected \"--\"")
		}
		_, err := oneURL(c, pos, needKey)
		return err
	}
}

// target is what status, unlock and probe act on: the s3:// URL and an S3
// client for its bucket.
type target struct {
	url    s3URL
	client s3lock.S3API
}

// withTarget calls do with the target that args name (as checked by
// [urlArgs]) and a context that --timeout bounds, cancelled when do
// returns. It returns do's error, or the one that kept it from calling
// do: a bad --timeout or an unusable AWS configuration.
func (f *s3Flags) withTarget(c *cobra.Command, args []string, needKey bool, do func(ctx context.Context, t target) error) error {
	u, err := parseS3URL(args[0], needKey)
	if err != nil {
		return err
	}
	if f.timeout <= 0 {
		return usageErr("--timeout must be positive, got %v", f.timeout)
	}
	ctx, cancel := context.WithTimeout(c.Context(), f.timeout)
	defer cancel()
	client, err := f.aws.lockClient(ctx)
	if err != nil {
		return err
	}
	return do(ctx, target{url: u, client: client})
}

// warnVersioning prints, on stderr, the versioned-bucket warning of
// s3lock.CheckVersioning, if any. Errors and skipped checks print nothing:
// the check is advice, not the command's job.
func warnVersioning(ctx context.Context, sio streams, t target) {
	r, err := s3lock.CheckVersioning(ctx, t.client, t.url.bucket, t.url.key)
	if err == nil && r.NeedsRule() {
		fmt.Fprintf(sio.stderr, "s3lock: warning: %s\n", r.Warning())
	}
}

package main

import (
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"
)

// s3URL is a parsed s3://bucket/key.
type s3URL struct {
	bucket, key string
}

func (u s3URL) String() string { return "s3://" + u.bucket + "/" + u.key }

// parseS3URL parses s3://bucket/key. The key is taken literally (no
// percent-decoding); it must be present when needKey is set.
func parseS3URL(s string, needKey bool) (s3URL, error) {
	want := "s3://bucket/key"
	if !needKey {
		want = "s3://bucket/prefix"
	}
	rest, ok := strings.CutPrefix(s, "s3://")
	if !ok {
		return s3URL{}, usageErr("malformed URL %q: want %s", s, want)
	}
	bucket, key, _ := strings.Cut(rest, "/")
	switch {
	case bucket == "":
		return s3URL{}, usageErr("malformed URL %q: no bucket (want %s)", s, want)
	case needKey && key == "":
		return s3URL{}, usageErr("malformed URL %q: no key (want %s)", s, want)
	case len(key) > 1024:
		return s3URL{}, usageErr("malformed URL %q: key longer than 1024 bytes", s)
	case !utf8.ValidString(key):
		return s3URL{}, usageErr("malformed URL %q: key is not valid UTF-8", s)
	}
	for _, r := range bucket {
		if r <= ' ' || r > '~' || r == '?' || r == '#' {
			return s3URL{}, usageErr("malformed URL %q: bucket name contains %q", s, r)
		}
	}
	return s3URL{bucket: bucket, key: key}, nil
}

// oneURL checks that exactly one positional argument, the lock URL, was
// given to c.
func oneURL(c *cobra.Command, pos []string, needKey bool) (s3URL, error) {
	switch len(pos) {
	case 0:
		if needKey {
			return s3URL{}, usageErr("missing s3://bucket/key; see 's3lock %s --help'", c.Name())
		}
		return s3URL{}, usageErr("missing s3://bucket/prefix; see 's3lock %s --help'", c.Name())
	case 1:
		return parseS3URL(pos[0], needKey)
	}
	return s3URL{}, usageErr("unexpected arguments after %s: %q", pos[0], pos[1:])
}

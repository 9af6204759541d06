package main

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/s3lock/s3lock/s3locktest"
)

// TestExpectedBucketOwner: every command takes --expected-bucket-owner
// and is refused, with a clear message, by a server whose bucket belongs
// to another account.
func TestExpectedBucketOwner(t *testing.T) {
	t.Parallel()
	const owner, other = "111122223333", "444455556666"
	srv := s3locktest.New(t, s3locktest.WithBucketOwner(owner))
	h := &harness{t: t, srv: srv, dir: t.TempDir(), endpoint: srv.URL()}
	argv, env := childCmd("exit", "CODE=0")
	commands := [][]string{
		{"status", h.url("owner/a")},
		{"unlock", h.url("owner/a")},
		{"probe", h.url("owner/")},
		append([]string{"run", h.url("owner/a"), "--"}, argv...),
	}
	for _, args := range commands {
		withOwner := func(id string) []string {
			return append([]string{args[0], "--expected-bucket-owner", id}, args[1:]...)
		}
		if r := h.run(env, withOwner(owner)...); r.code != 0 {
			t.Errorf("%s with the right owner: exit code %d, stderr %q; want 0", args[0], r.code, r.stderr)
		}
		r := h.run(env, withOwner(other)...)
		if r.code != exitUsage || !strings.Contains(r.stderr, "access denied") || !strings.Contains(r.stderr, other) {
			t.Errorf("%s with another owner: exit code %d, stderr %q; want %d, access denied naming %s", args[0], r.code, r.stderr, exitUsage, other)
		}
	}
	if r := h.run(nil, "status", "--expected-bucket-owner", "not valid", h.url("owner/a")); r.code != exitUsage {
		t.Errorf("status with a malformed owner: exit code %d, stderr %q; want %d", r.code, r.stderr, exitUsage)
	}
}

// TestVersionedBucketWarning: probe and status warn, on stderr, about a
// versioned bucket without a rule expiring noncurrent versions, and print
// the rule.
func TestVersionedBucketWarning(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, args := range [][]string{{"probe", h.url("vlocks/")}, {"status", h.url("vlocks/a")}} {
		if r := h.run(nil, args...); r.code != 0 || strings.Contains(r.stderr, "warning") {
			t.Errorf("%s on an unversioned bucket: exit code %d, stderr %q; want 0 and no warning", args[0], r.code, r.stderr)
		}
	}
	if _, err := h.srv.Client().PutBucketVersioning(context.Background(), &s3.PutBucketVersioningInput{
		Bucket:                  aws.String(h.srv.Bucket()),
		VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled},
	}); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"probe", h.url("vlocks/")}, {"status", h.url("vlocks/a")}} {
		r := h.run(nil, args...)
		if r.code != 0 || !strings.Contains(r.stderr, "versioning enabled") || !strings.Contains(r.stderr, "NoncurrentVersionExpiration") {
			t.Errorf("%s on a versioned bucket: exit code %d, stderr %q; want 0 and a warning with the rule", args[0], r.code, r.stderr)
		}
	}
}

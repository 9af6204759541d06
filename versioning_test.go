package s3lock_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/internal/s3servers"
	"github.com/s3lock/s3lock/s3locktest"
)

func enableVersioning(t *testing.T, c *s3.Client, bucket string) {
	t.Helper()
	if _, err := c.PutBucketVersioning(context.Background(), &s3.PutBucketVersioningInput{
		Bucket:                  aws.String(bucket),
		VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled},
	}); err != nil {
		t.Fatalf("PutBucketVersioning() = %v", err)
	}
}

func putLifecycle(t *testing.T, c *s3.Client, bucket string, rules ...types.LifecycleRule) {
	t.Helper()
	if _, err := c.PutBucketLifecycleConfiguration(context.Background(), &s3.PutBucketLifecycleConfigurationInput{
		Bucket:                 aws.String(bucket),
		LifecycleConfiguration: &types.BucketLifecycleConfiguration{Rules: rules},
	}); err != nil {
		t.Fatalf("PutBucketLifecycleConfiguration() = %v", err)
	}
}

func noncurrentRule(id string, filter *types.LifecycleRuleFilter) types.LifecycleRule {
	return types.LifecycleRule{
		ID:                          aws.String(id),
		Status:                      types.ExpirationStatusEnabled,
		Filter:                      filter,
		NoncurrentVersionExpiration: &types.NoncurrentVersionExpiration{NoncurrentDays: aws.Int32(1)},
	}
}

// TestVersionedBucketLeavesVersions shows the problem CheckVersioning
// warns about: in a versioned bucket every lock cycle leaves two versions.
func TestVersionedBucketLeavesVersions(t *testing.T) {
	ctx := context.Background()
	srv := s3locktest.New(t)
	c := srv.Client()
	enableVersioning(t, c, srv.Bucket())
	m := newMutex(t, srv.Client(), srv.Bucket(), "locks/v")
	for range 3 {
		if err := m.TryLock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := m.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	out, err := c.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: aws.String(srv.Bucket()), Prefix: aws.String("locks/v")})
	if err != nil {
		t.Fatalf("ListObjectVersions() = %v", err)
	}
	if got := len(out.Versions); got != 6 {
		t.Errorf("versions of the lock object after 3 cycles = %d; want 6 (two writes per cycle)", got)
	}
}

func TestCheckVersioning(t *testing.T) {
	ctx := context.Background()
	const prefix = "locks/deploy"
	tests := []struct {
		name       string
		versioned  bool
		rules      []types.LifecycleRule
		wantStatus string
		wantRule   string
		wantWarn   bool
	}{
		{name: "never versioned", wantStatus: ""},
		{name: "versioned, no lifecycle", versioned: true, wantStatus: "Enabled", wantWarn: true},
		{name: "versioned, rule for the whole bucket", versioned: true,
			rules:      []types.LifecycleRule{noncurrentRule("all", &types.LifecycleRuleFilter{})},
			wantStatus: "Enabled", wantRule: "all"},
		{name: "versioned, rule for a parent prefix", versioned: true,
			rules:      []types.LifecycleRule{noncurrentRule("other", &types.LifecycleRuleFilter{Prefix: aws.String("logs/")}), noncurrentRule("locks", &types.LifecycleRuleFilter{Prefix: aws.String("locks/")})},
			wantStatus: "Enabled", wantRule: "locks"},
		{name: "versioned, rule for another prefix", versioned: true,
			rules:      []types.LifecycleRule{noncurrentRule("logs", &types.LifecycleRuleFilter{Prefix: aws.String("logs/")})},
			wantStatus: "Enabled", wantWarn: true},
		{name: "versioned, rule filtered by tag", versioned: true,
			rules:      []types.LifecycleRule{noncurrentRule("tagged", &types.LifecycleRuleFilter{Tag: &types.Tag{Key: aws.String("k"), Value: aws.String("v")}})},
			wantStatus: "Enabled", wantWarn: true},
		{name: "versioned, rule disabled", versioned: true,
			rules: []types.LifecycleRule{func() types.LifecycleRule {
				r := noncurrentRule("off", &types.LifecycleRuleFilter{Prefix: aws.String("locks/")})
				r.Status = types.ExpirationStatusDisabled
				return r
			}()},
			wantStatus: "Enabled", wantWarn: true},
		{name: "versioned, rule expiring current versions only", versioned: true,
			rules: []types.LifecycleRule{{ID: aws.String("current"), Status: types.ExpirationStatusEnabled,
				Filter: &types.LifecycleRuleFilter{Prefix: aws.String("locks/")}, Expiration: &types.LifecycleExpiration{Days: aws.Int32(30)}}},
			wantStatus: "Enabled", wantWarn: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := s3locktest.New(t)
			c := srv.Client()
			if tt.versioned {
				enableVersioning(t, c, srv.Bucket())
			}
			if len(tt.rules) > 0 {
				putLifecycle(t, c, srv.Bucket(), tt.rules...)
			}
			before := srv.Stats().Snapshot()
			r, err := s3lock.CheckVersioning(ctx, c, srv.Bucket(), prefix)
			if err != nil {
				t.Fatalf("CheckVersioning() = %v", err)
			}
			wantRequests := int64(1)
			if tt.versioned {
				wantRequests = 2
			}
			if got := srv.Stats().Snapshot().Sub(before).Total(); got != wantRequests {
				t.Errorf("CheckVersioning() made %d requests; want %d", got, wantRequests)
			}
			if r.Skipped != nil || r.Status != tt.wantStatus || r.ExpiringRule != tt.wantRule || r.NeedsRule() != tt.wantWarn {
				t.Errorf("CheckVersioning() = %+v (NeedsRule %v); want status %q, rule %q, NeedsRule %v", r, r.NeedsRule(), tt.wantStatus, tt.wantRule, tt.wantWarn)
			}
			w := r.Warning()
			if (w != "") != tt.wantWarn || (tt.wantWarn && !strings.Contains(w, s3lock.LifecycleRule(prefix))) {
				t.Errorf("Warning() = %q; want a warning (with the rule) %v", w, tt.wantWarn)
			}
			if !tt.wantWarn {
				return
			}
			// The rule the warning prints, once added, silences it.
			rule := noncurrentRule("s3lock-expire-noncurrent-lock-versions", &types.LifecycleRuleFilter{Prefix: aws.String(prefix)})
			putLifecycle(t, c, srv.Bucket(), append(tt.rules, rule)...)
			if r, err := s3lock.CheckVersioning(ctx, c, srv.Bucket(), prefix); err != nil || r.NeedsRule() {
				t.Errorf("CheckVersioning() after adding the suggested rule = %+v, %v; want no warning", r, err)
			}
		})
	}
}

// denyBucketConfig answers 403 AccessDenied to ?versioning and ?lifecycle,
// as AWS does without s3:GetBucketVersioning / s3:GetLifecycleConfiguration.
type denyBucketConfig struct {
	next  http.RoundTripper
	query string
}

func (d denyBucketConfig) RoundTrip(r *http.Request) (*http.Response, error) {
	if _, ok := r.URL.Query()[d.query]; !ok {
		return d.next.RoundTrip(r)
	}
	body := `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>`
	return &http.Response{
		StatusCode: http.StatusForbidden, Status: "403 Forbidden", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:  http.Header{"Content-Type": {"application/xml"}},
		Body:    io.NopCloser(strings.NewReader(body)),
		Request: r, ContentLength: int64(len(body)),
	}, nil
}

func TestCheckVersioningSkips(t *testing.T) {
	ctx := context.Background()
	for _, query := range []string{"versioning", "lifecycle"} {
		t.Run("access denied to "+query, func(t *testing.T) {
			srv := s3locktest.New(t)
			enableVersioning(t, srv.Client(), srv.Bucket())
			c := srv.Client(func(o *s3.Options) {
				o.HTTPClient = &http.Client{Transport: denyBucketConfig{next: srv.HTTPClient().Transport, query: query}}
			})
			r, err := s3lock.CheckVersioning(ctx, c, srv.Bucket(), "locks/")
			if err != nil || r.Skipped == nil || r.NeedsRule() || r.Warning() != "" {
				t.Fatalf("CheckVersioning() = %+v, %v; want skipped, no warning, no error", r, err)
			}
		})
	}
	t.Run("client without the methods", func(t *testing.T) {
		srv := s3locktest.New(t)
		enableVersioning(t, srv.Client(), srv.Bucket())
		r, err := s3lock.CheckVersioning(ctx, s3apiOnly{srv.Client()}, srv.Bucket(), "locks/")
		if err != nil || r.Skipped == nil {
			t.Fatalf("CheckVersioning() = %+v, %v; want skipped", r, err)
		}
	})
	t.Run("missing bucket", func(t *testing.T) {
		srv := s3locktest.New(t)
		if _, err := s3lock.CheckVersioning(ctx, srv.Client(), "no-such-bucket", "locks/"); !errors.Is(err, s3lock.ErrBucketNotFound) {
			t.Errorf("CheckVersioning(missing bucket) = %v; want ErrBucketNotFound", err)
		}
	})
}

// TestCheckVersioningOnServers runs the versioning check on the
// out-of-process servers, in a fresh bucket with versioning enabled: it must
// either warn (no lifecycle rule yet) or report the check skipped because
// the store lacks the API, and stop warning once the rule is in place
// where the store keeps lifecycle rules.
func TestCheckVersioningOnServers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(testing.TB) *s3servers.Server
	}{
		{"versitygw", s3servers.Versitygw},
		{"seaweedfs", s3servers.SeaweedFS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := tc.start(t)
			ctx := context.Background()
			const bucket = "s3lock-versioned"
			if err := srv.CreateBucket(ctx, bucket); err != nil {
				t.Fatalf("CreateBucket() = %v", err)
			}
			c := srv.Client()
			if _, err := c.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{
				Bucket:                  aws.String(bucket),
				VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled},
			}); err != nil {
				t.Skipf("%s: PutBucketVersioning() = %v: no versioning to check", tc.name, err)
			}
			r, err := s3lock.CheckVersioning(ctx, c, bucket, "locks/")
			if err != nil {
				t.Fatalf("CheckVersioning() = %v", err)
			}
			t.Logf("%s: CheckVersioning() = %+v", tc.name, r)
			if r.Skipped != nil {
				return
			}
			if r.Status != "Enabled" || !r.NeedsRule() {
				t.Fatalf("CheckVersioning() = %+v; want versioning Enabled and NeedsRule", r)
			}
			rule := noncurrentRule("s3lock", &types.LifecycleRuleFilter{Prefix: aws.String("locks/")})
			if _, err := c.PutBucketLifecycleConfiguration(ctx, &s3.PutBucketLifecycleConfigurationInput{
				Bucket: aws.String(bucket), LifecycleConfiguration: &types.BucketLifecycleConfiguration{Rules: []types.LifecycleRule{rule}},
			}); err != nil {
				t.Logf("%s: PutBucketLifecycleConfiguration() = %v: cannot check the silenced warning", tc.name, err)
				return
			}
			r, err = s3lock.CheckVersioning(ctx, c, bucket, "locks/")
			if err != nil || r.NeedsRule() {
				t.Errorf("CheckVersioning() with the rule = %+v, %v; want no warning", r, err)
			}
			t.Logf("%s: with the rule: %+v", tc.name, r)
		})
	}
}

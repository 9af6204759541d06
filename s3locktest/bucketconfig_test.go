package s3locktest_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/s3lock/s3lock/s3locktest"
)

// wantAPIError fails t unless err is an S3 error with the given code.
func wantAPIError(t *testing.T, err error, code string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != code {
		t.Fatalf("err = %v; want an S3 error %s", err, code)
	}
}

// TestWithBucketOwner: with WithBucketOwner, a request that expects another
// bucket owner is refused with AccessDenied, as AWS does; one that expects
// the owner, or names none, is served.
func TestWithBucketOwner(t *testing.T) {
	const owner = "111122223333"
	srv := s3locktest.New(t, s3locktest.WithBucketOwner(owner))
	ctx := context.Background()
	put := func(expected string) error {
		in := &s3.PutObjectInput{Bucket: aws.String(srv.Bucket()), Key: aws.String("k"), Body: strings.NewReader("v")}
		if expected != "" {
			in.ExpectedBucketOwner = aws.String(expected)
		}
		_, err := srv.Client(func(o *s3.Options) { o.RetryMaxAttempts = 1 }).PutObject(ctx, in)
		return err
	}
	for _, expected := range []string{"", owner} {
		if err := put(expected); err != nil {
			t.Errorf("PutObject(ExpectedBucketOwner %q) = %v; want nil", expected, err)
		}
	}
	wantAPIError(t, put("999999999999"), "AccessDenied")
}

// TestLifecycleAPI: the server keeps a bucket's lifecycle configuration,
// which gofakes3 alone does not: NoSuchLifecycleConfiguration before a PUT
// and after a DELETE, the rules sent in between.
func TestLifecycleAPI(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	c := srv.Client()
	bucket := aws.String(srv.Bucket())
	_, err := c.GetBucketLifecycleConfiguration(ctx, &s3.GetBucketLifecycleConfigurationInput{Bucket: bucket})
	wantAPIError(t, err, "NoSuchLifecycleConfiguration")

	rule := types.LifecycleRule{
		ID:                          aws.String("expire-old-versions"),
		Status:                      types.ExpirationStatusEnabled,
		Filter:                      &types.LifecycleRuleFilter{Prefix: aws.String("locks/")},
		NoncurrentVersionExpiration: &types.NoncurrentVersionExpiration{NoncurrentDays: aws.Int32(1)},
	}
	if _, err := c.PutBucketLifecycleConfiguration(ctx, &s3.PutBucketLifecycleConfigurationInput{
		Bucket: bucket, LifecycleConfiguration: &types.BucketLifecycleConfiguration{Rules: []types.LifecycleRule{rule}},
	}); err != nil {
		t.Fatalf("PutBucketLifecycleConfiguration() = %v", err)
	}
	out, err := c.GetBucketLifecycleConfiguration(ctx, &s3.GetBucketLifecycleConfigurationInput{Bucket: bucket})
	if err != nil {
		t.Fatalf("GetBucketLifecycleConfiguration() = %v", err)
	}
	if len(out.Rules) != 1 || aws.ToString(out.Rules[0].ID) != "expire-old-versions" || out.Rules[0].NoncurrentVersionExpiration == nil {
		t.Errorf("GetBucketLifecycleConfiguration() rules = %+v; want the rule sent", out.Rules)
	}

	if _, err := c.DeleteBucketLifecycle(ctx, &s3.DeleteBucketLifecycleInput{Bucket: bucket}); err != nil {
		t.Fatalf("DeleteBucketLifecycle() = %v", err)
	}
	_, err = c.GetBucketLifecycleConfiguration(ctx, &s3.GetBucketLifecycleConfigurationInput{Bucket: bucket})
	wantAPIError(t, err, "NoSuchLifecycleConfiguration")
}

package lastrelease

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// bucketConfigAPI is the optional part of a client that [CheckVersioning]
// uses. *s3.Client has it. It is not in [S3API], so that clients written
// for S3API (narrow wrappers, test doubles) keep compiling; CheckVersioning
// finds it by type assertion and skips the check without it.
type bucketConfigAPI interface {
	GetBucketVersioning(ctx context.Context, params *s3.GetBucketVersioningInput, optFns ...func(*s3.Options)) (*s3.GetBucketVersioningOutput, error)
	GetBucketLifecycleConfiguration(ctx context.Context, params *s3.GetBucketLifecycleConfigurationInput, optFns ...func(*s3.Options)) (*s3.GetBucketLifecycleConfigurationOutput, error)
}

var _ bucketConfigAPI = (*s3.Client)(nil)

// VersioningReport is what [CheckVersioning] found out about a bucket.
type VersioningReport struct {
	// Bucket and Prefix are what was checked: lock objects under Prefix
	// (a lock key is its own prefix).
	Bucket, Prefix string
	// Status is the bucket's versioning state as S3 reports it: "Enabled",
	// "Suspended", or "" for a bucket where it was never enabled.
	Status string
	// ExpiringRule is the ID of an enabled lifecycle rule that expires
	// noncurrent versions of every object under Prefix ("(no ID)" for a
	// rule without one), or "" when there is none. Only read when Status
	// is "Enabled".
	ExpiringRule string
	// Skipped, when not nil, says why the check was not made: access
	// denied (it needs s3:GetBucketVersioning and
	// s3:GetLifecycleConfiguration), a store without these APIs, or a
	// client without the methods. The fields above Status are then all
	// that is known.
	Skipped error
}

// NeedsRule reports whether the bucket keeps every version of the lock
// objects with nothing to expire them: versioning is enabled and no
// lifecycle rule expires noncurrent versions under Prefix.
func (r *VersioningReport) NeedsRule() bool {
	return r.Skipped == nil && r.Status == string(types.BucketVersioningStatusEnabled) && r.ExpiringRule == ""
}

// Warning returns a warning for a human, with the lifecycle rule to add,
// when NeedsRule; otherwise "".
func (r *VersioningReport) Warning() string {
	if !r.NeedsRule() {
		return ""
	}
	return fmt.Sprintf(`bucket %q has versioning enabled and no lifecycle rule expires noncurrent versions under %q.
Every lock cycle overwrites the lock object twice, so each one leaves two noncurrent
versions behind, billed as storage until deleted: millions a day for a busy lock.
Add a rule like this one (merged with the bucket's existing rules, which
put-bucket-lifecycle-configuration replaces):
%s`, r.Bucket, r.Prefix, LifecycleRule(r.Prefix))
}

// LifecycleRule returns a lifecycle configuration, in the JSON that
// `aws s3api put-bucket-lifecycle-configuration --lifecycle-configuration`
// takes, whose one rule deletes noncurrent versions of the objects under
// prefix one day after they are replaced.
func LifecycleRule(prefix string) string {
	return fmt.Sprintf(`{
  "Rules": [
    {
      "ID": "s3lock-expire-noncurrent-lock-versions",
      "Status": "Enabled",
      "Filter": {"Prefix": %q},
      "NoncurrentVersionExpiration": {"NoncurrentDays": 1}
    }
  ]
}`, prefix)
}

// CheckVersioning reads the versioning state of bucket with one request
// (GetBucketVersioning) and, when versioning is enabled, its lifecycle
// configuration with a second (GetBucketLifecycleConfiguration), to tell
// whether the versions that lock writes leave behind under prefix are ever
// expired. In a versioned bucket every write of a lock object keeps the
// previous one as a noncurrent version; see [VersioningReport.Warning].
//
// When the caller may not read that configuration (403), the store does
// not implement it (501, 405), or client lacks the two methods (an
// *s3.Client has them; they are not part of [S3API]), the report has
// Skipped set and the error is nil. A missing bucket matches
// [ErrBucketNotFound]; other errors are S3's or ctx's.
func CheckVersioning(ctx context.Context, client S3API, bucket, prefix string) (*VersioningReport, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: nil S3 client", ErrInvalidArgument)
	}
	if err := validateBucket(bucket); err != nil {
		return nil, err
	}
	r := &VersioningReport{Bucket: bucket, Prefix: prefix}
	bc, ok := client.(bucketConfigAPI)
	if !ok {
		r.Skipped = errors.New("the S3 client has no GetBucketVersioning and GetBucketLifecycleConfiguration")
		return r, nil
	}
	v, err := bc.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: &bucket})
	if err != nil {
		return r.skip("GetBucketVersioning", err)
	}
	r.Status = string(v.Status)
	if v.Status != types.BucketVersioningStatusEnabled {
		return r, nil
	}
	lc, err := bc.GetBucketLifecycleConfiguration(ctx, &s3.GetBucketLifecycleConfigurationInput{Bucket: &bucket})
	if err != nil {
		if errorCode(err) == "NoSuchLifecycleConfiguration" {
			return r, nil
		}
		return r.skip("GetBucketLifecycleConfiguration", err)
	}
	for _, rule := range lc.Rules {
		if expiresNoncurrent(rule, prefix) {
			r.ExpiringRule = "(no ID)"
			if rule.ID != nil && *rule.ID != "" {
				r.ExpiringRule = *rule.ID
			}
			break
		}
	}
	return r, nil
}

// skip turns an error the check can live without into Skipped.
func (r *VersioningReport) skip(op string, err error) (*VersioningReport, error) {
	if errors.Is(err, errClientLacks) || refusedOperation(err) {
		r.Skipped = fmt.Errorf("%s: %w", op, err)
		return r, nil
	}
	_, mapped := classify(err, r.Bucket)
	return nil, fmt.Errorf("s3lock: checking versioning of bucket %q: %s: %w", r.Bucket, op, mapped)
}

// expiresNoncurrent reports whether rule is enabled, expires noncurrent
// versions, and applies to every object under prefix. Rules filtered by
// tags or object size are not counted: lock objects carry no tags, and
// whether their size passes a filter is not worth guessing.
func expiresNoncurrent(rule types.LifecycleRule, prefix string) bool {
	if rule.Status != types.ExpirationStatusEnabled || rule.NoncurrentVersionExpiration == nil {
		return false
	}
	nve := rule.NoncurrentVersionExpiration
	if (nve.NoncurrentDays == nil || *nve.NoncurrentDays <= 0) && nve.NewerNoncurrentVersions == nil {
		return false
	}
	//lint:ignore SA1019 the top-level Prefix is deprecated but still in use
	rulePrefix := rule.Prefix
	if f := rule.Filter; f != nil {
		switch {
		case f.Tag != nil, f.And != nil && len(f.And.Tags) > 0,
			f.ObjectSizeGreaterThan != nil, f.ObjectSizeLessThan != nil,
			f.And != nil && (f.And.ObjectSizeGreaterThan != nil || f.And.ObjectSizeLessThan != nil):
			return false
		case f.Prefix != nil:
			rulePrefix = f.Prefix
		case f.And != nil && f.And.Prefix != nil:
			rulePrefix = f.And.Prefix
		}
	}
	return rulePrefix == nil || strings.HasPrefix(prefix, *rulePrefix)
}

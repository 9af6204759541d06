package lastrelease

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// ExpectBucketOwner returns a client that makes every request of client
// with the x-amz-expected-bucket-owner header set to accountID (the
// ExpectedBucketOwner field of each SDK input), so that AWS refuses, with
// 403 AccessDenied, any request to a bucket owned by another account. That
// keeps a lock from ever being written to, or read from, a bucket that
// someone else created under the expected name (bucket names are global).
// AWS recommends it for every request.
//
// Use it for [Probe], [Inspect], [ForceUnlock] and [CheckVersioning];
// [WithExpectedBucketOwner] does the same for a Mutex. A refused request
// returns an error matching [ErrAccessDenied] that names the expected
// owner. On AWS accountID is a 12-digit account ID; S3-compatible stores
// may ignore the header. The returned client also has DeleteObject,
// GetBucketVersioning and GetBucketLifecycleConfiguration; they fail
// when client lacks them.
//
// It returns an error matching [ErrInvalidArgument] when client is nil or
// accountID is empty, longer than 64 bytes, or not printable ASCII
// without spaces.
func ExpectBucketOwner(client S3API, accountID string) (S3API, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: nil S3 client", ErrInvalidArgument)
	}
	if err := validateAccountID(accountID); err != nil {
		return nil, err
	}
	return &ownerPinned{next: client, owner: accountID}, nil
}

func validateAccountID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty expected bucket owner", ErrInvalidArgument)
	case len(id) > 64:
		return fmt.Errorf("%w: expected bucket owner longer than 64 bytes", ErrInvalidArgument)
	}
	for _, r := range id {
		if r <= ' ' || r > '~' {
			return fmt.Errorf("%w: expected bucket owner %q contains %q", ErrInvalidArgument, id, r)
		}
	}
	return nil
}

// errClientLacks reports that a client wrapped by ExpectBucketOwner does
// not have the method called.
var errClientLacks = errors.New("s3lock: the S3 client does not have this method")

// ownerPinned sets ExpectedBucketOwner on every request it forwards.
type ownerPinned struct {
	next  S3API
	owner string
}

var (
	_ objectDeleter   = (*ownerPinned)(nil)
	_ bucketConfigAPI = (*ownerPinned)(nil)
)

func (c *ownerPinned) GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	cp := *in
	cp.ExpectedBucketOwner = &c.owner
	out, err := c.next.GetObject(ctx, &cp, optFns...)
	return out, c.explain(err, in.Bucket)
}

func (c *ownerPinned) PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	cp := *in
	cp.ExpectedBucketOwner = &c.owner
	out, err := c.next.PutObject(ctx, &cp, optFns...)
	return out, c.explain(err, in.Bucket)
}

func (c *ownerPinned) DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, optFns ...func(*s3.Options)) (*s3.DeleteObjectOutput, error) {
	d, ok := c.next.(objectDeleter)
	if !ok {
		return nil, fmt.Errorf("DeleteObject: %w", errClientLacks)
	}
	cp := *in
	cp.ExpectedBucketOwner = &c.owner
	out, err := d.DeleteObject(ctx, &cp, optFns...)
	return out, c.explain(err, in.Bucket)
}

func (c *ownerPinned) GetBucketVersioning(ctx context.Context, in *s3.GetBucketVersioningInput, optFns ...func(*s3.Options)) (*s3.GetBucketVersioningOutput, error) {
	b, ok := c.next.(bucketConfigAPI)
	if !ok {
		return nil, fmt.Errorf("GetBucketVersioning: %w", errClientLacks)
	}
	cp := *in
	cp.ExpectedBucketOwner = &c.owner
	out, err := b.GetBucketVersioning(ctx, &cp, optFns...)
	return out, c.explain(err, in.Bucket)
}

func (c *ownerPinned) GetBucketLifecycleConfiguration(ctx context.Context, in *s3.GetBucketLifecycleConfigurationInput, optFns ...func(*s3.Options)) (*s3.GetBucketLifecycleConfigurationOutput, error) {
	b, ok := c.next.(bucketConfigAPI)
	if !ok {
		return nil, fmt.Errorf("GetBucketLifecycleConfiguration: %w", errClientLacks)
	}
	cp := *in
	cp.ExpectedBucketOwner = &c.owner
	out, err := b.GetBucketLifecycleConfiguration(ctx, &cp, optFns...)
	return out, c.explain(err, in.Bucket)
}

// explain adds the expected owner to a 403, the answer AWS gives when the
// bucket belongs to another account (and also when the caller lacks the
// permission: S3 does not say which).
func (c *ownerPinned) explain(err error, bucket *string) error {
	if err == nil || httpStatus(err) != http.StatusForbidden {
		return err
	}
	name := ""
	if bucket != nil {
		name = *bucket
	}
	return fmt.Errorf("%w (requests carry x-amz-expected-bucket-owner %s: bucket %q is owned by another account, or this identity lacks the permission)", err, c.owner, name)
}

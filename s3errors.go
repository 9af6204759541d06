package s3lock

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
)

// failure classifies an error returned by an S3 call. This is the one place
// where SDK errors are mapped.
type failure int

const (
	failNone         failure = iota
	failPrecondition         // 412: the condition did not hold (or our own earlier attempt was applied)
	failConflict             // 409: a concurrent conditional write; nothing was written
	failNotFound             // 404 on the key: no object
	failPermanent            // 4xx that retrying cannot fix: the request was not applied
	failCanceled             // the caller's context ended; the request may have been applied
	failTransient            // 5xx, throttling, transport: the request may have been applied
	failNotModified          // 304 to a GET with If-None-Match: the object still has that ETag
)

// classify tells what an S3 error means for the lock protocol, and returns
// the error to report (mapped to s3lock's sentinels where one fits).
func classify(err error, bucket string) (failure, error) {
	if err == nil {
		return failNone, nil
	}
	var canceled *smithy.CanceledError
	if errors.As(err, &canceled) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return failCanceled, err
	}
	status := 0
	var respErr *awshttp.ResponseError
	if errors.As(err, &respErr) {
		status = respErr.HTTPStatusCode()
	}
	code := ""
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code = apiErr.ErrorCode()
	}
	switch {
	case code == "NoSuchBucket":
		return failPermanent, fmt.Errorf("%w: %q: %w", ErrBucketNotFound, bucket, err)
	case code == "PreconditionFailed" || status == http.StatusPreconditionFailed:
		return failPrecondition, err
	case code == "ConditionalRequestConflict" || status == http.StatusConflict:
		return failConflict, err
	case code == "NotModified" || status == http.StatusNotModified:
		return failNotModified, err
	case code == "NoSuchKey" || status == http.StatusNotFound:
		return failNotFound, err
	case code == "AccessDenied" || status == http.StatusForbidden:
		return failPermanent, fmt.Errorf("%w: %w", ErrAccessDenied, err)
	case code == "NotImplemented" || status == http.StatusNotImplemented:
		return failPermanent, fmt.Errorf("%w: %w", ErrConditionalWritesUnsupported, err)
	case status == http.StatusTooManyRequests || status == http.StatusRequestTimeout:
		return failTransient, fmt.Errorf("%w: %w", ErrUnavailable, err)
	case status >= 400 && status < 500:
		return failPermanent, fmt.Errorf("%w: %w", errPermanentS3, err)
	}
	return failTransient, fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// isPermanent reports whether retrying the operation that returned err
// cannot help (configuration, permissions, invalid objects are not
// included: those are reported as LockedError).
func isPermanent(err error) bool {
	return errors.Is(err, ErrBucketNotFound) || errors.Is(err, ErrAccessDenied) ||
		errors.Is(err, ErrConditionalWritesUnsupported) || errors.Is(err, ErrInvalidArgument) ||
		errors.Is(err, errPermanentS3) || errors.Is(err, errGenerationExhausted)
}

// errPermanentS3 marks other 4xx answers (bad request, invalid key...) that
// a retry would only repeat.
var errPermanentS3 = errors.New("s3lock: request rejected by S3")

package lastrelease

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
)

// failure classifies an error returned by an S3 call. This file is the one
// place where SDK errors are unpacked: other files ask classify, httpStatus,
// errorCode, refusedOperation or describe.
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
	status, code := httpStatus(err), errorCode(err)
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

// httpStatus returns the HTTP status of the S3 answer behind err, or 0 when
// err carries none (a transport error, a cancelled context, nil).
func httpStatus(err error) int {
	var respErr *awshttp.ResponseError
	if errors.As(err, &respErr) {
		return respErr.HTTPStatusCode()
	}
	return 0
}

// errorCode returns the S3 error code behind err ("NoSuchKey",
// "PreconditionFailed"...), or "" when err carries none.
func errorCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}

// refusedOperation reports whether S3 refused the request itself rather
// than failing it: the caller lacks the permission (403 AccessDenied) or
// the store does not implement or allow the operation (501, 405). An
// optional check meeting it can be skipped; retrying cannot help.
func refusedOperation(err error) bool {
	switch status, code := httpStatus(err), errorCode(err); {
	case status == http.StatusForbidden, status == http.StatusNotImplemented, status == http.StatusMethodNotAllowed:
		return true
	default:
		return code == "AccessDenied" || code == "NotImplemented"
	}
}

// describe renders an S3 error as the status and code seen ("412
// PreconditionFailed"), or as "error: " and its text when it carries
// neither.
func describe(err error) string {
	status, code := httpStatus(err), errorCode(err)
	switch {
	case status != 0 && code != "":
		return strconv.Itoa(status) + " " + code
	case status != 0:
		return strconv.Itoa(status)
	case code != "":
		return code
	}
	return "error: " + err.Error()
}

// errorDate returns the Date header of the HTTP answer behind an SDK
// error (a 304 to a conditional GET, say), or zero.
func errorDate(err error) time.Time {
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		if t, perr := http.ParseTime(re.Response.Header.Get("Date")); perr == nil {
			return t
		}
	}
	return time.Time{}
}

package s3lock

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/s3lock/s3lock/s3locktest"
)

// apiError builds the error the SDK returns for an S3 answer with the
// given HTTP status and error code.
func apiError(status int, code string) error {
	var err error = &smithy.GenericAPIError{Code: code, Message: "fuzz"}
	if status != 0 {
		err = &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
			Err:      err,
		}}
	}
	return err
}

// FuzzClassify: classify never panics, keeps the SDK error in what it
// returns, and agrees with isPermanent, so that Lock neither retries
// forever on an answer that cannot change nor gives up on one that can.
func FuzzClassify(f *testing.F) {
	for _, s := range []struct {
		status int
		code   string
	}{
		{412, "PreconditionFailed"}, {409, "ConditionalRequestConflict"}, {404, "NoSuchKey"},
		{404, "NoSuchBucket"}, {403, "AccessDenied"}, {501, "NotImplemented"}, {500, "InternalError"},
		{503, "SlowDown"}, {429, "TooManyRequests"}, {408, "RequestTimeout"}, {400, "InvalidArgument"},
		{0, "PreconditionFailed"}, {0, ""}, {301, "PermanentRedirect"}, {200, ""}, {-1, "x"},
	} {
		f.Add(s.status, s.code)
	}
	f.Fuzz(func(t *testing.T, status int, code string) {
		in := apiError(status, code)
		fl, mapped := classify(in, "bucket")
		if fl == failNone || mapped == nil {
			t.Fatalf("classify(%d %q) = %v, %v; want a failure", status, code, fl, mapped)
		}
		if !errors.Is(mapped, in) {
			t.Fatalf("classify(%d %q) lost the SDK error: %v", status, code, mapped)
		}
		switch fl {
		case failPermanent:
			if !isPermanent(mapped) {
				t.Fatalf("classify(%d %q) = permanent, but isPermanent(%v) = false: Lock would retry forever", status, code, mapped)
			}
		case failCanceled:
			t.Fatalf("classify(%d %q) = canceled without a context error", status, code)
		default:
			if isPermanent(mapped) {
				t.Fatalf("classify(%d %q) = %v, but isPermanent(%v) = true", status, code, fl, mapped)
			}
		}
		switch {
		case code == "NoSuchBucket":
			if !errors.Is(mapped, ErrBucketNotFound) {
				t.Fatalf("classify(%d NoSuchBucket) = %v; want ErrBucketNotFound", status, mapped)
			}
		case code == "PreconditionFailed" || status == http.StatusPreconditionFailed:
			if fl != failPrecondition {
				t.Fatalf("classify(%d %q) = %v; want failPrecondition", status, code, fl)
			}
		case status >= 500 && status != http.StatusNotImplemented && code != "NotImplemented" &&
			code != "AccessDenied" && code != "ConditionalRequestConflict" && code != "NoSuchKey":
			if fl != failTransient {
				t.Fatalf("classify(%d %q) = %v; want failTransient", status, code, fl)
			}
		}
	})
}

// TestClassifyCanceled: a cancelled context is reported as such, never as
// an S3 failure.
func TestClassifyCanceled(t *testing.T) {
	for _, err := range []error{
		&smithy.CanceledError{Err: errors.New("canceled")},
		errors.Join(errors.New("x"), context.Canceled),
	} {
		if fl, mapped := classify(err, "b"); fl != failCanceled || mapped != err {
			t.Errorf("classify(%v) = %v, %v; want failCanceled with the same error", err, fl, mapped)
		}
	}
}

type failingBody struct{}

func (failingBody) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

func (failingBody) Close() error { return nil }

type bodyFails struct{ S3API }

func (c bodyFails) GetObject(ctx context.Context, in *s3.GetObjectInput, o ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	out, err := c.S3API.GetObject(ctx, in, o...)
	if err == nil {
		out.Body.Close()
		out.Body = failingBody{}
	}
	return out, err
}

// TestBodyReadFailureIsUnavailable: a connection that drops while the
// lock object's body is read is an S3 failure like any other: the error
// Lock returns once WithFailureTimeout gives up matches ErrUnavailable,
// as Lock's doc promises.
func TestBodyReadFailureIsUnavailable(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	key := "locks/body-read-fails"
	holder, _ := New(srv.Client(), srv.Bucket(), key)
	if err := holder.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	defer holder.Unlock(ctx)
	m, err := New(bodyFails{srv.Client()}, srv.Bucket(), key, WithRetryInterval(20*time.Millisecond), WithFailureTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	err = m.Lock(ctx)
	t.Logf("Lock() = %v", err)
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Lock() after WithFailureTimeout = %v; want it to match ErrUnavailable", err)
	}
}

// TestClassifyHelpers: httpStatus, errorCode, refusedOperation and describe
// find the status and code of an SDK error however deeply it is wrapped,
// and report none for errors that carry none.
func TestClassifyHelpers(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		status   int
		code     string
		refused  bool
		describe string
	}{
		{name: "412", err: apiError(412, "PreconditionFailed"), status: 412, code: "PreconditionFailed", describe: "412 PreconditionFailed"},
		{name: "wrapped 403", err: fmt.Errorf("put: %w", apiError(403, "AccessDenied")), status: 403, code: "AccessDenied", refused: true, describe: "403 AccessDenied"},
		{name: "501", err: apiError(501, "NotImplemented"), status: 501, code: "NotImplemented", refused: true, describe: "501 NotImplemented"},
		{name: "405", err: apiError(405, "MethodNotAllowed"), status: 405, code: "MethodNotAllowed", refused: true, describe: "405 MethodNotAllowed"},
		{name: "code alone", err: apiError(0, "AccessDenied"), code: "AccessDenied", refused: true, describe: "AccessDenied"},
		{name: "404", err: apiError(404, "NoSuchKey"), status: 404, code: "NoSuchKey", describe: "404 NoSuchKey"},
		{name: "503", err: apiError(503, "SlowDown"), status: 503, code: "SlowDown", describe: "503 SlowDown"},
		{name: "transport", err: io.ErrUnexpectedEOF, describe: "error: unexpected EOF"},
		{name: "nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := httpStatus(tt.err); got != tt.status {
				t.Errorf("httpStatus(%v) = %d; want %d", tt.err, got, tt.status)
			}
			if got := errorCode(tt.err); got != tt.code {
				t.Errorf("errorCode(%v) = %q; want %q", tt.err, got, tt.code)
			}
			if got := refusedOperation(tt.err); got != tt.refused {
				t.Errorf("refusedOperation(%v) = %v; want %v", tt.err, got, tt.refused)
			}
			if tt.err == nil {
				return
			}
			if got := describe(tt.err); got != tt.describe {
				t.Errorf("describe(%v) = %q; want %q", tt.err, got, tt.describe)
			}
		})
	}
}

package s3locktest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Counter is an integer kept as decimal text in one S3 object and changed
// with a plain GET then PUT. That read-modify-write is deliberately not
// atomic: increments from concurrent writers get lost unless a lock keeps
// them apart, which makes it the standard witness for lock tests (the final
// value equals the number of critical sections only if none overlapped).
type Counter struct {
	Client *s3.Client
	Bucket string
	Key    string
}

// Get returns the counter's value; a missing object is 0. On failure it
// returns the S3 error, or one saying what the object held instead of a
// number.
func (c *Counter) Get(ctx context.Context) (int, error) {
	out, err := c.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: &c.Bucket, Key: &c.Key})
	if err != nil {
		var re *awshttp.ResponseError
		if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound {
			return 0, nil
		}
		return 0, fmt.Errorf("s3locktest: reading counter %q: %w", c.Key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, 64))
	if err != nil {
		return 0, fmt.Errorf("s3locktest: reading counter %q: %w", c.Key, err)
	}
	n, err := strconv.Atoi(string(b))
	if err != nil {
		return 0, fmt.Errorf("s3locktest: counter %q holds %q, not a number", c.Key, b)
	}
	return n, nil
}

// Set writes n, unconditionally.
func (c *Counter) Set(ctx context.Context, n int) error {
	_, err := c.Client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &c.Bucket, Key: &c.Key, Body: strings.NewReader(strconv.Itoa(n)),
	})
	if err != nil {
		return fmt.Errorf("s3locktest: writing counter %q: %w", c.Key, err)
	}
	return nil
}

// Increment does one non-atomic GET → +1 → PUT and returns the new value.
func (c *Counter) Increment(ctx context.Context) (int, error) {
	n, err := c.Get(ctx)
	if err != nil {
		return 0, err
	}
	return n + 1, c.Set(ctx, n+1)
}

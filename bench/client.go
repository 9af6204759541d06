package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock/s3locktest"
)

// target is the S3 the bench talks to.
type target struct {
	// Endpoint is the S3 endpoint URL ("" for AWS's default endpoints).
	Endpoint string `json:"endpoint,omitempty"`
	Region   string `json:"region"`
	Bucket   string `json:"bucket"`
	// PathStyle selects path-style addressing (needed by most
	// S3-compatible servers).
	PathStyle bool `json:"path_style,omitempty"`
	// Embedded is the bench's own server: dummy static credentials, and
	// requests are counted by the server rather than by the client.
	Embedded bool `json:"embedded,omitempty"`
}

// s3Client is a client with its own HTTP transport, and that transport's
// counter of lock-object requests when the requests are counted on the
// client side.
type s3Client struct {
	*s3.Client
	counter   *s3locktest.Stats // nil when the server counts
	transport *http.Transport
}

func (c *s3Client) close() { c.transport.CloseIdleConnections() }

// lockCounter sends requests to lock objects through counted and the
// others through next.
type lockCounter struct {
	bucket        string
	counted, next http.RoundTripper
}

func (t lockCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	key, ok := objectKey(r.URL.Path, t.bucket)
	if !ok {
		// Virtual-hosted style: the path is the key.
		key = strings.TrimPrefix(r.URL.Path, "/")
	}
	if strings.HasPrefix(key, lockPrefix) {
		return t.counted.RoundTrip(r)
	}
	return t.next.RoundTrip(r)
}

// newClient returns a client for t with its own connection pool.
func (t target) newClient(ctx context.Context) (*s3Client, error) {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     30 * time.Second,
	}
	c := &s3Client{transport: tr}
	var rt http.RoundTripper = tr
	if !t.Embedded {
		c.counter = &s3locktest.Stats{}
		rt = lockCounter{bucket: t.Bucket, counted: c.counter.Transport(tr), next: tr}
	}
	httpClient := &http.Client{Transport: rt}
	opts := func(o *s3.Options) {
		o.HTTPClient = httpClient
		o.UsePathStyle = t.PathStyle
		if t.Endpoint != "" {
			o.BaseEndpoint = aws.String(t.Endpoint)
		}
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	}
	if t.Embedded {
		c.Client = s3.New(s3.Options{
			Region:      t.Region,
			Credentials: credentials.NewStaticCredentialsProvider("bench", "bench", ""),
		}, opts)
		return c, nil
	}
	var loadOpts []func(*config.LoadOptions) error
	if t.Region != "" {
		loadOpts = append(loadOpts, config.WithRegion(t.Region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("loading the AWS configuration: %w", err)
	}
	c.Client = s3.NewFromConfig(cfg, opts)
	return c, nil
}

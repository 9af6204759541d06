package main

import (
	"context"
	"net/url"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/spf13/cobra"

	"github.com/s3lock/s3lock"
)

const awsHelp = `
AWS configuration is the SDK's usual chain: AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, SSO, web identity, ECS and EC2
roles), AWS_REGION, and endpoints from AWS_ENDPOINT_URL_S3 or
AWS_ENDPOINT_URL. The flags above override them. With a custom endpoint,
request checksums are sent only where S3 requires them, unless
AWS_REQUEST_CHECKSUM_CALCULATION says otherwise.
`

// awsFlags are the AWS settings every command accepts.
type awsFlags struct {
	profile     string
	region      string
	endpoint    string
	pathStyle   bool
	bucketOwner string
}

func (a *awsFlags) register(c *cobra.Command) {
	fs := c.Flags()
	fs.StringVar(&a.profile, "profile", "", "use this `name`d profile from the AWS config files (default $AWS_PROFILE)")
	fs.StringVar(&a.region, "region", "", "AWS `region` of the bucket (default $AWS_REGION or the profile's)")
	fs.StringVar(&a.endpoint, "endpoint-url", "", "S3 endpoint `URL`, for S3-compatible stores (default $AWS_ENDPOINT_URL_S3 or $AWS_ENDPOINT_URL)")
	fs.BoolVar(&a.pathStyle, "path-style", false, "address buckets as URL/bucket/key instead of bucket.host (most S3-compatible stores need it)")
	fs.StringVar(&a.bucketOwner, "expected-bucket-owner", "", "send this AWS `account-id` as x-amz-expected-bucket-owner on every request, so S3 refuses a bucket owned by another account")
}

// lockClient is client, wrapped to send --expected-bucket-owner when set.
func (a *awsFlags) lockClient(ctx context.Context) (s3lock.S3API, error) {
	c, err := a.client(ctx)
	switch {
	case err != nil:
		return nil, err
	case a.bucketOwner == "":
		return c, nil
	}
	pinned, err := s3lock.ExpectBucketOwner(c, a.bucketOwner)
	if err != nil {
		return nil, withCode(exitUsage, err)
	}
	return pinned, nil
}

// credentialsTimeout bounds the up-front credentials check.
const credentialsTimeout = 20 * time.Second

// client loads the AWS configuration and returns an S3 client. It fails,
// with exitUsage, when the configuration is unusable: unknown profile, no
// region, no credentials, malformed endpoint.
func (a *awsFlags) client(ctx context.Context) (*s3.Client, error) {
	if a.endpoint != "" {
		u, err := url.Parse(a.endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, usageErr("malformed --endpoint-url %q: want http(s)://host[:port]", a.endpoint)
		}
	}
	var opts []func(*config.LoadOptions) error
	if a.profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(a.profile))
	}
	if a.region != "" {
		opts = append(opts, config.WithRegion(a.region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, usageErr("loading AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, usageErr("no AWS region: set --region, AWS_REGION or a region in the profile")
	}
	if cfg.Credentials == nil {
		return nil, usageErr("no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or --profile)")
	}
	cctx, cancel := context.WithTimeout(ctx, credentialsTimeout)
	defer cancel()
	if _, err := cfg.Credentials.Retrieve(cctx); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, usageErr("no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or --profile): %w", err)
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if a.endpoint != "" {
			o.BaseEndpoint = aws.String(a.endpoint)
		}
		o.UsePathStyle = a.pathStyle
		// The SDK would otherwise log at Debug, on stderr, for every
		// lock read that carries no checksum.
		o.DisableLogOutputChecksumValidationSkipped = true
		if o.BaseEndpoint != nil {
			// S3-compatible stores often reject the SDK's default
			// checksums; keep them to what S3 requires unless the
			// environment asks for more.
			if os.Getenv("AWS_REQUEST_CHECKSUM_CALCULATION") == "" {
				o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
			}
			if os.Getenv("AWS_RESPONSE_CHECKSUM_VALIDATION") == "" {
				o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
			}
		}
	})
	return client, nil
}

package s3http_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"go.uber.org/goleak"

	"github.com/s3lock/s3lock/internal/s3http"
	"github.com/s3lock/s3lock/s3locktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestProxy checks that a Proxy passes requests on, with the changes its
// intercept makes, and that an intercept can answer with an S3 error the
// SDK decodes.
func TestProxy(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	via := func(url string) *s3.Client {
		return srv.Client(func(o *s3.Options) {
			o.BaseEndpoint = aws.String(url)
			o.RetryMaxAttempts = 1
		})
	}
	put := func(c *s3.Client, key string, ifNoneMatch bool) error {
		in := &s3.PutObjectInput{Bucket: aws.String(srv.Bucket()), Key: aws.String(key), Body: strings.NewReader("v")}
		if ifNoneMatch {
			in.IfNoneMatch = aws.String("*")
		}
		_, err := c.PutObject(ctx, in)
		return err
	}

	t.Run("nil intercept passes everything on", func(t *testing.T) {
		c := via(s3http.Proxy(t, srv.URL(), nil))
		if err := put(c, "plain", false); err != nil {
			t.Fatalf("PutObject() through the proxy = %v", err)
		}
		out, err := srv.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(srv.Bucket()), Key: aws.String("plain")})
		if err != nil {
			t.Fatalf("GetObject() of what the proxy passed on = %v", err)
		}
		out.Body.Close()
	})

	t.Run("changes to the request are passed on", func(t *testing.T) {
		c := via(s3http.Proxy(t, srv.URL(), func(_ http.ResponseWriter, r *http.Request) bool {
			r.Header.Del("If-None-Match")
			return false
		}))
		for i := range 2 {
			if err := put(c, "unconditional", true); err != nil {
				t.Fatalf("PutObject(If-None-Match: *) #%d through a proxy that drops the header = %v; want nil", i+1, err)
			}
		}
	})

	t.Run("intercept answers with WriteError", func(t *testing.T) {
		c := via(s3http.Proxy(t, srv.URL(), func(w http.ResponseWriter, r *http.Request) bool {
			if !s3http.IsMethod(http.MethodPut)(r) {
				return false
			}
			s3http.WriteError(w, http.StatusServiceUnavailable, "SlowDown", "refused by the proxy")
			return true
		}))
		err := put(c, "refused", false)
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != "SlowDown" || ae.ErrorMessage() != "refused by the proxy" {
			t.Fatalf("PutObject() = %v; want an API error SlowDown: refused by the proxy", err)
		}
		if _, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(srv.Bucket()), Key: aws.String("refused")}); err == nil {
			t.Errorf("GetObject() of a refused PUT = nil; want an error (nothing written)")
		}
	})
}

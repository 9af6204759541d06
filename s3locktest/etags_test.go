package s3locktest_test

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock/s3locktest"
)

// TestRandomETags: with WithRandomETags, ETags are not the MD5 of the body,
// identical bodies get different ETags, a GET reports the ETag of the last
// write, and If-Match succeeds only with the current random ETag.
func TestRandomETags(t *testing.T) {
	for _, random := range []bool{false, true} {
		name := "md5"
		var opts []s3locktest.Option
		if random {
			name = "random"
			opts = append(opts, s3locktest.WithRandomETags())
		}
		t.Run(name, func(t *testing.T) {
			srv := s3locktest.New(t, opts...)
			c := srv.Client()
			ctx := context.Background()
			put := func(body, ifMatch string) (string, int) {
				t.Helper()
				in := &s3.PutObjectInput{Bucket: aws.String(srv.Bucket()), Key: aws.String("k"), Body: strings.NewReader(body)}
				if ifMatch != "" {
					in.IfMatch = aws.String(ifMatch)
				}
				out, err := c.PutObject(ctx, in)
				if err != nil {
					var re *awshttp.ResponseError
					if errors.As(err, &re) {
						return "", re.HTTPStatusCode()
					}
					t.Fatalf("PutObject() = %v", err)
				}
				return aws.ToString(out.ETag), http.StatusOK
			}
			sum := md5.Sum([]byte("same"))
			md5ETag := `"` + hex.EncodeToString(sum[:]) + `"`

			first, _ := put("same", "")
			second, code := put("same", first)
			if code != http.StatusOK {
				t.Fatalf("PutObject(If-Match: current ETag) = %d; want 200", code)
			}
			if got := first == md5ETag; got == random {
				t.Errorf("ETag %s == MD5 of the body %s is %v; want %v", first, md5ETag, got, !random)
			}
			if got := first == second; got == random {
				t.Errorf("identical bodies: ETags %s and %s equal is %v; want %v", first, second, got, !random)
			}
			out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(srv.Bucket()), Key: aws.String("k")})
			if err != nil {
				t.Fatal(err)
			}
			out.Body.Close()
			if aws.ToString(out.ETag) != second {
				t.Errorf("GetObject() ETag = %s; want %s, the last write's", aws.ToString(out.ETag), second)
			}
			if random {
				if _, code := put("other", first); code != http.StatusPreconditionFailed {
					t.Errorf("PutObject(If-Match: superseded ETag of an identical body) = %d; want 412", code)
				}
				if _, code := put("other", md5ETag); code != http.StatusPreconditionFailed {
					t.Errorf("PutObject(If-Match: MD5 of the body) = %d; want 412", code)
				}
				if _, code := put("other", strings.Trim(second, `"`)); code != http.StatusOK {
					t.Errorf("PutObject(If-Match: current ETag, unquoted) = %d; want 200", code)
				}
			}
		})
	}
}

package s3servers_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/goleak"

	"github.com/s3lock/s3lock/internal/s3servers"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestServers starts each local server, writes and reads an object, and
// checks that Close kills the process: its port stops answering.
func TestServers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(testing.TB) *s3servers.Server
	}{
		{"versitygw", s3servers.Versitygw},
		{"moto", s3servers.Moto},
		{"seaweedfs", s3servers.SeaweedFS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := tc.start(t)
			if srv.Name() != tc.name {
				t.Errorf("Name() = %q; want %q", srv.Name(), tc.name)
			}
			ctx := context.Background()
			c := srv.Client()
			body := []byte("hello " + tc.name)
			if _, err := c.PutObject(ctx, &s3.PutObjectInput{
				Bucket: aws.String(srv.Bucket()), Key: aws.String("k"), Body: bytes.NewReader(body),
			}); err != nil {
				t.Fatalf("PutObject() = %v", err)
			}
			out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(srv.Bucket()), Key: aws.String("k")})
			if err != nil {
				t.Fatalf("GetObject() = %v", err)
			}
			got, err := io.ReadAll(out.Body)
			out.Body.Close()
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("GetObject body = %q, %v; want %q", got, err, body)
			}
			if err := srv.CreateBucket(ctx, "second-bucket"); err != nil {
				t.Errorf("CreateBucket() = %v", err)
			}

			addr := srv.URL()[len("http://"):]
			srv.Close()
			srv.Close() // idempotent
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				conn.Close()
				t.Errorf("%s still accepts connections after Close", addr)
			}
		})
	}
}

func TestAWSSkipsWithoutBucket(t *testing.T) {
	if os.Getenv(s3servers.EnvAWSBucket) != "" {
		t.Skip("S3LOCK_TEST_BUCKET is set")
	}
	var skipped bool
	t.Run("aws", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		s3servers.AWS(t)
	})
	if !skipped {
		t.Errorf("AWS() without %s did not skip", s3servers.EnvAWSBucket)
	}
}

func TestMissingBinarySkips(t *testing.T) {
	t.Setenv(s3servers.EnvRequire, "")
	t.Setenv(s3servers.EnvVersitygw, "/nonexistent/versitygw")
	t.Setenv(s3servers.EnvMotoServer, "/nonexistent/moto_server")
	t.Setenv(s3servers.EnvWeed, "/nonexistent/weed")
	for name, start := range map[string]func(testing.TB) *s3servers.Server{
		"versitygw": s3servers.Versitygw,
		"moto":      s3servers.Moto,
		"seaweedfs": s3servers.SeaweedFS,
	} {
		var skipped bool
		t.Run(name, func(t *testing.T) {
			defer func() { skipped = t.Skipped() }()
			start(t)
		})
		if !skipped {
			t.Errorf("%s() with a missing binary did not skip", name)
		}
	}
}

func TestRequired(t *testing.T) {
	for _, tc := range []struct {
		env                      string
		versitygw, moto, seaweed bool
		invalid                  bool
	}{
		{env: ""},
		{env: "versitygw", versitygw: true},
		{env: "moto", moto: true},
		{env: "seaweedfs", seaweed: true},
		{env: "versitygw, moto", versitygw: true, moto: true},
		{env: "versitygw,seaweedfs", versitygw: true, seaweed: true},
		{env: "all", versitygw: true, moto: true, seaweed: true},
		{env: "1", invalid: true},
		{env: "versitygw,minio", invalid: true},
	} {
		t.Run(tc.env, func(t *testing.T) {
			t.Setenv(s3servers.EnvRequire, tc.env)
			v, verr := s3servers.Required(s3servers.NameVersitygw)
			m, merr := s3servers.Required(s3servers.NameMoto)
			w, werr := s3servers.Required(s3servers.NameSeaweedFS)
			if tc.invalid {
				if verr == nil || merr == nil || werr == nil {
					t.Errorf("Required() errors = %v, %v, %v; want errors", verr, merr, werr)
				}
				return
			}
			if err := errors.Join(verr, merr, werr); err != nil {
				t.Fatalf("Required() = %v", err)
			}
			if v != tc.versitygw || m != tc.moto || w != tc.seaweed {
				t.Errorf("Required(versitygw, moto, seaweedfs) = %v, %v, %v; want %v, %v, %v", v, m, w, tc.versitygw, tc.moto, tc.seaweed)
			}
		})
	}
}

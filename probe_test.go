package s3lock_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

// probeObjects lists the scratch objects left in the server's bucket.
func probeObjects(t *testing.T, srv *s3locktest.Server) []string {
	t.Helper()
	out, err := srv.Client().ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(srv.Bucket())})
	if err != nil {
		t.Fatalf("ListObjectsV2() = %v", err)
	}
	var keys []string
	for _, o := range out.Contents {
		if strings.Contains(aws.ToString(o.Key), ".s3lock-probe-") {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys
}

func TestProbePasses(t *testing.T) {
	srv := s3locktest.New(t)
	if err := s3lock.Probe(context.Background(), srv.Client(), srv.Bucket(), "locks/a"); err != nil {
		t.Fatalf("Probe() = %v; want nil", err)
	}
	if keys := probeObjects(t, srv); len(keys) != 0 {
		t.Errorf("scratch objects left behind: %v; want none (the client can delete)", keys)
	}
	c := srv.Stats().Snapshot()
	if c.Method(http.MethodPut) != 4 || c.Method(http.MethodDelete) != 1 {
		t.Errorf("server saw %d PUTs and %d DELETEs; want 4 and 1", c.Method(http.MethodPut), c.Method(http.MethodDelete))
	}
}

// probeProxy starts a reverse proxy in front of srv that lets rewrite change
// every request on its way, and returns a client that talks to the proxy.
func probeProxy(t *testing.T, srv *s3locktest.Server, rewrite func(h http.Header)) *s3.Client {
	t.Helper()
	target, err := url.Parse(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			rewrite(pr.Out.Header)
		},
		Transport: srv.HTTPClient().Transport,
	}
	ps := httptest.NewServer(rp)
	t.Cleanup(ps.Close)
	return srv.Client(func(o *s3.Options) { o.BaseEndpoint = aws.String(ps.URL) })
}

func TestProbeDetectsIgnoredConditions(t *testing.T) {
	tests := []struct {
		name     string
		client   func(t *testing.T, srv *s3locktest.Server) s3lock.S3API
		wantStep int // index of the failing step
	}{
		{"proxy strips both headers", func(t *testing.T, srv *s3locktest.Server) s3lock.S3API {
			return probeProxy(t, srv, func(h http.Header) { h.Del("If-None-Match"); h.Del("If-Match") })
		}, 1},
		{"proxy strips If-Match", func(t *testing.T, srv *s3locktest.Server) s3lock.S3API {
			return probeProxy(t, srv, func(h http.Header) { h.Del("If-Match") })
		}, 2},
		{"proxy breaks every If-Match", func(t *testing.T, srv *s3locktest.Server) s3lock.S3API {
			return probeProxy(t, srv, func(h http.Header) {
				if h.Get("If-Match") != "" {
					h.Set("If-Match", `"ffffffffffffffffffffffffffffffff"`)
				}
			})
		}, 3},
		{"server faults ignore conditions", func(t *testing.T, srv *s3locktest.Server) s3lock.S3API {
			srv.SetFaults(s3locktest.NewFaults(1, s3locktest.FaultConfig{IgnoreConditions: true}))
			return srv.Client()
		}, 1},
		{"client faults ignore conditions, answers dropped", func(t *testing.T, srv *s3locktest.Server) s3lock.S3API {
			return srv.FaultyClient(s3locktest.NewFaults(1, s3locktest.FaultConfig{IgnoreConditions: true, DropResponse: 0.3}))
		}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := s3locktest.New(t)
			err := s3lock.Probe(context.Background(), tt.client(t, srv), srv.Bucket(), "locks/")
			var pe *s3lock.ProbeError
			if !errors.Is(err, s3lock.ErrConditionalWritesUnsupported) || !errors.As(err, &pe) {
				t.Fatalf("Probe() = %v; want a *ProbeError matching ErrConditionalWritesUnsupported", err)
			}
			last := pe.Steps[len(pe.Steps)-1]
			if last.OK {
				t.Errorf("last step %+v is OK; want the failed one", last)
			}
			if tt.wantStep >= 0 && len(pe.Steps) != tt.wantStep+1 {
				t.Errorf("probe failed at step %d (%+v); want step %d", len(pe.Steps)-1, pe.Steps, tt.wantStep)
			}
			for _, s := range pe.Steps[:len(pe.Steps)-1] {
				if !s.OK {
					t.Errorf("step %+v before the last is not OK", s)
				}
			}
			if !strings.HasPrefix(pe.Key, "locks/.s3lock-probe-") || pe.Bucket != srv.Bucket() {
				t.Errorf("ProbeError names s3://%s/%s; want the scratch key under locks/", pe.Bucket, pe.Key)
			}
			t.Logf("Probe() = %v", err)
		})
	}
}

func TestProbeNotImplemented(t *testing.T) {
	srv := s3locktest.New(t)
	srv.SetFaults(s3locktest.NewFaults(1, s3locktest.FaultConfig{RejectConditions: true}))
	err := s3lock.Probe(context.Background(), srv.Client(), srv.Bucket(), "p/")
	var pe *s3lock.ProbeError
	if !errors.Is(err, s3lock.ErrConditionalWritesUnsupported) || !errors.As(err, &pe) {
		t.Fatalf("Probe() = %v; want a *ProbeError matching ErrConditionalWritesUnsupported", err)
	}
	if len(pe.Steps) != 1 || pe.Err == nil || !strings.Contains(pe.Steps[0].Got, "501") {
		t.Errorf("ProbeError = %+v; want step 1 failing with the 501 kept in Err", pe)
	}
	if keys := probeObjects(t, srv); len(keys) != 0 {
		t.Errorf("scratch objects left behind: %v", keys)
	}
}

// TestProbeSurvivesLostAnswers checks that the ambiguous-success trap does
// not make a good store look bad: every conditional write's answer is
// lost once, and the SDK's retries see 412 for the probe's own writes.
func TestProbeSurvivesLostAnswers(t *testing.T) {
	for _, fault := range []s3locktest.Fault{s3locktest.FaultDropResponse, s3locktest.FaultErrorAfterApply} {
		t.Run(string(fault), func(t *testing.T) {
			srv := s3locktest.New(t)
			f := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
			f.Inject(fault, 4, s3locktest.IsConditionalWrite)
			if err := s3lock.Probe(context.Background(), srv.FaultyClient(f), srv.Bucket(), "p/"); err != nil {
				t.Fatalf("Probe() = %v; want nil", err)
			}
			if got := f.Counts()[fault]; got != 4 {
				t.Errorf("faults injected = %d; want 4", got)
			}
		})
	}
}

func TestProbeInconclusive(t *testing.T) {
	srv := s3locktest.New(t)
	f := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
	f.Partition(1 << 62)
	err := s3lock.Probe(context.Background(), srv.FaultyClient(f), srv.Bucket(), "p/")
	var pe *s3lock.ProbeError
	if err == nil || errors.Is(err, s3lock.ErrConditionalWritesUnsupported) || errors.As(err, &pe) {
		t.Fatalf("Probe() through a partition = %v; want an error that does not blame the store", err)
	}
}

func TestProbeErrors(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	if err := s3lock.Probe(ctx, srv.Client(), "no-such-bucket", "p/"); !errors.Is(err, s3lock.ErrBucketNotFound) {
		t.Errorf("Probe(missing bucket) = %v; want ErrBucketNotFound", err)
	}
	if err := s3lock.Probe(ctx, nil, srv.Bucket(), "p/"); !errors.Is(err, s3lock.ErrInvalidArgument) {
		t.Errorf("Probe(nil client) = %v; want ErrInvalidArgument", err)
	}
	if err := s3lock.Probe(ctx, srv.Client(), "", "p/"); !errors.Is(err, s3lock.ErrInvalidArgument) {
		t.Errorf("Probe(empty bucket) = %v; want ErrInvalidArgument", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s3lock.Probe(cctx, srv.Client(), srv.Bucket(), "p/"); !errors.Is(err, context.Canceled) {
		t.Errorf("Probe(cancelled ctx) = %v; want context.Canceled", err)
	}
}

// s3apiOnly has only the S3API methods, not DeleteObject.
type s3apiOnly struct{ c *s3.Client }

func (n s3apiOnly) GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	return n.c.GetObject(ctx, in, optFns...)
}

func (n s3apiOnly) PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	return n.c.PutObject(ctx, in, optFns...)
}

func TestProbeWithoutDelete(t *testing.T) {
	srv := s3locktest.New(t)
	if err := s3lock.Probe(context.Background(), s3apiOnly{srv.Client()}, srv.Bucket(), "x/"); err != nil {
		t.Fatalf("Probe() = %v; want nil", err)
	}
	if keys := probeObjects(t, srv); len(keys) != 1 || !strings.HasPrefix(keys[0], "x/.s3lock-probe-") {
		t.Errorf("scratch objects = %v; want exactly one under x/ (no DeleteObject to remove it)", keys)
	}
}

func ExampleProbe() {
	srv, err := s3locktest.Start()
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	ctx := context.Background()

	fmt.Println("s3locktest:", s3lock.Probe(ctx, srv.Client(), srv.Bucket(), "locks/"))

	// A store that silently ignores If-None-Match and If-Match.
	srv.SetFaults(s3locktest.NewFaults(1, s3locktest.FaultConfig{IgnoreConditions: true}))
	err = s3lock.Probe(ctx, srv.Client(), srv.Bucket(), "locks/")
	fmt.Println("ignoring store:", errors.Is(err, s3lock.ErrConditionalWritesUnsupported))
	// Output:
	// s3locktest: <nil>
	// ignoring store: true
}

// TestWithProbe: a Mutex made WithProbe refuses a store that ignores
// conditional writes (where, without the probe, everyone would "acquire"),
// and on an honest store probes once and then locks as usual.
func TestWithProbe(t *testing.T) {
	ctx := context.Background()
	t.Run("store ignoring conditions", func(t *testing.T) {
		srv := s3locktest.New(t)
		srv.SetFaults(s3locktest.NewFaults(1, s3locktest.FaultConfig{IgnoreConditions: true}))
		a := newMutex(t, srv, "locks/probe", s3lock.WithProbe())
		if err := a.TryLock(ctx); !errors.Is(err, s3lock.ErrConditionalWritesUnsupported) {
			t.Fatalf("TryLock() = %v; want ErrConditionalWritesUnsupported", err)
		}
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := a.Lock(lctx); !errors.Is(err, s3lock.ErrConditionalWritesUnsupported) {
			t.Fatalf("Lock() = %v; want ErrConditionalWritesUnsupported at once", err)
		}
		if st, err := s3lock.Inspect(ctx, srv.Client(), srv.Bucket(), "locks/probe"); err != nil || st.Exists {
			t.Errorf("Inspect() = %+v, %v; want no lock object written", st, err)
		}
	})
	t.Run("honest store", func(t *testing.T) {
		srv := s3locktest.New(t)
		m := newMutex(t, srv, "locks/probe", s3lock.WithProbe())
		before := srv.Stats().Snapshot()
		if err := m.TryLock(ctx); err != nil {
			t.Fatalf("TryLock() = %v", err)
		}
		first := srv.Stats().Snapshot().Sub(before)
		if err := m.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		mid := srv.Stats().Snapshot()
		if err := m.Lock(ctx); err != nil {
			t.Fatalf("Lock() = %v", err)
		}
		again := srv.Stats().Snapshot().Sub(mid)
		if err := m.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if first.Method(http.MethodPut) < 5 {
			t.Errorf("first acquire made %d PUTs; want the probe's 4 plus the lock's", first.Method(http.MethodPut))
		}
		if again.Total() != 1 {
			t.Errorf("second acquire made %d requests; want 1 (the probe runs once)", again.Total())
		}
	})
}

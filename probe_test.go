package s3lock_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/internal/s3http"
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
	// The documented cost: 4 PUTs, 1 GET, 1 DELETE for the sequential
	// steps, and per race round 2×8 PUTs, 2 GETs and 1 DELETE; gofakes3 is
	// fast enough for all 8 rounds.
	c := srv.Stats().Snapshot()
	if got := [3]int64{c.Method(http.MethodPut), c.Method(http.MethodGet), c.Method(http.MethodDelete)}; got != [3]int64{132, 17, 9} {
		t.Errorf("server saw %d PUTs, %d GETs and %d DELETEs; want 132, 17 and 9", got[0], got[1], got[2])
	}
	if keys := probeObjects(t, srv); len(keys) != 0 {
		t.Errorf("scratch objects left behind: %v; want none (the client can delete)", keys)
	}
}

// racyTransport models a store that checks a condition and then writes
// without holding a lock across both: in one race round it holds back one
// conditional PUT of the given kind, strips its condition, and sends it
// only after another PUT on the same key has succeeded, so both succeed.
type racyTransport struct {
	next   http.RoundTripper
	header string // "If-None-Match" or "If-Match"
	round  int    // the race round to break; 0 for none

	mu   sync.Mutex // protects held
	held bool
	won  chan struct{} // closed once another PUT on the key succeeded
	once sync.Once
}

func (rt *racyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	target := r.Method == http.MethodPut && r.Header.Get(rt.header) != "" &&
		rt.round > 0 && strings.HasSuffix(r.URL.Path, fmt.Sprintf("-race-%d", rt.round))
	if !target {
		return rt.next.RoundTrip(r)
	}
	rt.mu.Lock()
	hold := !rt.held
	rt.held = true
	rt.mu.Unlock()
	if hold {
		select {
		case <-rt.won:
		case <-r.Context().Done():
			return nil, r.Context().Err()
		case <-time.After(10 * time.Second):
		}
		r = r.Clone(r.Context())
		r.Header.Del(rt.header)
		return rt.next.RoundTrip(r)
	}
	resp, err := rt.next.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusOK {
		rt.once.Do(func() { close(rt.won) })
	}
	return resp, err
}

// TestProbeCatchesRacingWinners: a store that honours every condition
// alone (the sequential steps pass) but lets two racers win one round must
// fail the probe, naming the race and the round.
func TestProbeCatchesRacingWinners(t *testing.T) {
	tests := []struct {
		name     string
		header   string
		round    int
		wantStep string // "" for a pass
		wantGot  string
	}{
		{"honest store through the wrapper", "If-Match", 0, "", ""},
		{"two creates win round 1", "If-None-Match", 1, "racing If-None-Match creates", "2 winners in round 1 of 8"},
		{"two If-Match writes win round 3", "If-Match", 3, "racing If-Match writes", "2 winners in round 3 of 8"},
		{"two If-Match writes win round 8", "If-Match", 8, "racing If-Match writes", "2 winners in round 8 of 8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := s3locktest.New(t)
			rt := &racyTransport{next: srv.HTTPClient().Transport, header: tt.header, round: tt.round, won: make(chan struct{})}
			c := srv.Client(func(o *s3.Options) { o.HTTPClient = &http.Client{Transport: rt} })
			err := s3lock.Probe(context.Background(), c, srv.Bucket(), "locks/")
			if tt.wantStep == "" {
				if err != nil {
					t.Fatalf("Probe() = %v; want nil", err)
				}
				return
			}
			var pe *s3lock.ProbeError
			if !errors.Is(err, s3lock.ErrConditionalWritesUnsupported) || !errors.As(err, &pe) {
				t.Fatalf("Probe() = %v; want a *ProbeError matching ErrConditionalWritesUnsupported", err)
			}
			last := pe.Steps[len(pe.Steps)-1]
			if last.Name != tt.wantStep || last.Got != tt.wantGot || last.OK {
				t.Errorf("failed step = %+v; want %q that got %q", last, tt.wantStep, tt.wantGot)
			}
			if want := tt.wantStep + ": got " + tt.wantGot; !strings.Contains(err.Error(), want) {
				t.Errorf("Probe() = %q; want it to say %q", err, want)
			}
			for _, s := range pe.Steps[:len(pe.Steps)-1] {
				if !s.OK {
					t.Errorf("step %+v before the last is not OK", s)
				}
			}
			if keys := probeObjects(t, srv); len(keys) != 0 {
				t.Errorf("scratch objects left behind: %v; want none", keys)
			}
		})
	}
}

// probeProxy starts a reverse proxy in front of srv that lets rewrite change
// every request on its way, and returns a client that talks to the proxy.
func probeProxy(t *testing.T, srv *s3locktest.Server, rewrite func(h http.Header)) *s3.Client {
	t.Helper()
	front := s3http.Proxy(t, srv.URL(), func(_ http.ResponseWriter, r *http.Request) bool {
		rewrite(r.Header)
		return false
	})
	return srv.Client(func(o *s3.Options) { o.BaseEndpoint = aws.String(front) })
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
			f.Inject(fault, 4, s3http.IsConditionalWrite)
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
	// The sequential steps' object and one per race round.
	keys := probeObjects(t, srv)
	if len(keys) != 9 {
		t.Errorf("scratch objects = %v; want 9 (no DeleteObject to remove them)", keys)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "x/.s3lock-probe-") {
			t.Errorf("scratch object %q; want it under x/.s3lock-probe-", k)
		}
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
		a := newMutex(t, srv.Client(), srv.Bucket(), "locks/probe", s3lock.WithProbe())
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
		m := newMutex(t, srv.Client(), srv.Bucket(), "locks/probe", s3lock.WithProbe())
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

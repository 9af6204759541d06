package s3locktest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"go.uber.org/goleak"

	"github.com/s3lock/s3lock/internal/s3http"
	"github.com/s3lock/s3lock/s3locktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// noRetry makes a client send each request once, so a test sees the fault
// itself rather than the SDK's recovery from it.
func noRetry(o *s3.Options) { o.RetryMaxAttempts = 1 }

// putIfAbsent writes body at key with If-None-Match: *.
func putIfAbsent(ctx context.Context, c *s3.Client, bucket, key, body string) error {
	_, err := c.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key),
		Body: strings.NewReader(body), IfNoneMatch: aws.String("*"),
	})
	return err
}

// getBody returns the object's body, or "" and the error.
func getBody(ctx context.Context, c *s3.Client, bucket, key string) (string, error) {
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return "", err
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	return string(b), err
}

func status(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// side is where a test installs its Faults: on one client or on the
// server.
type side struct {
	name   string
	client func(srv *s3locktest.Server, f *s3locktest.Faults, optFns ...func(*s3.Options)) *s3.Client
}

var sides = []side{
	{"client", func(srv *s3locktest.Server, f *s3locktest.Faults, optFns ...func(*s3.Options)) *s3.Client {
		return srv.FaultyClient(f, optFns...)
	}},
	{"server", func(srv *s3locktest.Server, f *s3locktest.Faults, optFns ...func(*s3.Options)) *s3.Client {
		srv.SetFaults(f)
		return srv.Client(optFns...)
	}},
}

func TestInjectedErrorsDecodeAsS3Errors(t *testing.T) {
	tests := []struct {
		fault      s3locktest.Fault
		wantStatus int
		wantCode   string
	}{
		{s3locktest.FaultInternalError, 500, "InternalError"},
		{s3locktest.FaultServiceUnavailable, 503, "ServiceUnavailable"},
		{s3locktest.FaultSlowDown, 503, "SlowDown"},
		{s3locktest.FaultConflict, 409, "ConditionalRequestConflict"},
		{s3locktest.FaultNotImplemented, 501, "NotImplemented"},
	}
	for _, sd := range sides {
		for _, tt := range tests {
			t.Run(sd.name+"/"+string(tt.fault), func(t *testing.T) {
				ctx := context.Background()
				srv := s3locktest.New(t)
				f := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
				c := sd.client(srv, f, noRetry)
				f.Inject(tt.fault, 1, s3http.IsConditionalWrite)
				err := putIfAbsent(ctx, c, srv.Bucket(), "k", "v1")
				if status(err) != tt.wantStatus || code(err) != tt.wantCode {
					t.Fatalf("PutObject() = %v (status %d, code %q); want status %d, code %q", err, status(err), code(err), tt.wantStatus, tt.wantCode)
				}
				if got := f.Counts()[tt.fault]; got != 1 {
					t.Errorf("Counts()[%q] = %d; want 1", tt.fault, got)
				}
				// Not applied: the key is still absent, so a create succeeds.
				if err := putIfAbsent(ctx, c, srv.Bucket(), "k", "v2"); err != nil {
					t.Fatalf("PutObject() after the fault = %v; want nil (the faulted write must not have been applied)", err)
				}
			})
		}
	}
}

// TestDropResponseReproducesTrap shows the ambiguous-success trap: the
// write is applied, its answer is lost, and the SDK's retry reports 412
// for a write that was ours.
func TestDropResponseReproducesTrap(t *testing.T) {
	for _, sd := range sides {
		for _, fault := range []s3locktest.Fault{s3locktest.FaultDropResponse, s3locktest.FaultErrorAfterApply} {
			t.Run(sd.name+"/"+string(fault), func(t *testing.T) {
				ctx := context.Background()
				srv := s3locktest.New(t)
				f := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
				c := sd.client(srv, f)
				f.Inject(fault, 1, s3http.IsConditionalWrite)
				err := putIfAbsent(ctx, c, srv.Bucket(), "k", "ours")
				if status(err) != http.StatusPreconditionFailed {
					t.Fatalf("PutObject() = %v; want 412 from the SDK's retry of an applied write", err)
				}
				got, gerr := getBody(ctx, srv.Client(), srv.Bucket(), "k")
				if gerr != nil || got != "ours" {
					t.Fatalf("object = %q, %v; want %q (the first attempt was applied)", got, gerr, "ours")
				}
				if n := f.Pending(); n != 0 {
					t.Errorf("Pending() = %d; want 0", n)
				}
			})
		}
	}
}

func TestDropResponseWithoutRetryIsTransportError(t *testing.T) {
	for _, sd := range sides {
		t.Run(sd.name, func(t *testing.T) {
			ctx := context.Background()
			srv := s3locktest.New(t)
			f := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
			c := sd.client(srv, f, noRetry)
			f.Inject(s3locktest.FaultDropResponse, 1, nil)
			err := putIfAbsent(ctx, c, srv.Bucket(), "k", "ours")
			if err == nil || status(err) != 0 {
				t.Fatalf("PutObject() = %v; want a transport error with no HTTP status", err)
			}
			if got, _ := getBody(ctx, srv.Client(), srv.Bucket(), "k"); got != "ours" {
				t.Fatalf("object = %q; want %q", got, "ours")
			}
		})
	}
}

func TestIgnoreConditions(t *testing.T) {
	for _, sd := range sides {
		t.Run(sd.name, func(t *testing.T) {
			ctx := context.Background()
			srv := s3locktest.New(t)
			f := s3locktest.NewFaults(1, s3locktest.FaultConfig{IgnoreConditions: true})
			c := sd.client(srv, f, noRetry)
			for _, body := range []string{"first", "second"} {
				if err := putIfAbsent(ctx, c, srv.Bucket(), "k", body); err != nil {
					t.Fatalf("PutObject(%q) = %v; want nil from a store ignoring If-None-Match", body, err)
				}
			}
			if got, _ := getBody(ctx, srv.Client(), srv.Bucket(), "k"); got != "second" {
				t.Errorf("object = %q; want %q", got, "second")
			}
			if got := f.Counts()[s3locktest.FaultIgnoreConditions]; got != 2 {
				t.Errorf("Counts()[ignored] = %d; want 2", got)
			}
			// Turned off, the store honours the header again.
			f.Set(s3locktest.FaultConfig{})
			if err := putIfAbsent(ctx, c, srv.Bucket(), "k", "third"); status(err) != http.StatusPreconditionFailed {
				t.Errorf("PutObject() with faults off = %v; want 412", err)
			}
		})
	}
}

func TestPartition(t *testing.T) {
	for _, sd := range sides {
		t.Run(sd.name, func(t *testing.T) {
			ctx := context.Background()
			srv := s3locktest.New(t)
			f := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
			c := sd.client(srv, f, noRetry)
			other := srv.Client(noRetry)
			f.Partition(time.Hour)
			if !f.Partitioned() {
				t.Fatal("Partitioned() = false; want true")
			}
			before := srv.Stats().Snapshot()
			if err := putIfAbsent(ctx, c, srv.Bucket(), "k", "cut off"); err == nil || status(err) != 0 {
				t.Fatalf("PutObject() during a partition = %v; want a transport error", err)
			}
			if sd.name == "client" {
				// Only the partitioned client is cut off.
				if err := putIfAbsent(ctx, other, srv.Bucket(), "other", "x"); err != nil {
					t.Fatalf("other client's PutObject() = %v; want nil", err)
				}
			}
			if got, err := getBody(ctx, srv.Client(), srv.Bucket(), "k"); err == nil {
				t.Fatalf("object = %q; want none (a partitioned request must not be applied)", got)
			}
			if d := srv.Stats().Snapshot().Sub(before); d.Method(http.MethodPut) > 1 {
				t.Errorf("server saw %d PUTs; want at most the other client's one", d.Method(http.MethodPut))
			}
			f.Heal()
			if f.Partitioned() {
				t.Fatal("Partitioned() after Heal = true")
			}
			if err := putIfAbsent(ctx, c, srv.Bucket(), "k", "healed"); err != nil {
				t.Fatalf("PutObject() after Heal = %v; want nil", err)
			}
			if got := f.Counts()[s3locktest.FaultPartition]; got < 1 {
				t.Errorf("Counts()[partitioned] = %d; want >= 1", got)
			}
		})
	}
}

func TestPartitionWindowEnds(t *testing.T) {
	srv := s3locktest.New(t)
	f := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
	c := srv.FaultyClient(f, noRetry)
	f.Partition(150 * time.Millisecond)
	deadline := time.Now().Add(30 * time.Second)
	for f.Partitioned() {
		if time.Now().After(deadline) {
			t.Fatal("partition window of 150ms still open after 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := putIfAbsent(context.Background(), c, srv.Bucket(), "k", "v"); err != nil {
		t.Fatalf("PutObject() after the window = %v; want nil", err)
	}
}

func TestBlackhole(t *testing.T) {
	for _, sd := range sides {
		t.Run(sd.name, func(t *testing.T) {
			srv := s3locktest.New(t)
			f := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
			c := sd.client(srv, f, noRetry)

			// A held request ends with its context.
			f.Blackhole(time.Hour)
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			err := putIfAbsent(ctx, c, srv.Bucket(), "k", "lost")
			cancel()
			if err == nil {
				t.Fatal("PutObject() into a blackhole = nil; want an error")
			}
			if sd.name == "client" && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("PutObject() into a blackhole = %v; want context.DeadlineExceeded", err)
			}

			// Heal releases the requests the window holds, failed.
			done := make(chan error, 1)
			go func() { done <- putIfAbsent(context.Background(), c, srv.Bucket(), "k", "held") }()
			for f.Counts()[s3locktest.FaultPartition] < 2 {
				time.Sleep(5 * time.Millisecond)
			}
			f.Heal()
			if err := <-done; err == nil {
				t.Fatal("PutObject() released by Heal = nil; want an error (the request was lost)")
			}
			if got, err := getBody(context.Background(), srv.Client(), srv.Bucket(), "k"); err == nil {
				t.Fatalf("object = %q; want none", got)
			}
			if err := putIfAbsent(context.Background(), c, srv.Bucket(), "k", "after"); err != nil {
				t.Fatalf("PutObject() after Heal = %v; want nil", err)
			}
		})
	}
}

// outcomes sends n GETs through f with a plain HTTP client and returns
// what each one met.
func outcomes(t *testing.T, srv *s3locktest.Server, f *s3locktest.Faults, n int) []string {
	t.Helper()
	hc := srv.HTTPClient()
	hc.Transport = f.Wrap(hc.Transport)
	url := srv.URL() + "/" + srv.Bucket() + "/missing"
	var got []string
	for range n {
		resp, err := hc.Get(url)
		if err != nil {
			got = append(got, "error")
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		got = append(got, fmt.Sprint(resp.StatusCode))
	}
	return got
}

func TestFaultsReplayFromSeed(t *testing.T) {
	srv := s3locktest.New(t)
	cfg := s3locktest.FaultConfig{InternalError: 0.2, ServiceUnavailable: 0.1, DropResponse: 0.1}
	a := outcomes(t, srv, s3locktest.NewFaults(42, cfg), 200)
	b := outcomes(t, srv, s3locktest.NewFaults(42, cfg), 200)
	c := outcomes(t, srv, s3locktest.NewFaults(43, cfg), 200)
	if strings.Join(a, ",") != strings.Join(b, ",") {
		t.Errorf("two runs with seed 42 differ:\n%v\n%v", a, b)
	}
	if strings.Join(a, ",") == strings.Join(c, ",") {
		t.Errorf("seeds 42 and 43 gave the same 200 outcomes: %v", a)
	}
}

func TestFaultRates(t *testing.T) {
	srv := s3locktest.New(t)
	const n = 1000
	cfg := s3locktest.FaultConfig{InternalError: 0.3, Conflict: 0.5, DropResponse: 0.1}
	f := s3locktest.NewFaults(7, cfg)
	got := outcomes(t, srv, f, n)
	count := map[string]int{}
	for _, o := range got {
		count[o]++
	}
	within := func(k int, p float64) bool {
		sd := math.Sqrt(n * p * (1 - p))
		return math.Abs(float64(k)-n*p) <= 5*sd
	}
	// GETs are not conditional writes: the 409 band lets them through.
	if count["409"] != 0 {
		t.Errorf("%d GETs got 409; want 0 (409 only hits conditional writes)", count["409"])
	}
	if !within(count["500"], 0.3) {
		t.Errorf("%d of %d requests got 500; want about %d", count["500"], n, int(0.3*n))
	}
	if !within(count["error"], 0.1) {
		t.Errorf("%d of %d requests were dropped; want about %d", count["error"], n, int(0.1*n))
	}
	c := f.Counts()
	if c[s3locktest.FaultInternalError] != int64(count["500"]) || c[s3locktest.FaultDropResponse] != int64(count["error"]) {
		t.Errorf("Counts() = %v; want 500: %d, dropped: %d", c, count["500"], count["error"])
	}
	if f.Requests() != n {
		t.Errorf("Requests() = %d; want %d", f.Requests(), n)
	}
	if c.Failures() != int64(count["500"]+count["error"]) {
		t.Errorf("Failures() = %d; want %d", c.Failures(), count["500"]+count["error"])
	}
}

func TestFaultMatch(t *testing.T) {
	ctx := context.Background()
	srv := s3locktest.New(t)
	f := s3locktest.NewFaults(1, s3locktest.FaultConfig{InternalError: 1, Match: s3http.IsMethod(http.MethodGet)})
	c := srv.FaultyClient(f, noRetry)
	if err := putIfAbsent(ctx, c, srv.Bucket(), "k", "v"); err != nil {
		t.Fatalf("PutObject() = %v; want nil (Match selects GETs only)", err)
	}
	if _, err := getBody(ctx, c, srv.Bucket(), "k"); status(err) != 500 {
		t.Fatalf("GetObject() = %v; want 500", err)
	}
}

func TestLatency(t *testing.T) {
	srv := s3locktest.New(t)
	f := s3locktest.NewFaults(1, s3locktest.FaultConfig{Latency: 30 * time.Millisecond, Jitter: 10 * time.Millisecond})
	c := srv.FaultyClient(f, noRetry)
	start := time.Now()
	if err := putIfAbsent(context.Background(), c, srv.Bucket(), "k", "v"); err != nil {
		t.Fatalf("PutObject() = %v", err)
	}
	// A lower bound only: the delay must have happened.
	if el := time.Since(start); el < 30*time.Millisecond {
		t.Errorf("PutObject() took %v; want >= 30ms of injected latency", el)
	}
	if got := f.Counts()[s3locktest.FaultLatency]; got != 1 {
		t.Errorf("Counts()[latency] = %d; want 1", got)
	}
	if f.Counts().Failures() != 0 {
		t.Errorf("Failures() = %d; want 0", f.Counts().Failures())
	}
}

func TestNewFaultsRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  s3locktest.FaultConfig
	}{
		{"negative rate", s3locktest.FaultConfig{InternalError: -0.1}},
		{"rate above 1", s3locktest.FaultConfig{DropResponse: 1.5}},
		{"NaN rate", s3locktest.FaultConfig{Conflict: math.NaN()}},
		{"sum above 1", s3locktest.FaultConfig{InternalError: 0.6, SlowDown: 0.6}},
		{"negative jitter", s3locktest.FaultConfig{Jitter: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("NewFaults(%+v) did not panic", tt.cfg)
				}
			}()
			s3locktest.NewFaults(1, tt.cfg)
		})
	}
}

func TestFaultCountsString(t *testing.T) {
	c := s3locktest.FaultCounts{s3locktest.FaultInternalError: 2, s3locktest.FaultConflict: 1}
	c.Add(s3locktest.FaultCounts{s3locktest.FaultInternalError: 3})
	if got, want := c.String(), "409 ConditionalRequestConflict: 1, 500 InternalError: 5"; got != want {
		t.Errorf("String() = %q; want %q", got, want)
	}
	if got := (s3locktest.FaultCounts{}).String(); got != "none" {
		t.Errorf("empty String() = %q; want %q", got, "none")
	}
}

func TestSkewedClock(t *testing.T) {
	for _, skew := range []time.Duration{time.Hour, -time.Hour} {
		got := time.Until(s3locktest.SkewedClock{Skew: skew}.Now())
		if diff := got - skew; diff < -time.Minute || diff > time.Minute {
			t.Errorf("SkewedClock{%v}.Now() is %v from now; want about %v", skew, got, skew)
		}
	}
}

// TestServerFaultsAffectAllClients checks the server-side switch: every
// client meets the faults until they are turned off.
func TestServerFaultsAffectAllClients(t *testing.T) {
	ctx := context.Background()
	srv := s3locktest.New(t)
	f := s3locktest.NewFaults(1, s3locktest.FaultConfig{ServiceUnavailable: 1})
	srv.SetFaults(f)
	for i := range 2 {
		c := srv.Client(noRetry)
		if err := putIfAbsent(ctx, c, srv.Bucket(), fmt.Sprint("k", i), "v"); status(err) != 503 {
			t.Errorf("client %d PutObject() = %v; want 503", i, err)
		}
	}
	srv.SetFaults(nil)
	if err := putIfAbsent(ctx, srv.Client(noRetry), srv.Bucket(), "k0", "v"); err != nil {
		t.Errorf("PutObject() with server faults off = %v; want nil", err)
	}
}

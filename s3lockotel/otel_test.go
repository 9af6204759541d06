package s3lockotel_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3lockotel"
	"github.com/s3lock/s3lock/s3locktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// telemetry is an SDK setup whose metrics and spans a test reads.
type telemetry struct {
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
	opt    s3lock.Option
}

func newTelemetry(t *testing.T) *telemetry {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
		_ = tp.Shutdown(context.Background())
	})
	return &telemetry{reader: reader, spans: spans,
		opt: s3lockotel.Instrument(s3lockotel.WithMeterProvider(mp), s3lockotel.WithTracerProvider(tp))}
}

// metrics collects the metrics, by name.
func (tm *telemetry) metrics(t *testing.T) map[string]metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tm.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("Collect() = %v", err)
	}
	out := map[string]metricdata.Aggregation{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != s3lockotel.ScopeName {
			t.Errorf("scope = %q; want %q", sm.Scope.Name, s3lockotel.ScopeName)
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m.Data
		}
	}
	return out
}

func attrs(kv ...attribute.KeyValue) attribute.Set { return attribute.NewSet(kv...) }

// histCount returns the count of the histogram's point with attributes a.
func histCount(t *testing.T, ms map[string]metricdata.Aggregation, name string, a attribute.Set) (uint64, float64) {
	t.Helper()
	h, ok := ms[name].(metricdata.Histogram[float64])
	if !ok {
		if ms[name] != nil {
			t.Fatalf("%s is a %T; want a float64 histogram", name, ms[name])
		}
		return 0, 0
	}
	for _, p := range h.DataPoints {
		if p.Attributes.Equals(&a) {
			return p.Count, p.Sum
		}
	}
	return 0, 0
}

// sum returns the value of the sum's point with attributes a.
func sum(t *testing.T, ms map[string]metricdata.Aggregation, name string, a attribute.Set) int64 {
	t.Helper()
	s, ok := ms[name].(metricdata.Sum[int64])
	if !ok {
		if ms[name] != nil {
			t.Fatalf("%s is a %T; want an int64 sum", name, ms[name])
		}
		return 0
	}
	for _, p := range s.DataPoints {
		if p.Attributes.Equals(&a) {
			return p.Value
		}
	}
	return 0
}

// sumAll returns the total of the sum's points.
func sumAll(t *testing.T, ms map[string]metricdata.Aggregation, name string) int64 {
	t.Helper()
	s, _ := ms[name].(metricdata.Sum[int64])
	var n int64
	for _, p := range s.DataPoints {
		n += p.Value
	}
	return n
}

var (
	outcome = s3lockotel.KeyOutcome.String
	op      = func(o s3lock.Op) attribute.KeyValue { return s3lockotel.KeyOperation.String(string(o)) }
	method  = attribute.Key("http.request.method").String
)

func spanAttr(s sdktrace.ReadOnlySpan, k attribute.Key) attribute.Value {
	for _, kv := range s.Attributes() {
		if kv.Key == k {
			return kv.Value
		}
	}
	return attribute.Value{}
}

func spansNamed(tm *telemetry, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range tm.spans.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func newMutex(t *testing.T, srv *s3locktest.Server, key string, opts ...s3lock.Option) *s3lock.Mutex {
	t.Helper()
	m, err := s3lock.New(srv.Client(), srv.Bucket(), key, opts...)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	return m
}

func TestAcquireRelease(t *testing.T) {
	srv := s3locktest.New(t)
	tm := newTelemetry(t)
	ctx := context.Background()
	m := newMutex(t, srv, "locks/otel", tm.opt)
	before := srv.Stats().Snapshot()

	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("TryLock() = %v; want nil", err)
	}
	if got := sum(t, tm.metrics(t), "s3lock.hold.active", attrs()); got != 1 {
		t.Errorf("s3lock.hold.active while held = %d; want 1", got)
	}
	time.Sleep(10 * time.Millisecond)
	if err := m.Unlock(ctx); err != nil {
		t.Fatalf("Unlock() = %v; want nil", err)
	}
	if err := m.Lock(ctx); err != nil {
		t.Fatalf("Lock() = %v; want nil", err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatalf("Unlock() = %v; want nil", err)
	}

	ms := tm.metrics(t)
	for _, o := range []s3lock.Op{s3lock.OpTryLock, s3lock.OpLock} {
		if n, s := histCount(t, ms, "s3lock.acquire.duration", attrs(op(o), outcome("acquired"))); n != 1 || s <= 0 {
			t.Errorf("s3lock.acquire.duration{%s, acquired}: count %d, sum %v; want 1, > 0", o, n, s)
		}
	}
	if n, s := histCount(t, ms, "s3lock.hold.duration", attrs(outcome("released"))); n != 2 || s < 0.010 {
		t.Errorf("s3lock.hold.duration{released}: count %d, sum %vs; want 2, at least 0.010", n, s)
	}
	if got := sum(t, ms, "s3lock.hold.active", attrs()); got != 0 {
		t.Errorf("s3lock.hold.active after Unlock = %d; want 0", got)
	}
	d := srv.Stats().Snapshot().Sub(before)
	if g, p := sumAll(t, ms, "s3lock.requests"), d.Total(); g != p {
		t.Errorf("s3lock.requests total = %d; server saw %d", g, p)
	}
	if g := sum(t, ms, "s3lock.requests", attrs(method(http.MethodGet), outcome("not_found"))); g != 1 {
		t.Errorf("s3lock.requests{GET, not_found} = %d; want 1 (the first read of a new lock)", g)
	}
	if g := sum(t, ms, "s3lock.requests", attrs(method(http.MethodPut), outcome("ok"))); g != d.Method(http.MethodPut) || g != 4 {
		t.Errorf("s3lock.requests{PUT, ok} = %d; server saw %d PUT; want 4", g, d.Method(http.MethodPut))
	}
	if n, _ := histCount(t, ms, "s3lock.request.duration", attrs(method(http.MethodPut), outcome("ok"))); n != 4 {
		t.Errorf("s3lock.request.duration{PUT, ok} count = %d; want 4", n)
	}
	if got := sumAll(t, ms, "s3lock.lease.lost"); got != 0 {
		t.Errorf("s3lock.lease.lost = %d; want 0", got)
	}

	// Spans: TryLock, Unlock, Lock, Unlock, each with its S3 requests as
	// children.
	for _, name := range []string{"s3lock.TryLock", "s3lock.Lock", "s3lock.Unlock"} {
		ss := spansNamed(tm, name)
		want := 1
		if name == "s3lock.Unlock" {
			want = 2
		}
		if len(ss) != want {
			t.Fatalf("%d %s spans; want %d", len(ss), name, want)
		}
		for i, s := range ss {
			if b := spanAttr(s, s3lockotel.KeyBucket).AsString(); b != srv.Bucket() {
				t.Errorf("%s s3lock.bucket = %q; want %q", name, b, srv.Bucket())
			}
			if k := spanAttr(s, s3lockotel.KeyKey).AsString(); k != "locks/otel" {
				t.Errorf("%s s3lock.key = %q; want locks/otel", name, k)
			}
			wantToken := int64(1)
			if name == "s3lock.Lock" || (name == "s3lock.Unlock" && i == 1) {
				wantToken = 2
			}
			if tok := spanAttr(s, s3lockotel.KeyToken).AsInt64(); tok != wantToken {
				t.Errorf("%s #%d s3lock.token = %d; want %d", name, i, tok, wantToken)
			}
			if s.Status().Code == codes.Error {
				t.Errorf("%s status = %v; want not an error", name, s.Status())
			}
		}
	}
	tryLock := spansNamed(tm, "s3lock.TryLock")[0]
	var children []string
	for _, s := range tm.spans.Ended() {
		if s.Parent().SpanID() == tryLock.SpanContext().SpanID() {
			children = append(children, s.Name()+"/"+spanAttr(s, s3lockotel.KeyOutcome).AsString())
			if s.SpanKind() != trace.SpanKindClient || spanAttr(s, "aws.s3.key").AsString() != "locks/otel" {
				t.Errorf("request span %s: kind %v, aws.s3.key %q; want client, locks/otel", s.Name(), s.SpanKind(), spanAttr(s, "aws.s3.key").AsString())
			}
		}
	}
	if got, want := len(children), 2; got != want || children[0] != "S3.GetObject/not_found" || children[1] != "S3.PutObject/ok" {
		t.Errorf("TryLock's children = %v; want [S3.GetObject/not_found S3.PutObject/ok]", children)
	}
}

func TestContention(t *testing.T) {
	srv := s3locktest.New(t)
	tm := newTelemetry(t)
	ctx := context.Background()
	holder := newMutex(t, srv, "locks/otel-contention")
	m := newMutex(t, srv, "locks/otel-contention", tm.opt, s3lock.WithRetryInterval(10*time.Millisecond))
	if err := holder.TryLock(ctx); err != nil {
		t.Fatalf("holder.TryLock() = %v", err)
	}
	defer holder.Unlock(ctx)

	if err := m.TryLock(ctx); !errors.Is(err, s3lock.ErrLocked) {
		t.Fatalf("TryLock() = %v; want ErrLocked", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := m.Lock(wctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock() = %v; want DeadlineExceeded", err)
	}
	ms := tm.metrics(t)
	if n, _ := histCount(t, ms, "s3lock.acquire.duration", attrs(op(s3lock.OpTryLock), outcome("locked"))); n != 1 {
		t.Errorf("s3lock.acquire.duration{TryLock, locked} count = %d; want 1", n)
	}
	if n, s := histCount(t, ms, "s3lock.acquire.duration", attrs(op(s3lock.OpLock), outcome("canceled"))); n != 1 || s < 0.050 {
		t.Errorf("s3lock.acquire.duration{Lock, canceled}: count %d, sum %vs; want 1, at least 0.050", n, s)
	}
	if got := sum(t, ms, "s3lock.hold.active", attrs()); got != 0 {
		t.Errorf("s3lock.hold.active = %d; want 0", got)
	}
	if g := sum(t, ms, "s3lock.requests", attrs(method(http.MethodGet), outcome("ok"))); g < 2 {
		t.Errorf("s3lock.requests{GET, ok} = %d; want at least 2 (one per poll)", g)
	}
	for _, name := range []string{"s3lock.TryLock", "s3lock.Lock"} {
		ss := spansNamed(tm, name)
		if len(ss) != 1 {
			t.Fatalf("%d %s spans; want 1", len(ss), name)
		}
		s := ss[0]
		if s.Status().Code != codes.Error || len(s.Events()) == 0 || s.Events()[0].Name != "exception" {
			t.Errorf("%s: status %v, events %v; want an error recorded", name, s.Status(), s.Events())
		}
		if spanAttr(s, s3lockotel.KeyToken).Type() != attribute.EMPTY {
			t.Errorf("%s has s3lock.token %v; want none (not acquired)", name, spanAttr(s, s3lockotel.KeyToken))
		}
	}
}

func TestRenewal(t *testing.T) {
	srv := s3locktest.New(t)
	tm := newTelemetry(t)
	ctx := context.Background()
	m := newMutex(t, srv, "locks/otel-renew", tm.opt, s3lock.WithTTL(600*time.Millisecond), s3lock.WithAutoRenew(100*time.Millisecond))
	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("TryLock() = %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); len(spansNamed(tm, "s3lock.Renew")) < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("fewer than 2 renewal spans after 10s")
		}
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatalf("Unlock() = %v", err)
	}
	ms := tm.metrics(t)
	renewals := len(spansNamed(tm, "s3lock.Renew"))
	if got := sum(t, ms, "s3lock.renewals", attrs(outcome("ok"))); got != int64(renewals) || got < 2 {
		t.Errorf("s3lock.renewals{ok} = %d; want %d (one per Renew span), at least 2", got, renewals)
	}
	for _, s := range spansNamed(tm, "s3lock.Renew") {
		if tok := spanAttr(s, s3lockotel.KeyToken).AsInt64(); tok != 1 || s.Status().Code == codes.Error {
			t.Errorf("Renew span: token %d, status %v; want 1, no error", tok, s.Status())
		}
		if s.Parent().IsValid() {
			t.Errorf("Renew span has parent %v; want a root (the renewer outlives the Lock span)", s.Parent().SpanID())
		}
	}
}

func TestLeaseLostThroughForceUnlock(t *testing.T) {
	srv := s3locktest.New(t)
	tm := newTelemetry(t)
	ctx := context.Background()
	const key = "locks/otel-lost"
	m := newMutex(t, srv, key, tm.opt, s3lock.WithTTL(2*time.Second), s3lock.WithAutoRenew(100*time.Millisecond))
	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("TryLock() = %v", err)
	}
	st, err := s3lock.Inspect(ctx, srv.Client(), srv.Bucket(), key)
	if err != nil {
		t.Fatalf("Inspect() = %v", err)
	}
	if _, err := s3lock.ForceUnlock(ctx, srv.Client(), srv.Bucket(), key, st.ETag); err != nil {
		t.Fatalf("ForceUnlock() = %v", err)
	}
	select {
	case <-m.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("hold not ended 10s after ForceUnlock")
	}
	if err := m.Unlock(ctx); !errors.Is(err, s3lock.ErrLeaseLost) {
		t.Fatalf("Unlock() = %v; want ErrLeaseLost", err)
	}
	ms := tm.metrics(t)
	if got := sum(t, ms, "s3lock.lease.lost", attrs()); got != 1 {
		t.Errorf("s3lock.lease.lost = %d; want 1", got)
	}
	if got := sum(t, ms, "s3lock.renewals", attrs(outcome("error"))); got != 1 {
		t.Errorf("s3lock.renewals{error} = %d; want 1 (the renewal that found the lock broken)", got)
	}
	if n, _ := histCount(t, ms, "s3lock.hold.duration", attrs(outcome("lost"))); n != 1 {
		t.Errorf("s3lock.hold.duration{lost} count = %d; want 1", n)
	}
	if got := sum(t, ms, "s3lock.hold.active", attrs()); got != 0 {
		t.Errorf("s3lock.hold.active = %d; want 0", got)
	}
	if g := sum(t, ms, "s3lock.requests", attrs(method(http.MethodPut), outcome("precondition_failed"))); g < 1 {
		t.Errorf("s3lock.requests{PUT, precondition_failed} = %d; want at least 1", g)
	}
	var failed int
	for _, s := range spansNamed(tm, "s3lock.Renew") {
		if s.Status().Code == codes.Error {
			failed++
		}
	}
	if failed != 1 {
		t.Errorf("%d Renew spans with an error; want 1", failed)
	}
	if ss := spansNamed(tm, "s3lock.Unlock"); len(ss) != 1 || ss[0].Status().Code != codes.Error || spanAttr(ss[0], s3lockotel.KeyOutcome).AsString() != "lost" {
		t.Errorf("Unlock spans = %v; want one with an error and s3lock.outcome lost", ss)
	}
}

// TestDefaultsToGlobalProviders: without options Instrument uses the
// global providers (no-ops unless set), and a Mutex works.
func TestDefaultsToGlobalProviders(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	m := newMutex(t, srv, "locks/otel-global", s3lockotel.Instrument(nil))
	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("TryLock() = %v", err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatalf("Unlock() = %v", err)
	}
}

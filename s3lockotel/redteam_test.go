package s3lockotel_test

// Red-team tests of the OpenTelemetry instrumentation (issue 18).

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

// TestRedteamElectionHoldActive: an instrumented Election that campaigns
// and resigns. Resign is an Unlock, reported as the end of a hold
// (s3lock.hold.active -1), but Campaign reports no acquire (no +1, no
// s3lock.acquire.duration, no span): every term drives hold.active one
// lower, so the gauge of holds in progress goes negative.
func TestRedteamElectionHoldActive(t *testing.T) {
	srv := s3locktest.New(t)
	tm := newTelemetry(t)
	ctx := context.Background()
	e, err := s3lock.NewElection(srv.Client(), srv.Bucket(), "locks/otel-redteam-election", tm.opt)
	if err != nil {
		t.Fatalf("NewElection() = %v", err)
	}
	for range 2 {
		if err := e.Campaign(ctx, "leader"); err != nil {
			t.Fatalf("Campaign() = %v", err)
		}
		if err := e.Resign(ctx); err != nil {
			t.Fatalf("Resign() = %v", err)
		}
	}
	ms := tm.metrics(t)
	if n := sumAll(t, ms, "s3lock.hold.active"); n != 0 {
		t.Errorf("s3lock.hold.active = %d after two terms, both resigned; want 0", n)
	}
	h, _ := ms["s3lock.acquire.duration"].(metricdata.Histogram[float64])
	var acquires uint64
	for _, p := range h.DataPoints {
		acquires += p.Count
	}
	if acquires != 2 {
		t.Errorf("s3lock.acquire.duration counted %d acquires; want the 2 Campaigns", acquires)
	}
}

// TestRedteamMetricAttributesLowCardinality: after contention, renewal, a
// lease lost and requests of every kind, no metric point carries the
// bucket, key, owner or token, and every attribute is one of the few
// documented ones.
func TestRedteamMetricAttributesLowCardinality(t *testing.T) {
	srv := s3locktest.New(t)
	tm := newTelemetry(t)
	ctx := context.Background()
	key := "locks/otel-redteam-cardinality"
	a := newMutex(t, srv, key, tm.opt, s3lock.WithOwner("owner-a"), s3lock.WithTTL(2*time.Second), s3lock.WithAutoRenew(100*time.Millisecond))
	b := newMutex(t, srv, key, tm.opt, s3lock.WithOwner("owner-b"), s3lock.WithRetryInterval(20*time.Millisecond))
	if err := a.TryLock(ctx); err != nil {
		t.Fatalf("a.TryLock() = %v", err)
	}
	if err := b.TryLock(ctx); !errors.Is(err, s3lock.ErrLocked) {
		t.Fatalf("b.TryLock() = %v; want ErrLocked", err)
	}
	time.Sleep(250 * time.Millisecond) // a renews
	st, err := s3lock.Inspect(ctx, srv.Client(), srv.Bucket(), key)
	if err != nil {
		t.Fatalf("Inspect() = %v", err)
	}
	if _, err := s3lock.ForceUnlock(ctx, srv.Client(), srv.Bucket(), key, st.ETag); err != nil {
		t.Fatalf("ForceUnlock() = %v", err)
	}
	<-a.Context().Done()
	if err := a.Unlock(ctx); !errors.Is(err, s3lock.ErrLeaseLost) {
		t.Fatalf("a.Unlock() = %v; want ErrLeaseLost", err)
	}
	if err := b.Lock(ctx); err != nil {
		t.Fatalf("b.Lock() = %v", err)
	}
	if err := b.Unlock(ctx); err != nil {
		t.Fatalf("b.Unlock() = %v", err)
	}

	allowed := map[attribute.Key]bool{"s3lock.outcome": true, "s3lock.operation": true, "http.request.method": true}
	var rm metricdata.ResourceMetrics
	if err := tm.reader.Collect(ctx, &rm); err != nil {
		t.Fatalf("Collect() = %v", err)
	}
	check := func(name string, set attribute.Set) {
		for _, kv := range set.ToSlice() {
			if !allowed[kv.Key] {
				t.Errorf("%s has attribute %s=%s: not one of the low-cardinality ones", name, kv.Key, kv.Value.String())
			}
		}
	}
	points := 0
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					points++
					check(m.Name, p.Attributes)
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					points++
					check(m.Name, p.Attributes)
				}
			default:
				t.Errorf("%s is a %T", m.Name, m.Data)
			}
		}
	}
	if points == 0 {
		t.Fatal("no metric points")
	}
	ms := tm.metrics(t)
	if n := sumAll(t, ms, "s3lock.lease.lost"); n != 1 {
		t.Errorf("s3lock.lease.lost = %d; want 1", n)
	}
	if n := sumAll(t, ms, "s3lock.hold.active"); n != 0 {
		t.Errorf("s3lock.hold.active = %d after both holds ended with Unlock; want 0", n)
	}
	if n := sum(t, ms, "s3lock.requests", attrs(method(http.MethodPut), outcome("precondition_failed"))); n == 0 {
		t.Error("no PUT precondition_failed counted, though a's release after ForceUnlock was refused")
	}
}

// TestRedteamObserveNotModifiedCountsAsError: the 304 answers of an idle
// Observe are counted in s3lock.requests as outcome "error".
func TestRedteamObserveNotModifiedCountsAsError(t *testing.T) {
	srv := s3locktest.New(t)
	tm := newTelemetry(t)
	ctx := context.Background()
	key := "locks/otel-redteam-observe"
	leader, err := s3lock.NewElection(srv.Client(), srv.Bucket(), key)
	if err != nil {
		t.Fatalf("NewElection() = %v", err)
	}
	if err := leader.Campaign(ctx, "boss"); err != nil {
		t.Fatalf("Campaign() = %v", err)
	}
	defer leader.Resign(ctx)
	watcher, err := s3lock.NewElection(srv.Client(), srv.Bucket(), key, s3lock.WithRetryInterval(20*time.Millisecond), tm.opt)
	if err != nil {
		t.Fatalf("NewElection() = %v", err)
	}
	octx, cancel := context.WithCancel(ctx)
	ch := watcher.Observe(octx)
	<-ch
	time.Sleep(200 * time.Millisecond)
	cancel()
	for range ch {
	}
	// About ten polls answered 304. The cancel can cut one GET in flight
	// (an error, rightly): at most one.
	ms := tm.metrics(t)
	ok := sum(t, ms, "s3lock.requests", attrs(method(http.MethodGet), outcome("ok")))
	if n := sum(t, ms, "s3lock.requests", attrs(method(http.MethodGet), outcome("error"))); n > 1 || ok < 3 {
		t.Errorf("s3lock.requests{GET,error} = %d, {GET,ok} = %d for an Observe whose every request but one cut by its cancel S3 answered (200 or 304); want at most 1 error and several ok", n, ok)
	}
}

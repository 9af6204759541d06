package s3lockotel

import (
	"context"
	"net/http"
	"testing"
	"time"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/s3lock/s3lock"
)

// BenchmarkHooksPerCycle: the instrumentation's own work for one warm
// TryLock+Unlock, which calls Start, Request (one PUT) and Acquire, then
// Start, Request and Release: the difference between the rows of
// BenchmarkTryLockUnlock, measured without the S3 round trips whose noise
// hides it there.
func BenchmarkHooksPerCycle(b *testing.B) {
	for _, bc := range []struct {
		name string
		cfg  func(b *testing.B) config
	}{
		{"noop", func(*testing.B) config {
			return config{mp: metricnoop.NewMeterProvider(), tp: tracenoop.NewTracerProvider()}
		}},
		{"sdk", func(b *testing.B) config {
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
			b.Cleanup(func() {
				_ = mp.Shutdown(context.Background())
				_ = tp.Shutdown(context.Background())
			})
			return config{mp: mp, tp: tp}
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := newInstrumentation(bc.cfg(b)).hooks()
			ctx := context.Background()
			put := s3lock.RequestInfo{Verb: http.MethodPut, Bucket: "b", Key: "k", Outcome: s3lock.RequestOK, Duration: time.Millisecond}
			b.ReportAllocs()
			for b.Loop() {
				c := h.Start(ctx, s3lock.StartInfo{Op: s3lock.OpTryLock, Bucket: "b", Key: "k"})
				h.Request(c, put)
				h.Acquire(c, s3lock.AcquireInfo{Op: s3lock.OpTryLock, Bucket: "b", Key: "k", Outcome: s3lock.OutcomeAcquired, Waited: time.Millisecond, Token: 7})
				c = h.Start(ctx, s3lock.StartInfo{Op: s3lock.OpUnlock, Bucket: "b", Key: "k", Token: 7})
				h.Request(c, put)
				h.Release(c, s3lock.ReleaseInfo{Op: s3lock.OpUnlock, Bucket: "b", Key: "k", Token: 7, Held: time.Millisecond, Duration: time.Millisecond})
			}
		})
	}
}

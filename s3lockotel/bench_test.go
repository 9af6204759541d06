package s3lockotel_test

import (
	"context"
	"testing"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3lockotel"
	"github.com/s3lock/s3lock/s3locktest"
)

// BenchmarkTryLockUnlock: a warm Mutex alone, TryLock then Unlock (two
// conditional PUTs to the in-process server), without instrumentation,
// with Instrument over no-op providers, and with Instrument over the SDK
// (metrics to a manual reader, every span sampled and dropped at End).
// The difference between the rows is the cost of instrumentation; the
// rest is the AWS SDK and the server (see BENCHMARKS.md).
//
//	go test -run '^$' -bench . -benchmem ./s3lockotel
func BenchmarkTryLockUnlock(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts func(b *testing.B) []s3lock.Option
	}{
		{"plain", func(*testing.B) []s3lock.Option { return nil }},
		{"empty-hooks", func(*testing.B) []s3lock.Option { return []s3lock.Option{s3lock.WithHooks(&s3lock.Hooks{})} }},
		{"instrument-noop", func(*testing.B) []s3lock.Option {
			return []s3lock.Option{s3lockotel.Instrument(
				s3lockotel.WithMeterProvider(metricnoop.NewMeterProvider()),
				s3lockotel.WithTracerProvider(tracenoop.NewTracerProvider()))}
		}},
		{"instrument-sdk", func(b *testing.B) []s3lock.Option {
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
			b.Cleanup(func() {
				_ = mp.Shutdown(context.Background())
				_ = tp.Shutdown(context.Background())
			})
			return []s3lock.Option{s3lockotel.Instrument(s3lockotel.WithMeterProvider(mp), s3lockotel.WithTracerProvider(tp))}
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			srv := s3locktest.New(b)
			ctx := context.Background()
			m, err := s3lock.New(srv.Client(), srv.Bucket(), "locks/bench", bc.opts(b)...)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := m.TryLock(ctx); err != nil {
					b.Fatal(err)
				}
				if err := m.Unlock(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

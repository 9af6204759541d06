package s3lockotel_test

import (
	"context"
	"fmt"
	"log"
	"slices"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3lockotel"
	"github.com/s3lock/s3lock/s3locktest"
)

func ExampleInstrument() {
	srv, err := s3locktest.Start() // in production: an *s3.Client
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	// The application's SDK setup; here metrics go to a reader we collect.
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())

	m, err := s3lock.New(srv.Client(), srv.Bucket(), "locks/nightly",
		s3lockotel.Instrument(s3lockotel.WithMeterProvider(mp)))
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	if err := m.Lock(ctx); err != nil {
		log.Fatal(err)
	}
	if err := m.Unlock(ctx); err != nil {
		log.Fatal(err)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		log.Fatal(err)
	}
	var names []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			names = append(names, m.Name)
		}
	}
	slices.Sort(names)
	fmt.Println(names)
	// Output: [s3lock.acquire.duration s3lock.hold.active s3lock.hold.duration s3lock.request.duration s3lock.requests]
}

package s3lock_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

// BenchmarkImpatientContenders: 8 Mutex values loop Lock (with a deadline)
// → hold → Unlock on one key, each Lock giving up after its deadline and
// trying again at once. A Lock that reserved the next turn and then gave
// up would leave the free lock to a waiter that has gone for 2 s; with the
// reservation withdrawn, the lock moves on. One op is one grant; the
// metrics are grants per second and what each costs.
//
//	go test -run '^$' -bench ImpatientContenders -benchtime 60x .
func BenchmarkImpatientContenders(b *testing.B) {
	const contenders = 8
	const hold = 200 * time.Millisecond
	for _, deadline := range []time.Duration{150 * time.Millisecond, 500 * time.Millisecond} {
		b.Run(fmt.Sprintf("hold=%v/deadline=%v", hold, deadline), func(b *testing.B) {
			srv := s3locktest.New(b, s3locktest.WithLatency(5*time.Millisecond))
			key := "locks/impatient"
			var grants, giveUps atomic.Int64
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			srv.Stats().Reset()
			start := time.Now()
			for i := range contenders {
				m := newMutex(b, srv.Client(), srv.Bucket(), key, s3lock.WithOwner(fmt.Sprintf("c%d", i)))
				wg.Add(1)
				go func() {
					defer wg.Done()
					for ctx.Err() == nil {
						lctx, lcancel := context.WithTimeout(ctx, deadline)
						err := m.Lock(lctx)
						lcancel()
						if err != nil {
							giveUps.Add(1)
							continue
						}
						if grants.Add(1) >= int64(b.N) {
							cancel()
						}
						t := time.NewTimer(hold)
						select {
						case <-t.C:
						case <-ctx.Done():
							t.Stop()
						}
						_ = m.Unlock(context.Background())
					}
				}()
			}
			wg.Wait()
			cancel()
			elapsed := time.Since(start)
			d := srv.Stats().Snapshot()
			n := float64(grants.Load())
			b.ReportMetric(n/elapsed.Seconds(), "grants/s")
			b.ReportMetric(n*hold.Seconds()/elapsed.Seconds(), "busy")
			b.ReportMetric(float64(giveUps.Load())/n, "giveups/grant")
			b.ReportMetric(float64(d.Method(http.MethodPut))/n, "PUT/grant")
			b.ReportMetric(float64(d.Total())/n, "req/grant")
		})
	}
}

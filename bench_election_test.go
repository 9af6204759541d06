package s3lock_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

// BenchmarkElectionFailover measures, at default options but the TTL, how
// long after a leader stops (its network is cut: it can neither renew nor
// resign, as after SIGKILL) a waiting candidate leads, and an observer
// reports the vacancy and the new leader; and the requests one observer
// makes per second. Each op waits out a TTL, so it runs only with
// S3LOCK_BENCH_ELECTION=1:
//
//	S3LOCK_BENCH_ELECTION=1 go test -run '^$' -bench ElectionFailover -benchtime 5x .
func BenchmarkElectionFailover(b *testing.B) {
	if os.Getenv("S3LOCK_BENCH_ELECTION") == "" {
		b.Skip("set S3LOCK_BENCH_ELECTION=1 to run: each op waits out a TTL")
	}
	for _, ttl := range []time.Duration{2 * time.Second, 30 * time.Second} {
		b.Run(fmt.Sprintf("ttl=%v", ttl), func(b *testing.B) {
			srv := s3locktest.New(b)
			ctx := context.Background()
			var toLeader, toVacancy, toObserver, observed time.Duration
			vacancies := 0 // ops whose observer reported the vacancy before the new leader
			var obsStats s3locktest.Stats
			for i := 0; i < b.N; i++ {
				key := fmt.Sprintf("bench/failover-%d", i)
				net := s3locktest.NewFaults(uint64(i+1), s3locktest.FaultConfig{})
				leader, _ := s3lock.NewElection(srv.FaultyClient(net), srv.Bucket(), key, s3lock.WithTTL(ttl), s3lock.WithOwner("leader"))
				cand, _ := s3lock.NewElection(srv.Client(), srv.Bucket(), key, s3lock.WithTTL(ttl), s3lock.WithOwner("candidate"))
				obsClient := srv.Client(func(o *s3.Options) {
					o.HTTPClient = &http.Client{Transport: obsStats.Transport(srv.HTTPClient().Transport)}
				})
				obs, _ := s3lock.NewElection(obsClient, srv.Bucket(), key, s3lock.WithTTL(ttl))
				if err := leader.Campaign(ctx, "leader:1"); err != nil {
					b.Fatal(err)
				}
				octx, stop := context.WithCancel(ctx)
				ch := obs.Observe(octx)
				obsStart := time.Now()
				for ld := range ch {
					if ld.Owner == "leader" {
						break
					}
				}
				elected := make(chan time.Time, 1)
				go func() {
					if err := cand.Campaign(ctx, "candidate:1"); err != nil {
						b.Error(err)
					}
					elected <- time.Now()
				}()
				time.Sleep(ttl / 2) // a few renewals, and the candidate waiting
				killed := time.Now()
				net.Partition(time.Hour)
				var vacant, seen time.Time
				for ld := range ch {
					if ld.Owner == "" && vacant.IsZero() {
						vacant = time.Now()
					}
					if ld.Owner == "candidate" {
						seen = time.Now()
						break
					}
				}
				at := <-elected
				stop()
				for range ch {
				}
				observed += time.Since(obsStart)
				toLeader += at.Sub(killed)
				toObserver += seen.Sub(killed)
				if !vacant.IsZero() {
					toVacancy += vacant.Sub(killed)
					vacancies++
				}
				_ = cand.Resign(ctx)
				_ = leader.Resign(ctx) // fails: cut off, and its term is over
			}
			n := float64(b.N)
			b.ReportMetric(toLeader.Seconds()/n, "s-to-new-leader")
			if vacancies > 0 {
				// Not every op sees one: the vacancy and the new leader
				// can fall between two polls and be reported as one change.
				b.ReportMetric(toVacancy.Seconds()/float64(vacancies), "s-to-observed-vacancy")
			}
			b.ReportMetric(float64(vacancies)/n, "share-vacancy-seen")
			b.ReportMetric(toObserver.Seconds()/n, "s-to-observed-leader")
			c := obsStats.Snapshot()
			b.ReportMetric(float64(c.Method(http.MethodGet))/observed.Seconds(), "observer-GET/s")
			if gets := c.Method(http.MethodGet); gets > 0 {
				b.ReportMetric(float64(c[s3locktest.Request{Method: http.MethodGet, Status: http.StatusNotModified}])/float64(gets), "share-304")
			}
		})
	}
}

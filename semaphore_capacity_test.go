package s3lock_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

// TestSemaphoreRecordCapacity: a Semaphore of a large limit is filled, one
// unit per holder, until the next grant would not fit in the 4 KiB record.
// At least 8 holders fit (the "eight holders of one key"),
// whatever the owners (default: host:pid:nonce; 3 bytes; 40 bytes, of
// which the record keeps 32); the grant that does not fit gets ErrLocked
// from TryAcquire and waits in Acquire, writing nothing; a full record
// still renews (every holder renews twice, none loses its lease) and
// every holder releases.
// The number that fit is logged (BENCHMARKS.md, "Semaphores and shared
// locks").
func TestSemaphoreRecordCapacity(t *testing.T) {
	tests := []struct {
		name  string
		owner func(i int) []s3lock.Option
	}{
		{"default owner", func(int) []s3lock.Option { return nil }},
		{"short owner", func(i int) []s3lock.Option { return []s3lock.Option{s3lock.WithOwner(fmt.Sprintf("w%02d", i%100))} }},
		// The record keeps at most 32 bytes of an owner: the worst case.
		{"long owner", func(i int) []s3lock.Option { return []s3lock.Option{s3lock.WithOwner(fmt.Sprintf("%040d", i))} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := s3locktest.New(t)
			ctx := context.Background()
			const key = "locks/capacity"
			var sems []*s3lock.Semaphore
			for i := 0; ; i++ {
				opts := append(tt.owner(i), s3lock.WithTTL(6*time.Second), s3lock.WithAutoRenew(2*time.Second),
					s3lock.WithRetryInterval(50*time.Millisecond))
				s := newSem(t, srv, key, 1000, opts...)
				err := s.TryAcquire(ctx, 1)
				if err == nil {
					sems = append(sems, s)
					if len(sems) > 1000 {
						t.Fatal("more than 1000 holders of a limit-1000 semaphore")
					}
					continue
				}
				var le *s3lock.LockedError
				if !errors.Is(err, s3lock.ErrLocked) || !errors.As(err, &le) {
					t.Fatalf("TryAcquire(1) as holder %d = %v; want nil or a *LockedError", i+1, err)
				}
				before, err := s3lock.Inspect(ctx, srv.Client(), srv.Bucket(), key)
				if err != nil {
					t.Fatal(err)
				}
				actx, cancel := context.WithTimeout(ctx, 400*time.Millisecond)
				err = s.Acquire(actx, 1)
				cancel()
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Acquire(1) on a full record = %v; want it to wait until its deadline", err)
				}
				after, err := s3lock.Inspect(ctx, srv.Client(), srv.Bucket(), key)
				if err != nil {
					t.Fatal(err)
				}
				if len(after.Holders) != len(before.Holders) || after.Generation != before.Generation {
					t.Errorf("a waiting Acquire changed the full record: %d holders, generation %d; want %d, %d",
						len(after.Holders), after.Generation, len(before.Holders), before.Generation)
				}
				break
			}
			fit := len(sems)
			if fit < 8 {
				t.Fatalf("%d holders fit in one record; want at least 8", fit)
			}
			time.Sleep(4500 * time.Millisecond) // two renewals each
			st, err := s3lock.Inspect(ctx, srv.Client(), srv.Bucket(), key)
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Holders) != fit || st.Units != int64(fit) {
				t.Errorf("Inspect after renewals: %d holders, %d units; want %d", len(st.Holders), st.Units, fit)
			}
			for i, s := range sems {
				if err := s.Context().Err(); err != nil {
					t.Errorf("holder %d lost its hold in a full record: %v", i, context.Cause(s.Context()))
				}
				if err := s.Release(ctx); err != nil {
					t.Errorf("holder %d: Release() = %v", i, err)
				}
			}
			if st, err := s3lock.Inspect(ctx, srv.Client(), srv.Bucket(), key); err != nil || st.Held {
				t.Errorf("Inspect() after every release = held %v, %v; want free", st.Held, err)
			}
			t.Logf("%s: %d holders fit in one record", tt.name, fit)
		})
	}
}

package s3locktest_test

import (
	"context"
	"sync"
	"testing"

	"github.com/s3lock/s3lock/s3locktest"
)

func TestCounter(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	c := &s3locktest.Counter{Client: srv.Client(), Bucket: srv.Bucket(), Key: "n"}
	if n, err := c.Get(ctx); err != nil || n != 0 {
		t.Fatalf("Get() of a missing counter = %d, %v; want 0, nil", n, err)
	}
	for want := 1; want <= 3; want++ {
		if n, err := c.Increment(ctx); err != nil || n != want {
			t.Fatalf("Increment() = %d, %v; want %d, nil", n, err, want)
		}
	}
	if err := srv.PutObject(ctx, "n", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx); err == nil {
		t.Error("Get() of a non-number = nil error; want one")
	}
}

// TestCounterLosesUpdatesWithoutALock shows the counter is a real witness:
// unguarded concurrent increments get lost (checked over several tries, as
// a lucky interleaving could lose none).
func TestCounterLosesUpdatesWithoutALock(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const writers, each = 8, 10
	for try := range 5 {
		c := &s3locktest.Counter{Client: srv.Client(), Bucket: srv.Bucket(), Key: "race"}
		if err := c.Set(ctx, 0); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range each {
					if _, err := c.Increment(ctx); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		n, err := c.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n < writers*each {
			t.Logf("try %d: %d of %d increments survived without a lock", try, n, writers*each)
			return
		}
	}
	t.Error("no increment was ever lost without a lock: the counter cannot witness a broken lock")
}

package s3lock

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/s3lock/s3lock/s3locktest"
)

func TestProbeOnce(t *testing.T) {
	ctx := context.Background()
	t.Run("transient failure is retried, then the verdict sticks", func(t *testing.T) {
		srv := s3locktest.New(t)
		f := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
		c := srv.FaultyClient(f)
		var o probeOnce
		f.Partition(1 << 62)
		if err := o.check(ctx, c, srv.Bucket(), "locks/a"); err == nil || errors.Is(err, ErrConditionalWritesUnsupported) {
			t.Fatalf("check() through a partition = %v; want a transient error", err)
		}
		f.Heal()
		if err := o.check(ctx, c, srv.Bucket(), "locks/a"); err != nil {
			t.Fatalf("check() after healing = %v; want nil", err)
		}
		puts := srv.Stats().Snapshot().Method(http.MethodPut)
		if err := o.check(ctx, c, srv.Bucket(), "locks/a"); err != nil {
			t.Fatalf("third check() = %v; want nil", err)
		}
		if got := srv.Stats().Snapshot().Method(http.MethodPut); got != puts {
			t.Errorf("third check() made %d PUTs; want 0 (the verdict is kept)", got-puts)
		}
	})
	t.Run("unsupported store verdict sticks", func(t *testing.T) {
		srv := s3locktest.New(t)
		srv.SetFaults(s3locktest.NewFaults(1, s3locktest.FaultConfig{IgnoreConditions: true}))
		var o probeOnce
		for i := range 2 {
			if err := o.check(ctx, srv.Client(), srv.Bucket(), "locks/a"); !errors.Is(err, ErrConditionalWritesUnsupported) {
				t.Fatalf("check() #%d = %v; want ErrConditionalWritesUnsupported", i+1, err)
			}
		}
		// The second call did not probe again.
		if got := srv.Stats().Snapshot().Method(http.MethodPut); got != 2 {
			t.Errorf("server saw %d PUTs; want 2 (one probe, failing at its second write)", got)
		}
	})
}

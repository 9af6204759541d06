// Command leader shows leader election with s3lock: three replicas of a
// service, each with its own S3 client, campaign for one office on the
// embedded S3 server. One leads and publishes its address; the others
// observe the office and print where the leader is. Then the leader is
// killed (its network is cut, so it can neither renew nor resign), and
// once its lease has run out another replica takes over, which the
// surviving observer reports.
//
//	go run ./examples/leader -ttl 2s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"sync"
	"time"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

func main() {
	ttl := flag.Duration("ttl", 2*time.Second, "the leader's lease")
	flag.Parse()
	if err := run(os.Stdout, *ttl); err != nil {
		log.Fatal(err)
	}
}

// replica is one instance of the service.
type replica struct {
	name, addr string
	e          *s3lock.Election
	net        *s3locktest.Faults // its network: a partition kills it
}

// event is a leader as one replica's observer saw it.
type event struct {
	by string
	ld s3lock.Leader
}

func run(out io.Writer, ttl time.Duration) error {
	srv, err := s3locktest.Start()
	if err != nil {
		return err
	}
	defer srv.Close()
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, format+"\n", args...)
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	seen := make(chan event, 16)
	var wg sync.WaitGroup
	replicas := map[string]*replica{}
	for i := 1; i <= 3; i++ {
		r := &replica{
			name: fmt.Sprintf("replica-%d", i),
			addr: fmt.Sprintf("10.0.0.%d:8080", i),
			net:  s3locktest.NewFaults(uint64(i), s3locktest.FaultConfig{}),
		}
		r.e, err = s3lock.NewElection(srv.FaultyClient(r.net), srv.Bucket(), "leaders/service",
			s3lock.WithOwner(r.name), s3lock.WithTTL(ttl), s3lock.WithRetryInterval(100*time.Millisecond))
		if err != nil {
			return err
		}
		replicas[r.name] = r
		wg.Add(2)
		go func() { defer wg.Done(); r.serve(ctx, say) }()
		go func() { defer wg.Done(); r.observe(ctx, say, seen) }()
	}
	defer wg.Wait()
	defer stop()

	// Wait until both other replicas know the leader, kill it, and wait
	// for another one, as seen by a replica that is still alive.
	var first s3lock.Leader
	knows := map[string]bool{}
	for len(knows) < 2 {
		ev := <-seen
		if ev.ld.Owner == "" || ev.ld.Owner == ev.by {
			continue
		}
		if ev.ld.Owner != first.Owner {
			first, knows = ev.ld, map[string]bool{}
		}
		knows[ev.by] = true
	}
	killedAt := time.Now()
	say("killing %s", first.Owner)
	replicas[first.Owner].net.Partition(time.Hour)
	timeout := time.After(10*ttl + 10*time.Second)
	for {
		select {
		case ev := <-seen:
			if ev.by != first.Owner && ev.ld.Owner != "" && ev.ld.Owner != first.Owner {
				say("%s took over after %v (token %d > %d)", ev.ld.Owner, time.Since(killedAt).Round(100*time.Millisecond), ev.ld.Token, first.Token)
				return nil
			}
		case <-timeout:
			return errors.New("no replica took over")
		}
	}
}

// serve campaigns, and leads until its term ends or ctx does.
func (r *replica) serve(ctx context.Context, say func(string, ...any)) {
	for {
		if err := r.e.Campaign(ctx, r.addr); err != nil {
			return // ctx ended
		}
		say("%s: leading, token %d", r.name, r.e.Token())
		select {
		case <-r.e.Context().Done():
			say("%s: term over: %v", r.name, context.Cause(r.e.Context()))
			_ = r.e.Resign(context.WithoutCancel(ctx))
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = r.e.Resign(rctx)
			cancel()
			return
		}
	}
}

// observe prints every change of leader this replica sees.
func (r *replica) observe(ctx context.Context, say func(string, ...any), seen chan<- event) {
	for ld := range r.e.Observe(ctx) {
		if ld.Owner == "" {
			say("%s: no leader", r.name)
		} else {
			say("%s: leader is %s at %s", r.name, ld.Owner, ld.Value)
		}
		select {
		case seen <- event{r.name, ld}:
		case <-ctx.Done():
		}
	}
}

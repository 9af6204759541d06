package contract_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock"
)

// electionOneLeader: 4 candidates (each with its own client) campaign at
// once, 2 terms each: one leads at a time, Leader names it with its value
// during its term, and the tokens of the terms grow.
func electionOneLeader(t *testing.T, srv *server, facts *factLog) {
	const candidates, terms = 4, 2
	ctx := context.Background()
	key := srv.key(t)
	var (
		leading atomic.Int32
		overlap atomic.Int32
		mu      sync.Mutex
		tokens  []uint64
		errs    []error
	)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range candidates {
		e, err := s3lock.NewElection(srv.client(), srv.bucket, key, s3lock.WithOwner(fmt.Sprintf("c%d", i)),
			s3lock.WithRetryInterval(50*time.Millisecond))
		if err != nil {
			t.Fatalf("NewElection() = %v", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for term := range terms {
				value := fmt.Sprintf("c%d-term%d", i, term)
				cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
				err := e.Campaign(cctx, value)
				cancel()
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("c%d Campaign() = %w", i, err))
					mu.Unlock()
					return
				}
				if leading.Add(1) != 1 {
					overlap.Add(1)
				}
				ld, lerr := e.Leader(ctx)
				mu.Lock()
				tokens = append(tokens, e.Token())
				if lerr != nil || ld.Owner != fmt.Sprintf("c%d", i) || ld.Value != value || ld.Token != e.Token() {
					errs = append(errs, fmt.Errorf("c%d: Leader() during its term = %+v, %v", i, ld, lerr))
				}
				mu.Unlock()
				leading.Add(-1)
				if err := e.Resign(ctx); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("c%d Resign() = %w", i, err))
					mu.Unlock()
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	if n := overlap.Load(); n != 0 {
		msg := fmt.Sprintf("%d terms overlapped another; want one leader at a time", n)
		if srv.racyWrites != "" {
			facts.add(srv.name, "TWO LEADERS (store race): %s", msg)
			t.Skipf("%s: known store defect: %s", msg, srv.racyWrites)
		}
		t.Error(msg)
	}
	for _, err := range errs {
		t.Error(err)
	}
	for i := 1; i < len(tokens); i++ {
		if tokens[i] <= tokens[i-1] {
			t.Errorf("tokens %v; want them increasing", tokens)
			break
		}
	}
	if len(tokens) != candidates*terms {
		t.Errorf("%d terms; want %d", len(tokens), candidates*terms)
	}
	facts.add(srv.name, "election: %d candidates x %d terms, one leader at a time", candidates, terms)
}

// electionObserve: an observer (polling with If-None-Match) reports the
// vacancy, the leader, its new value after Proclaim, and the vacancy after
// Resign, in that order, whether the store answers unchanged polls with 304
// or with the object.
func electionObserve(t *testing.T, srv *server, facts *factLog) {
	ctx := context.Background()
	key := srv.key(t)
	gets := &getStatuses{}
	obs, err := s3lock.NewElection(srv.client(gets.install), srv.bucket, key, s3lock.WithRetryInterval(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	a, err := s3lock.NewElection(srv.client(), srv.bucket, key, s3lock.WithOwner("a"))
	if err != nil {
		t.Fatal(err)
	}
	octx, stop := context.WithCancel(ctx)
	ch := obs.Observe(octx)
	defer func() {
		stop()
		for range ch {
		}
	}()
	next := func(owner, value string) {
		t.Helper()
		select {
		case ld := <-ch:
			if ld.Owner != owner || ld.Value != value {
				t.Fatalf("Observe delivered {Owner:%q Value:%q}; want {Owner:%q Value:%q}", ld.Owner, ld.Value, owner, value)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("Observe delivered nothing in 30s; want {Owner:%q Value:%q}", owner, value)
		}
	}
	next("", "")
	if err := a.Campaign(ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	next("a", "v1")
	time.Sleep(200 * time.Millisecond) // unchanged polls
	if err := a.Proclaim(ctx, "v2"); err != nil {
		t.Fatal(err)
	}
	next("a", "v2")
	if err := a.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	next("", "")
	n304, n200 := gets.notModified.Load(), gets.ok.Load()
	t.Logf("observer's GETs: %d answered 304, %d answered 200", n304, n200)
	facts.add(srv.name, "election: Observe reported vacancy, leader, new value, vacancy; its GETs: %d answered 304, %d with the object", n304, n200)
}

// getStatuses counts the GETs of a client answered 304 and 200.
type getStatuses struct {
	inner           s3.HTTPClient
	notModified, ok atomic.Int32
}

func (g *getStatuses) install(o *s3.Options) {
	g.inner = o.HTTPClient
	o.HTTPClient = g
}

func (g *getStatuses) Do(r *http.Request) (*http.Response, error) {
	resp, err := g.inner.Do(r)
	if err == nil && r.Method == http.MethodGet {
		switch resp.StatusCode {
		case http.StatusNotModified:
			g.notModified.Add(1)
		case http.StatusOK:
			g.ok.Add(1)
		}
	}
	return resp, err
}

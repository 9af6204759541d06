package s3lock_test

import (
	"context"
	"fmt"
	"log"
	"sync"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

// Counting S3 requests and holds with hooks, as a metrics library would.
func ExampleWithHooks() {
	srv, err := s3locktest.Start()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	var mu sync.Mutex
	requests := map[string]int{}
	hooks := &s3lock.Hooks{
		Request: func(ctx context.Context, i s3lock.RequestInfo) {
			mu.Lock()
			defer mu.Unlock()
			requests[i.Verb+" "+string(i.Outcome)]++
		},
		Acquire: func(ctx context.Context, i s3lock.AcquireInfo) {
			fmt.Printf("%s: %s, token %d\n", i.Op, i.Outcome, i.Token)
		},
		Release: func(ctx context.Context, i s3lock.ReleaseInfo) {
			fmt.Printf("Unlock: token %d, error %v\n", i.Token, i.Err)
		},
	}
	m, err := s3lock.New(srv.Client(), srv.Bucket(), "locks/observed", s3lock.WithHooks(hooks))
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	for range 2 {
		if err := m.Lock(ctx); err != nil {
			log.Fatal(err)
		}
		if err := m.Unlock(ctx); err != nil {
			log.Fatal(err)
		}
	}
	mu.Lock()
	fmt.Println(requests)
	mu.Unlock()
	// Output:
	// Lock: acquired, token 1
	// Unlock: token 1, error <nil>
	// Lock: acquired, token 2
	// Unlock: token 2, error <nil>
	// map[GET not_found:1 PUT ok:4]
}

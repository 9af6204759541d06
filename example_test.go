package s3lock_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

// The examples run against the embedded S3 server; in production pass an
// *s3.Client made with config.LoadDefaultConfig.

func ExampleMutex_WithLock() {
	srv, err := s3locktest.Start()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	m, err := s3lock.New(srv.Client(), srv.Bucket(), "locks/nightly-report")
	if err != nil {
		log.Fatal(err)
	}
	err = m.WithLock(context.Background(), func(ctx context.Context) error {
		// Only one process in the world runs this at a time. Pass the
		// fencing token to whatever the section writes to.
		fmt.Println("generating report with fencing token", m.Token())
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	// Output: generating report with fencing token 1
}

func ExampleMutex_TryLock() {
	srv, err := s3locktest.Start()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()

	deployA, _ := s3lock.New(srv.Client(), srv.Bucket(), "locks/deploy", s3lock.WithOwner("deploy-a"))
	deployB, _ := s3lock.New(srv.Client(), srv.Bucket(), "locks/deploy", s3lock.WithOwner("deploy-b"))

	if err := deployA.TryLock(ctx); err != nil {
		log.Fatal(err)
	}
	err = deployB.TryLock(ctx)
	var locked *s3lock.LockedError
	if errors.As(err, &locked) {
		fmt.Printf("busy: held by %s (generation %d)\n", locked.Owner, locked.Generation)
	}
	if err := deployA.Unlock(ctx); err != nil {
		log.Fatal(err)
	}
	if err := deployB.TryLock(ctx); err == nil {
		fmt.Println("deploy-b got it with token", deployB.Token())
	}
	_ = deployB.Unlock(ctx)
	// Output:
	// busy: held by deploy-a (generation 1)
	// deploy-b got it with token 2
}

func ExampleMutex_Lock() {
	srv, err := s3locktest.Start()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()

	m, _ := s3lock.New(srv.Client(), srv.Bucket(), "locks/batch")
	if err := m.Lock(ctx); err != nil {
		log.Fatal(err)
	}
	defer m.Unlock(ctx)
	fmt.Println("holding", m.Key())
	// Output: holding locks/batch
}

func ExampleInspect() {
	srv, err := s3locktest.Start()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()

	m, _ := s3lock.New(srv.Client(), srv.Bucket(), "locks/inspect", s3lock.WithOwner("cron@host1"))
	_ = m.TryLock(ctx)
	st, err := s3lock.Inspect(ctx, srv.Client(), srv.Bucket(), "locks/inspect")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(st.Held, st.Owner, st.Generation, st.TTL)
	_ = m.Unlock(ctx)
	// Output: true cron@host1 1 30s
}

package s3lock_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

func ExampleElection() {
	srv, err := s3locktest.Start()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()

	e, err := s3lock.NewElection(srv.Client(), srv.Bucket(), "leaders/scheduler", s3lock.WithOwner("replica-1"))
	if err != nil {
		log.Fatal(err)
	}
	// Campaign waits until this replica leads, then publishes its address.
	if err := e.Campaign(ctx, "10.0.0.1:8080"); err != nil {
		log.Fatal(err)
	}
	ld, err := e.Leader(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("leader %s at %s, token %d\n", ld.Owner, ld.Value, ld.Token)

	// Work under e.Context(): it is cancelled if the term is lost.
	if err := e.Resign(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := e.Leader(ctx); errors.Is(err, s3lock.ErrNoLeader) {
		fmt.Println("office vacant")
	}
	// Output:
	// leader replica-1 at 10.0.0.1:8080, token 1
	// office vacant
}

func ExampleElection_Observe() {
	srv, err := s3locktest.Start()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	const key = "leaders/compactor"

	watcher, _ := s3lock.NewElection(srv.Client(), srv.Bucket(), key)
	ctx, stop := context.WithCancel(ctx)
	changes := watcher.Observe(ctx)
	show := func() {
		ld := <-changes
		if ld.Owner == "" {
			fmt.Println("no leader")
			return
		}
		fmt.Printf("%s leads (token %d), serving at %s\n", ld.Owner, ld.Token, ld.Value)
	}
	show() // the current state first

	a, _ := s3lock.NewElection(srv.Client(), srv.Bucket(), key, s3lock.WithOwner("a"))
	if err := a.Campaign(ctx, "10.0.0.1:9000"); err != nil {
		log.Fatal(err)
	}
	show()
	if err := a.Proclaim(ctx, "10.0.0.1:9001"); err != nil {
		log.Fatal(err)
	}
	show()
	if err := a.Resign(ctx); err != nil {
		log.Fatal(err)
	}
	show()

	stop()
	for range changes { // closed once ctx ends
	}
	// Output:
	// no leader
	// a leads (token 1), serving at 10.0.0.1:9000
	// a leads (token 1), serving at 10.0.0.1:9001
	// no leader
}

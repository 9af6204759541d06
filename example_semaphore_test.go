package s3lock_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/s3locktest"
)

func ExampleSemaphore() {
	srv, err := s3locktest.Start()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()

	// At most 2 exports at once, across every host using the key.
	var workers []*s3lock.Semaphore
	for _, name := range []string{"export-a", "export-b", "export-c"} {
		s, err := s3lock.NewSemaphore(srv.Client(), srv.Bucket(), "locks/exports", 2,
			s3lock.WithOwner(name), s3lock.WithAutoRenew(s3lock.DefaultTTL/3))
		if err != nil {
			log.Fatal(err)
		}
		workers = append(workers, s)
	}
	for i, s := range workers {
		err := s.TryAcquire(ctx, 1)
		var locked *s3lock.LockedError
		switch {
		case err == nil:
			fmt.Printf("worker %d runs with token %d\n", i, s.Token())
		case errors.As(err, &locked):
			fmt.Printf("worker %d waits: held by %s\n", i, locked.Owner)
		default:
			log.Fatal(err)
		}
	}
	st, err := s3lock.Inspect(ctx, srv.Client(), srv.Bucket(), "locks/exports")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d of %d units held by %d holders\n", st.Units, st.Limit, len(st.Holders))
	for _, s := range workers[:2] {
		if err := s.Release(ctx); err != nil {
			log.Fatal(err)
		}
	}
	// Output:
	// worker 0 runs with token 1
	// worker 1 runs with token 2
	// worker 2 waits: held by export-a, export-b
	// 2 of 2 units held by 2 holders
}

func ExampleRWMutex() {
	srv, err := s3locktest.Start()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()

	backup, _ := s3lock.NewRWMutex(srv.Client(), srv.Bucket(), "locks/repo", s3lock.WithOwner("backup"))
	check, _ := s3lock.NewRWMutex(srv.Client(), srv.Bucket(), "locks/repo", s3lock.WithOwner("check"))
	prune, _ := s3lock.NewRWMutex(srv.Client(), srv.Bucket(), "locks/repo", s3lock.WithOwner("prune"))

	// Backups and checks read the repository together.
	if err := backup.RLock(ctx); err != nil {
		log.Fatal(err)
	}
	if err := check.RLock(ctx); err != nil {
		log.Fatal(err)
	}
	// Pruning needs it alone.
	if err := prune.TryLock(ctx); errors.Is(err, s3lock.ErrLocked) {
		fmt.Println("prune waits for the readers")
	}
	_ = backup.RUnlock(ctx)
	_ = check.RUnlock(ctx)
	if err := prune.TryLock(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("prune runs with token", prune.Token())
	_ = prune.Unlock(ctx)
	// Output:
	// prune waits for the readers
	// prune runs with token 3
}

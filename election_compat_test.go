package s3lock_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/internal/prevrelease"
	"github.com/s3lock/s3lock/s3locktest"
)

// watchRecord polls the raw lock object every few milliseconds until stop
// is closed, and reports the first held record of one of owners that does
// not carry want[owner] as its value (and schema 2), and how many held
// records with a reservation (next) it saw.
func watchRecord(t *testing.T, srv *s3locktest.Server, key string, want map[string]string, stop <-chan struct{}) (bad chan string, reserved chan int) {
	bad, reserved = make(chan string, 1), make(chan int, 1)
	go func() {
		n := 0
		defer func() { reserved <- n; close(bad) }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			rec, err := rawRecordErr(srv, key)
			if err != nil {
				continue
			}
			v, ok := want[fmt.Sprint(rec["owner"])]
			if rec["state"] != "held" || !ok {
				continue
			}
			if rec["value"] != v || rec["s3lock"] != 2.0 {
				bad <- fmt.Sprint(rec)
				return
			}
			if rec["next"] != nil {
				n++
			}
		}
	}()
	return bad, reserved
}

// TestElectionPrevReleaseMutexWaits: a Mutex of the previous release waits
// with Lock on a key held by a leader that renews. It never erases the
// leader's value, never gets the lock while the leader is live (for
// several of its TTLs), and gets it once the leader resigns, with a larger
// token. The two exclude each other the other way round too.
func TestElectionPrevReleaseMutexWaits(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "elect/prev-release"
	const ttl = time.Second
	e := newElection(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("leader"), s3lock.WithTTL(ttl),
		s3lock.WithRetryInterval(20*time.Millisecond))
	if err := e.Campaign(ctx, "10.0.0.1:8080"); err != nil {
		t.Fatal(err)
	}
	term := e.Token()
	old, err := prevrelease.New(srv.Client(), srv.Bucket(), key, prevrelease.WithOwner("old"), prevrelease.WithTTL(ttl),
		prevrelease.WithRetryInterval(20*time.Millisecond), prevrelease.WithAutoRenew(ttl/3))
	if err != nil {
		t.Fatal(err)
	}
	if err := old.TryLock(ctx); !errors.Is(err, prevrelease.ErrLocked) {
		t.Fatalf("previous release's TryLock() on a held election key = %v; want ErrLocked", err)
	}
	stop := make(chan struct{})
	bad, _ := watchRecord(t, srv, key, map[string]string{"leader": "10.0.0.1:8080"}, stop)
	locked := make(chan error, 1)
	go func() { locked <- old.Lock(ctx) }()
	select {
	case err := <-locked:
		t.Fatalf("previous release's Lock() returned %v (token %d) while the leader was live", err, old.Token())
	case <-time.After(5 * ttl):
	}
	if err := e.Context().Err(); err != nil {
		t.Fatalf("leader's term ended while an old Mutex waited: %v", context.Cause(e.Context()))
	}
	if ld, err := e.Leader(ctx); err != nil || ld.Value != "10.0.0.1:8080" {
		t.Errorf("Leader() = %+v, %v; want the value kept", ld, err)
	}
	if err := e.Resign(ctx); err != nil {
		t.Fatalf("Resign() = %v", err)
	}
	close(stop)
	if b, ok := <-bad; ok {
		t.Errorf("held record without the leader's value while an old Mutex waited: %s", b)
	}
	select {
	case err := <-locked:
		if err != nil {
			t.Fatalf("previous release's Lock() after Resign = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("previous release's Lock() did not get the lock after Resign")
	}
	if got := old.Token(); got <= term {
		t.Errorf("old Mutex's token %d; want larger than the term's %d", got, term)
	}
	// And the other way: a Campaign waits for the old Mutex.
	tctx, cancel := context.WithTimeout(ctx, 3*ttl)
	defer cancel()
	if err := e.Campaign(tctx, "x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Campaign() while an old Mutex holds = %v; want DeadlineExceeded", err)
	}
	oldTok := old.Token()
	if err := old.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Campaign(ctx, "y"); err != nil {
		t.Fatal(err)
	}
	if got := e.Token(); got <= oldTok {
		t.Errorf("term after the old Mutex: token %d; want larger than %d", got, oldTok)
	}
	if err := e.Resign(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestElectionMutexWaitsThroughTerms: a Mutex of this release waits with
// Lock while two candidates take turns in office, so it is passed over and
// reserves the next turn in their records: every held record of theirs
// keeps its value, and the Mutex gets the lock.
func TestElectionMutexWaitsThroughTerms(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "elect/mutex-waits"
	want := map[string]string{"a": "addr-a", "b": "addr-b"}
	stop := make(chan struct{})
	bad, reserved := watchRecord(t, srv, key, want, stop)
	// The Mutex polls less often than the office changes hands, so it
	// is passed over and reserves the next turn.
	m := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("m"), s3lock.WithRetryInterval(300*time.Millisecond))
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, name := range []string{"a", "b"} {
		e := newElection(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner(name), s3lock.WithRetryInterval(20*time.Millisecond))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
				err := e.Campaign(cctx, want[name])
				cancel()
				if err != nil {
					continue
				}
				time.Sleep(60 * time.Millisecond)
				if err := e.Resign(ctx); err != nil {
					t.Errorf("%s.Resign() = %v", name, err)
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	err := m.Lock(lctx)
	close(done)
	if err != nil {
		t.Errorf("Mutex Lock() while candidates take turns = %v", err)
	} else if err := m.Unlock(ctx); err != nil {
		t.Error(err)
	}
	wg.Wait()
	close(stop)
	if b, ok := <-bad; ok {
		t.Errorf("held record of a candidate without its value while a Mutex waited: %s", b)
	}
	t.Logf("held records seen with a reservation: %d", <-reserved)
}

// rawRecordErr is rawRecord returning its error instead of failing the
// test (for goroutines).
func rawRecordErr(srv *s3locktest.Server, key string) (map[string]any, error) {
	out, err := srv.Client().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(srv.Bucket()), Key: aws.String(key)})
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(out.Body).Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

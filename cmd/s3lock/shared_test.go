package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/internal/s3http"
)

// holdNamed starts "s3lock run flags... URL -- block" with --owner name;
// its ready and release files are named after name, so several of them
// can hold one key. It waits until the command runs.
func holdNamed(t *testing.T, h *harness, key, name string, flags ...string) (b *background, ready string, release func()) {
	t.Helper()
	ready, rel := h.path(name+".ready"), h.path(name+".release")
	argv, env := childCmd("block", "READY="+ready, "RELEASE="+rel)
	args := append(append([]string{"run", "--owner", name}, flags...), h.url(key), "--")
	b = h.start(env, append(args, argv...)...)
	waitFile(t, ready, b)
	return b, ready, func() {
		if err := os.WriteFile(rel, nil, 0o644); err != nil {
			t.Error(err)
		}
	}
}

// holderID returns the ID under which owner holds key.
func holderID(t *testing.T, h *harness, key, owner string) string {
	t.Helper()
	st := inspect(t, h, key)
	for _, hs := range st.Holders {
		if hs.Owner == owner {
			return hs.ID
		}
	}
	t.Fatalf("%s lists no holder %q: %+v", key, owner, st.Holders)
	return ""
}

// TestRunSlots: two "run --slots 2" commands run at once and a third
// waits until one is done; other limits, --shared and plain run are kept
// out; status lists both holders; unlock --force --holder breaks exactly
// one of them.
func TestRunSlots(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	key := "locks/slots"
	// Both commands are running at the same time: holdNamed returns only
	// once each child has started, and neither has been released.
	a, _, releaseA := holdNamed(t, h, key, "slot-a", "--slots", "2", "--ttl", "3s")
	b, _, releaseB := holdNamed(t, h, key, "slot-b", "--slots", "2", "--ttl", "3s")

	marker := h.path("marker")
	argv, env := childCmd("marker", "MARKER="+marker)
	tests := []struct {
		name  string
		flags []string
		want  int
		says  string
	}{
		{"third slot, --wait 0", []string{"--slots", "2", "--wait", "0"}, exitConflict, "no free slot"},
		{"third slot, timed wait", []string{"--slots", "2", "--wait", "500ms"}, exitConflict, "no free slot"},
		{"exclusive run", []string{"--wait", "0"}, exitConflict, "held"},
		{"another limit", []string{"--slots", "3"}, exitLimitConflict, "limit"},
		{"shared", []string{"--shared"}, exitLimitConflict, "limit"},
	}
	for _, tc := range tests {
		args := append(append([]string{"run"}, tc.flags...), h.url(key), "--")
		r := h.run(env, append(args, argv...)...)
		if r.code != tc.want || exists(marker) {
			t.Errorf("%s: exit code = %d, ran: %v; want %d, not run (stderr: %s)", tc.name, r.code, exists(marker), tc.want, r.stderr)
		}
		if ls := lines(r.stderr); len(ls) != 1 || !strings.Contains(ls[0], tc.says) {
			t.Errorf("%s: stderr = %q; want one line saying %q", tc.name, r.stderr, tc.says)
		}
	}

	// status shows the limit, the units held and both holders.
	r := h.run(nil, "status", h.url(key))
	for _, s := range []string{"limit:       2 units (semaphore); 2 held", "holders:     2", `owner "slot-a"  units 1`, `owner "slot-b"  units 1`} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("status: stdout %q lacks %q", r.stdout, s)
		}
	}
	st := inspect(t, h, key)
	j := statusJSONOf(t, h, key)
	if j.Shared != "semaphore" || j.Limit != 2 || j.Units != 2 || len(j.Holders) != 2 {
		t.Fatalf("status --json = %+v; want a semaphore of limit 2 with 2 units held by 2 holders", j)
	}
	// The holders renew between the two reads: match them by ID, and
	// let a lease end later, not earlier.
	for i, hj := range j.Holders {
		var hs *s3lock.HolderStatus
		for k := range st.Holders {
			if st.Holders[k].ID == hj.ID {
				hs = &st.Holders[k]
			}
		}
		if hs == nil || hj.Owner != hs.Owner || hj.Units != 1 || hj.Token != hs.Token || hj.Token == 0 || hj.Expired || hj.ExpiresAt.Before(hs.Until) || hj.TTLMillis != 3000 {
			t.Errorf("status --json holder %d = %+v; want it to match %+v", i, hj, hs)
		}
	}

	// A third waits while both slots are taken, and runs once one is free.
	waiter, gets := startWaiter(t, h, env, append([]string{"run", "--slots", "2", h.url(key), "--"}, argv...)...)
	waitGets(t, gets, 2, waiter)
	if exists(marker) {
		t.Fatal("a third command ran while both slots were taken")
	}
	releaseB()
	if r := b.wait(); r.code != 0 {
		t.Errorf("slot-b exit code = %d; want 0 (stderr: %s)", r.code, r.stderr)
	}
	if r := waiter.wait(); r.code != 0 || !exists(marker) {
		t.Errorf("waiter: exit code %d, ran: %v; want 0 and ran (stderr: %s)", r.code, exists(marker), r.stderr)
	}

	// Take slot b again, then break exactly slot a's hold.
	b, _, releaseB = holdNamed(t, h, key, "slot-b2", "--slots", "2", "--ttl", "3s")
	idA := holderID(t, h, key, "slot-a")
	idB := holderID(t, h, key, "slot-b2")
	r = h.run(nil, "unlock", "--holder", idA, h.url(key))
	if r.code != exitUsage || !strings.Contains(r.stderr, "--force") {
		t.Errorf("unlock --holder without --force: exit code %d, stderr %q; want %d asking for --force", r.code, r.stderr, exitUsage)
	}
	r = h.run(nil, "unlock", "--force", "--holder", "no-such-holder", h.url(key))
	if r.code != exitFailure || !strings.Contains(r.stderr, "does not list holder no-such-holder") || !strings.Contains(r.stderr, idA) {
		t.Errorf("unlock --force --holder no-such-holder: exit code %d, stderr %q; want %d listing the holders", r.code, r.stderr, exitFailure)
	}
	if n := len(inspect(t, h, key).Holders); n != 2 {
		t.Fatalf("after the refused unlocks the lock has %d holders; want 2", n)
	}
	r = h.run(nil, "unlock", "--force", "--holder", idA, h.url(key))
	if r.code != 0 || !strings.Contains(r.stdout, "broke holder "+idA) || !strings.Contains(r.stdout, `"slot-a"`) {
		t.Errorf("unlock --force --holder %s: exit code %d, stdout %q, stderr %q; want 0 naming slot-a", idA, r.code, r.stdout, r.stderr)
	}
	if st := inspect(t, h, key); len(st.Holders) != 1 || st.Holders[0].ID != idB {
		t.Errorf("after breaking %s the holders are %+v; want only %s (slot-b2)", idA, st.Holders, idB)
	}
	if r := a.wait(); r.code != exitLeaseLost {
		t.Errorf("broken slot-a: exit code %d; want %d (stderr: %s)", r.code, exitLeaseLost, r.stderr)
	}
	releaseA() // nothing waits for it any more
	if st := inspect(t, h, key); len(st.Holders) != 1 || st.Holders[0].ID != idB || st.Holders[0].Expired {
		t.Errorf("after slot-a stopped the holders are %+v; want only %s, live", st.Holders, idB)
	}
	releaseB()
	if r := b.wait(); r.code != 0 {
		t.Errorf("slot-b2 exit code = %d; want 0 (stderr: %s)", r.code, r.stderr)
	}
	if st := inspect(t, h, key); st.Held {
		t.Errorf("after all runs the lock is %+v; want free", st)
	}
}

// TestRunShared: "run --shared" commands run at once; a plain run waits
// for them, and new shared runs wait behind it.
func TestRunShared(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	key := "locks/shared"
	r1, _, release1 := holdNamed(t, h, key, "reader-1", "--shared")
	r2, _, release2 := holdNamed(t, h, key, "reader-2", "--shared")

	r := h.run(nil, "status", h.url(key))
	for _, s := range []string{"limit:       shared (readers); 2 held", "holders:     2", `owner "reader-1"`, `owner "reader-2"`} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("status: stdout %q lacks %q", r.stdout, s)
		}
	}
	if j := statusJSONOf(t, h, key); j.Shared != "readers" || j.Limit != 0 || j.Units != 2 || len(j.Holders) != 2 {
		t.Errorf("status --json = %+v; want readers, 2 units, 2 holders", j)
	}

	marker := h.path("writer")
	argv, env := childCmd("marker", "MARKER="+marker)
	writer, gets := startWaiter(t, h, env, append([]string{"run", h.url(key), "--"}, argv...)...)
	waitGets(t, gets, 2, writer)
	if exists(marker) {
		t.Fatal("a plain run ran while shared runs held the lock")
	}
	// Once a writer waits, a new reader waits behind it.
	late := h.path("late-reader")
	argvL, envL := childCmd("marker", "MARKER="+late)
	if r := h.run(envL, append([]string{"run", "--shared", "--wait", "0", h.url(key), "--"}, argvL...)...); r.code != exitConflict || exists(late) {
		t.Errorf("a new shared run while a plain run waits: exit code %d, ran: %v; want %d, not run (stderr: %s)", r.code, exists(late), exitConflict, r.stderr)
	}
	release1()
	if r := r1.wait(); r.code != 0 {
		t.Errorf("reader-1 exit code = %d; want 0 (stderr: %s)", r.code, r.stderr)
	}
	if exists(marker) {
		t.Fatal("a plain run ran while a shared run held the lock")
	}
	release2()
	if r := r2.wait(); r.code != 0 {
		t.Errorf("reader-2 exit code = %d; want 0 (stderr: %s)", r.code, r.stderr)
	}
	if r := writer.wait(); r.code != 0 || !exists(marker) {
		t.Errorf("plain run after the readers: exit code %d, ran: %v; want 0 and ran (stderr: %s)", r.code, exists(marker), r.stderr)
	}
}

// TestRunSharedEnv: a shared hold gives the command its token and owner
// (the default owner too), and a --slots run its own.
func TestRunSharedEnv(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	argv, env := childCmd("env")
	for i, flags := range [][]string{{"--slots", "1", "--owner", "job-s"}, {"--shared", "--owner", "job-r"}, {"--shared"}} {
		r := h.run(env, append(append(append([]string{"run"}, flags...), h.url("locks/shared-env"), "--"), argv...)...)
		if r.code != 0 {
			t.Fatalf("run %v: exit code %d (stderr: %s)", flags, r.code, r.stderr)
		}
		owner := flags[len(flags)-1]
		if owner == "--shared" {
			owner = ""
		}
		wantToken := fmt.Sprintf("S3LOCK_TOKEN=%d\n", i+1)
		if !strings.Contains(r.stdout, wantToken) || !strings.Contains(r.stdout, "S3LOCK_OWNER="+owner) || strings.Contains(r.stdout, "S3LOCK_OWNER=\n") {
			t.Errorf("run %v: stdout %q; want %q and the owner %q", flags, r.stdout, wantToken, owner)
		}
	}
}

// TestRunSharedUsage: --slots and --shared are refused with each other,
// with --value, and --slots below 1, before any S3 write.
func TestRunSharedUsage(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	marker := h.path("marker")
	argv, env := childCmd("marker", "MARKER="+marker)
	tests := []struct {
		name  string
		flags []string
		says  string
	}{
		{"both", []string{"--slots", "2", "--shared"}, "--slots and --shared"},
		{"zero slots", []string{"--slots", "0"}, "--slots must be at least 1"},
		{"negative slots", []string{"--slots=-1"}, "--slots must be at least 1"},
		{"value with slots", []string{"--slots", "2", "--value", "x"}, "--value"},
		{"value with shared", []string{"--shared", "--value", "x"}, "--value"},
	}
	before := h.srv.Stats().Snapshot()
	for _, tc := range tests {
		args := append(append([]string{"run"}, tc.flags...), h.url("locks/shared-usage"), "--")
		r := h.run(env, append(args, argv...)...)
		if r.code != exitUsage || exists(marker) {
			t.Errorf("%s: exit code %d, ran: %v; want %d, not run (stderr: %s)", tc.name, r.code, exists(marker), exitUsage, r.stderr)
		}
		if ls := lines(r.stderr); len(ls) != 1 || !strings.Contains(ls[0], tc.says) {
			t.Errorf("%s: stderr %q; want one line saying %q", tc.name, r.stderr, tc.says)
		}
	}
	if puts := h.srv.Stats().Snapshot().Sub(before).Method(http.MethodPut); puts != 0 {
		t.Errorf("refused runs made %d PUTs; want none", puts)
	}
}

// TestUnlockWholeSharedHold: unlock --force without --holder breaks every
// holder it saw; --holder on a Mutex's hold breaks nothing.
func TestUnlockWholeSharedHold(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	key := "locks/shared-break"
	a, _, _ := holdNamed(t, h, key, "sa", "--shared", "--ttl", "3s")
	b, _, _ := holdNamed(t, h, key, "sb", "--shared", "--ttl", "3s")
	r := h.run(nil, "unlock", "--force", h.url(key))
	if r.code != 0 || !strings.Contains(r.stdout, `broke the hold of 2 shared holder(s) ("sa, sb")`) {
		t.Fatalf("unlock --force: exit code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	for _, bg := range []*background{a, b} {
		if r := bg.wait(); r.code != exitLeaseLost {
			t.Errorf("broken reader: exit code %d; want %d (stderr: %s)", r.code, exitLeaseLost, r.stderr)
		}
	}
	if st := inspect(t, h, key); st.Held || len(st.Holders) != 0 {
		t.Errorf("after unlock --force the lock is %+v; want free", st)
	}

	m, _, release := holdNamed(t, h, "locks/mutex-holder", "excl")
	defer func() { release(); m.wait() }()
	// Shared holds wait for an exclusive one.
	for _, flags := range [][]string{{"--shared", "--wait", "0"}, {"--shared", "--wait", "500ms"}, {"--slots", "2", "-n"}} {
		args := append(append([]string{"run"}, flags...), h.url("locks/mutex-holder"), "--", "true")
		if r := h.run(nil, args...); r.code != exitConflict || !strings.Contains(r.stderr, `"excl"`) {
			t.Errorf("run %v on an exclusive hold: exit code %d, stderr %q; want %d naming the holder", flags, r.code, r.stderr, exitConflict)
		}
	}
	before := inspect(t, h, "locks/mutex-holder")
	r = h.run(nil, "unlock", "--force", "--holder", "x", h.url("locks/mutex-holder"))
	if r.code != exitFailure || !strings.Contains(r.stderr, "not a shared hold") {
		t.Errorf("unlock --force --holder on a Mutex's hold: exit code %d, stderr %q; want %d", r.code, r.stderr, exitFailure)
	}
	if st := inspect(t, h, "locks/mutex-holder"); st.ETag != before.ETag {
		t.Errorf("unlock --force --holder changed a Mutex's hold: %+v", st)
	}
}

// TestUnlockChanged: when the lock changes between unlock's read and its
// write, unlock --force (with or without --holder) breaks nothing and
// exits 1. The change is made by a proxy in front of S3, just before it
// passes on unlock's second request.
func TestUnlockChanged(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		extra []string
	}{{"whole", nil}, {"holder", []string{"--holder"}}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			key := "locks/changed"
			sems := make([]*s3lock.Semaphore, 3)
			for i := range sems {
				s, err := s3lock.NewSemaphore(h.srv.Client(), h.srv.Bucket(), key, 3, s3lock.WithOwner(fmt.Sprintf("lib-%d", i)), s3lock.WithTTL(30*time.Second))
				if err != nil {
					t.Fatal(err)
				}
				sems[i] = s
			}
			for _, s := range sems[:2] {
				if err := s.TryAcquire(ctx, 1); err != nil {
					t.Fatal(err)
				}
			}
			t.Cleanup(func() {
				for _, s := range sems {
					_ = s.Release(ctx)
				}
			})
			var (
				mu       sync.Mutex
				requests int
				changed  error
			)
			h.endpoint = s3http.Proxy(t, h.srv.URL(), func(_ http.ResponseWriter, r *http.Request) bool {
				if !strings.HasSuffix(r.URL.Path, "/"+key) {
					return false
				}
				mu.Lock()
				defer mu.Unlock()
				if requests++; requests == 2 {
					changed = sems[2].TryAcquire(ctx, 1) // a third holder joins
				}
				return false
			})
			args := []string{"unlock", "--force"}
			if tc.extra != nil {
				args = append(args, "--holder", holderID(t, h, key, "lib-0"))
			}
			r := h.run(nil, append(args, h.url(key))...)
			mu.Lock()
			if changed != nil {
				t.Fatalf("the third holder could not join: %v", changed)
			}
			mu.Unlock()
			if r.code != exitFailure || !strings.Contains(r.stderr, "changed after it was read") || !strings.Contains(r.stderr, "nothing was broken") {
				t.Errorf("unlock %v: exit code %d, stdout %q, stderr %q; want %d, nothing broken", args, r.code, r.stdout, r.stderr, exitFailure)
			}
			if st := inspect(t, h, key); len(st.Holders) != 3 {
				t.Errorf("after the refused unlock the holders are %+v; want all 3", st.Holders)
			}
			for i, s := range sems {
				if err := s.Context().Err(); err != nil {
					t.Errorf("holder lib-%d lost its hold: %v", i, context.Cause(s.Context()))
				}
			}
		})
	}
}

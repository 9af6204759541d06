package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/internal/s3http"
)

// TestRunMutualExclusion runs several s3lock processes on one key at once,
// each running a critical section that logs when it enters and leaves.
// No two sections may overlap, and every section must see a larger
// fencing token than the one before.
func TestRunMutualExclusion(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const procs, rounds = 3, 2
	logFile := h.path("sections.log")
	argv, env := childCmd("critical", "LOG="+logFile, "SLEEP_MS=150")
	var wg sync.WaitGroup
	results := make(chan result, procs*rounds)
	for p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				cmd := h.command(ctx, env, append([]string{"run", "--owner", fmt.Sprintf("proc-%d", p), h.url("locks/mutex"), "--"}, argv...)...)
				var out, errb strings.Builder
				cmd.Stdout, cmd.Stderr = &out, &errb
				_ = cmd.Run()
				cancel()
				results <- result{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String()}
			}
		}()
	}
	wg.Wait()
	close(results)
	for r := range results {
		if r.code != 0 {
			t.Errorf("s3lock run exit code = %d; want 0 (stderr: %s)", r.code, r.stderr)
		}
	}
	data, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	type event struct {
		enter bool
		at    int64
		token uint64
	}
	var events []event
	for _, l := range lines(string(data)) {
		var kind string
		var ev event
		if _, err := fmt.Sscanf(l, "%s %d %d", &kind, &ev.at, &ev.token); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		ev.enter = kind == "enter"
		events = append(events, ev)
	}
	sort.SliceStable(events, func(i, j int) bool { return events[i].at < events[j].at })
	if len(events) != 2*procs*rounds {
		t.Fatalf("got %d log lines; want %d:\n%s", len(events), 2*procs*rounds, data)
	}
	var last uint64
	for i := 0; i < len(events); i += 2 {
		in, out := events[i], events[i+1]
		if !in.enter || out.enter || in.token != out.token {
			t.Fatalf("critical sections overlap or interleave at line %d:\n%s", i, data)
		}
		if in.token <= last {
			t.Errorf("section %d has token %d after token %d; want strictly increasing", i/2, in.token, last)
		}
		last = in.token
	}
}

// holdLock starts an s3lock run whose child blocks until release() and
// waits for the child to be running.
func holdLock(t *testing.T, h *harness, key string, extraEnv []string, flags ...string) (b *background, ready string, release func()) {
	t.Helper()
	ready = h.path(strings.ReplaceAll(key, "/", "_") + ".ready")
	rel := h.path(strings.ReplaceAll(key, "/", "_") + ".release")
	argv, env := childCmd("block", append([]string{"READY=" + ready, "RELEASE=" + rel}, extraEnv...)...)
	args := append(append([]string{"run"}, flags...), h.url(key), "--")
	b = h.start(env, append(args, argv...)...)
	waitFile(t, ready, b)
	return b, ready, func() {
		if err := os.WriteFile(rel, nil, 0o644); err != nil {
			t.Error(err)
		}
	}
}

func TestRunConflict(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	key := "locks/conflict"
	holder, _, release := holdLock(t, h, key, nil, "--owner", "holder-A")

	marker := h.path("marker")
	argv, env := childCmd("marker", "MARKER="+marker)
	tests := []struct {
		name  string
		flags []string
		want  int
	}{
		{"wait 0", []string{"--wait", "0"}, exitConflict},
		{"nonblock with exit code", []string{"-n", "-E", "9"}, 9},
		{"conflict exit code long form", []string{"--wait=0", "--conflict-exit-code=0"}, 0},
		{"timed wait", []string{"--wait", "700ms"}, exitConflict},
		{"flock-style seconds", []string{"-w", "0.3"}, exitConflict},
	}
	for _, tc := range tests {
		args := append(append([]string{"run"}, tc.flags...), h.url(key), "--")
		r := h.run(env, append(args, argv...)...)
		if r.code != tc.want {
			t.Errorf("%s: exit code = %d; want %d (stderr: %s)", tc.name, r.code, tc.want, r.stderr)
		}
		if exists(marker) {
			t.Fatalf("%s: the command ran while another process held the lock", tc.name)
		}
		if ls := lines(r.stderr); len(ls) != 1 || !strings.Contains(ls[0], "holder-A") || !strings.Contains(ls[0], "held") {
			t.Errorf("%s: stderr = %q; want one line naming the holder", tc.name, r.stderr)
		}
		if tc.name == "timed wait" && r.elapsed < 700*time.Millisecond {
			t.Errorf("--wait 700ms gave up after %v; want at least 700ms", r.elapsed)
		}
	}

	// A waiter stopped by SIGTERM exits 128+15 without running anything.
	// It is sent once it has read the held lock twice: it is waiting.
	waiter, waiterGets := startWaiter(t, h, env, append([]string{"run", h.url(key), "--"}, argv...)...)
	waitGets(t, waiterGets, 2, waiter)
	if err := waiter.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if r := waiter.wait(); r.code != exitSignal+int(syscall.SIGTERM) || exists(marker) {
		t.Errorf("waiter after SIGTERM: exit code %d, command ran: %v; want %d and not run (stderr: %s)", r.code, exists(marker), exitSignal+int(syscall.SIGTERM), r.stderr)
	}

	// Waiters without --wait and with a long --wait get the lock once the
	// holder releases it.
	markerA, markerB := h.path("marker-a"), h.path("marker-b")
	argvA, envA := childCmd("marker", "MARKER="+markerA)
	argvB, envB := childCmd("marker", "MARKER="+markerB)
	waiterA, getsA := startWaiter(t, h, envA, append([]string{"run", h.url(key), "--"}, argvA...)...)
	waiterB, getsB := startWaiter(t, h, envB, append([]string{"run", "--wait", "60s", h.url(key), "--"}, argvB...)...)
	waitGets(t, getsA, 2, waiterA)
	waitGets(t, getsB, 2, waiterB)
	if exists(markerA) || exists(markerB) {
		t.Fatal("a waiting command ran while the lock was held")
	}
	release()
	if r := holder.wait(); r.code != 0 {
		t.Errorf("holder exit code = %d; want 0 (stderr: %s)", r.code, r.stderr)
	}
	for _, w := range []struct {
		b      *background
		marker string
	}{{waiterA, markerA}, {waiterB, markerB}} {
		if r := w.b.wait(); r.code != 0 || !exists(w.marker) {
			t.Errorf("waiter %v: exit code = %d, ran: %v; want 0 and ran (stderr: %s)", w.b.cmd.Args[1:4], r.code, exists(w.marker), r.stderr)
		}
	}
}

// startWaiter starts s3lock like h.start, through its own proxy to h's
// server that counts the GETs it passes on: how many times this process
// has read the lock.
func startWaiter(t *testing.T, h *harness, env []string, args ...string) (*background, *atomic.Int64) {
	t.Helper()
	gets := new(atomic.Int64)
	hw := *h
	hw.endpoint = s3http.Proxy(t, h.srv.URL(), func(_ http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet {
			gets.Add(1)
		}
		return false
	})
	return hw.start(env, args...), gets
}

// waitGets waits up to 20 s for a process started by startWaiter to have
// read the lock n times: after the first it found the lock held, after
// the second it has waited and is waiting still.
func waitGets(t *testing.T, gets *atomic.Int64, n int64, b *background) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if gets.Load() >= n {
			return
		}
	}
	t.Fatalf("%v read the lock %d times in 20s; want %d (stderr: %s)", b.cmd.Args[1:], gets.Load(), n, b.stderr())
}

// TestRunS3Unavailable checks that an S3 that keeps failing is reported
// as such (69), not as a lock conflict, and that nothing runs.
func TestRunS3Unavailable(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.endpoint = s3http.Proxy(t, h.srv.URL(), func(w http.ResponseWriter, _ *http.Request) bool {
		s3http.WriteError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "injected")
		return true
	})
	marker := h.path("marker")
	argv, env := childCmd("marker", "MARKER="+marker)
	for _, flags := range [][]string{{"--wait", "0"}, {"--wait", "1s"}} {
		args := append(append([]string{"run"}, flags...), h.url("locks/unavailable"), "--")
		r := h.run(env, append(args, argv...)...)
		if r.code != exitUnavailable || exists(marker) {
			t.Errorf("run %v against a failing S3: exit code %d, ran: %v; want %d, not run (stderr: %s)", flags, r.code, exists(marker), exitUnavailable, r.stderr)
		}
		if !strings.Contains(r.stderr, "503") {
			t.Errorf("run %v: stderr %q; want the S3 error", flags, r.stderr)
		}
	}
	if r := h.run(nil, "status", h.url("locks/unavailable")); r.code != exitUnavailable || len(lines(r.stderr)) != 1 {
		t.Errorf("status against a failing S3: exit code %d, stderr %q; want %d and one line", r.code, r.stderr, exitUnavailable)
	}
}

// TestRunGivesUpOnUnreachableS3: without --wait (wait forever), run still
// exits 69 once S3 has failed for --failure-timeout without a break, and
// logs the failure once instead of once per retry.
func TestRunGivesUpOnUnreachableS3(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.endpoint = "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	marker := h.path("marker")
	argv, env := childCmd("marker", "MARKER="+marker)
	for _, flags := range [][]string{{"--failure-timeout", "2s"}, {"--failure-timeout", "2s", "--wait", "1h"}} {
		args := append(append([]string{"run"}, flags...), h.url("locks/unreachable"), "--")
		r := h.run(env, append(args, argv...)...)
		if r.code != exitUnavailable || exists(marker) {
			t.Errorf("run %v against an endpoint where nothing listens: exit code %d, ran: %v; want %d, not run (stderr: %s)", flags, r.code, exists(marker), exitUnavailable, r.stderr)
		}
		if n := strings.Count(r.stderr, "S3 request failed"); n != 1 {
			t.Errorf("run %v: %d warnings of a failed request in %v; want 1, the rest rate-limited (stderr: %s)", flags, n, r.elapsed, r.stderr)
		}
		if !strings.Contains(r.stderr, "gave up after S3 failed for") {
			t.Errorf("run %v: stderr %q; want the reason it gave up", flags, r.stderr)
		}
	}
}

func TestRunExitCodes(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, code := range []int{0, 1, 3, 42, 255} {
		argv, env := childCmd("exit", "CODE="+strconv.Itoa(code))
		r := h.run(env, append([]string{"run", h.url("locks/exit"), "--"}, argv...)...)
		if r.code != code || r.stderr != "" {
			t.Errorf("child exit %d: s3lock exit code = %d, stderr %q; want %d and nothing of s3lock's own", code, r.code, r.stderr, code)
		}
	}
	shell := []struct {
		script string
		want   int
	}{
		{"exit 7", 7},
		{"true", 0},
		{`test "$S3LOCK_KEY" = locks/exit`, 0},
		{"kill -9 $$", exitSignal + int(syscall.SIGKILL)},
	}
	for _, tc := range shell {
		r := h.run(nil, "run", h.url("locks/exit"), "-c", tc.script)
		if r.code != tc.want {
			t.Errorf("-c %q: exit code = %d; want %d (stderr: %s)", tc.script, r.code, tc.want, r.stderr)
		}
	}
	// The lock is free after all of them (each released it).
	st := inspect(t, h, "locks/exit")
	if st.Held {
		t.Errorf("after the runs the lock is %+v; want free", st)
	}

	// A command that does not exist: 127, and the lock is never taken.
	before := h.srv.Stats().Snapshot()
	r := h.run(nil, "run", h.url("locks/notfound"), "--", "/no/such/command-s3lock-test")
	if r.code != exitNotFound || len(lines(r.stderr)) != 1 {
		t.Errorf("missing command: exit code %d, stderr %q; want %d and one line", r.code, r.stderr, exitNotFound)
	}
	if puts := h.srv.Stats().Snapshot().Sub(before).Method(http.MethodPut); puts != 0 {
		t.Errorf("missing command: %d PUTs; want none (the lock must not be taken)", puts)
	}
}

func TestRunEnvAndStdio(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	argv, env := childCmd("env")
	for i, want := range []string{"1", "2"} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := h.command(ctx, env, append([]string{"run", "--owner", "job-a", h.url("locks/env"), "--"}, argv...)...)
		cmd.Stdin = strings.NewReader(fmt.Sprintf("hello %d", i))
		r := runCmd(t, cmd)
		cancel()
		if r.code != 0 {
			t.Fatalf("exit code = %d; want 0 (stderr: %s)", r.code, r.stderr)
		}
		wantOut := fmt.Sprintf("S3LOCK_TOKEN=%s\nS3LOCK_OWNER=job-a\nS3LOCK_KEY=locks/env\nS3LOCK_BUCKET=%s\nstdin:hello %d\n", want, h.srv.Bucket(), i)
		if r.stdout != wantOut {
			t.Errorf("run %d: stdout = %q; want %q", i, r.stdout, wantOut)
		}
		if r.stderr != "" {
			t.Errorf("run %d: stderr = %q; want empty", i, r.stderr)
		}
	}
}

func TestRunForwardsSignals(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		key := "locks/signal-" + strconv.Itoa(int(sig))
		b, ready, _ := holdLock(t, h, key, nil)
		if err := b.cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		r := b.wait()
		if sig == syscall.SIGTERM {
			// The child traps SIGTERM and exits 3.
			if r.code != 3 || !exists(ready+".term") {
				t.Errorf("SIGTERM: exit code %d, child saw SIGTERM: %v; want 3, true (stderr: %s)", r.code, exists(ready+".term"), r.stderr)
			}
		} else if r.code != exitSignal+int(sig) {
			// The child does not handle SIGINT and dies of it.
			t.Errorf("SIGINT: exit code %d; want %d (stderr: %s)", r.code, exitSignal+int(sig), r.stderr)
		}
		if st := inspect(t, h, key); st.Held || st.Generation != 1 {
			t.Errorf("%v: after exit the lock is held=%v generation=%d; want released at generation 1", sig, st.Held, st.Generation)
		}
	}
}

// TestRunLeaseLostRenewalFails puts a proxy in front of S3 that starts
// answering 503 to every PUT: renewal fails, the lease runs out, and the
// child must be stopped before it does.
func TestRunLeaseLostRenewalFails(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var failPuts atomic.Bool
	h.endpoint = s3http.Proxy(t, h.srv.URL(), func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPut || !failPuts.Load() {
			return false
		}
		s3http.WriteError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "injected")
		return true
	})

	b, ready, _ := holdLock(t, h, "locks/lost", nil, "--ttl", "2s")
	failPuts.Store(true)
	r := b.wait()
	if r.code != exitLeaseLost {
		t.Fatalf("exit code = %d; want %d (stderr: %s)", r.code, exitLeaseLost, r.stderr)
	}
	if !exists(ready + ".term") {
		t.Errorf("the child was not sent SIGTERM (stderr: %s)", r.stderr)
	}
	if !strings.Contains(r.stderr, "lease lost: "+h.url("locks/lost")) {
		t.Errorf("stderr = %q; want it to say the lease was lost", r.stderr)
	}
	// The child had to go before another process could take the lock: the
	// lease was 2 s, it is measured from before the last good renewal.
	if r.elapsed > 30*time.Second {
		t.Errorf("s3lock took %v to stop the child", r.elapsed)
	}
}

// TestRunLeaseLostForceUnlock breaks a running hold with unlock --force:
// the holder's next renewal finds its lease lost. Its child ignores
// SIGTERM, so it must be killed with SIGKILL after --kill-grace; a
// grandchild in the same process group must go too.
func TestRunLeaseLostForceUnlock(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	key := "locks/broken"
	b, ready, _ := holdLock(t, h, key, []string{"IGNORE_TERM=1"}, "--ttl", "3s", "--kill-grace", "300ms", "--owner", "victim")
	r := h.run(nil, "unlock", "--force", h.url(key))
	if r.code != 0 || !strings.Contains(r.stdout, `"victim"`) {
		t.Fatalf("unlock --force: exit code %d, stdout %q, stderr %q; want 0 naming the holder", r.code, r.stdout, r.stderr)
	}
	res := b.wait()
	if res.code != exitLeaseLost {
		t.Fatalf("holder exit code = %d; want %d (stderr: %s)", res.code, exitLeaseLost, res.stderr)
	}
	if !strings.Contains(res.stderr, "SIGKILL") || !strings.Contains(res.stderr, "lease lost: "+h.url(key)) {
		t.Errorf("holder stderr = %q; want the reason and the SIGKILL", res.stderr)
	}
	if exists(ready + ".term") {
		t.Error("the child should have ignored SIGTERM")
	}

	// Grandchildren: a shell that started a background sleep.
	pidFile := h.path("grandchild.pid")
	key2 := "locks/broken-group"
	gb := h.start([]string{"PIDFILE=" + pidFile}, "run", "--ttl", "3s", "--kill-grace", "2s", h.url(key2), "-c", `sleep 30 & echo $! > "$PIDFILE.tmp"; mv "$PIDFILE.tmp" "$PIDFILE"; wait`)
	waitFile(t, pidFile, gb)
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	if r := h.run(nil, "unlock", "--force", h.url(key2)); r.code != 0 {
		t.Fatalf("unlock --force: exit code %d (stderr %s)", r.code, r.stderr)
	}
	if r := gb.wait(); r.code != exitLeaseLost {
		t.Fatalf("holder exit code = %d; want %d (stderr: %s)", r.code, exitLeaseLost, r.stderr)
	}
	gone := false
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			gone = true
			break
		}
	}
	if !gone {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		t.Errorf("the command's background process %d survived the lost lease", pid)
	}
}

// inspect reads the lock's status through the library.
func inspect(t *testing.T, h *harness, key string) *s3lock.LockStatus {
	t.Helper()
	st, err := s3lock.Inspect(context.Background(), h.srv.Client(), h.srv.Bucket(), key)
	if err != nil {
		t.Fatalf("Inspect(%s) = %v", key, err)
	}
	return st
}

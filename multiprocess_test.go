package s3lock_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock/internal/s3servers"
	"github.com/s3lock/s3lock/s3locktest"
)

// mpTarget is an S3 endpoint that separate processes can reach.
type mpTarget struct {
	endpoint, bucket  string
	accessKey, secret string
	client            *s3.Client
}

// TestMultiProcessKill runs 4 lockworker processes contending on one lock,
// each doing read-modify-write increments of a counter object inside its
// critical sections, and SIGKILLs the holder of the third hold in the
// middle of its section. It checks that:
//   - the next hold (the victim's generation + 1) is announced at least one
//     TTL after the victim's hold was (measured on this process's monotonic
//     clock from the arrival of the victim's ACQUIRED line);
//   - every section read the counter as left by all committed sections
//     before it (in fencing-token order): no overlap, no lost update;
//   - the counter ends equal to the number of committed sections: only the
//     killed section's increment is missing;
//   - all processes are reaped; the survivors exit 0.
func TestMultiProcessKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a helper binary and runs processes for ~15 s")
	}
	bin := mpBuildWorker(t)
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) mpTarget
	}{
		{"gofakes3", func(t *testing.T) mpTarget {
			srv := s3locktest.New(t)
			return mpTarget{srv.URL(), srv.Bucket(), "s3locktest", "s3locktest", srv.Client()}
		}},
		{"versitygw", func(t *testing.T) mpTarget {
			srv := s3servers.Versitygw(t)
			return mpTarget{srv.URL(), srv.Bucket(), s3servers.AccessKey, s3servers.SecretKey, srv.Client()}
		}},
		{"seaweedfs", func(t *testing.T) mpTarget {
			srv := s3servers.SeaweedFS(t)
			return mpTarget{srv.URL(), srv.Bucket(), s3servers.AccessKey, s3servers.SecretKey, srv.Client()}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { mpRun(t, bin, tc.start(t)) })
	}
}

// mpBuildWorker builds internal/lockworker into a temporary directory, with
// the race detector when this test binary has it.
func mpBuildWorker(t *testing.T) string {
	t.Helper()
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to build the worker: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "lockworker")
	args := []string{"build", "-o", bin}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" && s.Value == "true" {
				args = append(args, "-race")
			}
		}
	}
	args = append(args, "./internal/lockworker")
	start := time.Now()
	out, err := exec.Command(gotool, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("built lockworker (%s) in %v", strings.Join(args[3:], " "), time.Since(start).Round(time.Millisecond))
	return bin
}

// mpEvent is one announcement line of a worker, or its end of output.
type mpEvent struct {
	worker int
	at     time.Time // arrival, on this process's monotonic clock
	fields []string  // nil at end of output
}

// mpSection is one critical section as the workers announced it.
type mpSection struct {
	worker    int
	token     uint64
	read      int  // counter value read after acquiring
	committed bool // COMMITTED announced
	at        time.Time
}

func mpRun(t *testing.T, bin string, target mpTarget) {
	const (
		workers    = 4
		iterations = 3
		ttl        = 2 * time.Second
		hold       = 500 * time.Millisecond
		victimNth  = 3 // kill the holder of the third hold
	)
	dir := t.TempDir()
	events := make(chan mpEvent, 64)
	cmds := make([]*exec.Cmd, workers)
	var readers sync.WaitGroup
	reaped := make([]bool, workers)
	waitErr := make([]error, workers)
	// Cleanup (runs even when the test fails): kill whatever still runs,
	// let the readers drain, reap every process.
	t.Cleanup(func() {
		for i, c := range cmds {
			if c != nil && !reaped[i] {
				_ = c.Process.Kill()
			}
		}
		go func() {
			for range events {
			}
		}()
		readers.Wait()
		close(events)
		for i, c := range cmds {
			if c != nil && !reaped[i] {
				_ = c.Wait()
			}
		}
	})
	for i := range workers {
		cmd := exec.Command(bin,
			"-endpoint", target.endpoint, "-bucket", target.bucket,
			"-access-key", target.accessKey, "-secret-key", target.secret,
			"-key", "mp/lock", "-counter", "mp/counter",
			"-owner", fmt.Sprintf("w%d", i),
			"-ttl", ttl.String(), "-hold", hold.String(), "-retry", "100ms", "-pause", "150ms",
			"-iterations", strconv.Itoa(iterations), "-deadline", "90s")
		stderr, err := os.Create(filepath.Join(dir, fmt.Sprintf("w%d.stderr", i)))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting worker %d: %v", i, err)
		}
		stderr.Close()
		cmds[i] = cmd
		readers.Add(1)
		go func() {
			defer readers.Done()
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				events <- mpEvent{worker: i, at: time.Now(), fields: strings.Fields(sc.Text())}
			}
			_, _ = io.Copy(io.Discard, stdout)
			events <- mpEvent{worker: i, at: time.Now()}
		}()
	}
	started := time.Now()

	var (
		sections   = map[uint64]*mpSection{}
		acquired   int
		victim     = -1
		victimSec  *mpSection
		killedAt   time.Time
		takeover   *mpSection
		open       = workers
		done       = make([]bool, workers)
		timeout    = time.NewTimer(60 * time.Second)
		protoError []string
	)
	defer timeout.Stop()
	for open > 0 {
		var ev mpEvent
		select {
		case ev = <-events:
		case <-timeout.C:
			t.Fatalf("workers still running after 60s; sections so far: %d", len(sections))
		}
		if ev.fields == nil {
			open--
			continue
		}
		switch ev.fields[0] {
		case "ACQUIRED":
			token, read := mpUint(t, ev.fields, 1), mpUint(t, ev.fields, 2)
			if _, dup := sections[token]; dup {
				protoError = append(protoError, fmt.Sprintf("token %d granted twice (worker %d)", token, ev.worker))
				continue
			}
			s := &mpSection{worker: ev.worker, token: token, read: int(read), at: ev.at}
			sections[token] = s
			acquired++
			if acquired == victimNth {
				// Kill at once: the worker is now sleeping for hold
				// between reading and writing the counter.
				if err := cmds[ev.worker].Process.Kill(); err != nil {
					t.Fatalf("killing worker %d: %v", ev.worker, err)
				}
				killedAt = time.Now()
				victim, victimSec = ev.worker, s
			}
			if victimSec != nil && token == victimSec.token+1 {
				takeover = s
			}
		case "COMMITTED":
			token := mpUint(t, ev.fields, 1)
			s, ok := sections[token]
			if !ok || s.worker != ev.worker {
				protoError = append(protoError, fmt.Sprintf("worker %d committed token %d it did not announce", ev.worker, token))
				continue
			}
			s.committed = true
			if v := int(mpUint(t, ev.fields, 2)); v != s.read+1 {
				protoError = append(protoError, fmt.Sprintf("token %d wrote %d after reading %d", token, v, s.read))
			}
		case "DONE":
			done[ev.worker] = true
		}
	}
	elapsed := time.Since(started)
	// Reap everyone (readers have seen EOF on every stdout).
	for i, c := range cmds {
		waitErr[i] = c.Wait()
		reaped[i] = true
	}
	for _, e := range protoError {
		t.Error(e)
	}
	if victimSec == nil {
		t.Fatalf("only %d holds were announced; wanted to kill the holder of hold %d", acquired, victimNth)
	}
	for i, err := range waitErr {
		stderr, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("w%d.stderr", i)))
		var ee *exec.ExitError
		switch {
		case i == victim:
			if !errors.As(err, &ee) || ee.ExitCode() != -1 || !strings.Contains(ee.String(), "killed") {
				t.Errorf("victim worker %d exit = %v; want killed by SIGKILL", i, err)
			}
		case err != nil || !done[i]:
			t.Errorf("worker %d exit = %v, done = %v; want success\nstderr:\n%s", i, err, done[i], stderr)
		}
	}
	if victimSec.committed {
		t.Fatalf("the victim (worker %d) committed token %d before the kill landed: the kill was not mid-section", victim, victimSec.token)
	}

	// The takeover: not before one TTL after the victim's hold began.
	if takeover == nil {
		t.Fatalf("no hold with token %d (victim's %d + 1) was announced", victimSec.token+1, victimSec.token)
	}
	gap := takeover.at.Sub(victimSec.at)
	if gap < ttl {
		t.Errorf("worker %d announced token %d %v after the killed worker's token %d; want >= TTL %v",
			takeover.worker, takeover.token, gap, victimSec.token, ttl)
	}
	t.Logf("killed worker %d (token %d) %v after its ACQUIRED line; worker %d took over with token %d %v after the victim's ACQUIRED (TTL %v, default expiry margin 1s)",
		victim, victimSec.token, killedAt.Sub(victimSec.at).Round(time.Microsecond),
		takeover.worker, takeover.token, gap.Round(time.Millisecond), ttl)

	// Tokens 1..n, each section saw exactly the committed increments of
	// the sections before it.
	tokens := make([]uint64, 0, len(sections))
	for tok := range sections {
		tokens = append(tokens, tok)
	}
	sort.Slice(tokens, func(i, j int) bool { return tokens[i] < tokens[j] })
	committed := 0
	for i, tok := range tokens {
		if tok != uint64(i+1) {
			t.Errorf("tokens = %v; want 1..%d without gaps", tokens, len(tokens))
			break
		}
		s := sections[tok]
		if s.read != committed {
			t.Errorf("token %d (worker %d) read counter %d; want %d (the committed sections before it): overlap or lost update", tok, s.worker, s.read, committed)
		}
		if s.committed {
			committed++
		}
	}
	if want := (workers-1)*iterations + committedBy(sections, victim); committed != want {
		t.Errorf("committed sections = %d; want %d (all survivors' iterations plus the victim's before the kill)", committed, want)
	}
	final := mpCounter(t, target)
	if final != committed {
		t.Errorf("final counter = %d; want %d (committed sections; only the killed section's increment lost)", final, committed)
	}
	t.Logf("%d processes, %d holds, %d committed, final counter %d, run took %v", workers, len(sections), committed, final, elapsed.Round(time.Millisecond))
}

func committedBy(sections map[uint64]*mpSection, worker int) int {
	n := 0
	for _, s := range sections {
		if s.worker == worker && s.committed {
			n++
		}
	}
	return n
}

func mpUint(t *testing.T, fields []string, i int) uint64 {
	t.Helper()
	if len(fields) <= i {
		t.Fatalf("announcement %q: missing field %d", fields, i)
	}
	v, err := strconv.ParseUint(fields[i], 10, 64)
	if err != nil {
		t.Fatalf("announcement %q: %v", fields, err)
	}
	return v
}

func mpCounter(t *testing.T, target mpTarget) int {
	t.Helper()
	out, err := target.client.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(target.bucket), Key: aws.String("mp/counter")})
	if err != nil {
		t.Fatalf("reading the counter: %v", err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatalf("reading the counter: %v", err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("counter holds %q: %v", b, err)
	}
	return v
}

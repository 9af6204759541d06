package s3lock_test

// Helpers shared by the tests of package s3lock_test.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/goleak"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/internal/s3http"
	"github.com/s3lock/s3lock/s3locktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newMutex is s3lock.New for tests: it fails the test if New fails. For a
// Mutex with a client of its own on an s3locktest.Server, pass
// srv.Client(), srv.Bucket().
func newMutex(tb testing.TB, client s3lock.S3API, bucket, key string, opts ...s3lock.Option) *s3lock.Mutex {
	tb.Helper()
	m, err := s3lock.New(client, bucket, key, opts...)
	if err != nil {
		tb.Fatalf("New() = %v", err)
	}
	return m
}

// wantLocked fails the test unless err is a *LockedError matching
// ErrLocked, and returns it.
func wantLocked(t *testing.T, err error) *s3lock.LockedError {
	t.Helper()
	var le *s3lock.LockedError
	if !errors.As(err, &le) || !errors.Is(err, s3lock.ErrLocked) {
		t.Fatalf("err = %v; want a *LockedError matching ErrLocked", err)
	}
	return le
}

// lockState reads the lock as S3 has it.
func lockState(t *testing.T, srv *s3locktest.Server, key string) *s3lock.LockStatus {
	t.Helper()
	st, err := s3lock.Inspect(context.Background(), srv.Client(), srv.Bucket(), key)
	if err != nil {
		t.Fatalf("Inspect() = %v", err)
	}
	return st
}

var faultSeed = flag.Uint64("faultseed", 0, "seed of the injected faults of the hammer and fault tests (0: pick one and log it)")

// seedFor returns the fault seed for t and logs how to replay it.
func seedFor(t *testing.T) uint64 {
	t.Helper()
	s := *faultSeed
	if s == 0 {
		s = rand.Uint64N(1 << 53)
	}
	t.Logf("fault seed %d; replay with: go test -run '^%s$' -faultseed=%d", s, t.Name(), s)
	return s
}

// Timing of the renewal tests: short enough to keep the tests quick, long
// enough for a busy 2-core machine under -race.
const (
	renewTTL      = 1500 * time.Millisecond
	renewInterval = 300 * time.Millisecond
)

// renewers counts the goroutines currently running a lease renewer.
func renewers() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	return strings.Count(string(buf), "s3lock.(*lease).renewLoop(")
}

// wantRenewers fails the test unless exactly n renewers run, giving a
// renewer that is returning a moment to finish.
func wantRenewers(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for renewers() != n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := renewers(); got != n {
		t.Fatalf("%d renewer goroutines running; want %d", got, n)
	}
}

// writeLog records when a client sent each conditional write (before the
// request left, so the write cannot have been applied earlier).
type writeLog struct {
	mu   sync.Mutex
	sent []time.Time
}

func (w *writeLog) first() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.sent) == 0 {
		return time.Time{}
	}
	return w.sent[0]
}

type loggingTransport struct {
	next http.RoundTripper
	log  *writeLog
}

func (lt *loggingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if s3http.IsConditionalWrite(r) {
		lt.log.mu.Lock()
		lt.log.sent = append(lt.log.sent, time.Now())
		lt.log.mu.Unlock()
	}
	return lt.next.RoundTrip(r)
}

// loggedClient returns a client of srv whose conditional writes are logged.
func loggedClient(srv *s3locktest.Server) (*s3.Client, *writeLog) {
	log := &writeLog{}
	hc := srv.HTTPClient()
	hc.Transport = &loggingTransport{next: hc.Transport, log: log}
	return srv.Client(func(o *s3.Options) { o.HTTPClient = hc }), log
}

// waitDone waits up to d for ctx to end, failing the test if it does not.
func waitDone(t *testing.T, ctx context.Context, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(d):
		t.Fatalf("%s not cancelled within %v", what, d)
	}
}

// rawRecord reads the lock object's JSON as a map, to see what waiters
// wrote into it.
func rawRecord(t *testing.T, srv *s3locktest.Server, key string) (map[string]any, string) {
	t.Helper()
	out, err := srv.Client().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(srv.Bucket()), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	body, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("lock object %q: %v", body, err)
	}
	return m, aws.ToString(out.ETag)
}

// sections checks the critical sections run under one lock: no two may
// overlap, and each must run with a fencing token larger than every
// earlier one's. enter and exit bracket a section and may be called from
// any goroutine; a violation fails the test at once, naming the section.
type sections struct {
	t interface {
		Errorf(format string, args ...any)
	} // a *testing.T

	mu          sync.Mutex
	inside      int    // sections entered and not exited
	last        uint64 // largest token entered
	overlaps    int    // sections entered while another was inside
	staleTokens int    // sections entered with a token not above last
}

func newSections(t *testing.T) *sections { return &sections{t: t} }

// enter records that who entered a critical section holding token.
func (s *sections) enter(who string, token uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inside != 0 {
		s.overlaps++
		s.t.Errorf("%s entered its critical section (token %d) while another was inside", who, token)
	}
	if token <= s.last {
		s.staleTokens++
		s.t.Errorf("%s entered its critical section with token %d after token %d", who, token, s.last)
	}
	s.inside++
	s.last = max(s.last, token)
}

// exit records that a critical section ended.
func (s *sections) exit() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inside--
}

// lastToken returns the largest token a section has entered with.
func (s *sections) lastToken() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// waitForGets waits until srv has answered n more GETs than it had in
// before: a waiter's reads of a held lock, which show that it waits. It
// fails the test if they have not come after 10 s.
func waitForGets(t *testing.T, srv *s3locktest.Server, before s3locktest.Counts, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := srv.Stats().Snapshot().Sub(before).Method(http.MethodGet)
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d GETs in 10s; want %d: the waiter does not poll", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// errorLog stands in for a *testing.T, keeping the errors reported to it.
type errorLog []string

func (l *errorLog) Errorf(format string, args ...any) { *l = append(*l, fmt.Sprintf(format, args...)) }

// TestSectionsChecker: the critical-section checker of the hammer and
// fairness tests passes sections taken in turn with growing tokens, and
// reports an overlap and a token that does not grow.
func TestSectionsChecker(t *testing.T) {
	var errs errorLog
	s := &sections{t: &errs}
	for _, tok := range []uint64{1, 2, 5} {
		s.enter("in turn", tok)
		s.exit()
	}
	if len(errs) != 0 || s.lastToken() != 5 {
		t.Fatalf("sections in turn: errors %q, last token %d; want none, 5", errs, s.lastToken())
	}
	s.enter("first", 6)
	s.enter("overlapping", 7)
	s.exit()
	s.exit()
	s.enter("stale", 7)
	s.exit()
	if s.overlaps != 1 || s.staleTokens != 1 || len(errs) != 2 {
		t.Errorf("overlaps %d, stale tokens %d, errors %q; want 1, 1 and two errors", s.overlaps, s.staleTokens, errs)
	}
}

// handOver unlocks from, then checks that to, another Mutex on the same
// lock, takes it at once (the release left it free) with fencing token
// wantToken (any token when 0), and unlocks to again.
func handOver(t *testing.T, ctx context.Context, from, to *s3lock.Mutex, wantToken uint64) {
	t.Helper()
	if err := from.Unlock(ctx); err != nil {
		t.Fatalf("Unlock() by %s = %v; want nil", from.Owner(), err)
	}
	if err := to.TryLock(ctx); err != nil {
		t.Fatalf("TryLock() by %s after %s's Unlock = %v; want nil", to.Owner(), from.Owner(), err)
	}
	if got := to.Token(); wantToken != 0 && got != wantToken {
		t.Errorf("Token() of %s = %d; want %d", to.Owner(), got, wantToken)
	}
	if err := to.Unlock(ctx); err != nil {
		t.Errorf("Unlock() by %s = %v; want nil", to.Owner(), err)
	}
}

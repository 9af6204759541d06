package s3locktest

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock/internal/s3http"
)

// Fault is one kind of failure that a [Faults] injects.
type Fault string

// The faults a Faults can inject. "Not applied" means the request never
// reaches S3; "applied" means S3 carries it out and the client does not
// learn it.
const (
	// FaultLatency is a request delayed by FaultConfig.Latency plus a
	// random part of FaultConfig.Jitter (counted only when the delay is
	// positive). It is the only fault that does not fail the request.
	FaultLatency Fault = "latency"
	// FaultInternalError is a 500 InternalError answer; not applied.
	FaultInternalError Fault = "500 InternalError"
	// FaultServiceUnavailable is a 503 ServiceUnavailable answer; not
	// applied.
	FaultServiceUnavailable Fault = "503 ServiceUnavailable"
	// FaultSlowDown is a 503 SlowDown answer (S3's throttling, which the
	// SDK retries after a longer backoff); not applied.
	FaultSlowDown Fault = "503 SlowDown"
	// FaultConflict is a 409 ConditionalRequestConflict answer, as S3 gives
	// to a conditional write racing another write; not applied. It is
	// injected only into conditional writes (requests with If-Match or
	// If-None-Match).
	FaultConflict Fault = "409 ConditionalRequestConflict"
	// FaultDropResponse is a request applied by S3 whose answer is lost:
	// the client gets a connection reset instead. The SDK retries such a
	// request, and a retried conditional write then fails with 412 although
	// its first attempt succeeded.
	FaultDropResponse Fault = "applied, response dropped"
	// FaultErrorAfterApply is a request applied by S3 and answered with 500
	// InternalError (as a proxy or a failing front end can do).
	FaultErrorAfterApply Fault = "applied, 500 answered"
	// FaultPartition is a request failed by a partition window (see
	// [Faults.Partition] and [Faults.Blackhole]); not applied.
	FaultPartition Fault = "partitioned"
	// FaultIgnoreConditions is a conditional write whose If-Match and
	// If-None-Match headers were removed before it reached S3, as some
	// S3-compatible stores silently ignore them (see
	// FaultConfig.IgnoreConditions).
	FaultIgnoreConditions Fault = "conditions ignored"
	// FaultNotImplemented is a 501 NotImplemented answer to a conditional
	// write, as stores without conditional writes give (see
	// FaultConfig.RejectConditions); not applied.
	FaultNotImplemented Fault = "501 NotImplemented"
)

// FaultConfig says which faults a [Faults] injects. The rates are
// probabilities per request, each in [0, 1], and together at most 1: one
// random draw per request picks at most one of them. The zero value injects
// nothing.
type FaultConfig struct {
	// Latency delays every request by this much.
	Latency time.Duration
	// Jitter delays every request by a further uniformly random duration
	// in [0, Jitter).
	Jitter time.Duration

	// InternalError is the rate of 500 InternalError answers.
	InternalError float64
	// ServiceUnavailable is the rate of 503 ServiceUnavailable answers.
	ServiceUnavailable float64
	// SlowDown is the rate of 503 SlowDown answers. The SDK's standard
	// retryer backs off for up to a second after each.
	SlowDown float64
	// Conflict is the rate of 409 ConditionalRequestConflict answers to
	// conditional writes (other requests drawing it go through unharmed).
	Conflict float64
	// DropResponse is the rate of requests that S3 applies but whose
	// answer is replaced by a connection reset.
	DropResponse float64
	// ErrorAfterApply is the rate of requests that S3 applies but that are
	// answered with 500 InternalError.
	ErrorAfterApply float64

	// IgnoreConditions removes If-Match and If-None-Match from every
	// request before S3 sees it, as stores that silently ignore them do
	// (a lock on such a store would grant everyone).
	IgnoreConditions bool
	// RejectConditions answers every conditional write with 501
	// NotImplemented, as stores without conditional writes do.
	RejectConditions bool

	// Match, when not nil, limits the random faults and the two condition
	// settings above to the requests for which it returns true. Latency
	// applies to all requests. Match is called with the Faults locked: it
	// must not call the Faults' methods.
	Match func(*http.Request) bool
}

// rates lists the random faults in the order a draw walks them.
func (c *FaultConfig) rates() []struct {
	rate  float64
	fault Fault
} {
	return []struct {
		rate  float64
		fault Fault
	}{
		{c.InternalError, FaultInternalError},
		{c.ServiceUnavailable, FaultServiceUnavailable},
		{c.SlowDown, FaultSlowDown},
		{c.Conflict, FaultConflict},
		{c.DropResponse, FaultDropResponse},
		{c.ErrorAfterApply, FaultErrorAfterApply},
	}
}

func (c *FaultConfig) validate() error {
	sum := 0.0
	for _, r := range c.rates() {
		if !(r.rate >= 0 && r.rate <= 1) { // also rejects NaN
			return fmt.Errorf("s3locktest: rate of %q is %v, not in [0, 1]", r.fault, r.rate)
		}
		sum += r.rate
	}
	switch {
	case sum > 1+1e-9:
		return fmt.Errorf("s3locktest: fault rates sum to %v, more than 1", sum)
	case c.Latency < 0 || c.Jitter < 0:
		return fmt.Errorf("s3locktest: negative latency or jitter")
	}
	return nil
}

// Faults injects failures into S3 requests: on the client side as an
// [http.RoundTripper] wrapper ([Faults.Wrap], [Server.FaultyClient]), which
// affects one client, or on the server side ([Server.SetFaults],
// [Faults.Handler]), which affects every client of a server.
//
// Random faults come from a PCG generator seeded with the seed given to
// [NewFaults], drawing the same number of values for every request, so a
// given sequence of requests meets the same faults every run: with one
// client sending its requests one at a time, a failing run replays from its
// seed. Give concurrent clients a Faults each (seed, seed+1, ...) so their
// interleaving does not change which request draws what.
//
// A Faults is safe for concurrent use; its configuration can be changed at
// any time with [Faults.Set].
type Faults struct {
	seed uint64

	mu        sync.Mutex // protects the fields below
	rng       *rand.Rand
	cfg       FaultConfig
	script    []scripted
	partUntil time.Time     // end of the partition window, zero when none
	blackhole bool          // the window holds requests instead of failing them
	healed    chan struct{} // closed when the window is ended early
	requests  int64
	counts    map[Fault]int64
	requestID int64
}

// scripted is a fault queued by Inject.
type scripted struct {
	fault Fault
	match func(*http.Request) bool
}

// NewFaults returns a Faults drawing from seed and injecting as cfg says.
// It panics if cfg is invalid (a rate outside [0, 1], rates summing to more
// than 1, or a negative latency).
func NewFaults(seed uint64, cfg FaultConfig) *Faults {
	if err := cfg.validate(); err != nil {
		panic(err)
	}
	return &Faults{
		seed:   seed,
		rng:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		cfg:    cfg,
		counts: map[Fault]int64{},
		healed: make(chan struct{}),
	}
}

// Seed returns the seed the Faults was created with, for logging a run so
// it can be replayed.
func (f *Faults) Seed() uint64 { return f.seed }

// Set replaces the configuration; requests already in flight keep the
// faults they drew. It panics if cfg is invalid. Set(FaultConfig{}) turns
// random faults off; scripted faults and partitions are not affected.
func (f *Faults) Set(cfg FaultConfig) {
	if err := cfg.validate(); err != nil {
		panic(err)
	}
	f.mu.Lock()
	f.cfg = cfg
	f.mu.Unlock()
}

// Config returns the current configuration.
func (f *Faults) Config() FaultConfig {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cfg
}

// Inject queues fault for the next n requests for which match returns true
// (every request when match is nil), whatever the random configuration
// says. Queued faults are taken in order, before random ones; a partition
// window takes precedence over both. match is called with the Faults
// locked: it must not call the Faults' methods. Use it to hit one chosen
// request, such as the next conditional write (a PUT with If-Match or
// If-None-Match).
// fault must be one that fails a request (not FaultLatency).
func (f *Faults) Inject(fault Fault, n int, match func(*http.Request) bool) {
	switch fault {
	case FaultInternalError, FaultServiceUnavailable, FaultSlowDown, FaultConflict,
		FaultDropResponse, FaultErrorAfterApply, FaultPartition, FaultIgnoreConditions, FaultNotImplemented:
	default:
		panic(fmt.Sprintf("s3locktest: cannot inject fault %q", fault))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.script = append(f.script, scripted{fault, match})
	}
}

// Pending returns how many injected faults have not met their request yet.
func (f *Faults) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.script)
}

// Partition fails every request at once, without it reaching S3, for the
// duration d from now: the client sees a refused connection (client side)
// or a reset one (server side). A d <= 0 ends a partition.
func (f *Faults) Partition(d time.Duration) { f.setPartition(d, false) }

// Blackhole holds every request, without it reaching S3, for the duration
// d from now: each one waits until its context ends or the window closes,
// then fails as a connection reset, like requests lost on a dead network
// path. A d <= 0 ends the window, failing the requests it holds.
func (f *Faults) Blackhole(d time.Duration) { f.setPartition(d, true) }

// Heal ends a partition or blackhole window.
func (f *Faults) Heal() { f.setPartition(0, false) }

func (f *Faults) setPartition(d time.Duration, blackhole bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.partUntil.IsZero() {
		close(f.healed)
		f.healed = make(chan struct{})
	}
	f.partUntil, f.blackhole = time.Time{}, false
	if d > 0 {
		f.partUntil, f.blackhole = time.Now().Add(d), blackhole
	}
}

// Partitioned reports whether a partition or blackhole window is open.
func (f *Faults) Partitioned() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return time.Now().Before(f.partUntil)
}

// Requests returns how many requests passed through the Faults.
func (f *Faults) Requests() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

// Counts returns how many faults of each kind have been injected so far.
func (f *Faults) Counts() FaultCounts {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := make(FaultCounts, len(f.counts))
	for k, v := range f.counts {
		c[k] = v
	}
	return c
}

// FaultCounts counts injected faults by kind.
type FaultCounts map[Fault]int64

// Failures returns the number of injected faults other than FaultLatency.
func (c FaultCounts) Failures() int64 {
	var n int64
	for k, v := range c {
		if k != FaultLatency {
			n += v
		}
	}
	return n
}

// Add adds the counts of o to c.
func (c FaultCounts) Add(o FaultCounts) {
	for k, v := range o {
		c[k] += v
	}
}

// String lists the counts, sorted by kind, for logs.
func (c FaultCounts) String() string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, string(k))
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s: %d", k, c[Fault(k)])
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// action is what happens to one request.
type action struct {
	delay     time.Duration
	fault     Fault // "" or FaultLatency: pass the request on
	strip     bool  // remove the conditional headers before passing it on
	until     time.Time
	healed    <-chan struct{}
	requestID int64
}

// decide draws the fate of r.
func (f *Faults) decide(r *http.Request) action {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	f.requestID++
	// Always two draws, so the sequence does not depend on which branch
	// the previous requests took.
	u, j := f.rng.Float64(), f.rng.Float64()
	a := action{requestID: f.requestID, delay: f.cfg.Latency + time.Duration(j*float64(f.cfg.Jitter))}
	if a.delay > 0 {
		f.counts[FaultLatency]++
	}
	if time.Now().Before(f.partUntil) {
		a.fault, a.until, a.healed = FaultPartition, f.partUntil, f.healed
		if !f.blackhole {
			a.until = time.Time{}
		}
		f.counts[FaultPartition]++
		return a
	}
	for i, s := range f.script {
		if s.match == nil || s.match(r) {
			f.script = slices.Delete(f.script, i, i+1)
			a.fault = s.fault
			if a.fault == FaultIgnoreConditions {
				a.fault, a.strip = "", true
			}
			f.counts[s.fault]++
			return a
		}
	}
	if f.cfg.Match != nil && !f.cfg.Match(r) {
		return a
	}
	cond := s3http.IsConditionalWrite(r)
	if cond && f.cfg.RejectConditions {
		a.fault = FaultNotImplemented
		f.counts[a.fault]++
		return a
	}
	x := u
	for _, rt := range f.cfg.rates() {
		if x < rt.rate {
			if rt.fault != FaultConflict || cond {
				a.fault = rt.fault
				f.counts[a.fault]++
			}
			break
		}
		x -= rt.rate
	}
	if cond && f.cfg.IgnoreConditions && a.passes() {
		a.strip = true
		f.counts[FaultIgnoreConditions]++
	}
	return a
}

// passes reports whether the request reaches S3.
func (a *action) passes() bool {
	switch a.fault {
	case "", FaultDropResponse, FaultErrorAfterApply:
		return true
	}
	return false
}

// wait sleeps for d or until done is closed; it reports false if done was
// closed first.
func wait(d time.Duration, done <-chan struct{}) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	}
}

// hold waits out a blackhole window for a request.
func (a *action) hold(done <-chan struct{}) {
	if a.until.IsZero() {
		return
	}
	t := time.NewTimer(time.Until(a.until))
	defer t.Stop()
	select {
	case <-t.C:
	case <-a.healed:
	case <-done:
	}
}

// errorAnswer returns the status, S3 error code and message of a fault
// answered with an error, or ok == false for faults that are not.
func errorAnswer(fault Fault) (status int, code, msg string, ok bool) {
	switch fault {
	case FaultInternalError, FaultErrorAfterApply:
		return http.StatusInternalServerError, "InternalError", "We encountered an internal error. Please try again.", true
	case FaultServiceUnavailable:
		return http.StatusServiceUnavailable, "ServiceUnavailable", "Service is unable to handle request.", true
	case FaultSlowDown:
		return http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate.", true
	case FaultConflict:
		return http.StatusConflict, "ConditionalRequestConflict", "A conflicting operation occurred. If using PutObject you can retry the request.", true
	case FaultNotImplemented:
		return http.StatusNotImplemented, "NotImplemented", "A header you provided implies functionality that is not implemented.", true
	}
	return 0, "", "", false
}

// errorHeaderBody renders an S3 XML error answer.
func errorHeaderBody(r *http.Request, status int, code, msg string, id int64) (http.Header, []byte) {
	rid := fmt.Sprintf("s3locktest-fault-%d", id)
	h := http.Header{}
	h.Set("Content-Type", "application/xml")
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	h.Set("X-Amz-Request-Id", rid)
	if r.Method == http.MethodHead {
		return h, nil
	}
	body := fmt.Appendf(nil, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code><Message>%s</Message><Resource>%s</Resource><RequestId>%s</RequestId></Error>",
		code, msg, xmlEscape(r.URL.Path), rid)
	h.Set("Content-Length", fmt.Sprint(len(body)))
	return h, body
}

func xmlEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// connReset is the error a client-side fault returns for a lost answer.
func connReset() error {
	return &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
}

// Wrap returns a RoundTripper that injects f's faults into the requests it
// passes to next (http.DefaultTransport when nil). Requests that fail
// before reaching next have their bodies closed, as RoundTripper requires.
func (f *Faults) Wrap(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &faultTransport{f: f, next: next}
}

type faultTransport struct {
	f    *Faults
	next http.RoundTripper
}

func (t *faultTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	a := t.f.decide(req)
	ctx := req.Context()
	closeBody := func() {
		if req.Body != nil {
			req.Body.Close()
		}
	}
	if !wait(a.delay, ctx.Done()) {
		closeBody()
		return nil, ctx.Err()
	}
	if a.fault == FaultPartition {
		closeBody()
		if a.until.IsZero() {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
		}
		a.hold(ctx.Done())
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return nil, connReset()
	}
	if status, code, msg, ok := errorAnswer(a.fault); ok && a.fault != FaultErrorAfterApply {
		closeBody()
		return fakeResponse(req, status, code, msg, a.requestID), nil
	}
	if a.strip {
		req = req.Clone(ctx)
		req.Header.Del("If-Match")
		req.Header.Del("If-None-Match")
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil || (a.fault != FaultDropResponse && a.fault != FaultErrorAfterApply) {
		return resp, err
	}
	// The request was applied; lose its answer.
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if a.fault == FaultDropResponse {
		return nil, connReset()
	}
	status, code, msg, _ := errorAnswer(a.fault)
	return fakeResponse(req, status, code, msg, a.requestID), nil
}

func fakeResponse(req *http.Request, status int, code, msg string, id int64) *http.Response {
	h, body := errorHeaderBody(req, status, code, msg, id)
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", status, http.StatusText(status)),
		StatusCode:    status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

// Handler returns an http.Handler that injects f's faults in front of
// next, an S3 server's handler. A lost answer or a partition closes the
// connection without a response (the client sees a reset or EOF).
func (f *Faults) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.serveHTTP(w, r, next)
	})
}

func (f *Faults) serveHTTP(w http.ResponseWriter, r *http.Request, next http.Handler) {
	a := f.decide(r)
	ctx := r.Context()
	if !wait(a.delay, ctx.Done()) {
		return
	}
	if a.fault == FaultPartition {
		a.hold(ctx.Done())
		abort(w)
		return
	}
	if status, code, msg, ok := errorAnswer(a.fault); ok && a.fault != FaultErrorAfterApply {
		writeError(w, r, status, code, msg, a.requestID)
		return
	}
	if a.strip {
		r.Header.Del("If-Match")
		r.Header.Del("If-None-Match")
	}
	if a.fault != FaultDropResponse && a.fault != FaultErrorAfterApply {
		next.ServeHTTP(w, r)
		return
	}
	// Apply the request, then lose its answer.
	next.ServeHTTP(httptest.NewRecorder(), r)
	if a.fault == FaultDropResponse {
		abort(w)
		return
	}
	status, code, msg, _ := errorAnswer(a.fault)
	writeError(w, r, status, code, msg, a.requestID)
}

func writeError(w http.ResponseWriter, r *http.Request, status int, code, msg string, id int64) {
	h, body := errorHeaderBody(r, status, code, msg, id)
	for k, v := range h {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// abort closes the connection of w without answering.
func abort(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not hijackable (HTTP/2): make the server reset the stream.
		panic(http.ErrAbortHandler)
	}
	conn.Close()
}

// SetFaults makes the server inject f's faults into every request it
// receives, from any client; nil turns server-side faults off. Requests
// failed without reaching the backend are counted by f, not by
// [Server.Stats].
func (s *Server) SetFaults(f *Faults) {
	s.mu.Lock()
	s.faults = f
	s.mu.Unlock()
}

// FaultyClient returns a client for this server whose requests go through
// f (see [Faults.Wrap]); other clients are not affected. Its retryer is the
// SDK's standard one (3 attempts) with backoff capped at 50 ms and no retry
// quota, so tests under heavy faults stay fast and the SDK never stops
// retrying with "retry quota exceeded"; an optFn setting o.Retryer
// overrides that.
func (s *Server) FaultyClient(f *Faults, optFns ...func(*s3.Options)) *s3.Client {
	hc := s.HTTPClient()
	hc.Transport = f.Wrap(hc.Transport)
	base := func(o *s3.Options) {
		o.HTTPClient = hc
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxBackoff = 50 * time.Millisecond
			so.RateLimiter = ratelimit.None
		})
	}
	return s.Client(append([]func(*s3.Options){base}, optFns...)...)
}

// SkewedClock is a wall clock that is Skew ahead of the system clock
// (behind it when Skew is negative). It satisfies s3lock.Clock: pass it to
// s3lock.WithClock to give one client a wrong view of the time. Its times
// carry no monotonic reading, like a wall clock read from another machine.
type SkewedClock struct {
	Skew time.Duration
}

// Now returns the skewed time.
func (c SkewedClock) Now() time.Time { return time.Now().Round(0).Add(c.Skew) }

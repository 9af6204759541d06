// Package s3lockotel reports what s3lock's locks do as OpenTelemetry
// metrics and traces. It is its own module, so that s3lock itself depends
// on no telemetry library; it builds [s3lock.Hooks] and depends on the
// OpenTelemetry API only (the SDK, exporters and their configuration are
// the application's).
//
//	m, err := s3lock.New(client, "my-bucket", "locks/nightly", s3lockotel.Instrument())
//
// # Metrics
//
// All durations are in seconds. Attributes are few and low-cardinality:
// no bucket, key, owner or token (those are on spans).
//
//	s3lock.acquire.duration   histogram      Lock/TryLock, call to return; s3lock.operation, s3lock.outcome (acquired|locked|canceled|error)
//	s3lock.hold.duration      histogram      from the acquiring write to the end of Unlock; s3lock.outcome (released|lost|error)
//	s3lock.hold.active        updowncounter  holds acquired and not yet unlocked
//	s3lock.lease.lost         counter        holds that ended without Unlock (expired, broken, taken over)
//	s3lock.renewals           counter        renewals; s3lock.outcome (ok|error)
//	s3lock.reservations       counter        reservations of the next turn; s3lock.outcome (reserved|refused: the record changed first, or the write failed)
//	s3lock.requests           counter        S3 requests; http.request.method (GET|PUT), s3lock.outcome (ok|precondition_failed|not_found|error)
//	s3lock.request.duration   histogram      S3 requests, same attributes
//
// # Spans
//
// s3lock.Lock, s3lock.TryLock, s3lock.Unlock and s3lock.Renew (one per
// renewal with [s3lock.WithAutoRenew]), of kind internal, with attributes
// s3lock.bucket, s3lock.key, s3lock.token (once known) and s3lock.outcome;
// each S3 request is a child span of kind client named S3.GetObject or
// S3.PutObject, with the attributes of the OpenTelemetry semantic
// conventions for AWS SDK calls (rpc.system aws-api, rpc.service S3,
// rpc.method, aws.s3.bucket, aws.s3.key). Reservations are events on the
// Lock span. A failed operation records its error and sets the span's
// status to Error; so does a TryLock that finds the lock held, since it
// returns an error.
package s3lockotel

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/s3lock/s3lock"
)

// ScopeName is the instrumentation scope of the meter and tracer.
const ScopeName = "github.com/s3lock/s3lock/s3lockotel"

// Attribute keys.
const (
	KeyBucket    = attribute.Key("s3lock.bucket")
	KeyKey       = attribute.Key("s3lock.key")
	KeyToken     = attribute.Key("s3lock.token")
	KeyOperation = attribute.Key("s3lock.operation")
	KeyOutcome   = attribute.Key("s3lock.outcome")
	keyMethod    = attribute.Key("http.request.method")
)

// Option configures [Instrument].
type Option func(*config)

type config struct {
	mp metric.MeterProvider
	tp trace.TracerProvider
}

// WithMeterProvider sets where the metrics go.
// The default is the global one, otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.mp = mp }
}

// WithTracerProvider sets where the spans go.
// The default is the global one, otel.GetTracerProvider().
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.tp = tp }
}

// Instrument returns an option for [s3lock.New] that reports the Mutex's
// operations, holds and S3 requests as metrics and spans (see the package
// documentation). Nil options and providers are ignored (the default
// applies). When an instrument cannot be created, the error goes to
// otel.Handle and that instrument records nothing.
func Instrument(opts ...Option) s3lock.Option {
	var c config
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	return s3lock.WithHooks(newInstrumentation(c).hooks())
}

// Bucket boundaries, in seconds: waits and holds run from milliseconds to
// hours, S3 requests from a millisecond to tens of seconds.
var (
	longBuckets    = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}
	requestBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
)

type instrumentation struct {
	tracer trace.Tracer

	acquireDuration metric.Float64Histogram
	holdDuration    metric.Float64Histogram
	holdActive      metric.Int64UpDownCounter
	leaseLost       metric.Int64Counter
	renewals        metric.Int64Counter
	reservations    metric.Int64Counter
	requests        metric.Int64Counter
	requestDuration metric.Float64Histogram

	// Attribute sets, built once: recording with a prepared set does not
	// allocate.
	acquireAttrs map[acquireKey]attrOpts
	requestAttrs map[requestKey]attrOpts
	outcomeAttrs map[string]attrOpts
}

type acquireKey struct {
	op      s3lock.Op
	outcome s3lock.Outcome
}

type requestKey struct {
	verb    string
	outcome s3lock.RequestOutcome
}

func newInstrumentation(c config) *instrumentation {
	meter := c.mp.Meter(ScopeName)
	in := &instrumentation{
		tracer:       c.tp.Tracer(ScopeName),
		acquireAttrs: map[acquireKey]attrOpts{},
		requestAttrs: map[requestKey]attrOpts{},
		outcomeAttrs: map[string]attrOpts{},
	}
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var err error
	in.acquireDuration, err = meter.Float64Histogram("s3lock.acquire.duration", metric.WithUnit("s"),
		metric.WithDescription("How long Lock and TryLock took, from the call to its return."),
		metric.WithExplicitBucketBoundaries(longBuckets...))
	add(err)
	in.holdDuration, err = meter.Float64Histogram("s3lock.hold.duration", metric.WithUnit("s"),
		metric.WithDescription("How long holds lasted, from the write that acquired the lock to the end of Unlock."),
		metric.WithExplicitBucketBoundaries(longBuckets...))
	add(err)
	in.holdActive, err = meter.Int64UpDownCounter("s3lock.hold.active", metric.WithUnit("{hold}"),
		metric.WithDescription("Holds acquired and not yet unlocked."))
	add(err)
	in.leaseLost, err = meter.Int64Counter("s3lock.lease.lost", metric.WithUnit("{lease}"),
		metric.WithDescription("Holds that ended without Unlock: the lease expired, was broken or was taken over."))
	add(err)
	in.renewals, err = meter.Int64Counter("s3lock.renewals", metric.WithUnit("{renewal}"),
		metric.WithDescription("Renewals of holds kept with WithAutoRenew."))
	add(err)
	in.reservations, err = meter.Int64Counter("s3lock.reservations", metric.WithUnit("{reservation}"),
		metric.WithDescription("Attempts of waiting Locks to reserve the next turn."))
	add(err)
	in.requests, err = meter.Int64Counter("s3lock.requests", metric.WithUnit("{request}"),
		metric.WithDescription("S3 requests made by locks."))
	add(err)
	in.requestDuration, err = meter.Float64Histogram("s3lock.request.duration", metric.WithUnit("s"),
		metric.WithDescription("How long S3 took to answer the requests of locks."),
		metric.WithExplicitBucketBoundaries(requestBuckets...))
	add(err)
	if err := errors.Join(errs...); err != nil {
		otel.Handle(err)
	}

	for _, op := range []s3lock.Op{s3lock.OpLock, s3lock.OpTryLock} {
		for _, o := range []s3lock.Outcome{s3lock.OutcomeAcquired, s3lock.OutcomeLocked, s3lock.OutcomeCanceled, s3lock.OutcomeError} {
			in.acquireAttrs[acquireKey{op, o}] = newAttrOpts(KeyOperation.String(string(op)), KeyOutcome.String(string(o)))
		}
	}
	for _, v := range []string{http.MethodGet, http.MethodPut} {
		for _, o := range []s3lock.RequestOutcome{s3lock.RequestOK, s3lock.RequestPreconditionFailed, s3lock.RequestNotFound, s3lock.RequestError} {
			in.requestAttrs[requestKey{v, o}] = newAttrOpts(keyMethod.String(v), KeyOutcome.String(string(o)))
		}
	}
	for _, o := range []string{"ok", "error", "released", "lost", "reserved", "refused"} {
		in.outcomeAttrs[o] = newAttrOpts(KeyOutcome.String(o))
	}
	return in
}

// attrOpts is an attribute set as the options of Record and Add, built
// once: passing a prepared slice does not allocate.
type attrOpts struct {
	rec []metric.RecordOption
	add []metric.AddOption
}

func newAttrOpts(kv ...attribute.KeyValue) attrOpts {
	o := metric.WithAttributeSet(attribute.NewSet(kv...))
	return attrOpts{rec: []metric.RecordOption{o}, add: []metric.AddOption{o}}
}

func (in *instrumentation) acquireOpt(op s3lock.Op, o s3lock.Outcome) attrOpts {
	if opt, ok := in.acquireAttrs[acquireKey{op, o}]; ok {
		return opt
	}
	return newAttrOpts(KeyOperation.String(string(op)), KeyOutcome.String(string(o)))
}

func (in *instrumentation) requestOpt(verb string, o s3lock.RequestOutcome) attrOpts {
	if opt, ok := in.requestAttrs[requestKey{verb, o}]; ok {
		return opt
	}
	return newAttrOpts(keyMethod.String(verb), KeyOutcome.String(string(o)))
}

// spanKey finds, in a context Start returned, the span Start began: not
// trace.SpanFromContext, which returns whatever span is newest (another
// hook's, when hooks are composed).
type spanKey struct{}

func spanOf(ctx context.Context) trace.Span {
	if s, ok := ctx.Value(spanKey{}).(trace.Span); ok {
		return s
	}
	return nil
}

func (in *instrumentation) hooks() *s3lock.Hooks {
	return &s3lock.Hooks{
		Start:     in.start,
		Acquire:   in.acquire,
		Release:   in.release,
		Renew:     in.renew,
		LeaseLost: in.leaseLostHook,
		Reserve:   in.reserve,
		Request:   in.request,
	}
}

func (in *instrumentation) start(ctx context.Context, i s3lock.StartInfo) context.Context {
	name, ok := spanNames[i.Op]
	if !ok {
		name = "s3lock." + string(i.Op)
	}
	ctx, span := in.tracer.Start(ctx, name, internalKind)
	if !span.IsRecording() {
		// Not sampled (or no tracing): the context carries the decision,
		// and the end hooks have nothing to end.
		return ctx
	}
	span.SetAttributes(KeyBucket.String(i.Bucket), KeyKey.String(i.Key))
	if i.Token != 0 {
		span.SetAttributes(tokenAttr(i.Token))
	}
	return context.WithValue(ctx, spanKey{}, span)
}

var (
	internalKind = trace.WithSpanKind(trace.SpanKindInternal)
	spanNames    = map[s3lock.Op]string{
		s3lock.OpLock: "s3lock.Lock", s3lock.OpTryLock: "s3lock.TryLock",
		s3lock.OpUnlock: "s3lock.Unlock", s3lock.OpRenew: "s3lock.Renew",
	}
)

// tokenAttr is the fencing token as an attribute: an int64 when it fits
// (always, in practice), else its decimal string.
func tokenAttr(t uint64) attribute.KeyValue {
	if t <= 1<<63-1 {
		return KeyToken.Int64(int64(t))
	}
	return KeyToken.String(strconv.FormatUint(t, 10))
}

// end ends span with err recorded.
func end(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

func (in *instrumentation) acquire(ctx context.Context, i s3lock.AcquireInfo) {
	in.acquireDuration.Record(ctx, i.Waited.Seconds(), in.acquireOpt(i.Op, i.Outcome).rec...)
	if i.Outcome == s3lock.OutcomeAcquired {
		in.holdActive.Add(ctx, 1)
	}
	if span := spanOf(ctx); span != nil {
		span.SetAttributes(KeyOutcome.String(string(i.Outcome)))
		if i.Token != 0 {
			span.SetAttributes(tokenAttr(i.Token))
		}
		end(span, i.Err)
	}
}

func (in *instrumentation) release(ctx context.Context, i s3lock.ReleaseInfo) {
	if i.Token != 0 {
		outcome := "released"
		switch {
		case errors.Is(i.Err, s3lock.ErrLeaseLost):
			outcome = "lost"
		case i.Err != nil:
			outcome = "error"
		}
		in.holdDuration.Record(ctx, i.Held.Seconds(), in.outcomeAttrs[outcome].rec...)
		in.holdActive.Add(ctx, -1)
		if span := spanOf(ctx); span != nil {
			span.SetAttributes(KeyOutcome.String(outcome))
		}
	}
	end(spanOf(ctx), i.Err)
}

func (in *instrumentation) renew(ctx context.Context, i s3lock.RenewInfo) {
	outcome := "ok"
	if i.Err != nil {
		outcome = "error"
	}
	in.renewals.Add(ctx, 1, in.outcomeAttrs[outcome].add...)
	end(spanOf(ctx), i.Err)
}

func (in *instrumentation) leaseLostHook(i s3lock.LeaseLostInfo) {
	in.leaseLost.Add(context.Background(), 1)
}

func (in *instrumentation) reserve(ctx context.Context, i s3lock.ReserveInfo) {
	outcome := "refused"
	if i.Reserved {
		outcome = "reserved"
	}
	in.reservations.Add(ctx, 1, in.outcomeAttrs[outcome].add...)
	if span := spanOf(ctx); span != nil {
		span.AddEvent("s3lock.reserve", trace.WithAttributes(KeyOutcome.String(outcome), tokenAttr(i.Token)))
	}
}

func (in *instrumentation) request(ctx context.Context, i s3lock.RequestInfo) {
	opt := in.requestOpt(i.Verb, i.Outcome)
	in.requests.Add(ctx, 1, opt.add...)
	in.requestDuration.Record(ctx, i.Duration.Seconds(), opt.rec...)
	if !trace.SpanFromContext(ctx).SpanContext().IsValid() {
		// No trace to add the request to.
		return
	}
	method := "GetObject"
	if i.Verb == http.MethodPut {
		method = "PutObject"
	}
	endAt := time.Now()
	_, span := in.tracer.Start(ctx, "S3."+method,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithTimestamp(endAt.Add(-i.Duration)),
		trace.WithAttributes(
			attribute.String("rpc.system", "aws-api"),
			attribute.String("rpc.service", "S3"),
			attribute.String("rpc.method", method),
			attribute.String("aws.s3.bucket", i.Bucket),
			attribute.String("aws.s3.key", i.Key),
			keyMethod.String(i.Verb),
			KeyOutcome.String(string(i.Outcome)),
		))
	if i.Err != nil && i.Outcome == s3lock.RequestError {
		// A 412 or 404 is an answer the protocol expects, not a failure.
		span.RecordError(i.Err)
		span.SetStatus(codes.Error, i.Err.Error())
	}
	span.End(trace.WithTimestamp(endAt))
}

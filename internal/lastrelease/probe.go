package lastrelease

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// probeSuffix is added to the prefix given to Probe, followed by a random
// string, to name its scratch object.
const probeSuffix = ".s3lock-probe-"

// probeWrongETag returns an ETag the scratch object does not have: 32 random
// hex digits, quoted, shaped like the ETags of most stores. ETags are
// opaque (an MD5 of the body on some stores, random on S3 Express One
// Zone), so a fixed value such as the MD5 of an empty body is not safe to
// assume absent; a fresh random one collides with probability 2^-128.
func probeWrongETag() string { return `"` + newNonce()[:32] + `"` }

// ProbeError reports that a store was seen ignoring or refusing
// conditional writes. It unwraps to [ErrConditionalWritesUnsupported], and
// to the S3 error of the failed step when there was one (a 501
// NotImplemented, for example).
type ProbeError struct {
	// Bucket and Key name the scratch object the probe wrote.
	Bucket, Key string
	// Steps are the steps the probe made, in order, the failed one last.
	Steps []ProbeStep
	// Err is the S3 error of the failed step, nil when the step failed by
	// succeeding (a write that should have been refused).
	Err error
}

// ProbeStep is one request the probe made and what came of it.
type ProbeStep struct {
	// Name says what the step does, for example
	// "create again with If-None-Match: *".
	Name string
	// Want is the answer a store with conditional writes gives.
	Want string
	// Got is the answer seen.
	Got string
	// OK reports whether Got is what was wanted.
	OK bool
}

// Error implements error.
func (e *ProbeError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v: probe of s3://%s/%s", ErrConditionalWritesUnsupported, e.Bucket, e.Key)
	if n := len(e.Steps); n > 0 {
		s := e.Steps[n-1]
		fmt.Fprintf(&b, ": %s: got %s, want %s", s.Name, s.Got, s.Want)
	}
	return b.String()
}

// Unwrap returns ErrConditionalWritesUnsupported, and Err when set.
func (e *ProbeError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrConditionalWritesUnsupported, e.Err}
	}
	return []error{ErrConditionalWritesUnsupported}
}

// Probe checks that the store behind client honours the conditional writes
// s3lock relies on, since some S3-compatible stores silently ignore
// If-None-Match and If-Match (a lock on them would grant everyone), and
// others honour each header alone but not under concurrency (a lock on
// them would sometimes grant twice). It writes a scratch object named
// prefix + ".s3lock-probe-" + a random string in bucket, four times:
//
//  1. create with If-None-Match: * — must succeed;
//  2. create again with If-None-Match: * — must be refused (412, or 409);
//  3. replace with If-Match and an ETag the object does not have — must be
//     refused (412);
//  4. replace with If-Match and the ETag from step 1 — must succeed;
//
// and reads the object back to check that it holds step 4's body. Then it
// races the store: in each of 8 rounds, 8 concurrent If-None-Match: *
// creates of a fresh scratch key (the scratch name + "-race-<round>"),
// then 8 concurrent If-Match overwrites of the ETag the winner left, each
// race followed by a read back. Every race must have exactly one winner,
// and every loser must get 412 or 409; a race with two winners fails the
// probe with a step such as "racing If-Match writes" that got "2 winners
// in round 3 of 8". No new round starts once 20 seconds have passed since
// the first (a store that makes losers wait, as SeaweedFS does, would
// otherwise keep the probe for minutes), but at least 2 rounds always run.
// Finally it deletes every scratch object when client also has
// DeleteObject (an *s3.Client does; with a client that has only the
// [S3API] methods the scratch objects are left behind).
//
// A probe that passes is evidence, not proof. A store whose conditional
// writes race only rarely passes it most of the time: moto 5.2.1 let two
// of 48 racing If-Match PUTs win in 1 round of 150 here, and 16 races make
// catching that unlikely. A failed probe, on the other hand, is proof.
//
// It also compares the Date of step 4's answer with the Last-Modified the
// read back reports for that write. When the store passed every step but
// that Date is more than a second ahead (a gateway answering with another
// clock), Probe returns a *ClockSkewError matching [ErrClockSkew]: s3lock
// can use the store safely, but contenders there judge expiry by their own
// clock alone, so a fresh process takes over a dead holder's lock only one
// TTL + margin after it first looks.
//
// Probe returns nil when the store passed. It returns a *ProbeError
// matching [ErrConditionalWritesUnsupported] when the store ignored a
// condition, refused conditional writes (501 NotImplemented), or lost a
// write; the error lists every step and what was seen. A missing bucket
// matches [ErrBucketNotFound], a refused request [ErrAccessDenied] (the
// caller needs s3:PutObject and s3:GetObject on the scratch key, and
// s3:DeleteObject to clean up). Any other error (transport, 5xx, ctx)
// means the probe could not tell, and says nothing about the store.
//
// Probe costs at most 132 PUTs, 17 GETs and 9 DELETEs: 4 PUTs, 1 GET and
// 1 DELETE for the steps above, and per race round 16 PUTs, 2 GETs and 1
// DELETE (at AWS's us-east-1 prices, about $0.0007 a probe). On a fast
// store it takes well under a second.
func Probe(ctx context.Context, client S3API, bucket, prefix string) error {
	if client == nil {
		return fmt.Errorf("%w: nil S3 client", ErrInvalidArgument)
	}
	if err := validateBucket(bucket); err != nil {
		return err
	}
	key := prefix + probeSuffix + newNonce()[:16]
	if err := validateKey(key); err != nil {
		return err
	}
	p := &prober{client: client, bucket: bucket, key: key}
	err := p.run(ctx)
	if err == nil {
		err = p.race(ctx)
	}
	p.cleanup(ctx)
	if err == nil && p.clockErr != nil {
		return p.clockErr
	}
	return err
}

// prober runs one probe.
type prober struct {
	client      S3API
	bucket, key string
	steps       []ProbeStep
	written     bool     // a write may have created the scratch object
	raceKeys    []string // the scratch keys of the race rounds written so far
	// The Date of step 4's answer and the Last-Modified of the last read,
	// and what they show of the store's clock.
	writeDate, lastModified time.Time
	clockErr                *ClockSkewError
}

func (p *prober) run(ctx context.Context) error {
	first := "s3lock probe 1 " + newNonce()
	etag, err := p.create(ctx, first)
	if err != nil {
		return err
	}
	if err := p.refused(ctx, "create again with If-None-Match: *",
		&s3.PutObjectInput{IfNoneMatch: aws.String("*")}, "s3lock probe 2 "+newNonce()); err != nil {
		return err
	}
	if err := p.refused(ctx, "replace with If-Match: <an ETag it does not have>",
		&s3.PutObjectInput{IfMatch: aws.String(probeWrongETag())}, "s3lock probe 3 "+newNonce()); err != nil {
		return err
	}
	last := "s3lock probe 4 " + newNonce()
	step := ProbeStep{Name: "replace with If-Match: <ETag of step 1>", Want: "success"}
	if out, err := p.put(ctx, &s3.PutObjectInput{IfMatch: aws.String(etag)}, last); err != nil {
		f, mapped := classify(err, p.bucket)
		switch {
		case errors.Is(mapped, ErrConditionalWritesUnsupported):
			step.Got = describe(err)
			return p.fail(step, err)
		case f == failPermanent || f == failCanceled:
			return mapped
		}
		// A 412 can be the SDK's retry of our applied write, and other
		// errors leave the outcome unknown: read back to settle it.
		body, rerr := p.read(ctx)
		switch {
		case rerr != nil:
			return p.inconclusive(errors.Join(mapped, rerr))
		case body == last:
			step.Got, step.OK = "success (reported as "+describe(err)+", then read back)", true
			p.steps = append(p.steps, step)
		case f == failPrecondition || f == failNotFound:
			// Refused although the ETag was right: a refused step was
			// applied after all, or If-Match is not evaluated properly.
			step.Got = describe(err)
			return p.fail(step, err)
		default:
			return p.inconclusive(mapped)
		}
	} else {
		step.Got, step.OK = "success", true
		p.steps = append(p.steps, step)
		p.writeDate = responseDate(out.ResultMetadata)
	}
	body, err := p.read(ctx)
	check := ProbeStep{Name: "read back", Want: "the body of step 4"}
	switch {
	case err != nil:
		f, mapped := classify(err, p.bucket)
		if f == failNotFound {
			check.Got = "no object"
			return p.fail(check, nil)
		}
		return p.inconclusive(mapped)
	case body != last:
		check.Got = fmt.Sprintf("another body (%.40q)", body)
		return p.fail(check, nil)
	}
	check.Got, check.OK = "the body of step 4", true
	p.steps = append(p.steps, check)
	if !p.writeDate.IsZero() && !p.lastModified.IsZero() && p.writeDate.Sub(p.lastModified) > time.Second {
		p.clockErr = &ClockSkewError{Bucket: p.bucket, Key: p.key, Date: p.writeDate, LastModified: p.lastModified}
	}
	return nil
}

// create makes step 1 and returns the ETag of the scratch object.
func (p *prober) create(ctx context.Context, body string) (string, error) {
	step := ProbeStep{Name: "create with If-None-Match: *", Want: "success"}
	out, err := p.put(ctx, &s3.PutObjectInput{IfNoneMatch: aws.String("*")}, body)
	if err == nil {
		etag := aws.ToString(out.ETag)
		if etag == "" {
			step.Got = "success without an ETag"
			return "", p.fail(step, nil)
		}
		step.Got, step.OK = "success", true
		p.steps = append(p.steps, step)
		return etag, nil
	}
	step.Got = describe(err)
	f, mapped := classify(err, p.bucket)
	switch {
	case errors.Is(mapped, ErrConditionalWritesUnsupported):
		return "", p.fail(step, err)
	case f == failPermanent || f == failCanceled:
		return "", mapped
	}
	// A 412 for a key nobody else knows comes from the SDK retrying our
	// own applied write (the ambiguous-success trap), or from a store that
	// evaluates If-None-Match wrongly; transient errors leave the outcome
	// unknown. Reading the object back settles all three.
	got, etag, rerr := p.readETag(ctx)
	switch {
	case rerr == nil && got == body && etag != "":
		step.Got, step.OK = "success (reported as "+describe(err)+", then read back)", true
		p.steps = append(p.steps, step)
		return etag, nil
	case rerr != nil:
		if rf, _ := classify(rerr, p.bucket); rf != failNotFound {
			return "", p.inconclusive(errors.Join(mapped, rerr))
		}
	}
	if f == failPrecondition {
		// Refused to create an object that is absent (or not ours).
		return "", p.fail(step, err)
	}
	return "", p.inconclusive(mapped)
}

// refused makes a step whose write must be refused with 412 or 409.
func (p *prober) refused(ctx context.Context, name string, in *s3.PutObjectInput, body string) error {
	step := ProbeStep{Name: name, Want: "412 PreconditionFailed"}
	_, err := p.put(ctx, in, body)
	if err == nil {
		step.Got = "success: the store ignored the condition"
		return p.fail(step, nil)
	}
	step.Got = describe(err)
	f, mapped := classify(err, p.bucket)
	switch {
	case f == failPrecondition || f == failConflict:
		step.OK = true
		p.steps = append(p.steps, step)
		return nil
	case errors.Is(mapped, ErrConditionalWritesUnsupported):
		return p.fail(step, err)
	case f == failNotFound:
		// If-Match on an object that exists must not answer "no such
		// key": the store lost the object.
		return p.fail(step, err)
	case f == failPermanent || f == failCanceled:
		return mapped
	}
	// Transient: the write may have been applied, which would mean the
	// condition was ignored; the read back at the end catches that.
	step.OK = true
	step.Got += " (outcome checked by the read back)"
	p.steps = append(p.steps, step)
	return nil
}

func (p *prober) put(ctx context.Context, in *s3.PutObjectInput, body string) (*s3.PutObjectOutput, error) {
	p.written = true
	in.Bucket, in.Key = &p.bucket, &p.key
	return p.putKey(ctx, in, body)
}

// putKey sends in with body to in's bucket and key.
func (p *prober) putKey(ctx context.Context, in *s3.PutObjectInput, body string) (*s3.PutObjectOutput, error) {
	in.Body = strings.NewReader(body)
	in.ContentLength = aws.Int64(int64(len(body)))
	in.ContentType = aws.String("text/plain")
	return p.client.PutObject(ctx, in)
}

func (p *prober) read(ctx context.Context) (string, error) {
	body, _, err := p.readETag(ctx)
	return body, err
}

func (p *prober) readETag(ctx context.Context) (string, string, error) {
	return p.readKey(ctx, p.key)
}

// readKey returns the body (its first KiB) and ETag of the object at key.
func (p *prober) readKey(ctx context.Context, key string) (string, string, error) {
	out, err := p.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &p.bucket, Key: &key})
	if err != nil {
		return "", "", err
	}
	defer out.Body.Close()
	p.lastModified = aws.ToTime(out.LastModified)
	b, err := io.ReadAll(io.LimitReader(out.Body, 1024))
	if err != nil {
		return "", "", err
	}
	return string(b), aws.ToString(out.ETag), nil
}

func (p *prober) fail(step ProbeStep, err error) error {
	p.steps = append(p.steps, step)
	return &ProbeError{Bucket: p.bucket, Key: p.key, Steps: p.steps, Err: err}
}

// inconclusive wraps an error that kept the probe from reaching a verdict.
func (p *prober) inconclusive(err error) error {
	return fmt.Errorf("s3lock: probe of s3://%s/%s could not complete: %w", p.bucket, p.key, err)
}

// objectDeleter is the optional method Probe uses to remove its scratch
// object; *s3.Client has it.
type objectDeleter interface {
	DeleteObject(ctx context.Context, params *s3.DeleteObjectInput, optFns ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
}

// cleanup deletes the scratch objects if the client can, even after ctx
// ended, within a short bound. Failing to delete is not reported: the
// objects are a few bytes under names no lock uses.
func (p *prober) cleanup(ctx context.Context) {
	d, ok := p.client.(objectDeleter)
	if !ok {
		return
	}
	keys := p.raceKeys
	if p.written {
		keys = append([]string{p.key}, keys...)
	}
	if len(keys) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for _, k := range keys {
		_, _ = d.DeleteObject(cctx, &s3.DeleteObjectInput{Bucket: &p.bucket, Key: &k})
	}
}

// probeOnce runs Probe at most once per value to a verdict: the first call
// that gets one (pass, or a permanent failure such as a *ProbeError) fixes
// the result for every later call; calls that end without one (transport
// errors, ctx) leave it to the next call. It is meant for a Mutex option
// that probes the store before the Mutex's first write.
type probeOnce struct {
	mu      sync.Mutex // serializes probes and protects the fields below
	settled bool
	err     error
}

// check returns the probe's verdict, probing if there is none yet. The
// scratch object is named after key, so an IAM policy granting the lock key
// with a trailing wildcard also grants the probe.
func (o *probeOnce) check(ctx context.Context, client S3API, bucket, key string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.settled {
		return o.err
	}
	err := Probe(ctx, client, bucket, key)
	if errors.Is(err, ErrClockSkew) {
		// Safe to use: expiry is then judged by the monotonic clock.
		err = nil
	}
	var pe *ProbeError
	if err == nil || errors.As(err, &pe) || isPermanent(err) {
		o.settled, o.err = true, err
	}
	return err
}

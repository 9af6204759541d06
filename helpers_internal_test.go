package s3lock

// Helpers shared by the white-box tests.

import (
	"bytes"
	"context"
	"io"
	"sync"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// scripted wraps an S3API and lets a test intercept PUTs by body content.
type scripted struct {
	next S3API
	mu   sync.Mutex
	// onPut, when set, is called before a PUT is forwarded; it may return
	// (handled=true, out, err) to answer it without forwarding.
	onPut    func(ctx context.Context, in *s3.PutObjectInput, body []byte) (bool, *s3.PutObjectOutput, error)
	failGets bool
}

func (c *scripted) GetObject(ctx context.Context, in *s3.GetObjectInput, o ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	c.mu.Lock()
	fail := c.failGets
	c.mu.Unlock()
	if fail {
		return nil, &smithy.GenericAPIError{Code: "InternalError", Message: "injected"}
	}
	return c.next.GetObject(ctx, in, o...)
}

func (c *scripted) PutObject(ctx context.Context, in *s3.PutObjectInput, o ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	body, _ := io.ReadAll(in.Body)
	in.Body = bytes.NewReader(body)
	c.mu.Lock()
	f := c.onPut
	c.mu.Unlock()
	if f != nil {
		if handled, out, err := f(ctx, in, body); handled {
			return out, err
		}
	}
	in.Body = bytes.NewReader(body)
	return c.next.PutObject(ctx, in, o...)
}

func copyPut(in *s3.PutObjectInput, body []byte) *s3.PutObjectInput {
	c := *in
	c.Body = bytes.NewReader(body)
	return &c
}

// decide runs the waiter's decision on s as acquire does: decideHeld when
// judge found the lock held (le != nil), else decideFree.
func (w *waiter) decide(s *snapshot, le *LockedError) (claim bool, waited uint64) {
	if le != nil {
		w.decideHeld(s)
		return false, 0
	}
	return w.decideFree(s)
}

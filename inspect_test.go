package s3lock_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/s3lock/s3lock"
	"github.com/s3lock/s3lock/internal/s3http"
	"github.com/s3lock/s3lock/s3locktest"
)

// beforeWrite is an http.RoundTripper that calls hook once, just before
// the first conditional write it passes on.
type beforeWrite struct {
	next http.RoundTripper
	once sync.Once
	hook func()
}

func (b *beforeWrite) RoundTrip(r *http.Request) (*http.Response, error) {
	if s3http.IsConditionalWrite(r) {
		b.once.Do(b.hook)
	}
	return b.next.RoundTrip(r)
}

// TestForceUnlockAppliedWrite: when ForceUnlock's PUT is
// applied but its answer is lost and the SDK's retry meets 412, the break
// is ForceUnlock's: it returns the status of what it broke, not
// ErrChanged. A lock that really changed still gives ErrChanged and is left
// alone.
func TestForceUnlockAppliedWrite(t *testing.T) {
	const key = "locks/force-applied"
	for _, tc := range []struct {
		name string
		// client returns the client ForceUnlock uses; holder is the Mutex
		// holding the lock, etag the ETag the caller inspected.
		client     func(srv *s3locktest.Server, holder *s3lock.Mutex) *s3.Client
		changeETag bool // the lock changes between Inspect and ForceUnlock
		wantErr    error
	}{
		{name: "answer dropped, retry meets 412", client: func(srv *s3locktest.Server, _ *s3lock.Mutex) *s3.Client {
			fa := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
			fa.Inject(s3locktest.FaultDropResponse, 1, s3http.IsConditionalWrite)
			return srv.FaultyClient(fa)
		}},
		{name: "500 after apply, retry meets 412", client: func(srv *s3locktest.Server, _ *s3lock.Mutex) *s3.Client {
			fa := s3locktest.NewFaults(1, s3locktest.FaultConfig{})
			fa.Inject(s3locktest.FaultErrorAfterApply, 1, s3http.IsConditionalWrite)
			return srv.FaultyClient(fa)
		}},
		{name: "changed since Inspect", changeETag: true, wantErr: s3lock.ErrChanged,
			client: func(srv *s3locktest.Server, _ *s3lock.Mutex) *s3.Client { return srv.Client() }},
		{name: "changed between ForceUnlock's read and write", wantErr: s3lock.ErrChanged,
			client: func(srv *s3locktest.Server, holder *s3lock.Mutex) *s3.Client {
				hc := srv.HTTPClient()
				hc.Transport = &beforeWrite{next: hc.Transport, hook: func() {
					// The holder unlocks and locks again (errors show
					// in the checks of the final state).
					ctx := context.Background()
					if holder.Unlock(ctx) == nil {
						_ = holder.TryLock(ctx)
					}
				}}
				return srv.Client(func(o *s3.Options) { o.HTTPClient = hc })
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := s3locktest.New(t)
			ctx := context.Background()
			holder := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithOwner("holder"), s3lock.WithTTL(time.Minute))
			if err := holder.TryLock(ctx); err != nil {
				t.Fatal(err)
			}
			st := lockState(t, srv, key)
			if tc.changeETag {
				if err := holder.Unlock(ctx); err != nil {
					t.Fatal(err)
				}
				if err := holder.TryLock(ctx); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s3lock.ForceUnlock(ctx, tc.client(srv, holder), srv.Bucket(), key, st.ETag)
			now := lockState(t, srv, key)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("ForceUnlock() = %v, %v; want an error matching %v", got, err, tc.wantErr)
				}
				if !now.Held || now.Owner != "holder" || now.Generation != holder.Token() {
					t.Errorf("after a refused ForceUnlock the lock is %+v; want held by holder at generation %d", now, holder.Token())
				}
				if err := holder.Unlock(ctx); err != nil {
					t.Errorf("holder.Unlock() = %v; want nil", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ForceUnlock() with its applied write's answer lost = %v; want nil", err)
			}
			if got == nil || !got.Held || got.Owner != "holder" || got.Generation != 1 || got.ETag != st.ETag {
				t.Errorf("ForceUnlock() status = %+v; want the broken hold (holder, generation 1, ETag %s)", got, st.ETag)
			}
			if now.Held || now.Generation != 2 {
				t.Errorf("after ForceUnlock the lock is %+v; want free at generation 2", now)
			}
			if err := holder.Unlock(ctx); !errors.Is(err, s3lock.ErrLeaseLost) {
				t.Errorf("holder.Unlock() after the break = %v; want ErrLeaseLost", err)
			}
		})
	}
}

// TestInspectSinceUntil: LockStatus names a hold's start and earliest end
// Since and Until, as LockedError does: for the same hold they equal the
// LockedError's Since and Until and the deprecated AcquiredAt and
// ExpiresAt. Once the lock is released, all four are zero.
func TestInspectSinceUntil(t *testing.T) {
	srv := s3locktest.New(t)
	ctx := context.Background()
	const key = "locks/since-until"
	holder := newMutex(t, srv.Client(), srv.Bucket(), key, s3lock.WithTTL(time.Minute))
	if err := holder.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	le := wantLocked(t, newMutex(t, srv.Client(), srv.Bucket(), key).TryLock(ctx))
	st := lockState(t, srv, key)
	if st.Since.IsZero() || st.Until.IsZero() {
		t.Fatalf("Inspect() of a held lock: Since = %v, Until = %v; want both set", st.Since, st.Until)
	}
	if !st.Until.After(st.Since) {
		t.Errorf("Inspect(): Until = %v; want it after Since = %v", st.Until, st.Since)
	}
	if !st.Since.Equal(le.Since) || !st.Until.Equal(le.Until) {
		t.Errorf("Inspect(): Since, Until = %v, %v; LockedError for the same hold: %v, %v; want equal", st.Since, st.Until, le.Since, le.Until)
	}
	if !st.AcquiredAt.Equal(st.Since) || !st.ExpiresAt.Equal(st.Until) {
		t.Errorf("Inspect(): AcquiredAt, ExpiresAt = %v, %v; want Since, Until = %v, %v", st.AcquiredAt, st.ExpiresAt, st.Since, st.Until)
	}
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	st = lockState(t, srv, key)
	if !st.Since.IsZero() || !st.Until.IsZero() || !st.AcquiredAt.IsZero() || !st.ExpiresAt.IsZero() {
		t.Errorf("Inspect() of a released lock: Since %v, Until %v, AcquiredAt %v, ExpiresAt %v; want all zero",
			st.Since, st.Until, st.AcquiredAt, st.ExpiresAt)
	}
}

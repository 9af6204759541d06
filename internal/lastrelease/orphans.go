// The orphans: held records of ours that no lease holds, so that a Mutex
// takes its own stranded hold back at once instead of waiting out the TTL.

package lastrelease

import (
	"slices"
	"sync"
)

// maxOrphans bounds how many unresolved writes a Mutex remembers. Every
// read prunes the writes that can no longer be in S3 nor land there, and
// writes made under the same condition share one nonce, so a Mutex holds
// only a few; the bound is a backstop.
const maxOrphans = 16

// orphan is a held record of ours that no lease holds: nonce is its nonce.
// Either it landed (a lease's last record, in S3 while the object has the
// ETag in cond), or it is a write whose outcome is unknown, made under
// cond (a claim, or a lease's renewal). Such a record can be in S3, or land
// there later, only while the object carries its nonce or still satisfies
// cond; any other read proves it gone for good, since ETags never repeat
// (every body has a fresh nonce).
type orphan struct {
	nonce string
	cond  condition
	// claim marks an unknown claim, first sent at start: the only kind
	// whose nonce a later claim under the same condition may reuse, as
	// both records would be the same grant (same generation).
	claim bool
	start instant
}

// orphanSet is the orphans of one lock object.
type orphanSet struct {
	mu   sync.Mutex // protects list
	list []orphan
}

// has reports whether nonce is an orphan's: a record carrying it is ours
// to take back.
func (os *orphanSet) has(nonce string) bool {
	os.mu.Lock()
	defer os.mu.Unlock()
	return slices.ContainsFunc(os.list, func(o orphan) bool { return o.nonce == nonce })
}

// claimNonce returns the nonce of an unresolved claim of ours made under
// cond and when the first write with it was sent, or a fresh nonce and a
// zero instant. Of all claims under one condition at most one can land,
// so they may share a nonce: that keeps one orphan per condition. A
// record that landed, or a renewal, never lends its nonce: a claim over
// it writes another generation, and must be told apart from it by a
// read-back and by contenders' expiry watch.
func (os *orphanSet) claimNonce(cond condition) (string, instant) {
	os.mu.Lock()
	defer os.mu.Unlock()
	for _, o := range os.list {
		if o.cond == cond && o.claim {
			return o.nonce, o.start
		}
	}
	return newNonce(), instant{}
}

// add remembers records of ours whose fate is unknown.
func (os *orphanSet) add(orphans ...orphan) {
	os.mu.Lock()
	defer os.mu.Unlock()
	for _, o := range orphans {
		known := slices.ContainsFunc(os.list, func(k orphan) bool { return k.nonce == o.nonce && k.cond == o.cond })
		if o.nonce != "" && !known {
			os.list = append(os.list, o)
		}
	}
	if len(os.list) > maxOrphans {
		os.list = slices.Delete(os.list, 0, len(os.list)-maxOrphans)
	}
}

// prune drops the orphans that s proves gone for good: s carries another
// nonce and does not satisfy their condition.
func (os *orphanSet) prune(s *snapshot) {
	os.mu.Lock()
	defer os.mu.Unlock()
	os.list = slices.DeleteFunc(os.list, func(o orphan) bool {
		return !(s.rec != nil && s.rec.Nonce == o.nonce) && !o.cond.holds(s)
	})
}

// clear forgets every orphan: a write of ours has just replaced the state
// they were written over, so none of them can be in S3 or land.
func (os *orphanSet) clear() {
	os.mu.Lock()
	defer os.mu.Unlock()
	os.list = nil
}

// snapshot returns a copy of the orphans (for tests and logs).
//
//lint:ignore U1000 only the release's own tests, which are not copied, use it
func (os *orphanSet) snapshot() []orphan {
	os.mu.Lock()
	defer os.mu.Unlock()
	return slices.Clone(os.list)
}

package lastrelease

import (
	"sync/atomic"
	"time"
)

// suspendCheck is how often a hold without renewal checks whether its
// lease has run out, so that a resume from suspend ends it within this
// long (timers count only the monotonic clock, which stops in suspend).
const suspendCheck = time.Second

// instant is a moment on two clocks: this process's monotonic clock, which
// Go's timers and time.Since use and which stops while the system is
// suspended, and the boot clock, which goes on counting (zero where the
// system has none, see bootClock).
type instant struct {
	mono time.Time
	boot time.Duration
}

// now returns the current instant.
func now() instant { return instant{mono: time.Now(), boot: bootClock()} }

// suspendedSince returns how long the system has been suspended since i:
// the boot clock's advance beyond the monotonic clock's (0 where unknown).
func (i instant) suspendedSince() time.Duration {
	if i.boot == 0 {
		return 0
	}
	b := bootClock()
	if b == 0 {
		return 0
	}
	return max((b-i.boot)-time.Since(i.mono), 0)
}

// bootClock reads the boot clock (0 where there is none), plus bootSkew.
func bootClock() time.Duration {
	b := readBootClock()
	if b == 0 {
		return 0
	}
	return b + time.Duration(bootSkew.Load())
}

// bootSkew is added to every boot clock reading: tests set it to simulate
// a suspend.
var bootSkew atomic.Int64

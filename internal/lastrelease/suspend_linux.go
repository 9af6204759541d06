package lastrelease

import (
	"time"

	"golang.org/x/sys/unix"
)

// readBootClock reads CLOCK_BOOTTIME, which, unlike CLOCK_MONOTONIC, goes
// on counting while the system is suspended.
func readBootClock() time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

//go:build !linux

package lastrelease

import "time"

// readBootClock returns 0: on this system s3lock cannot see a suspend.
func readBootClock() time.Duration { return 0 }

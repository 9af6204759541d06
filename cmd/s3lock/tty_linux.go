package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// inForeground reports whether f is a terminal whose foreground process
// group is s3lock's.
func inForeground(f *os.File) bool {
	if f == nil {
		return false
	}
	// TIOCGPGRP writes a pid_t, 32 bits: read exactly that, on big-endian
	// machines too.
	pgrp, err := unix.IoctlGetUint32(int(f.Fd()), unix.TIOCGPGRP)
	return err == nil && int(int32(pgrp)) == unix.Getpgrp()
}

//go:build darwin || freebsd || netbsd || dragonfly

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
	// These systems are little-endian on every architecture Go supports
	// for them, so the 32-bit pid_t lands in the low half of the int.
	pgrp, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCGPGRP)
	return err == nil && pgrp == unix.Getpgrp()
}

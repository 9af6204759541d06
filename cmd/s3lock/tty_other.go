//go:build unix && !(linux || darwin || freebsd || netbsd || dragonfly)

package main

import "os"

// inForeground reports whether f is a terminal whose foreground process
// group is s3lock's. On this system s3lock does not ask, and treats the
// child as if no terminal were involved.
func inForeground(*os.File) bool { return false }

//go:build !unix

package main

import (
	"os"
	"os/exec"
)

// forwardedSignals are caught by run: before the lock is taken they
// abandon the wait, while the child runs they are passed on to it.
var forwardedSignals = []os.Signal{os.Interrupt}

func terminating(os.Signal) bool { return true }

func signalNumber(os.Signal) int { return 2 }

// child is run's command. Without Unix signals, stopping it means killing
// it.
type child struct{ cmd *exec.Cmd }

func prepareChild(cmd *exec.Cmd, _ *os.File) *child { return &child{cmd: cmd} }

func (c *child) forward(s os.Signal) { _ = c.cmd.Process.Signal(s) }
func (c *child) terminate()          { _ = c.cmd.Process.Kill() }
func (c *child) kill()               { _ = c.cmd.Process.Kill() }

func exitStatus(ps *os.ProcessState) int { return ps.ExitCode() }

//go:build unix

package main

import (
	"os"
	"os/exec"
	"syscall"
)

// forwardedSignals are caught by run: before the lock is taken they
// abandon the wait (all but SIGUSR1/2), while the child runs they are
// passed on to it.
var forwardedSignals = []os.Signal{
	syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2,
}

// terminating reports whether s, received while waiting for the lock,
// should end the wait.
func terminating(s os.Signal) bool { return s != syscall.SIGUSR1 && s != syscall.SIGUSR2 }

func signalNumber(s os.Signal) int {
	if n, ok := s.(syscall.Signal); ok {
		return int(n)
	}
	return 0
}

// child is run's command and how to signal it.
//
// Away from a terminal (cron, CI, scripts) the child leads its own process
// group, and every signal goes to the whole group, so that whatever the
// command started also stops when the lease is lost.
//
// When s3lock runs in the foreground of a terminal, the child stays in
// s3lock's process group, so it can read the terminal and job control
// (Ctrl-Z) works. The terminal's own Ctrl-C and Ctrl-\ then reach the child
// directly, so s3lock does not send SIGINT and SIGQUIT again; it signals
// only the child process itself.
type child struct {
	cmd   *exec.Cmd
	group bool
}

func prepareChild(cmd *exec.Cmd, stdin *os.File) *child {
	if inForeground(stdin) {
		return &child{cmd: cmd}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return &child{cmd: cmd, group: true}
}

func (c *child) send(s syscall.Signal) {
	pid := c.cmd.Process.Pid
	if c.group {
		pid = -pid
	}
	_ = syscall.Kill(pid, s) // ESRCH: it has exited already
}

// forward passes a signal s3lock received on to the child.
func (c *child) forward(s os.Signal) {
	n, ok := s.(syscall.Signal)
	if !ok {
		return
	}
	if !c.group && (n == syscall.SIGINT || n == syscall.SIGQUIT) {
		return // the terminal sent it to the child too
	}
	c.send(n)
}

func (c *child) terminate() { c.send(syscall.SIGTERM) }
func (c *child) kill()      { c.send(syscall.SIGKILL) }

// exitStatus returns the child's exit code, or 128+N when signal N killed
// it, as shells do.
func exitStatus(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return exitSignal + int(ws.Signal())
	}
	return ps.ExitCode()
}

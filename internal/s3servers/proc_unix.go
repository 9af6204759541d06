//go:build unix && !linux

package s3servers

import (
	"os"
	"syscall"
)

// sysProcAttr puts the server in its own process group, so stop can kill
// it with all its children.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// killGroup sends SIGKILL to p's process group.
func killGroup(p *os.Process) {
	if err := syscall.Kill(-p.Pid, syscall.SIGKILL); err != nil {
		_ = p.Kill()
	}
}

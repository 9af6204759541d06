package s3servers

import (
	"os"
	"syscall"
)

// sysProcAttr puts the server in its own process group, so stop can kill
// it with all its children, and has the kernel kill it if the test binary
// dies first.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killGroup sends SIGKILL to p's process group.
func killGroup(p *os.Process) {
	if err := syscall.Kill(-p.Pid, syscall.SIGKILL); err != nil {
		_ = p.Kill()
	}
}

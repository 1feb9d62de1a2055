//go:build !linux

package worker

import "syscall"

// processAttributes puts a plugin process in its own process group. Outside
// Linux there is no parent-death signal, so a plugin outlives a worker that
// dies from SIGKILL.
func processAttributes() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// becomeSubreaper does nothing outside Linux: orphaned children of a plugin
// are re-parented to init, which reaps them.
func becomeSubreaper() error {
	return nil
}

package worker

import (
	"sync"
	"syscall"
)

// prSetChildSubreaper is PR_SET_CHILD_SUBREAPER from <linux/prctl.h>.
const prSetChildSubreaper = 36

// processAttributes puts a plugin process in its own process group and has
// the kernel send it SIGKILL when the worker dies.
//
// NOTE: Pdeathsig fires when the thread that started the process exits, not
// the whole worker. The Go runtime ends a thread only when a goroutine that
// called runtime.LockOSThread exits without unlocking, which the worker does
// not do. Pdeathsig also reaches only the plugin's own process: its children
// survive a worker that dies from SIGKILL.
func processAttributes() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

var subreaper struct {
	once sync.Once
	err  error
}

// becomeSubreaper makes the worker process a child subreaper, so children of
// a plugin whose parent exits are re-parented to the worker, which reaps
// them with the rest of their process group. It runs once per process.
//
// NOTE: orphans of other children of the worker, or of plugin processes that
// left their group, are re-parented to the worker too and stay zombies until
// it exits, because the worker reaps only plugin process groups.
func becomeSubreaper() error {
	subreaper.once.Do(func() {
		_, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0)
		if errno != 0 {
			subreaper.err = errno
		}
	})
	return subreaper.err
}

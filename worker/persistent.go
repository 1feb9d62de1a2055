package worker

import (
	"context"
	"slices"
	"time"
)

// runPersistent runs a job on a warm process of the plugin, or on a new one.
// A process that ends the job by itself, without being signalled, stays
// warm for the next job.
func (p *Plugins) runPersistent(ctx context.Context, pl *plugin, t Task) Outcome {
	line, err := executeLine(pl.name, t)
	if err != nil {
		return failed("%v", err)
	}

	proc, stale := p.takeWarm(pl, t.GPUs)
	for _, w := range stale {
		p.logger.Info("stopping warm plugin process: its GPUs differ from the job's", "plugin", pl.name, "pid", w.pid, "job_id", t.Job.ID, "process_gpus", w.gpus, "job_gpus", t.GPUs)
		w.shutdown(pl.manifest.CancelTimeout)
	}
	if proc == nil {
		proc, err = p.startPluginProcess(pl, t.GPUs, "")
		if err != nil {
			return failed("%v", err)
		}
	}

	run := newJobRun(p, pl, proc, t, true)
	out := run.run(ctx, line)
	out.PID = proc.pid
	if !p.returnWarm(pl, proc) {
		out.ReleasePIDs = p.processReleasePIDs(proc)
	}
	return out
}

// takeWarm removes from the idle list a warm process whose GPUs equal gpus,
// the most recently used first. Without one, it removes the least recently
// used idle processes that must stop so the plugin keeps at most Instances
// processes, and returns them as stale for the caller to stop.
func (p *Plugins) takeWarm(pl *plugin, gpus []int) (warm *process, stale []*process) {
	p.mu.Lock()
	defer p.mu.Unlock()

	pl.idle = slices.DeleteFunc(pl.idle, func(proc *process) bool {
		if proc.isDone() {
			stopIdleTimer(proc)
			return true
		}
		return false
	})

	for i := len(pl.idle) - 1; i >= 0; i-- {
		if equalGPUs(pl.idle[i].gpus, gpus) {
			warm = pl.idle[i]
			pl.idle = slices.Delete(pl.idle, i, i+1)
			stopIdleTimer(warm)
			warm.registry.state = processBusy
			return warm, nil
		}
	}

	// pl.busy counts the caller's slot, so busy+idle is the number of
	// processes once the caller starts its own.
	for len(pl.idle) > 0 && pl.busy+len(pl.idle) > pl.instances {
		stopIdleTimer(pl.idle[0])
		pl.idle[0].registry.state = processStopping
		stale = append(stale, pl.idle[0])
		pl.idle = slices.Delete(pl.idle, 0, 1)
	}
	return nil, stale
}

// returnWarm puts a process back in the idle list after a job and reports
// whether it did, which it does not when the process was signalled or has
// exited. After Close it stops the process instead.
func (p *Plugins) returnWarm(pl *plugin, proc *process) bool {
	if proc.wasSignalled() || proc.isDone() {
		return false
	}

	p.mu.Lock()
	if p.closed {
		proc.registry.state = processStopping
		p.mu.Unlock()
		proc.shutdown(pl.manifest.CancelTimeout)
		return false
	}
	proc.registry.state = processIdle
	proc.registry.lastUsed = time.Now()
	pl.idle = append(pl.idle, proc)
	if d := pl.manifest.IdleTimeout; d > 0 {
		proc.idleTimer = time.AfterFunc(d, func() { p.expireIdle(pl, proc) })
	}
	p.mu.Unlock()
	return true
}

// expireIdle stops a process that stayed idle for the plugin's IdleTimeout.
func (p *Plugins) expireIdle(pl *plugin, proc *process) {
	p.mu.Lock()
	i := slices.Index(pl.idle, proc)
	if i < 0 || p.closed {
		p.mu.Unlock()
		return
	}
	pl.idle = slices.Delete(pl.idle, i, i+1)
	proc.registry.state = processStopping
	p.background.Add(1)
	p.mu.Unlock()
	defer p.background.Done()

	p.logger.Info("stopping idle plugin process", "plugin", pl.name, "pid", proc.pid, "idle_timeout", pl.manifest.IdleTimeout)
	proc.shutdown(pl.manifest.CancelTimeout)
}

// stopIdleTimer stops a process's idle timer. Plugins.mu is held.
func stopIdleTimer(proc *process) {
	if proc.idleTimer != nil {
		proc.idleTimer.Stop()
		proc.idleTimer = nil
	}
}

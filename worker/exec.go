package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jetqueue/jetqueue/messages"
)

// runExec runs a job in a new process of the plugin. The process gets the
// execute line on stdin, which stays open for a cancel line, and
// JETQUEUE_JOB_ID in its environment.
func (p *Plugins) runExec(ctx context.Context, pl *plugin, t Task) Outcome {
	line, err := executeLine(pl.name, t)
	if err != nil {
		return failed("%v", err)
	}
	proc, err := p.startPluginProcess(pl, t.GPUs, t.Job.ID)
	if err != nil {
		return failed("%v", err)
	}

	run := newJobRun(p, pl, proc, t, false)
	out := run.run(ctx, line)
	out.PID = proc.pid
	out.ReleasePIDs = p.processReleasePIDs(proc)
	return out
}

// startPluginProcess starts a process of the plugin in its directory. jobID
// is set for exec plugins and empty for persistent ones.
func (p *Plugins) startPluginProcess(pl *plugin, gpus []int, jobID string) (*process, error) {
	m := pl.manifest
	command := slices.Clone(m.Command)
	command[0] = resolveProgram(command[0], m.Dir)

	proc, err := startProcess(processSpec{
		plugin:    pl.name,
		command:   command,
		dir:       m.Dir,
		env:       pluginEnv(m, gpus, jobID),
		gpus:      gpus,
		killGrace: m.KillGrace,
		logger:    p.logger,
	})
	if err != nil {
		return nil, fmt.Errorf("start plugin %q: %w; check the command in its manifest", pl.name, err)
	}
	p.track(proc)
	return proc, nil
}

// pluginEnv returns the environment of a plugin process: the worker's own
// without the variables the worker sets per job, then the manifest's Env,
// CUDA_VISIBLE_DEVICES, JETQUEUE_PLUGIN and, for exec plugins,
// JETQUEUE_JOB_ID.
func pluginEnv(m *Manifest, gpus []int, jobID string) []string {
	var env []string
	for _, kv := range os.Environ() {
		key, _, _ := strings.Cut(kv, "=")
		switch key {
		case envCUDAVisibleDevices, envPlugin, envJobID:
			continue
		}
		env = append(env, kv)
	}

	keys := make([]string, 0, len(m.Env))
	for k := range m.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+m.Env[k])
	}

	env = append(env, envCUDAVisibleDevices+"="+joinInts(gpus), envPlugin+"="+m.Name)
	if jobID != "" {
		env = append(env, envJobID+"="+jobID)
	}
	return env
}

func joinInts(values []int) string {
	parts := make([]string, len(values))
	for i, v := range values {
		parts[i] = strconv.Itoa(v)
	}
	return strings.Join(parts, ",")
}

// executeLine encodes the "execute" message of a task, with args and kwargs
// converted from msgpack to JSON.
func executeLine(pluginName string, t Task) ([]byte, error) {
	args, err := payloadJSON(t.Job.Args)
	if err != nil {
		return nil, fmt.Errorf("convert args of job %s to JSON for plugin %q: %w", t.Job.ID, pluginName, err)
	}
	kwargs, err := payloadJSON(t.Job.Kwargs)
	if err != nil {
		return nil, fmt.Errorf("convert kwargs of job %s to JSON for plugin %q: %w", t.Job.ID, pluginName, err)
	}
	gpus := t.GPUs
	if gpus == nil {
		gpus = []int{}
	}

	line, err := json.Marshal(executeMessage{
		Type:       msgExecute,
		JobID:      t.Job.ID,
		PluginName: pluginName,
		Attempt:    t.Job.Attempt,
		Args:       args,
		Kwargs:     kwargs,
		GPUs:       gpus,
	})
	if err != nil {
		return nil, fmt.Errorf("encode execute message of job %s: %w", t.Job.ID, err)
	}
	return line, nil
}

func payloadJSON(p messages.Payload) (json.RawMessage, error) {
	if len(p) == 0 {
		return json.RawMessage("null"), nil
	}
	return p.MarshalJSON()
}

// jobRun is one job on one plugin process, persistent or exec.
type jobRun struct {
	plugins    *Plugins
	pl         *plugin
	proc       *process
	sink       *jobSink
	task       Task
	persistent bool
	cancelSent bool
}

func newJobRun(p *Plugins, pl *plugin, proc *process, t Task, persistent bool) *jobRun {
	return &jobRun{
		plugins:    p,
		pl:         pl,
		proc:       proc,
		sink:       newJobSink(pl.name, t, p.logger),
		task:       t,
		persistent: persistent,
	}
}

// run sends the execute line, supervises the job and returns its outcome.
func (r *jobRun) run(ctx context.Context, line []byte) Outcome {
	r.proc.attach(r.sink)
	defer r.proc.detach()

	if err := r.proc.send(line); err != nil {
		// The process has exited or closed its stdin, so supervise returns
		// when its group is gone.
		r.plugins.logger.Warn("send job to plugin failed", "job_id", r.task.Job.ID, "plugin", r.pl.name, "attempt", r.task.Job.Attempt, "error", err)
	}
	r.supervise(ctx)
	return r.outcome()
}

// supervise waits until the job ends. A persistent process ends a job with
// its final message, unless it was signalled. Otherwise the job ends when
// the process group is gone.
//
// A cancel of ctx escalates: a cancel message, SIGTERM after CancelTimeout,
// then SIGKILL after KillGrace. An exec process that sent its final message
// but keeps running gets the same SIGTERM and SIGKILL steps.
func (r *jobRun) supervise(ctx context.Context) {
	m := r.pl.manifest
	cancelled := ctx.Done()
	killNow := r.task.Kill
	finished := r.sink.finished
	var term, kill <-chan time.Time
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	startTimer := func(d time.Duration) <-chan time.Time {
		if timer != nil {
			timer.Stop()
		}
		timer = time.NewTimer(d)
		return timer.C
	}

	for {
		select {
		case <-cancelled:
			cancelled = nil
			r.sendCancel()
			if term == nil && kill == nil {
				term = startTimer(m.CancelTimeout)
			}

		case <-finished:
			finished = nil
			if r.persistent && !r.proc.wasSignalled() {
				return
			}
			if !r.persistent && term == nil && kill == nil {
				term = startTimer(m.CancelTimeout)
			}

		case <-term:
			term = nil
			r.terminate()
			kill = startTimer(m.KillGrace)

		case <-kill:
			kill = nil
			r.kill()

		case <-killNow:
			killNow, cancelled, term, kill = nil, nil, nil, nil
			r.cancelSent = true
			r.proc.signal(syscall.SIGKILL)
			r.step(messages.CancelKill, "warning", "the worker lost contact with the coordinator: sent SIGKILL to the plugin's process group so the job cannot run twice")

		case <-r.proc.done:
			return
		}
	}
}

func (r *jobRun) sendCancel() {
	r.cancelSent = true
	line, _ := json.Marshal(controlMessage{Type: msgCancel, JobID: r.task.Job.ID})
	if err := r.proc.send(line); err != nil {
		r.plugins.logger.Debug("send cancel to plugin failed", "job_id", r.task.Job.ID, "plugin", r.pl.name, "error", err)
	}
	r.step(messages.CancelCooperative, "info", fmt.Sprintf("cancel requested: sent a cancel message to the plugin; SIGTERM to its process group follows in %v", r.pl.manifest.CancelTimeout))
}

func (r *jobRun) terminate() {
	m := r.pl.manifest
	r.proc.signal(syscall.SIGTERM)
	if !r.cancelSent {
		r.warn(fmt.Sprintf("plugin sent its final message but did not exit within %v: sent SIGTERM to its process group; SIGKILL follows in %v", m.CancelTimeout, m.KillGrace))
		return
	}
	r.step(messages.CancelTerminate, "warning", fmt.Sprintf("plugin did not stop within %v of the cancel message: sent SIGTERM to its process group; SIGKILL follows in %v", m.CancelTimeout, m.KillGrace))
}

func (r *jobRun) kill() {
	r.proc.signal(syscall.SIGKILL)
	text := fmt.Sprintf("plugin process group still running %v after SIGTERM: sent SIGKILL", r.pl.manifest.KillGrace)
	if !r.cancelSent {
		r.warn(text)
		return
	}
	r.step(messages.CancelKill, "warning", text)
}

// step reports a cancel phase to the caller, the job log and the worker log.
func (r *jobRun) step(phase messages.CancelPhase, level, text string) {
	if r.task.CancelStep != nil {
		r.task.CancelStep(phase)
	}
	r.task.Reporter.Log(messages.LogWorker, level, text)
	r.plugins.logger.Info("plugin job cancel step", "job_id", r.task.Job.ID, "plugin", r.pl.name, "attempt", r.task.Job.Attempt, "phase", phase, "pid", r.proc.pid)
}

func (r *jobRun) warn(text string) {
	r.task.Reporter.Log(messages.LogWorker, "warning", text)
	r.plugins.logger.Warn(text, "job_id", r.task.Job.ID, "plugin", r.pl.name, "attempt", r.task.Job.Attempt, "pid", r.proc.pid)
}

// outcome returns the job's outcome. A "result" message completes the job,
// even when it arrives after a cancel. An "error" message fails it, or
// cancels it when the message has "cancelled": true or a cancel was sent.
// Without either message the exit decides. After a cancel the job is
// cancelled, a persistent process that exits fails the job, and an exec
// process that exits with status 0 completes it with a nil result.
func (r *jobRun) outcome() Outcome {
	msg := r.sink.finalMessage()
	switch {
	case msg != nil && msg.Type == msgResult:
		var result messages.Payload
		if len(msg.Result) > 0 {
			if err := result.UnmarshalJSON(msg.Result); err != nil {
				return failed("plugin %q sent a result that cannot be stored as msgpack: %v", r.pl.name, err)
			}
		}
		return Outcome{Status: messages.StatusCompleted, Result: result}

	case msg != nil:
		text := msg.Error
		if text == "" {
			text = fmt.Sprintf("plugin %q reported an error without a message", r.pl.name)
		}
		if msg.Cancelled || r.cancelSent {
			return Outcome{Status: messages.StatusCancelled, Error: text}
		}
		return Outcome{Status: messages.StatusFailed, Error: text}
	}

	exit := r.proc.exitDescription()
	switch {
	case r.cancelSent:
		return Outcome{Status: messages.StatusCancelled, Error: fmt.Sprintf("job cancelled: the plugin process %s", exit)}
	case r.persistent:
		return failed("plugin process %s during the job; last stderr: %s", exit, r.proc.lastStderr())
	case r.proc.exitCode() == 0:
		return Outcome{Status: messages.StatusCompleted}
	}
	return failed("plugin %s; last stderr: %s", exit, r.proc.lastStderr())
}

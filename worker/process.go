package worker

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jetqueue/jetqueue/messages"
)

const (
	// maxLineBytes is the longest stdout or stderr line passed on; the rest
	// of a longer line is dropped and the line is marked as cut.
	maxLineBytes = 1 << 20

	// stderrTailLines and stderrTailBytes bound the stderr tail quoted in
	// the error of a job whose plugin exited.
	stderrTailLines = 8
	stderrTailBytes = 2048

	// stdinQueueLength is how many protocol lines may wait for a plugin to
	// read its stdin. The worker sends at most an execute, a cancel and a
	// shutdown line per job, so a full queue means the plugin reads nothing.
	stdinQueueLength = 16

	// drainTimeout bounds the wait for a plugin's stdout and stderr to close
	// after its process group is gone. Only a process that left the group
	// (with setsid, say) can keep them open longer.
	//
	// NOTE: the worker never signals a process that left the group, because
	// it tracks plugin processes by process group only.
	drainTimeout = 2 * time.Second

	// groupGoneTimeout bounds the wait for a process group to disappear
	// after SIGKILL.
	groupGoneTimeout = 5 * time.Second

	// groupPollInterval is how often a process group is checked while the
	// worker waits for it to disappear.
	groupPollInterval = 10 * time.Millisecond
)

// processSpec describes one plugin process to start.
type processSpec struct {
	plugin    string
	command   []string // program and arguments, program already resolved
	dir       string
	env       []string
	gpus      []int
	killGrace time.Duration
	logger    *slog.Logger
}

// process is one running plugin process and its process group, whose id is
// the process id. It reads the plugin's stdout and stderr line by line and
// passes each line to the attached job sink, if any.
type process struct {
	plugin    string
	pid       int
	gpus      []int
	killGrace time.Duration
	logger    *slog.Logger
	cmd       *exec.Cmd

	stdin chan []byte // lines for the stdin writer goroutine

	mu          sync.Mutex
	sink        *jobSink
	stderrTail  []string
	stdinClosed bool
	signalled   bool // a signal was sent to the group
	gone        bool // the group has no process left; signal nothing more

	exited chan struct{} // closed when the leader was reaped
	done   chan struct{} // closed when the group is gone and both pipes are drained

	// idleTimer stops the process after the plugin's idle timeout. It is
	// guarded by Plugins.mu.
	idleTimer *time.Timer
	// registry is the process's state in the plugin registry, guarded by
	// Plugins.mu.
	registry processRegistry
}

// startProcess starts a plugin process in a new process group with stdin,
// stdout and stderr connected to pipes.
func startProcess(spec processSpec) (*process, error) {
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("create stdin pipe: %w", err)
	}
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		closeAll(stdinR, stdinW)
		return nil, fmt.Errorf("create stdout pipe: %w", err)
	}
	stderrR, stderrW, err := os.Pipe()
	if err != nil {
		closeAll(stdinR, stdinW, stdoutR, stdoutW)
		return nil, fmt.Errorf("create stderr pipe: %w", err)
	}

	cmd := exec.Command(spec.command[0], spec.command[1:]...)
	cmd.Dir = spec.dir
	cmd.Env = spec.env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, stdoutW, stderrW
	cmd.SysProcAttr = processAttributes()
	err = cmd.Start()
	closeAll(stdinR, stdoutW, stderrW)
	if err != nil {
		closeAll(stdinW, stdoutR, stderrR)
		return nil, fmt.Errorf("start %q in %s: %w", spec.command[0], spec.dir, err)
	}

	p := &process{
		plugin:    spec.plugin,
		pid:       cmd.Process.Pid,
		gpus:      slices.Clone(spec.gpus),
		killGrace: spec.killGrace,
		logger:    spec.logger,
		cmd:       cmd,
		stdin:     make(chan []byte, stdinQueueLength),
		exited:    make(chan struct{}),
		done:      make(chan struct{}),
	}
	p.logger.Debug("plugin process started", "plugin", p.plugin, "pid", p.pid, "command", spec.command)

	var readers sync.WaitGroup
	readers.Add(2)
	go func() {
		defer readers.Done()
		readLines(stdoutR, p.handleStdout)
	}()
	go func() {
		defer readers.Done()
		readLines(stderrR, p.handleStderr)
	}()
	go p.writeStdin(stdinW)
	go p.monitor(&readers, stdoutR, stderrR)
	return p, nil
}

// writeStdin writes queued lines to the plugin until the queue is closed.
// After a failed write it drops the remaining lines, because the plugin has
// closed its stdin or exited, which the monitor goroutine handles.
func (p *process) writeStdin(w *os.File) {
	defer w.Close()

	var failed bool
	for line := range p.stdin {
		if failed {
			continue
		}
		if _, err := w.Write(line); err != nil {
			failed = true
			p.logger.Debug("write to plugin stdin failed", "plugin", p.plugin, "pid", p.pid, "error", err)
		}
	}
}

// send queues one protocol line for the plugin's stdin.
func (p *process) send(line []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()

	if p.stdinClosed {
		return fmt.Errorf("stdin of plugin %q (pid %d) is closed", p.plugin, p.pid)
	}
	select {
	case p.stdin <- append(slices.Clip(line), '\n'):
		return nil
	default:
		return fmt.Errorf("plugin %q (pid %d) has not read its stdin: %d lines are waiting", p.plugin, p.pid, stdinQueueLength)
	}
}

// closeStdin closes the plugin's stdin once the queued lines are written.
func (p *process) closeStdin() {
	p.mu.Lock()
	defer p.mu.Unlock()

	if !p.stdinClosed {
		p.stdinClosed = true
		close(p.stdin)
	}
}

// monitor reaps the leader, clears the rest of its process group, waits for
// the pipes to drain and closes p.done.
func (p *process) monitor(readers *sync.WaitGroup, pipes ...*os.File) {
	err := p.cmd.Wait()
	close(p.exited)
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		p.logger.Error("wait for plugin process failed", "plugin", p.plugin, "pid", p.pid, "error", err)
	}
	p.logger.Debug("plugin process ended", "plugin", p.plugin, "pid", p.pid, "status", p.exitDescription())

	p.clearGroup()

	drained := make(chan struct{})
	go func() {
		readers.Wait()
		close(drained)
	}()
	select {
	case <-drained:
	case <-time.After(drainTimeout):
		p.logger.Warn("plugin stdout or stderr still open after its process group is gone; a process that left the group (setsid) keeps it open, so the worker closes its end", "plugin", p.plugin, "pid", p.pid, "timeout", drainTimeout)
		closeAll(pipes...)
		<-drained
	}
	closeAll(pipes...)
	p.closeStdin()
	close(p.done)
}

// clearGroup stops the processes left in the group after the leader exited:
// SIGTERM, then SIGKILL after killGrace. It returns when the group is gone
// or after groupGoneTimeout past SIGKILL.
func (p *process) clearGroup() {
	defer p.markGone()

	if reapGroup(p.pid) {
		return
	}
	p.logger.Info("plugin process exited with processes left in its group; sending SIGTERM", "plugin", p.plugin, "pid", p.pid)
	p.signal(syscall.SIGTERM)
	if waitGroupGone(p.pid, p.killGrace) {
		return
	}
	p.logger.Warn("processes of the plugin's group survived SIGTERM; sending SIGKILL", "plugin", p.plugin, "pid", p.pid, "kill_grace", p.killGrace)
	p.signal(syscall.SIGKILL)
	if !waitGroupGone(p.pid, groupGoneTimeout) {
		p.logger.Error("processes of the plugin's group survived SIGKILL", "plugin", p.plugin, "pid", p.pid, "timeout", groupGoneTimeout)
	}
}

func (p *process) markGone() {
	p.mu.Lock()
	p.gone = true
	p.mu.Unlock()
}

// signal sends sig to the whole process group, unless the group is gone.
func (p *process) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()

	if p.gone {
		return
	}
	p.signalled = true
	if err := syscall.Kill(-p.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		p.logger.Error("signal plugin process group failed", "plugin", p.plugin, "pid", p.pid, "signal", sig.String(), "error", err)
	}
}

// wasSignalled reports whether the worker sent the group a signal. Such a
// process is never reused.
func (p *process) wasSignalled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.signalled
}

// isDone reports whether the process group is gone.
func (p *process) isDone() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitDone waits up to d for the process group to be gone.
func (p *process) waitDone(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		return false
	}
}

// shutdown stops an idle persistent process: it sends a shutdown message and
// closes stdin, then sends SIGTERM after timeout and SIGKILL after
// killGrace. It returns when the group is gone.
func (p *process) shutdown(timeout time.Duration) {
	if err := p.send(shutdownLine); err != nil {
		p.logger.Debug("send shutdown to plugin failed", "plugin", p.plugin, "pid", p.pid, "error", err)
	}
	p.closeStdin()
	if p.waitDone(timeout) {
		return
	}

	p.logger.Warn("plugin process did not exit after a shutdown message; sending SIGTERM", "plugin", p.plugin, "pid", p.pid, "timeout", timeout)
	p.signal(syscall.SIGTERM)
	if p.waitDone(p.killGrace) {
		return
	}

	p.logger.Warn("plugin process survived SIGTERM; sending SIGKILL", "plugin", p.plugin, "pid", p.pid, "kill_grace", p.killGrace)
	p.signal(syscall.SIGKILL)
	<-p.done
}

// exitDescription returns how the leader ended, such as "exited with
// status 3" or "was killed by signal 9 (killed)".
func (p *process) exitDescription() string {
	select {
	case <-p.exited:
	default:
		return "is still running"
	}
	state := p.cmd.ProcessState
	if state == nil {
		return "ended with an unknown status"
	}
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Sprintf("was killed by signal %d (%v)", int(ws.Signal()), ws.Signal())
	}
	return "exited with status " + strconv.Itoa(state.ExitCode())
}

// exitCode returns the leader's exit status, or -1 when a signal ended it.
func (p *process) exitCode() int {
	if p.cmd.ProcessState == nil {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// attach makes sink receive the plugin's output and resets the stderr tail.
func (p *process) attach(sink *jobSink) {
	p.mu.Lock()
	defer p.mu.Unlock()

	p.sink = sink
	p.stderrTail = nil
}

// detach stops passing output to the attached sink. Once detach returns,
// the sink's Reporter is not called again.
func (p *process) detach() {
	p.mu.Lock()
	sink := p.sink
	p.sink = nil
	p.mu.Unlock()

	if sink != nil {
		sink.close()
	}
}

// lastStderr returns the last stderr lines since the job was attached.
func (p *process) lastStderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()

	text := strings.Join(p.stderrTail, "\n")
	if len(text) > stderrTailBytes {
		text = "..." + strings.ToValidUTF8(text[len(text)-stderrTailBytes:], "")
	}
	if text == "" {
		return "(empty)"
	}
	return text
}

func (p *process) currentSink() *jobSink {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sink
}

func (p *process) handleStdout(line []byte, cut bool) {
	sink := p.currentSink()
	if sink == nil {
		p.logger.Debug("plugin wrote to stdout outside a job; line dropped", "plugin", p.plugin, "pid", p.pid, "text", truncateText(string(line), 200))
		return
	}
	sink.stdout(line, cut)
}

func (p *process) handleStderr(line []byte, cut bool) {
	text := logText(line, cut)

	p.mu.Lock()
	p.stderrTail = append(p.stderrTail, text)
	if len(p.stderrTail) > stderrTailLines {
		p.stderrTail = p.stderrTail[1:]
	}
	sink := p.sink
	p.mu.Unlock()

	if sink == nil {
		p.logger.Debug("plugin wrote to stderr outside a job", "plugin", p.plugin, "pid", p.pid, "text", truncateText(text, 200))
		return
	}
	sink.stderr(text)
}

// readLines calls handle for every line of r, without the line end. Lines
// longer than maxLineBytes are cut, with cut set to true. The slice passed
// to handle is reused after it returns.
func readLines(r io.Reader, handle func(line []byte, cut bool)) {
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	var cut bool
	for {
		frag, err := br.ReadSlice('\n')
		complete := err == nil
		if complete {
			frag = frag[:len(frag)-1]
		}
		if room := maxLineBytes - len(line); len(frag) > room {
			frag = frag[:room]
			cut = true
		}
		line = append(line, frag...)

		ended := err != nil && !errors.Is(err, bufio.ErrBufferFull)
		if complete || (ended && (len(line) > 0 || cut)) {
			handle(trimCR(line), cut)
			if cap(line) > 64<<10 {
				line = nil
			}
			line, cut = line[:0], false
		}
		if ended {
			return
		}
	}
}

func trimCR(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1]
	}
	return b
}

// logText turns a raw output line into log text: valid UTF-8, marked when cut.
func logText(line []byte, cut bool) string {
	text := strings.ToValidUTF8(string(line), "\uFFFD")
	if cut {
		text += fmt.Sprintf(" [line cut at %d bytes]", maxLineBytes)
	}
	return text
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}

func closeAll(files ...*os.File) {
	for _, f := range files {
		_ = f.Close()
	}
}

// resolveProgram returns the program path of a command: a relative path
// that contains a slash resolves against dir, and a bare name stays as it is
// for a PATH lookup.
func resolveProgram(program, dir string) string {
	if filepath.IsAbs(program) || !strings.ContainsRune(program, '/') {
		return program
	}
	return filepath.Join(dir, program)
}

// reapGroup reaps the exited processes of group pgid that are children of
// the worker and reports whether the group has no process left.
func reapGroup(pgid int) bool {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-pgid, &ws, syscall.WNOHANG, nil)
		if err != nil || pid <= 0 {
			break
		}
	}
	return errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH)
}

// waitGroupGone polls until group pgid has no process left, reaping its
// exited members, or until timeout passes.
func waitGroupGone(pgid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if reapGroup(pgid) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(groupPollInterval)
	}
}

// Protocol message types. Lines are JSON objects, one per line.
const (
	msgExecute  = "execute"  // worker to plugin: run a job
	msgCancel   = "cancel"   // worker to plugin: stop the job
	msgShutdown = "shutdown" // worker to persistent plugin: exit
	msgProgress = "progress" // plugin to worker
	msgLog      = "log"      // plugin to worker
	msgResult   = "result"   // plugin to worker: the job completed
	msgError    = "error"    // plugin to worker: the job failed or was cancelled
)

var shutdownLine = []byte(`{"type":"shutdown"}`)

// executeMessage is the "execute" line sent to a plugin.
type executeMessage struct {
	Type       string          `json:"type"`
	JobID      string          `json:"job_id"`
	PluginName string          `json:"plugin_name"`
	Attempt    int             `json:"attempt"`
	Args       json.RawMessage `json:"args"`
	Kwargs     json.RawMessage `json:"kwargs"`
	GPUs       []int           `json:"gpus"`
}

// controlMessage is a "cancel" line sent to a plugin.
type controlMessage struct {
	Type  string `json:"type"`
	JobID string `json:"job_id"`
}

// pluginMessage is a protocol message read from a plugin's stdout.
type pluginMessage struct {
	Type      string          `json:"type"`
	JobID     string          `json:"job_id"`
	Progress  *float64        `json:"progress"`
	Message   string          `json:"message"`
	Level     string          `json:"level"`
	Result    json.RawMessage `json:"result"`
	Error     string          `json:"error"`
	Cancelled bool            `json:"cancelled"`
}

// parseMessage returns the protocol message on a stdout line, or nil when
// the line is not a JSON object with a known "type". A message of a known
// type whose fields do not decode is returned with an error.
func parseMessage(line []byte) (*pluginMessage, error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] != '{' {
		return nil, nil
	}
	var head struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(line, &head) != nil {
		return nil, nil
	}
	switch head.Type {
	case msgProgress, msgLog, msgResult, msgError:
	default:
		return nil, nil
	}

	var msg pluginMessage
	if err := json.Unmarshal(line, &msg); err != nil {
		return &pluginMessage{Type: head.Type}, err
	}
	return &msg, nil
}

// jobSink passes a plugin's output for one job to the job's Reporter and
// keeps the job's final message: its first "result" or "error".
type jobSink struct {
	jobID    string
	plugin   string
	attempt  int
	reporter Reporter
	logger   *slog.Logger

	mu       sync.Mutex
	closed   bool
	final    *pluginMessage
	finished chan struct{} // closed when the final message arrives
}

func newJobSink(plugin string, t Task, logger *slog.Logger) *jobSink {
	return &jobSink{
		jobID:    t.Job.ID,
		plugin:   plugin,
		attempt:  t.Job.Attempt,
		reporter: t.Reporter,
		logger:   logger,
		finished: make(chan struct{}),
	}
}

// close stops all further calls of the Reporter.
func (s *jobSink) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

// finalMessage returns the job's "result" or "error" message, or nil.
func (s *jobSink) finalMessage() *pluginMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.final
}

func (s *jobSink) stderr(text string) {
	s.mu.Lock()
	defer s.mu.Unlock()

	if !s.closed {
		s.reporter.Log(messages.LogStderr, "warning", text)
	}
}

func (s *jobSink) stdout(line []byte, cut bool) {
	msg, err := parseMessage(line)

	s.mu.Lock()
	defer s.mu.Unlock()

	switch {
	case s.closed:
	case msg == nil:
		s.reporter.Log(messages.LogStdout, "info", logText(line, cut))
	case err != nil:
		s.warn("invalid %q message from the plugin, dropped: %v; line: %s", msg.Type, err, truncateText(string(line), 200))
	case msg.JobID != s.jobID:
		s.logger.Debug("plugin message for another job dropped", "job_id", s.jobID, "plugin", s.plugin, "attempt", s.attempt, "message_job_id", msg.JobID, "type", msg.Type)
	default:
		s.handle(msg)
	}
}

// handle acts on a message for this job. s.mu is held.
func (s *jobSink) handle(msg *pluginMessage) {
	switch msg.Type {
	case msgProgress:
		if msg.Progress == nil {
			s.warn("progress message without a \"progress\" number, dropped")
			return
		}
		if err := messages.ValidateProgress(*msg.Progress); err != nil {
			s.warn("progress message from the plugin dropped: %v", err)
			return
		}
		if s.final != nil {
			s.logger.Debug("progress after the job's final message dropped", "job_id", s.jobID, "plugin", s.plugin, "attempt", s.attempt)
			return
		}
		s.reporter.Progress(*msg.Progress, msg.Message)

	case msgLog:
		level, text := normalizeLevel(msg.Level, msg.Message)
		s.reporter.Log(messages.LogPlugin, level, text)

	case msgResult, msgError:
		if s.final != nil {
			s.warn("second %q message from the plugin dropped: the job already sent %q", msg.Type, s.final.Type)
			return
		}
		s.final = msg
		close(s.finished)
	}
}

// warn writes a warning line of stream worker to the job's log. s.mu is held.
func (s *jobSink) warn(format string, args ...any) {
	s.reporter.Log(messages.LogWorker, "warning", fmt.Sprintf(format, args...))
}

// normalizeLevel maps a plugin's log level, including Python's logging
// names, to debug, info, warning or error. An unknown level becomes info and
// is kept in the text.
func normalizeLevel(level, text string) (string, string) {
	switch strings.ToLower(level) {
	case "", "info", "notice":
		return "info", text
	case "debug", "trace":
		return "debug", text
	case "warn", "warning":
		return "warning", text
	case "error", "critical", "fatal", "exception":
		return "error", text
	}
	return "info", "[" + level + "] " + text
}

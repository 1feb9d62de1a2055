package worker

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/jetqueue/jetqueue/messages"
)

// defaultEvictReason is logged when an evict command gives no reason.
const defaultEvictReason = "requested by the coordinator"

// startEviction accepts an evict command and carries it out in a goroutine
// of its own, because stopping a process takes up to its cancel_timeout
// plus kill_grace. The reply follows once the processes are gone.
func (w *Worker) startEviction(msg *nats.Msg, cmd *messages.WorkerCommand) error {
	if len(cmd.Evict) == 0 {
		return messages.Errorf(messages.CodeInvalid, "evict command without pids: list the pids of idle plugin processes in evict")
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopping {
		return messages.Errorf(messages.CodeUnavailable, "worker %s is stopping and stops every plugin process itself", w.cfg.Name)
	}
	w.evictions.Add(1)
	go w.evict(msg, cmd)
	return nil
}

// evict stops the idle plugin processes that cmd lists and replies. The
// reply is an error only when none could be stopped. After the reply it
// waits until the stopped processes left their GPUs and requests a probe,
// which a heartbeat follows.
func (w *Worker) evict(msg *nats.Msg, cmd *messages.WorkerCommand) {
	defer w.evictions.Done()
	reason := cmd.Reason
	if reason == "" {
		reason = defaultEvictReason
	}

	res := w.plugins.EvictProcesses(cmd.Evict, reason)
	for _, pid := range res.Busy {
		w.log.Info("not evicting a plugin process that runs a job", slog.Int("pid", pid), slog.String("reason", reason))
	}
	if len(res.Unknown) > 0 {
		w.log.Info("not evicting pids not found among the idle plugin processes", slog.Any("pids", res.Unknown), slog.String("reason", reason))
	}

	var err error
	if len(res.Stopped) == 0 {
		err = evictionError(w.cfg.Name, res)
		w.log.Warn("evict command stopped no process", slog.Any("error", err))
	}
	w.replyCommand(msg, err)
	if len(res.Stopped) == 0 {
		return
	}

	w.waitGPURelease(res.ReleasePIDs, w.log)
	w.awaitProbe()
}

// evictionError explains why an eviction stopped nothing: conflict when a
// process runs a job, not_found when no pid is an idle plugin process.
func evictionError(worker string, res EvictResult) error {
	var parts []string
	code := messages.CodeNotFound
	if len(res.Busy) > 0 {
		code = messages.CodeConflict
		parts = append(parts, fmt.Sprintf("pids %v run a job, and busy processes are never evicted", res.Busy))
	}
	if len(res.Unknown) > 0 {
		parts = append(parts, fmt.Sprintf("pids %v not found among the idle plugin processes of worker %s (unknown, or already stopping)", res.Unknown, worker))
	}
	return messages.Errorf(code, "worker %s evicted nothing: %s; retry with the pids of warm processes from its latest heartbeat", worker, strings.Join(parts, "; "))
}

package coordinator

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jetqueue/jetqueue/messages"
)

// verdict is the outcome of trying to place one job.
type verdict int

const (
	placeNow   verdict = iota // a worker has room now
	placeLater                // a worker could run it once resources free up
	placeNever                // no connected worker can ever run it
)

// placement is the outcome of placing one job: a worker and GPUs, or the
// reason it has to wait.
type placement struct {
	verdict verdict
	worker  *workerEntry
	gpus    []int
	res     messages.Resources
	reason  string
	// evict, for placeLater, names idle plugin processes whose eviction
	// would make room for the job.
	evict *evictPlan
	// candidates are the workers that could run the job once resources
	// free up, with the resources it needs there.
	candidates []candidate
}

// candidate is a worker that could run a waiting job later.
type candidate struct {
	worker *workerEntry
	res    messages.Resources
}

// schedule dispatches jobs from the head of the queue while they can be
// placed. Under the strict policy, when the head job has to wait, every job
// behind it waits too. Under the backfill policy, up to backfillDepth jobs
// behind it may start on resources that no waiting job ahead of them can
// use. Jobs that no connected worker can ever run are parked outside the
// queue, so they hold up no other job.
func (s *state) schedule() {
	if !s.dirty {
		return
	}
	s.dirty = false
	s.blocked = ""
	now := s.now()
	for {
		e := s.queue.peek()
		if e == nil {
			return
		}
		p := s.place(e, now, nil)
		switch p.verdict {
		case placeNow:
			s.queue.pop()
			e.reason = ""
			s.dispatch(e, p, now)
		case placeNever:
			s.queue.pop()
			s.park(e, p.reason)
		case placeLater:
			e.reason = p.reason
			s.blocked = p.reason
			if p.evict != nil {
				s.sendEvict(e, p.evict, now)
			}
			if s.c.cfg.Policy == PolicyBackfill {
				s.backfill(p, now)
			}
			return
		}
	}
}

// backfillDepth is how many jobs behind a waiting head job the backfill
// policy looks at in one pass.
const backfillDepth = 256

// backfill starts jobs behind the waiting head whose resources no waiting
// job ahead of them can use.
func (s *state) backfill(head placement, now time.Time) {
	waiting := s.queue.pop() // the head; it goes back below
	ahead := []placement{head}
	var keep []*jobEntry
	for range backfillDepth {
		e := s.queue.pop()
		if e == nil {
			break
		}
		p := s.place(e, now, ahead)
		switch p.verdict {
		case placeNow:
			e.reason = ""
			s.dispatch(e, p, now)
		case placeNever:
			s.park(e, p.reason)
		case placeLater:
			e.reason = p.reason
			ahead = append(ahead, p)
			keep = append(keep, e)
		}
	}
	s.queue.push(waiting)
	for _, e := range keep {
		s.queue.push(e)
	}
}

func (s *state) park(e *jobEntry, reason string) {
	e.parked = true
	e.reason = reason
	s.parked[e.job.ID] = e
}

// unparkAll returns parked jobs to the queue, because the set of workers
// changed and some may be placeable now. Jobs that still no connected
// worker can ever run stay parked, with their reason brought up to date.
func (s *state) unparkAll() {
	for id, e := range s.parked {
		if reason := s.hopeless(e); reason != "" {
			e.reason = reason
			continue
		}
		delete(s.parked, id)
		e.parked = false
		s.queue.push(e)
	}
	s.dirty = true
}

// hopeless returns why no connected worker can ever run e, or "". Jobs are
// checked when they are submitted and when workers change, so a job that can
// never fit reports it even while it sits behind a waiting job.
func (s *state) hopeless(e *jobEntry) string {
	provided := false
	var never []string
	for _, name := range s.workerOrder() {
		w := s.workers[name]
		if w.lost || !w.known {
			continue
		}
		info, ok := w.plugin(e.job.PluginName)
		if !ok {
			continue
		}
		provided = true
		why := cannotEverFit(w, e.job.Requirements.Apply(info.Resources))
		if why == "" {
			return ""
		}
		never = append(never, why)
	}
	if !provided {
		return s.intern(noProvider(e.job.PluginName))
	}
	return "can never fit: " + summarize(never)
}

// place finds the best worker for e.
func (s *state) place(e *jobEntry, now time.Time, ahead []placement) placement {
	plugin := e.job.PluginName
	var (
		candidates int
		best       *placement
		bestScore  int
		waits      []string
		never      []string
		later      []candidate
		evict      *evictPlan
	)
	for _, name := range s.workerOrder() {
		w := s.workers[name]
		if w.lost || !w.known {
			continue
		}
		info, ok := w.plugin(plugin)
		if !ok {
			continue
		}
		candidates++
		res := e.job.Requirements.Apply(info.Resources)
		if why := cannotEverFit(w, res); why != "" {
			never = append(never, why)
			continue
		}
		if w.info.Draining || w.drained {
			waits = append(waits, fmt.Sprintf("worker %s is draining", name))
			continue
		}
		later = append(later, candidate{worker: w, res: res})
		if now.Before(w.holdUntil) {
			waits = append(waits, fmt.Sprintf("worker %s rejected a job and gets none until %s", name, w.holdUntil.Format(time.TimeOnly)))
			continue
		}
		gpus, why := fitsNow(w, info, res)
		if why == "" {
			why = delays(w, res, gpus, ahead)
		}
		if why != "" {
			waits = append(waits, why)
			if plan := planEviction(w, res); plan != nil && (evict == nil || len(plan.pids) < len(evict.pids)) && len(ahead) == 0 {
				evict = plan
			}
			continue
		}
		score := placementScore(w, info)
		if best == nil || score > bestScore {
			best = &placement{verdict: placeNow, worker: w, gpus: gpus, res: res}
			bestScore = score
		}
	}

	switch {
	case best != nil:
		return *best
	case candidates == 0:
		return placement{verdict: placeNever, reason: s.intern(noProvider(plugin))}
	case len(waits) == 0:
		return placement{verdict: placeNever, reason: "can never fit: " + summarize(never)}
	}
	return placement{verdict: placeLater, reason: "waits: " + summarize(waits), evict: evict, candidates: later}
}

// delays returns why giving res and gpus on w to a job would hold up one
// of the waiting jobs ahead of it, or "". Under the backfill policy a job
// may start ahead of waiting ones only on resources they cannot use: no
// GPU of a worker where a waiting job needs GPUs, and only slots, CPUs and
// memory that the waiting job would still find free.
func delays(w *workerEntry, res messages.Resources, gpus []int, ahead []placement) string {
	for _, b := range ahead {
		for _, c := range b.candidates {
			if c.worker != w {
				continue
			}
			if c.res.GPUs > 0 && len(gpus) > 0 {
				return fmt.Sprintf("worker %s keeps its GPUs for a waiting job ahead (backfill)", w.info.Name)
			}
			if len(w.jobs)+1 >= w.info.MaxJobs ||
				(w.info.CPUs > 0 && w.cpus+res.CPUs+c.res.CPUs > w.info.CPUs) ||
				(w.info.MemoryTotalMB > 0 && w.memoryMB+res.MemoryMB+c.res.MemoryMB > w.info.MemoryTotalMB) {
				return fmt.Sprintf("worker %s keeps room for a waiting job ahead (backfill)", w.info.Name)
			}
		}
	}
	return ""
}

// summarize joins up to three reasons and counts the rest.
func summarize(reasons []string) string {
	const shown = 3
	if len(reasons) <= shown {
		return strings.Join(reasons, "; ")
	}
	return fmt.Sprintf("%s; and %d more workers", strings.Join(reasons[:shown], "; "), len(reasons)-shown)
}

// placementScore ranks workers that fit: a warm idle plugin process first,
// then the fewest jobs.
func placementScore(w *workerEntry, info messages.PluginInfo) int {
	score := -len(w.jobs)
	if info.Warm > 0 && w.pluginBusy[info.Name] < info.Instances {
		score += 1 << 20
	}
	return score
}

// cannotEverFit returns why res exceeds what w has in total, or "".
func cannotEverFit(w *workerEntry, res messages.Resources) string {
	name := w.info.Name
	healthy := 0
	for _, g := range w.info.GPUs {
		if g.Unhealthy == "" {
			healthy++
		}
	}
	if res.GPUs > healthy {
		if healthy < len(w.info.GPUs) {
			return fmt.Sprintf("worker %s has %d healthy GPUs of %d, the job needs %d", name, healthy, len(w.info.GPUs), res.GPUs)
		}
		return fmt.Sprintf("worker %s has %d GPUs, the job needs %d", name, len(w.info.GPUs), res.GPUs)
	}
	if res.GPUs > 0 && res.GPUMemoryMB > 0 {
		fitting := 0
		for _, g := range w.info.GPUs {
			if g.Unhealthy == "" && g.MemoryTotalMB >= res.GPUMemoryMB {
				fitting++
			}
		}
		if fitting < res.GPUs {
			return fmt.Sprintf("worker %s has %d GPUs with %s MiB or more in total, the job needs %d", name, fitting, mib(res.GPUMemoryMB), res.GPUs)
		}
	}
	if w.info.MemoryTotalMB > 0 && res.MemoryMB > w.info.MemoryTotalMB {
		return fmt.Sprintf("worker %s has %s MiB of memory, the job needs %s MiB", name, mib(w.info.MemoryTotalMB), mib(res.MemoryMB))
	}
	if w.info.CPUs > 0 && res.CPUs > w.info.CPUs {
		return fmt.Sprintf("worker %s has %g CPUs, the job needs %g", name, w.info.CPUs, res.CPUs)
	}
	return ""
}

// fitsNow returns the GPUs to give the job on w, or why it must wait.
func fitsNow(w *workerEntry, info messages.PluginInfo, res messages.Resources) ([]int, string) {
	name := w.info.Name
	if len(w.jobs) >= w.info.MaxJobs {
		return nil, fmt.Sprintf("worker %s runs %d of %d jobs", name, len(w.jobs), w.info.MaxJobs)
	}
	instances := max(info.Instances, 1)
	if busy := w.pluginBusy[info.Name]; busy >= instances {
		return nil, fmt.Sprintf("plugin %s on worker %s is busy (%d of %d instances)", info.Name, name, busy, instances)
	}
	if w.info.CPUs > 0 && res.CPUs > 0 && w.cpus+res.CPUs > w.info.CPUs {
		return nil, fmt.Sprintf("worker %s has %g of %g CPUs reserved, the job needs %g", name, w.cpus, w.info.CPUs, res.CPUs)
	}
	if w.info.MemoryTotalMB > 0 && res.MemoryMB > 0 && w.memoryMB+res.MemoryMB > w.info.MemoryTotalMB {
		return nil, fmt.Sprintf("worker %s has %s MiB of memory free of reservations, the job needs %s MiB",
			name, mib(w.info.MemoryTotalMB-w.memoryMB), mib(res.MemoryMB))
	}
	if res.GPUs == 0 {
		return nil, ""
	}
	if !w.gpuStaleSince.IsZero() {
		return nil, fmt.Sprintf("waits for a fresh GPU reading from worker %s after a job ended there", name)
	}
	if gpus := warmProcessFor(w, info.Name, res); gpus != nil {
		return gpus, ""
	}
	return pickGPUs(w, res)
}

// mib formats a MiB count with thousands separators: 24576 -> "24,576".
func mib(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		return "-" + s
	}
	return s
}

// dispatch marks e running on the placement's worker, journals the start,
// and sends the run command once the journal has it.
func (s *state) dispatch(e *jobEntry, p placement, now time.Time) {
	w := p.worker
	e.job.Attempt++
	e.job.Worker = w.info.Name
	e.job.StartedAt = &now
	e.job.Progress = 0
	e.job.StatusMessage = ""
	e.job.PendingReason = ""
	e.job.CancelPhase = messages.CancelNone
	e.runState = &runState{gpus: p.gpus, res: p.res}
	s.setStatus(e, messages.StatusRunning)
	s.running[e.job.ID] = e
	w.assign(e)

	attempt := e.job.Attempt
	s.record(e, messages.EventStarted, func(err error) {
		if err == nil {
			s.sendRun(e, attempt)
		}
	})
}

// sendRun sends the run command for a started job, unless the job was
// cancelled before it reached the worker.
func (s *state) sendRun(e *jobEntry, attempt int) {
	if e.job.Status != messages.StatusRunning || e.job.Attempt != attempt || e.runSent {
		return
	}
	now := s.now()
	if e.job.CancelPhase != messages.CancelNone {
		e.job.Error = "cancelled before the job reached its worker"
		s.finish(e, messages.StatusCancelled, now)
		s.record(e, messages.EventCancelled, nil)
		return
	}
	cmd := messages.WorkerCommand{V: messages.ProtocolVersion, Kind: messages.CommandRun, Job: &e.job, GPUs: e.gpus, Term: s.c.term}
	data, err := messages.Encode(&cmd)
	if err == nil {
		reply := fmt.Sprintf("%s.%s.%d", s.c.dispatchInbox, e.job.ID, attempt)
		err = s.c.nc.PublishRequest(s.c.subj.WorkerCommand(e.job.Worker), reply, data)
	}
	e.runSent = true
	e.dispatchedAt = now
	if err != nil {
		s.c.log.Error("send run command failed", slog.String("job_id", e.job.ID), slog.String("worker", e.job.Worker), slog.Any("error", err))
		s.requeue(e, fmt.Sprintf("sending the job to worker %s failed: %v", e.job.Worker, err), now, requeueRejected)
	}
}

// sendCancel publishes a cancel command to a worker.
func (s *state) sendCancel(worker, jobID string, attempt int) {
	cmd := messages.WorkerCommand{V: messages.ProtocolVersion, Kind: messages.CommandCancel, JobID: jobID, Attempt: attempt, Term: s.c.term}
	data, err := messages.Encode(&cmd)
	if err == nil {
		err = s.c.nc.Publish(s.c.subj.WorkerCommand(worker), data)
	}
	if err != nil {
		s.c.log.Error("send cancel command failed", slog.String("job_id", jobID), slog.String("worker", worker), slog.Any("error", err))
	}
}

// requeueKind is the limit a re-queue counts toward.
type requeueKind int

const (
	// requeueRejected: the job never reached the worker, so the dispatch
	// does not count as an attempt.
	requeueRejected requeueKind = iota
	// requeueHandoff: the worker stopped cleanly and handed the job back.
	requeueHandoff
	// requeueAttempt: the run may have happened; it counts toward
	// max_attempts.
	requeueAttempt
	// requeueLost: the worker was lost with the job on it; it counts
	// toward MaxWorkerLosses, so a job that keeps killing workers fails.
	requeueLost
)

// requeue takes a running job off its worker and puts it back in the queue,
// or ends it: cancelled when a cancel was requested, failed when it used up
// its attempts or worker losses.
func (s *state) requeue(e *jobEntry, reason string, now time.Time, kind requeueKind) {
	if e.job.Status != messages.StatusRunning {
		return
	}
	worker := e.job.Worker
	if w := s.workers[worker]; w != nil {
		w.release(e)
	}
	delete(s.running, e.job.ID)
	delete(s.progressPending, e.job.ID)
	e.runState = nil
	if kind == requeueRejected {
		e.job.Attempt--
	}
	s.c.log.Warn("job re-queued", slog.String("job_id", e.job.ID), slog.String("worker", worker), slog.Int("attempt", e.job.Attempt), slog.String("reason", reason))

	if e.job.CancelPhase != messages.CancelNone {
		e.job.Error = "cancelled; its worker stopped running it: " + reason
		s.finish(e, messages.StatusCancelled, now)
		s.record(e, messages.EventCancelled, nil)
		return
	}
	e.job.Requeues = append(e.job.Requeues, messages.Requeue{Time: now, Worker: worker, Attempt: e.job.Attempt, Reason: reason})
	var giveUp string
	switch kind {
	case requeueLost:
		e.job.WorkerLosses++
		if e.job.WorkerLosses >= s.c.cfg.MaxWorkerLosses {
			giveUp = fmt.Sprintf("gave up after losing %d workers while they ran the job (the limit is %d), which suggests the job itself brings workers down; the last: %s",
				e.job.WorkerLosses, s.c.cfg.MaxWorkerLosses, reason)
		}
	case requeueAttempt:
		if e.job.Attempt >= e.job.MaxAttempts {
			giveUp = fmt.Sprintf("gave up after %d of %d attempts; the last ended: %s", e.job.Attempt, e.job.MaxAttempts, reason)
		}
	}
	if giveUp != "" {
		e.job.Error = giveUp
		s.finish(e, messages.StatusFailed, now)
		s.record(e, messages.EventFailed, nil)
		return
	}
	s.setStatus(e, messages.StatusPending)
	e.job.Progress = 0
	e.job.StatusMessage = ""
	e.job.CancelPhase = messages.CancelNone
	s.queue.push(e)
	s.dirty = true
	s.record(e, messages.EventRequeued, nil)
}

// checkDispatches re-queues jobs whose worker did not acknowledge the run
// command in time, and sends that worker a cancel command for them.
func (s *state) checkDispatches(now time.Time) {
	timeout := s.c.cfg.DispatchTimeout
	for _, e := range s.running {
		if !e.runSent || e.accepted || e.unconfirmed || now.Sub(e.dispatchedAt) < timeout {
			continue
		}
		s.sendCancel(e.job.Worker, e.job.ID, e.job.Attempt)
		s.requeue(e, fmt.Sprintf("worker %s did not acknowledge the job within %s", e.job.Worker, timeout), now, requeueAttempt)
	}
}

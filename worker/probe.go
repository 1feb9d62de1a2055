package worker

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/jetqueue/jetqueue/messages"
)

const (
	// gpuReleaseTimeout bounds the wait for the processes of a finished job
	// or an evicted plugin process to leave their GPUs.
	gpuReleaseTimeout = 10 * time.Second

	// gpuReleasePoll is the time between two nvidia-smi runs while the
	// worker waits for GPU memory to be released.
	gpuReleasePoll = 100 * time.Millisecond

	// awaitProbeTimeout bounds the wait for a requested probe: both
	// nvidia-smi queries at their timeout, and a second for the rest.
	awaitProbeTimeout = 2*nvidiaSMITimeout + time.Second

	// probeFailureLogEvery is how many probe failures in a row are logged
	// once after the first.
	probeFailureLogEvery = 60

	// minProbeGap is the shortest time between the starts of two requested
	// probes. Jobs that start and end faster share probes, so probing takes
	// a bounded share of the CPU.
	minProbeGap = 50 * time.Millisecond
)

// measurement is one resource probe and its errors.
type measurement struct {
	probe Probe
	began time.Time
	// hostErr is set when CPUs or memory could not be measured, gpuErr when
	// the GPU query failed and probe.GPUs is empty, and appsErr when the
	// compute-apps query failed.
	hostErr, gpuErr, appsErr error
}

func (m *measurement) err() error {
	return errors.Join(m.hostErr, m.gpuErr, m.appsErr)
}

// measure probes CPUs, memory and, unless the GPUs are declared in
// StaticGPUs, the GPUs and their compute processes.
func (w *Worker) measure(ctx context.Context) measurement {
	m := measurement{began: time.Now()}
	m.probe, m.hostErr = probeHost("/")
	if len(w.cfg.StaticGPUs) > 0 {
		return m
	}

	gpus := probeGPUs(ctx, w.cfg.NvidiaSMI)
	m.probe.GPUs = gpus.gpus
	m.probe.ComputeApps = gpus.computeApps
	m.gpuErr, m.appsErr = gpus.err, gpus.appsErr
	return m
}

// storeProbe makes m the advertised probe, unless a probe that began later
// is stored already. Figures that m failed to measure keep their previous
// values, so a failing nvidia-smi does not hide the GPUs, but the figures a
// failed host probe still found are taken. The plugin
// registry gets the GPUs' compute processes.
func (w *Worker) storeProbe(m measurement) {
	w.probeMu.Lock()
	defer w.probeMu.Unlock()

	w.logProbeResult(m.err())
	if m.began.Before(w.probeBegan) {
		return
	}

	w.mu.Lock()
	probe := m.probe
	if m.hostErr != nil && probe.CPUs == 0 {
		probe.CPUs = w.probe.CPUs
	}
	if m.hostErr != nil && probe.MemoryTotalMB == 0 {
		probe.MemoryTotalMB, probe.MemoryAvailableMB = w.probe.MemoryTotalMB, w.probe.MemoryAvailableMB
	}
	if m.gpuErr != nil {
		probe.GPUs, probe.ComputeApps = w.probe.GPUs, false
	}
	w.probe = probe
	w.mu.Unlock()

	w.plugins.ObserveGPUs(probe.GPUs, probe.ComputeApps)
	w.probeBegan = m.began
	close(w.probeStored)
	w.probeStored = make(chan struct{})
}

// logProbeResult logs the first failed probe and every
// probeFailureLogEvery-th one after it, and the first success after
// failures. w.probeMu is held.
func (w *Worker) logProbeResult(err error) {
	if err == nil {
		if w.probeFailures > 0 {
			w.log.Info("resource probe recovered", slog.Int("failures", w.probeFailures))
		}
		w.probeFailures = 0
		return
	}
	w.probeFailures++
	if w.probeFailures == 1 || w.probeFailures%probeFailureLogEvery == 0 {
		w.log.Warn("resource probe failed; advertising the figures last measured", slog.Int("failures", w.probeFailures), slog.Any("error", err))
	}
}

// requestProbe requests a probe from the probe loop, which sends a
// heartbeat after it. Requests made while a probe runs share the next one.
func (w *Worker) requestProbe() {
	select {
	case w.probeNow <- struct{}{}:
	default:
	}
}

// awaitProbe requests a probe and waits until a probe that began after the
// call is stored, or awaitProbeTimeout passes.
func (w *Worker) awaitProbe() {
	requested := time.Now()
	w.requestProbe()
	timeout := time.NewTimer(awaitProbeTimeout)
	defer timeout.Stop()
	for {
		w.probeMu.Lock()
		began, stored := w.probeBegan, w.probeStored
		w.probeMu.Unlock()
		if !began.Before(requested) {
			return
		}
		select {
		case <-stored:
		case <-timeout.C:
			w.log.Warn("no resource probe within the timeout; the next heartbeat may show stale memory figures", slog.Duration("timeout", awaitProbeTimeout))
			return
		}
	}
}

// probeLoop refreshes the resource probe every ProbeInterval. It also
// probes on requests of requestProbe, at most once per minProbeGap, and
// sends a heartbeat after each such probe.
func (w *Worker) probeLoop(ctx context.Context) {
	defer w.bg.Done()
	ticker := time.NewTicker(w.cfg.ProbeInterval)
	defer ticker.Stop()
	var lastRequested time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			w.storeProbe(w.measure(ctx))
			continue
		case <-w.probeNow:
		}

		if wait := time.Until(lastRequested.Add(minProbeGap)); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		// This probe serves every request made until it begins.
		select {
		case <-w.probeNow:
		default:
		}
		lastRequested = time.Now()
		w.storeProbe(w.measure(ctx))
		w.poke()
	}
}

// advertisedGPUs returns the GPUs for the heartbeat: the declared ones with
// the memory that plugin processes hold, or the latest probe's. w.mu is held.
func (w *Worker) advertisedGPUs() []messages.GPU {
	if len(w.cfg.StaticGPUs) > 0 {
		return staticGPUs(w.cfg.StaticGPUs, w.plugins.declaredGPUMemory())
	}
	return w.probe.GPUs
}

// waitGPURelease polls nvidia-smi --query-compute-apps until none of pids
// is listed, so the memory of processes that ended is free before the
// coordinator learns that they ended. It gives up after gpuReleaseTimeout, and returns
// at once without pids or without nvidia-smi (declared GPUs, or none
// found).
func (w *Worker) waitGPURelease(pids []int, log *slog.Logger) {
	if len(pids) == 0 || len(w.cfg.StaticGPUs) > 0 {
		return
	}
	path, err := findNvidiaSMI(w.cfg.NvidiaSMI)
	if err != nil || path == "" {
		return
	}

	ctx, cancel := context.WithTimeout(context.Background(), gpuReleaseTimeout)
	defer cancel()
	began := time.Now()
	var listed []int
	for {
		apps, err := queryComputeApps(ctx, path)
		switch {
		case err != nil && ctx.Err() != nil:
			log.Warn("GPU memory of ended plugin processes not released in time; reporting anyway",
				slog.Duration("timeout", gpuReleaseTimeout), slog.Any("pids", listed))
			return
		case err != nil:
			log.Warn("check that ended plugin processes left their GPUs failed; reporting anyway", slog.Any("pids", pids), slog.Any("error", err))
			return
		}

		listed = listedPIDs(apps, pids)
		if len(listed) == 0 {
			log.Debug("ended plugin processes left their GPUs", slog.Any("pids", pids), slog.Duration("took", time.Since(began)))
			return
		}

		select {
		case <-ctx.Done():
		case <-time.After(gpuReleasePoll):
		}
	}
}

// listedPIDs returns the pids that appear among apps.
func listedPIDs(apps []ComputeApp, pids []int) []int {
	var listed []int
	for _, app := range apps {
		if slices.Contains(pids, app.PID) && !slices.Contains(listed, app.PID) {
			listed = append(listed, app.PID)
		}
	}
	return listed
}

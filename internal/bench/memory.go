package bench

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"strings"
	"time"

	"github.com/jetqueue/jetqueue/messages"
)

// memoryPrefix is the subject prefix of the memory and recovery queue.
const memoryPrefix = "jqmem"

// profileRate is the heap profile's sampling interval during the memory
// measurement, in bytes: fine enough that the coordinator's share of a
// few megabytes is estimated within a few percent.
const profileRate = 4096

// coordinatorFunctions is the prefix of the function names that mark an
// allocation as the coordinator's in the heap profile.
const coordinatorFunctions = "github.com/jetqueue/jetqueue/coordinator."

// memoryResult is the outcome of the memory and recovery measurement.
type memoryResult struct {
	pendingBytesPerJob     float64
	coordinatorBytesPerJob float64
	recovery               time.Duration
	coordinatorStart       time.Duration
}

// measureMemory starts a coordinator on its own prefix with no worker,
// submits cfg.PendingJobs jobs in batches, and returns the growth of the
// live heap per job, measured after a garbage collection before and after
// the submits. The benchmark shares the process with the nats-server, so
// the growth includes the server's memory for the stored events. The heap
// profile, sampled every profileRate bytes during the submits, gives the
// coordinator's own part.
//
// It then stops that coordinator and starts a new one on the same journal,
// and returns the time from the Stop call to the first get it replies to.
func measureMemory(ctx context.Context, c *cluster) (memoryResult, error) {
	q, err := startSideQueue(ctx, c, memoryPrefix)
	if err != nil {
		return memoryResult{}, err
	}
	defer q.close(ctx)

	oldRate := runtime.MemProfileRate
	runtime.MemProfileRate = profileRate
	defer func() { runtime.MemProfileRate = oldRate }()

	heapBefore, coordBefore := liveHeap()
	n := c.cfg.PendingJobs
	if err := submitBatches(ctx, q.client, []string{pluginNone}, n, c.cfg.Submitters, c.cfg.BatchSize); err != nil {
		return memoryResult{}, err
	}
	heapAfter, coordAfter := liveHeap()

	res := memoryResult{
		pendingBytesPerJob:     (float64(heapAfter) - float64(heapBefore)) / float64(n),
		coordinatorBytesPerJob: (coordAfter - coordBefore) / float64(n),
	}

	// A pending job's id, for the get that proves the new coordinator serves.
	state, err := q.client.State(ctx, messages.StateRequest{PendingLimit: 1})
	if err != nil {
		return memoryResult{}, fmt.Errorf("read the pending jobs of prefix %s: %w", memoryPrefix, err)
	}
	if len(state.Pending) == 0 || state.Stats.Pending != n {
		return memoryResult{}, fmt.Errorf("prefix %s has %d pending jobs, expected %d", memoryPrefix, state.Stats.Pending, n)
	}
	id := state.Pending[0].Job.ID

	res.recovery, res.coordinatorStart, err = restartCoordinator(ctx, c, q, id)
	return res, err
}

// restartCoordinator stops the side queue's coordinator, starts a new one
// on a new connection, and polls a get of job id until it succeeds. It
// returns the time from Stop to that get, and the new coordinator's Start
// alone.
func restartCoordinator(ctx context.Context, c *cluster, q *sideQueue, id string) (recovery, start time.Duration, err error) {
	began := time.Now()
	if err := stopCoordinator(q.coord); err != nil {
		return 0, 0, fmt.Errorf("stop the coordinator of prefix %s: %w", q.prefix, err)
	}
	q.coord = nil

	nc, err := c.connect("bench coordinator " + q.prefix + " restarted")
	if err != nil {
		return 0, 0, err
	}
	startBegan := time.Now()
	coord, err := startCoordinator(ctx, nc, q.prefix, c.cfg.Logger)
	if err != nil {
		return 0, 0, fmt.Errorf("restart the coordinator of prefix %s: %w", q.prefix, err)
	}
	start = time.Since(startBegan)
	q.coord = coord

	deadline := time.Now().Add(setupTimeout)
	for {
		job, err := q.client.Get(ctx, id)
		if err == nil && job.ID == id {
			return time.Since(began), start, nil
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("the restarted coordinator of prefix %s did not return job %s within %s: %v", q.prefix, id, setupTimeout, err)
		}
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// liveHeap collects garbage and returns the live heap in bytes, and the
// part of it that the heap profile attributes to the coordinator.
func liveHeap() (heap uint64, coordinator float64) {
	// The heap profile describes the heap as of the last completed
	// collection, so a second collection publishes the first one's frees.
	runtime.GC()
	runtime.GC()

	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc, profiledBytes(coordinatorFunctions)
}

// profiledBytes estimates the live heap bytes that functions whose names
// start with prefix allocated, directly or through their callees. It
// scales each sampled record up by the probability that the sampler at
// profileRate missed it, as pprof does.
func profiledBytes(prefix string) float64 {
	var records []runtime.MemProfileRecord
	n, _ := runtime.MemProfile(nil, true)
	for {
		records = make([]runtime.MemProfileRecord, n+64)
		var ok bool
		n, ok = runtime.MemProfile(records, true)
		if ok {
			records = records[:n]
			break
		}
	}

	var total float64
	for i := range records {
		r := &records[i]
		bytes, objects := r.InUseBytes(), r.InUseObjects()
		if bytes <= 0 || objects <= 0 || !stackHas(r.Stack(), prefix) {
			continue
		}
		size := float64(bytes) / float64(objects)
		total += float64(bytes) / (1 - math.Exp(-size/profileRate))
	}
	return total
}

// stackHas reports whether a function of stack has a name starting with prefix.
func stackHas(stack []uintptr, prefix string) bool {
	frames := runtime.CallersFrames(stack)
	for {
		f, more := frames.Next()
		if strings.HasPrefix(f.Function, prefix) {
			return true
		}
		if !more {
			return false
		}
	}
}

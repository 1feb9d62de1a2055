package bench

import (
	"bufio"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/jetqueue/jetqueue/coordinator"
)

// Result is the outcome of one run. In JSON, the nine figures are
// top-level numbers, and a figure is absent when its phase was not run.
type Result struct {
	// RawJetStreamMsgsPerS is the rate of 256-byte messages published
	// asynchronously to a work-queue stream and consumed and acknowledged
	// by a pull consumer, first publish to the stream being empty.
	RawJetStreamMsgsPerS float64 `json:"raw_jetstream_msgs_per_s,omitempty"`
	// SubmitJobsPerS is the better of the two submit figures in Details.
	// Parameters.SubmitMethod names the method it comes from.
	SubmitJobsPerS float64 `json:"submit_jobs_per_s,omitempty"`
	// E2EJobsPerS is the job count over the time from the first submit to
	// the last completed event, with the workers running throughout.
	E2EJobsPerS float64 `json:"e2e_jobs_per_s,omitempty"`
	// StartLatencyP50US and StartLatencyP99US are percentiles of the time
	// from the submit call to the handler's start, in microseconds, one
	// job at a time on an idle queue.
	StartLatencyP50US float64 `json:"start_latency_p50_us,omitempty"`
	StartLatencyP99US float64 `json:"start_latency_p99_us,omitempty"`
	// CancelLatencyP99MS is the 99th percentile of the time from the cancel
	// request of a running job to its cancelled event, in milliseconds.
	CancelLatencyP99MS float64 `json:"cancel_latency_p99_ms,omitempty"`
	// PendingBytesPerJob is the growth of the process's live heap per
	// pending job, measured around the submits only. The process also
	// runs the nats-server, so the figure includes the server's memory for
	// the stored events. Details.CoordinatorBytesPerJob isolates the
	// coordinator's part.
	PendingBytesPerJob float64 `json:"pending_bytes_per_job,omitempty"`
	// RecoveryS is the time from the coordinator's Stop to the first get
	// that a new coordinator replies to, with PendingJobs jobs pending, in
	// seconds.
	RecoveryS float64 `json:"recovery_s,omitempty"`
	// NATSMsgsPerJob counts the messages that the client, coordinator and
	// worker connections sent and received during the end-to-end
	// measurement, per job.
	NATSMsgsPerJob float64 `json:"nats_msgs_per_job,omitempty"`

	Machine    Machine    `json:"machine"`
	Versions   Versions   `json:"versions"`
	Parameters Parameters `json:"parameters"`
	Details    Details    `json:"details"`
}

// Details are the figures behind the top-level ones.
type Details struct {
	// SubmitRequestJobsPerS is the rate of jobs acknowledged to
	// Parameters.Submitters goroutines calling client.SubmitRequest.
	SubmitRequestJobsPerS float64 `json:"submit_request_jobs_per_s,omitempty"`
	// SubmitBatchJobsPerS is the rate of jobs acknowledged to
	// Parameters.Submitters goroutines calling client.SubmitBatch with
	// Parameters.BatchSize jobs each.
	SubmitBatchJobsPerS float64 `json:"submit_batch_jobs_per_s,omitempty"`
	// StartLatencyMaxUS is the slowest submit-to-start time, in microseconds.
	StartLatencyMaxUS float64 `json:"start_latency_max_us,omitempty"`
	// CancelLatencyP50MS is the median cancel-to-cancelled time, in milliseconds.
	CancelLatencyP50MS float64 `json:"cancel_latency_p50_ms,omitempty"`
	// CoordinatorBytesPerJob estimates the heap per pending job that the
	// coordinator's own goroutines allocated and still hold, from the
	// runtime's heap profile sampled every 4 KiB during the submits.
	CoordinatorBytesPerJob float64 `json:"coordinator_bytes_per_job,omitempty"`
	// CoordinatorStartS is the Start of the new coordinator alone: the
	// journal replay and the service registration, in seconds.
	CoordinatorStartS float64 `json:"coordinator_start_s,omitempty"`
}

// Machine describes the computer a run used.
type Machine struct {
	// Cores is runtime.NumCPU: the logical CPUs the process may use.
	Cores      int    `json:"cores"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CPUModel   string `json:"cpu_model"`
	// MemoryMB is the machine's total memory in MiB, from /proc/meminfo,
	// or 0 where that file does not exist.
	MemoryMB int64 `json:"memory_mb"`
	// BusyBeforeStart is the fraction of all cores' time that was busy in
	// the half second before the run started, from /proc/stat, or -1 where
	// that file does not exist. Other processes that use the cores skew
	// the figures, and a value above about 0.1 shows that some did.
	BusyBeforeStart float64 `json:"busy_before_start"`
	OS              string  `json:"os"`
	Arch            string  `json:"arch"`
}

// Versions are the software versions a run used.
type Versions struct {
	Go         string `json:"go"`
	NATSServer string `json:"nats-server"`
	NATSGo     string `json:"nats.go"`
	// Jetqueue is the coordinator's version, followed by the commit the
	// binary was built from when the build recorded one.
	Jetqueue string `json:"jetqueue"`
}

// Parameters are the counts and settings of a run.
type Parameters struct {
	// Workers is 0 in a sweep, whose points name their worker counts.
	Workers         int     `json:"workers,omitempty"`
	MaxJobs         int     `json:"max_jobs"`
	NoopHandlers    int     `json:"noop_handlers"`
	Phases          []Phase `json:"phases"`
	RawMessages     int     `json:"raw_messages"`
	RawMessageBytes int     `json:"raw_message_bytes"`
	RawWindow       int     `json:"raw_window"`
	SubmitJobs      int     `json:"submit_jobs"`
	Submitters      int     `json:"submitters"`
	BatchSize       int     `json:"batch_size"`
	// SubmitMethod is "request" or "batch": the method whose figure
	// submit_jobs_per_s reports.
	SubmitMethod  string `json:"submit_method,omitempty"`
	E2EJobs       int    `json:"e2e_jobs"`
	StartSamples  int    `json:"start_samples"`
	CancelSamples int    `json:"cancel_samples"`
	PendingJobs   int    `json:"pending_jobs"`
	Storage       string `json:"storage"`
	Transport     string `json:"transport"`
}

func parametersOf(c Config) Parameters {
	return Parameters{
		Workers:         c.Workers,
		MaxJobs:         c.MaxJobs,
		NoopHandlers:    c.NoopHandlers,
		Phases:          c.Phases,
		RawMessages:     c.RawMessages,
		RawMessageBytes: c.RawMessageBytes,
		RawWindow:       c.RawWindow,
		SubmitJobs:      c.SubmitJobs,
		Submitters:      c.Submitters,
		BatchSize:       c.BatchSize,
		E2EJobs:         c.E2EJobs,
		StartSamples:    c.StartSamples,
		CancelSamples:   c.CancelSamples,
		PendingJobs:     c.PendingJobs,
		Storage:         "file",
		Transport:       "tcp loopback",
	}
}

// DescribeMachine returns this machine's cores, CPU model, memory and
// current load.
func DescribeMachine() Machine {
	m := Machine{
		Cores:      runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		CPUModel:   "unknown",
		OS:         runtime.GOOS,
		Arch:       runtime.GOARCH,
	}
	if v := procField("/proc/cpuinfo", "model name"); v != "" {
		m.CPUModel = v
	}
	m.BusyBeforeStart = busyFraction(500 * time.Millisecond)
	if v := procField("/proc/meminfo", "MemTotal"); v != "" {
		kb, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
		if err == nil {
			m.MemoryMB = kb / 1024
		}
	}
	return m
}

// busyFraction returns the fraction of CPU time that was not idle over
// the next interval, from the first line of /proc/stat, or -1 when it
// cannot be read.
func busyFraction(interval time.Duration) float64 {
	idle1, total1, ok1 := cpuTimes()
	time.Sleep(interval)
	idle2, total2, ok2 := cpuTimes()
	if !ok1 || !ok2 || total2 <= total1 {
		return -1
	}
	return 1 - float64(idle2-idle1)/float64(total2-total1)
}

// cpuTimes returns the idle and total CPU time of all cores in clock
// ticks: the "cpu" line of /proc/stat, whose fourth and fifth numbers are
// idle and iowait.
func cpuTimes() (idle, total uint64, ok bool) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := strings.Cut(string(data), "\n")
	fields := strings.Fields(line)
	if len(fields) < 6 || fields[0] != "cpu" {
		return 0, 0, false
	}
	for i, f := range fields[1:] {
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, 0, false
		}
		total += n
		if i == 3 || i == 4 {
			idle += n
		}
	}
	return idle, total, true
}

// procField returns the value of the first "key: value" line of a /proc
// file, or "" when the file or the key does not exist.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()

	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// CurrentVersions returns the versions of Go, the NATS libraries and
// jetqueue in this binary.
func CurrentVersions() Versions {
	v := Versions{
		Go:         runtime.Version(),
		NATSServer: server.VERSION,
		NATSGo:     nats.Version,
		Jetqueue:   coordinator.Version,
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		var revision string
		modified := false
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if len(revision) > 12 {
			revision = revision[:12]
		}
		if revision != "" {
			if modified {
				revision += "+dirty"
			}
			v.Jetqueue += " (" + revision + ")"
		}
	}
	return v
}

package worker

import (
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"time"

	"github.com/jetqueue/jetqueue/messages"
)

// Defaults for Config fields left zero.
const (
	DefaultHeartbeatInterval = 2 * time.Second
	DefaultProbeInterval     = 5 * time.Second
	DefaultProgressInterval  = 100 * time.Millisecond
	DefaultReportTimeout     = 2 * time.Second
	DefaultReportDeadline    = 5 * time.Minute
)

// Config configures a Worker.
type Config struct {
	// Name identifies the worker; it must be a subject token (letters,
	// digits, '-' and '_'). Defaults to the host name with other
	// characters replaced by '-'.
	Name string
	// Prefix is the first token of every subject. Defaults to "jq".
	Prefix string
	// PluginsDir holds one JSON manifest per plugin. Empty means no
	// manifest plugins; in-process handlers can still be registered.
	PluginsDir string
	// MaxJobs is how many jobs run at once. Defaults to the number of CPUs.
	MaxJobs int
	// NvidiaSMI is the path of nvidia-smi. Empty looks it up in PATH; when
	// it is not found the worker has no GPUs. Must be empty when StaticGPUs
	// is set.
	NvidiaSMI string
	// StaticGPUs declares the worker's GPUs by hand, for accelerators that
	// nvidia-smi does not report or machines without it (see ParseGPUSpec).
	// Index and MemoryTotalMB are required; Name defaults to
	// DefaultStaticGPUName, and the other fields are ignored. When set,
	// nvidia-smi is not run, and a GPU's used memory is the manifest
	// gpu_memory_mb of each busy or warm plugin process started with it.
	// Empty means GPUs come from nvidia-smi.
	StaticGPUs []messages.GPU
	// HeartbeatInterval is the time between heartbeats; one is also sent
	// after every job start and end. Defaults to 2s.
	HeartbeatInterval time.Duration
	// ProbeInterval is the time between resource probes (memory, GPUs).
	// Defaults to 5s.
	ProbeInterval time.Duration
	// ProgressInterval is the shortest time between two progress reports
	// of one job; the latest value wins. Defaults to 100ms.
	ProgressInterval time.Duration
	// ReportTimeout bounds one attempt to deliver a final report.
	// Defaults to 2s.
	ReportTimeout time.Duration
	// ReportDeadline is how long a final report is retried before the
	// worker gives up on it. Defaults to 5m.
	ReportDeadline time.Duration
	// Logger receives the worker's logs. Defaults to slog.Default().
	Logger *slog.Logger
}

// WithDefaults returns a copy of c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Name == "" {
		c.Name = defaultName()
	}
	if c.Prefix == "" {
		c.Prefix = messages.DefaultPrefix
	}
	if c.MaxJobs == 0 {
		c.MaxJobs = runtime.NumCPU()
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = DefaultProgressInterval
	}
	if c.ReportTimeout == 0 {
		c.ReportTimeout = DefaultReportTimeout
	}
	if c.ReportDeadline == 0 {
		c.ReportDeadline = DefaultReportDeadline
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.StaticGPUs = slices.Clone(c.StaticGPUs)
	return c
}

func (c Config) validate() error {
	if err := messages.ValidateToken("worker name", c.Name); err != nil {
		return fmt.Errorf("worker config: Name: %w", err)
	}
	if _, err := messages.NewSubjects(c.Prefix); err != nil {
		return fmt.Errorf("worker config: Prefix: %w", err)
	}
	if c.MaxJobs < 1 {
		return fmt.Errorf("worker config: MaxJobs is %d: use 1 or more", c.MaxJobs)
	}
	if len(c.StaticGPUs) > 0 && c.NvidiaSMI != "" {
		return fmt.Errorf("worker config: both StaticGPUs and NvidiaSMI (%s) are set: declared GPUs replace nvidia-smi, so set one", c.NvidiaSMI)
	}
	if err := validateStaticGPUs(c.StaticGPUs); err != nil {
		return fmt.Errorf("worker config: StaticGPUs: %w", err)
	}
	for name, d := range map[string]time.Duration{
		"HeartbeatInterval": c.HeartbeatInterval, "ProbeInterval": c.ProbeInterval,
		"ProgressInterval": c.ProgressInterval, "ReportTimeout": c.ReportTimeout, "ReportDeadline": c.ReportDeadline,
	} {
		if d < 0 {
			return fmt.Errorf("worker config: %s is %s: use a positive duration", name, d)
		}
	}
	return nil
}

// defaultName returns the host name as a subject token.
func defaultName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		return "worker"
	}
	b := []byte(host)
	for i, c := range b {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
		if !ok {
			b[i] = '-'
		}
	}
	if len(b) > messages.MaxNameLength {
		b = b[:messages.MaxNameLength]
	}
	return string(b)
}

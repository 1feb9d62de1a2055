package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jetqueue/jetqueue/messages"
)

// nvidiaSMITimeout bounds one run of nvidia-smi. It usually returns in well
// under a second, but a hung driver can make it block for minutes.
const nvidiaSMITimeout = 10 * time.Second

// nvidiaSMIQuery is the --query-gpu field list, in the column order that
// ParseNvidiaSMI expects.
const nvidiaSMIQuery = "index,uuid,name,memory.total,memory.used,memory.free,utilization.gpu,ecc.errors.uncorrected.volatile.total"

// nvidiaSMIFields is the number of columns of nvidiaSMIQuery.
const nvidiaSMIFields = 8

// computeAppsQuery is the --query-compute-apps field list, in the column
// order that ParseComputeApps expects.
const computeAppsQuery = "pid,gpu_uuid,used_memory"

// nvidiaSMIFormat is the --format argument of both queries.
const nvidiaSMIFormat = "--format=csv,noheader,nounits"

// ComputeApp is one compute process on a GPU, as
// nvidia-smi --query-compute-apps reports it.
type ComputeApp struct {
	PID     int
	GPUUUID string
	// UsedMB is the GPU memory the process uses, in MiB. It is 0 when
	// nvidia-smi reports "[N/A]" or "[Not Supported]".
	UsedMB int64
}

// findNvidiaSMI returns the nvidia-smi to run. An empty path means
// "nvidia-smi" looked up in PATH. Not finding it there returns "" and no
// error, because the machine then has no NVIDIA GPUs. A path that was given
// but does not exist is an error.
func findNvidiaSMI(path string) (string, error) {
	if path == "" {
		found, err := exec.LookPath("nvidia-smi")
		if err != nil {
			return "", nil
		}
		return found, nil
	}
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("probe GPUs: %w; fix the nvidia-smi path, or leave it empty to look nvidia-smi up in PATH", err)
	}
	return path, nil
}

// runNvidiaSMI runs nvidia-smi with one query argument and the CSV format,
// and returns its stdout. noDevices is true when nvidia-smi failed because
// the machine has no GPU, which is not an error.
//
// nvidia-smi runs in a process group of its own, which a timeout kills as
// a whole. Its exited children are reaped with it: the worker is a child
// subreaper, so they would otherwise stay zombies.
func runNvidiaSMI(ctx context.Context, path, query string) (out []byte, noDevices bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, nvidiaSMITimeout)
	defer cancel()

	cmd := exec.CommandContext(ctx, path, query, nvidiaSMIFormat)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if cmd.Process != nil {
		reapGroup(cmd.Process.Pid)
	}

	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return nil, false, fmt.Errorf("%s %s did not finish within %v", path, query, nvidiaSMITimeout)
	case err != nil && strings.Contains(stdout.String(), "No devices were found"):
		return nil, true, nil
	case err != nil:
		output := strings.TrimSpace(stdout.String() + " " + stderr.String())
		return nil, false, fmt.Errorf("run %s %s: %w; output: %s", path, query, err, truncateText(output, 500))
	}
	return stdout.Bytes(), false, nil
}

// gpuProbe is the outcome of both nvidia-smi queries.
type gpuProbe struct {
	gpus []messages.GPU
	// computeApps is true when the Processes of gpus come from
	// --query-compute-apps.
	computeApps bool
	// err is set when the GPU query failed, and gpus is empty then.
	err error
	// appsErr is set when the compute-apps query failed.
	appsErr error
}

// probeGPUs runs nvidia-smi --query-gpu and, when it lists GPUs,
// --query-compute-apps. See findNvidiaSMI for path.
func probeGPUs(ctx context.Context, path string) gpuProbe {
	found, err := findNvidiaSMI(path)
	if err != nil || found == "" {
		return gpuProbe{err: err}
	}
	gpus, err := queryGPUs(ctx, found)
	if err != nil || len(gpus) == 0 {
		return gpuProbe{err: err}
	}

	apps, err := queryComputeApps(ctx, found)
	if err != nil {
		return gpuProbe{gpus: gpus, appsErr: err}
	}
	attachComputeApps(gpus, apps)
	return gpuProbe{gpus: gpus, computeApps: true}
}

// queryGPUs runs nvidia-smi --query-gpu and parses its output. path must
// name nvidia-smi (see findNvidiaSMI).
func queryGPUs(ctx context.Context, path string) ([]messages.GPU, error) {
	out, noDevices, err := runNvidiaSMI(ctx, path, "--query-gpu="+nvidiaSMIQuery)
	if err != nil {
		return nil, fmt.Errorf("probe GPUs: %w", err)
	}
	if noDevices {
		return nil, nil
	}
	gpus, err := ParseNvidiaSMI(out)
	if err != nil {
		return nil, fmt.Errorf("probe GPUs: %w", err)
	}
	return gpus, nil
}

// queryComputeApps runs nvidia-smi --query-compute-apps and parses its
// output. path must name nvidia-smi (see findNvidiaSMI).
func queryComputeApps(ctx context.Context, path string) ([]ComputeApp, error) {
	out, noDevices, err := runNvidiaSMI(ctx, path, "--query-compute-apps="+computeAppsQuery)
	if err != nil {
		return nil, fmt.Errorf("probe GPU processes: %w", err)
	}
	if noDevices {
		return nil, nil
	}
	apps, err := ParseComputeApps(out)
	if err != nil {
		return nil, fmt.Errorf("probe GPU processes: %w", err)
	}
	return apps, nil
}

// attachComputeApps sets the Processes of each GPU to the compute
// processes whose GPU UUID matches, in the order nvidia-smi listed them. A
// GPU without processes gets an empty, non-nil list.
func attachComputeApps(gpus []messages.GPU, apps []ComputeApp) {
	for i := range gpus {
		gpus[i].Processes = []messages.GPUProcess{}
		for _, app := range apps {
			if app.GPUUUID == gpus[i].UUID {
				gpus[i].Processes = append(gpus[i].Processes, messages.GPUProcess{PID: app.PID, UsedMB: app.UsedMB})
			}
		}
	}
}

// ParseNvidiaSMI parses the output of
//
//	nvidia-smi --query-gpu=index,uuid,name,memory.total,memory.used,memory.free,utilization.gpu,ecc.errors.uncorrected.volatile.total --format=csv,noheader,nounits
//
// one GPU per line, memory in MiB. A utilisation of "[N/A]" or
// "[Not Supported]" becomes -1. An ECC error count of "[N/A]" or
// "[Not Supported]" (a GPU without ECC) counts as healthy, and a count above
// 0 sets the GPU's Unhealthy reason. A GPU name may contain commas. Blank
// lines are skipped; any other line that does not parse is an error naming
// the line number and the field.
func ParseNvidiaSMI(out []byte) ([]messages.GPU, error) {
	var gpus []messages.GPU
	seen := make(map[int]bool)
	for i, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		gpu, err := parseNvidiaSMILine(line)
		if err != nil {
			return nil, fmt.Errorf("nvidia-smi output line %d %.120q: %w", i+1, line, err)
		}
		if seen[gpu.Index] {
			return nil, fmt.Errorf("nvidia-smi output line %d %.120q: GPU index %d appears twice", i+1, line, gpu.Index)
		}
		seen[gpu.Index] = true
		gpus = append(gpus, gpu)
	}
	return gpus, nil
}

func parseNvidiaSMILine(line string) (messages.GPU, error) {
	fields := strings.Split(line, ",")
	n := len(fields)
	if n < nvidiaSMIFields {
		return messages.GPU{}, fmt.Errorf("%d comma-separated fields, expected %d (%s)", n, nvidiaSMIFields, nvidiaSMIQuery)
	}
	// The name is the only field that may contain commas, so it takes every
	// field between the uuid and the last five.
	name := strings.TrimSpace(strings.Join(fields[2:n-5], ","))
	for i := range fields {
		fields[i] = strings.TrimSpace(fields[i])
	}

	var gpu messages.GPU
	var err error
	if gpu.Index, err = strconv.Atoi(fields[0]); err != nil || gpu.Index < 0 {
		return gpu, fmt.Errorf("index %q is not a GPU index", fields[0])
	}
	gpu.UUID = fields[1]
	if gpu.UUID == "" {
		return gpu, errors.New("uuid is empty")
	}
	gpu.Name = name
	if gpu.MemoryTotalMB, err = parseMiB("memory.total", fields[n-5]); err != nil {
		return gpu, err
	}
	if gpu.MemoryUsedMB, err = parseMiB("memory.used", fields[n-4]); err != nil {
		return gpu, err
	}
	if gpu.MemoryFreeMB, err = parseMiB("memory.free", fields[n-3]); err != nil {
		return gpu, err
	}
	if gpu.UtilizationPct, err = parseUtilization(fields[n-2]); err != nil {
		return gpu, err
	}
	if gpu.Unhealthy, err = parseECCErrors(fields[n-1]); err != nil {
		return gpu, err
	}
	return gpu, nil
}

func parseMiB(field, value string) (int64, error) {
	v, err := strconv.ParseInt(value, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%s %q is not a whole number of MiB", field, value)
	}
	return v, nil
}

// notAvailable reports whether an nvidia-smi value means "no value here".
func notAvailable(value string) bool {
	switch value {
	case "[N/A]", "N/A", "[Not Supported]":
		return true
	}
	return false
}

// parseUtilization returns a utilisation percentage, or -1 when nvidia-smi
// does not know it.
func parseUtilization(value string) (int, error) {
	if notAvailable(value) {
		return -1, nil
	}
	v, err := strconv.Atoi(value)
	if err != nil || v < 0 || v > 100 {
		return 0, fmt.Errorf("utilization.gpu %q is not a percentage from 0 to 100, [N/A] or [Not Supported]", value)
	}
	return v, nil
}

// parseECCErrors returns why a GPU with that many uncorrectable ECC errors
// since the driver loaded must not be used, or "" when it is healthy.
func parseECCErrors(value string) (string, error) {
	if notAvailable(value) {
		return "", nil
	}
	v, err := strconv.ParseInt(value, 10, 64)
	if err != nil || v < 0 {
		return "", fmt.Errorf("ecc.errors.uncorrected.volatile.total %q is not a count of 0 or more, [N/A] or [Not Supported]", value)
	}
	switch v {
	case 0:
		return "", nil
	case 1:
		return "1 uncorrectable ECC error", nil
	}
	return fmt.Sprintf("%d uncorrectable ECC errors", v), nil
}

// ParseComputeApps parses the output of
//
//	nvidia-smi --query-compute-apps=pid,gpu_uuid,used_memory --format=csv,noheader,nounits
//
// one process per line, memory in MiB. A used_memory of "[N/A]" or
// "[Not Supported]" becomes 0. Blank lines and the line "No running
// processes found" are skipped; any other line that does not parse is an
// error naming the line number and the field.
func ParseComputeApps(out []byte) ([]ComputeApp, error) {
	var apps []ComputeApp
	for i, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.EqualFold(line, "No running processes found") {
			continue
		}
		app, err := parseComputeAppLine(line)
		if err != nil {
			return nil, fmt.Errorf("nvidia-smi compute-apps output line %d %.120q: %w", i+1, line, err)
		}
		apps = append(apps, app)
	}
	return apps, nil
}

func parseComputeAppLine(line string) (ComputeApp, error) {
	fields := strings.Split(line, ",")
	if len(fields) != 3 {
		return ComputeApp{}, fmt.Errorf("%d comma-separated fields, expected 3 (%s)", len(fields), computeAppsQuery)
	}
	for i := range fields {
		fields[i] = strings.TrimSpace(fields[i])
	}

	var app ComputeApp
	var err error
	if app.PID, err = strconv.Atoi(fields[0]); err != nil || app.PID <= 0 {
		return app, fmt.Errorf("pid %q is not a process id", fields[0])
	}
	app.GPUUUID = fields[1]
	if app.GPUUUID == "" {
		return app, errors.New("gpu_uuid is empty")
	}
	if notAvailable(fields[2]) {
		return app, nil
	}
	if app.UsedMB, err = parseMiB("used_memory", fields[2]); err != nil {
		return app, err
	}
	return app, nil
}

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
	"time"

	"github.com/jetqueue/jetqueue/messages"
)

// nvidiaSMITimeout bounds one run of nvidia-smi. It usually returns in well
// under a second, but a hung driver can make it block for minutes.
const nvidiaSMITimeout = 10 * time.Second

// nvidiaSMIQuery is the --query-gpu field list, in the column order that
// ParseNvidiaSMI expects.
const nvidiaSMIQuery = "index,uuid,name,memory.total,memory.used,memory.free,utilization.gpu"

// nvidiaSMIFields is the number of columns of nvidiaSMIQuery.
const nvidiaSMIFields = 7

// probeGPUs runs nvidia-smi and parses its output. An empty path means
// "nvidia-smi" looked up in PATH, and not finding it there means no GPUs and
// no error. A path that was given but does not exist is an error.
func probeGPUs(ctx context.Context, path string) ([]messages.GPU, error) {
	if path == "" {
		found, err := exec.LookPath("nvidia-smi")
		if err != nil {
			return nil, nil
		}
		path = found
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("probe GPUs: %w; fix the nvidia-smi path, or leave it empty to look nvidia-smi up in PATH", err)
	}

	ctx, cancel := context.WithTimeout(ctx, nvidiaSMITimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "--query-gpu="+nvidiaSMIQuery, "--format=csv,noheader,nounits")
	cmd.WaitDelay = time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()

	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return nil, fmt.Errorf("probe GPUs: %s did not finish within %v", path, nvidiaSMITimeout)
	case err != nil && strings.Contains(stdout.String(), "No devices were found"):
		return nil, nil
	case err != nil:
		output := strings.TrimSpace(stdout.String() + " " + stderr.String())
		return nil, fmt.Errorf("probe GPUs: run %s: %w; output: %s", path, err, truncateText(output, 500))
	}

	gpus, err := ParseNvidiaSMI(stdout.Bytes())
	if err != nil {
		return nil, fmt.Errorf("probe GPUs: %w", err)
	}
	return gpus, nil
}

// ParseNvidiaSMI parses the output of
//
//	nvidia-smi --query-gpu=index,uuid,name,memory.total,memory.used,memory.free,utilization.gpu --format=csv,noheader,nounits
//
// one GPU per line, memory in MiB. A utilisation of "[N/A]" or
// "[Not Supported]" becomes -1. A GPU name may contain commas. Blank lines
// are skipped; any other line that does not parse is an error naming the
// line number and the field.
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
	name := strings.TrimSpace(strings.Join(fields[2:n-4], ","))
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
	if gpu.MemoryTotalMB, err = parseMiB("memory.total", fields[n-4]); err != nil {
		return gpu, err
	}
	if gpu.MemoryUsedMB, err = parseMiB("memory.used", fields[n-3]); err != nil {
		return gpu, err
	}
	if gpu.MemoryFreeMB, err = parseMiB("memory.free", fields[n-2]); err != nil {
		return gpu, err
	}
	if gpu.UtilizationPct, err = parseUtilization(fields[n-1]); err != nil {
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

// parseUtilization returns a utilisation percentage, or -1 when nvidia-smi
// does not know it.
func parseUtilization(value string) (int, error) {
	switch value {
	case "[N/A]", "N/A", "[Not Supported]":
		return -1, nil
	}
	v, err := strconv.Atoi(value)
	if err != nil || v < 0 || v > 100 {
		return 0, fmt.Errorf("utilization.gpu %q is not a percentage from 0 to 100, [N/A] or [Not Supported]", value)
	}
	return v, nil
}

package worker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/jetqueue/jetqueue/messages"
)

// Probe is the measured capacity of a worker: CPU cores, system memory and GPUs.
type Probe struct {
	// CPUs is the number of usable CPU cores: runtime.NumCPU, lowered by a
	// cgroup CPU quota. A quota can make it fractional.
	CPUs float64
	// MemoryTotalMB is the usable system memory in MiB: MemTotal from
	// /proc/meminfo, or the cgroup memory limit when lower.
	MemoryTotalMB int64
	// MemoryAvailableMB is the memory in MiB that can still be allocated:
	// MemAvailable, or the room left under the cgroup limit when less.
	MemoryAvailableMB int64
	// GPUs are the GPUs nvidia-smi reports; empty without nvidia-smi.
	GPUs []messages.GPU
	// ComputeApps is true when the Processes of each GPU come from
	// nvidia-smi --query-compute-apps. It is false without GPUs, and when
	// that query failed.
	ComputeApps bool
}

// unlimitedBytes is the smallest cgroup v1 memory limit that means "no
// limit": the kernel reports the maximum page-aligned int64 there.
const unlimitedBytes = 1 << 62

// ProbeResources measures the CPU cores, system memory and GPUs available
// to the worker process.
//
// CPUs is runtime.NumCPU, lowered by a cgroup v2 cpu.max or cgroup v1 CFS
// quota on the worker's cgroup or any of its ancestors. Memory is MemTotal
// and MemAvailable from /proc/meminfo, lowered by a cgroup v2 memory.max or
// v1 memory.limit_in_bytes and that cgroup's usage, not counting its
// inactive file cache, which the kernel reclaims before it hits the limit.
//
// GPUs come from running nvidiaSMI --query-gpu, and their Processes from
// nvidiaSMI --query-compute-apps, each bounded by a 10 s timeout. An empty
// nvidiaSMI looks up "nvidia-smi" in PATH, and when it is not found there the
// worker has no GPUs and that is no error. A nvidiaSMI path that does not
// exist is an error, since a configured path that is wrong hides the GPUs.
//
// On error, the returned Probe still carries every figure that could be
// measured, so a caller may advertise it.
func ProbeResources(ctx context.Context, nvidiaSMI string) (Probe, error) {
	probe, hostErr := probeHost("/")
	gpus := probeGPUs(ctx, nvidiaSMI)
	probe.GPUs = gpus.gpus
	probe.ComputeApps = gpus.computeApps
	return probe, errors.Join(hostErr, gpus.err, gpus.appsErr)
}

// probeHost measures CPUs and memory from the proc and cgroup files under
// root, which is "/" except in tests.
func probeHost(root string) (Probe, error) {
	probe := Probe{CPUs: float64(runtime.NumCPU())}

	limits, cgroupErr := readCgroupLimits(root)
	if limits.cpus > 0 && limits.cpus < probe.CPUs {
		probe.CPUs = limits.cpus
	}

	total, available, memErr := readMeminfo(filepath.Join(root, "proc/meminfo"))
	if memErr == nil && limits.memoryLimit > 0 {
		total = min(total, limits.memoryLimit)
		room := max(limits.memoryLimit-limits.memoryUsage, 0)
		available = min(available, room)
	}
	probe.MemoryTotalMB = total >> 20
	probe.MemoryAvailableMB = available >> 20
	return probe, errors.Join(cgroupErr, memErr)
}

// readMeminfo returns MemTotal and MemAvailable in bytes.
func readMeminfo(path string) (total, available int64, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, fmt.Errorf("read memory size: %w", err)
	}
	found := 0
	for _, line := range strings.Split(string(data), "\n") {
		key, value, ok := strings.Cut(line, ":")
		if !ok || (key != "MemTotal" && key != "MemAvailable") {
			continue
		}
		kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil || kib < 0 {
			return 0, 0, fmt.Errorf("read memory size: %s has an invalid %s line %q", path, key, line)
		}
		if key == "MemTotal" {
			total = kib << 10
		} else {
			available = kib << 10
		}
		found++
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("read memory size: %s lacks MemTotal or MemAvailable (Linux 3.14 or later has both)", path)
	}
	return total, available, nil
}

// cgroupLimits are the limits of the worker's cgroups. Zero means no limit.
type cgroupLimits struct {
	cpus        float64 // cores, from the lowest quota
	memoryLimit int64   // bytes, the lowest limit
	memoryUsage int64   // bytes in use, without inactive file cache, in the cgroup of the lowest limit
}

// readCgroupLimits finds the worker's cgroups through /proc/self/cgroup and
// /proc/self/mountinfo, and reads the limits of each cgroup and its
// ancestors up to the mount point. Missing files mean no limit.
func readCgroupLimits(root string) (cgroupLimits, error) {
	var limits cgroupLimits
	paths, err := readProcCgroup(filepath.Join(root, "proc/self/cgroup"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return limits, nil
		}
		return limits, err
	}
	mounts, err := readCgroupMounts(filepath.Join(root, "proc/self/mountinfo"))
	if err != nil {
		return limits, err
	}

	var errs []error
	for _, mount := range mounts {
		var path string
		var ok bool
		if mount.version2 {
			path, ok = paths[""]
		} else {
			path, ok = paths[mount.controller]
		}
		if !ok {
			continue
		}
		for _, dir := range cgroupChain(root, mount, path) {
			if err := limits.read(dir, mount); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return limits, errors.Join(errs...)
}

// read lowers the limits by those of one cgroup directory.
func (l *cgroupLimits) read(dir string, mount cgroupMount) error {
	switch {
	case mount.version2:
		cpus, cpuErr := readCPUMax(filepath.Join(dir, "cpu.max"))
		l.lowerCPUs(cpus)
		memErr := l.readMemory(dir, "memory.max", "memory.current", "inactive_file")
		return errors.Join(cpuErr, memErr)
	case mount.controller == "cpu":
		cpus, err := readCFSQuota(dir)
		if err != nil {
			return err
		}
		l.lowerCPUs(cpus)
	case mount.controller == "memory":
		return l.readMemory(dir, "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
	}
	return nil
}

func (l *cgroupLimits) lowerCPUs(cpus float64) {
	if cpus > 0 && (l.cpus == 0 || cpus < l.cpus) {
		l.cpus = cpus
	}
}

// readMemory reads a memory limit, and the usage beside it when the limit is
// the lowest so far.
func (l *cgroupLimits) readMemory(dir, limitFile, usageFile, inactiveKey string) error {
	limit, err := readCgroupInt(filepath.Join(dir, limitFile))
	if err != nil || limit <= 0 || limit >= unlimitedBytes {
		return err
	}
	if l.memoryLimit != 0 && limit >= l.memoryLimit {
		return nil
	}
	usage, err := readCgroupInt(filepath.Join(dir, usageFile))
	if err != nil {
		return err
	}
	inactive, err := readStatValue(filepath.Join(dir, "memory.stat"), inactiveKey)
	if err != nil {
		return err
	}
	l.memoryLimit = limit
	l.memoryUsage = max(usage-inactive, 0)
	return nil
}

// readCPUMax reads a cgroup v2 cpu.max file: "max 100000" or "QUOTA PERIOD".
func readCPUMax(path string) (float64, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read cgroup CPU limit: %w", err)
	}
	fields := strings.Fields(string(data))
	if len(fields) != 2 {
		return 0, fmt.Errorf("read cgroup CPU limit: %s contains %q, expected \"QUOTA PERIOD\"", path, bytes.TrimSpace(data))
	}
	if fields[0] == "max" {
		return 0, nil
	}
	return quotaCPUs(path, fields[0], fields[1])
}

// readCFSQuota reads cgroup v1 cpu.cfs_quota_us and cpu.cfs_period_us.
func readCFSQuota(dir string) (float64, error) {
	quota, err := os.ReadFile(filepath.Join(dir, "cpu.cfs_quota_us"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read cgroup CPU limit: %w", err)
	}
	period, err := os.ReadFile(filepath.Join(dir, "cpu.cfs_period_us"))
	if err != nil {
		return 0, fmt.Errorf("read cgroup CPU limit: %w", err)
	}
	q := strings.TrimSpace(string(quota))
	if q == "-1" {
		return 0, nil
	}
	return quotaCPUs(filepath.Join(dir, "cpu.cfs_quota_us"), q, strings.TrimSpace(string(period)))
}

func quotaCPUs(path, quota, period string) (float64, error) {
	q, qerr := strconv.ParseInt(quota, 10, 64)
	p, perr := strconv.ParseInt(period, 10, 64)
	if qerr != nil || perr != nil || q <= 0 || p <= 0 {
		return 0, fmt.Errorf("read cgroup CPU limit: %s has quota %q and period %q, expected positive integers", path, quota, period)
	}
	return math.Round(float64(q)/float64(p)*100) / 100, nil
}

// readCgroupInt reads a file holding one integer or "max". A missing file
// and "max" return 0.
func readCgroupInt(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read cgroup memory: %w", err)
	}
	text := strings.TrimSpace(string(data))
	if text == "max" {
		return 0, nil
	}
	v, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read cgroup memory: %s contains %q, expected an integer or \"max\"", path, text)
	}
	return v, nil
}

// readStatValue returns the value of key in a memory.stat file, 0 when the
// file or key is missing.
func readStatValue(path, key string) (int64, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read cgroup memory: %w", err)
	}
	scanner := bufio.NewScanner(bytes.NewReader(data))
	for scanner.Scan() {
		name, value, ok := strings.Cut(scanner.Text(), " ")
		if !ok || name != key {
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("read cgroup memory: %s has an invalid %s line %q", path, key, scanner.Text())
		}
		return v, nil
	}
	return 0, nil
}

// readProcCgroup maps each cgroup v1 controller to the worker's cgroup path
// in that hierarchy, and "" to its cgroup v2 path.
func readProcCgroup(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read cgroup membership: %w", err)
	}
	paths := make(map[string]string)
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			paths[""] = parts[2]
			continue
		}
		for _, controller := range strings.Split(parts[1], ",") {
			paths[controller] = parts[2]
		}
	}
	return paths, nil
}

// cgroupMount is a mounted cgroup hierarchy: cgroup v2, or the v1 hierarchy
// of the cpu or memory controller.
type cgroupMount struct {
	root       string // the cgroup path that is mounted
	mountPoint string
	version2   bool
	controller string // "cpu" or "memory" for v1
}

// readCgroupMounts returns the cgroup v2 mounts and the v1 mounts of the cpu
// and memory controllers listed in a mountinfo file.
func readCgroupMounts(path string) ([]cgroupMount, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read cgroup mounts: %w", err)
	}
	var mounts []cgroupMount
	for _, line := range strings.Split(string(data), "\n") {
		// Fields: id parent major:minor root mount-point options
		// [optional fields...] - fstype source super-options
		before, after, ok := strings.Cut(line, " - ")
		fields := strings.Fields(before)
		tail := strings.Fields(after)
		if !ok || len(fields) < 5 || len(tail) < 3 {
			continue
		}
		mount := cgroupMount{root: unescapeMountinfo(fields[3]), mountPoint: unescapeMountinfo(fields[4])}
		switch tail[0] {
		case "cgroup2":
			mount.version2 = true
			mounts = append(mounts, mount)
		case "cgroup":
			for _, option := range strings.Split(tail[2], ",") {
				if option == "cpu" || option == "memory" {
					mount.controller = option
					mounts = append(mounts, mount)
				}
			}
		}
	}
	return mounts, nil
}

// unescapeMountinfo decodes the octal escapes (\040 for a space) of a
// mountinfo path.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cgroupChain returns the directory of the cgroup at path and those of its
// ancestors up to the mount point, under root. A cgroup outside the mounted
// part of the hierarchy, as seen from a container without a cgroup
// namespace, is read at the mount point only.
func cgroupChain(root string, mount cgroupMount, path string) []string {
	top := filepath.Join(root, mount.mountPoint)
	rel, ok := strings.CutPrefix(path, mount.root)
	dir := filepath.Join(top, rel)
	if !ok || (mount.root != "/" && rel != "" && rel[0] != '/') || !within(dir, top) {
		return []string{top}
	}

	var chain []string
	for {
		chain = append(chain, dir)
		if dir == top {
			return chain
		}
		dir = filepath.Dir(dir)
	}
}

// within reports whether dir is top or below it; both are clean paths.
func within(dir, top string) bool {
	return dir == top || strings.HasPrefix(dir, strings.TrimSuffix(top, "/")+"/")
}

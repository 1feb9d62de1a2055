package worker

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// fakeRoot writes files under a temporary directory that replaces "/" in the test.
func fakeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, path, content)
	}
	return root
}

const (
	meminfo16G = "MemTotal:       16777216 kB\nMemFree:         1000000 kB\nMemAvailable:    8388608 kB\n"
	mountV2    = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
	mountsV1   = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n" +
		"35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n" +
		"41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
)

func TestProbeHostCgroupV2(t *testing.T) {
	root := fakeRoot(t, map[string]string{
		"proc/meminfo":                         meminfo16G,
		"proc/self/cgroup":                     "0::/jobs/w1\n",
		"proc/self/mountinfo":                  "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n" + mountV2,
		"sys/fs/cgroup/jobs/w1/cpu.max":        "150000 100000\n",
		"sys/fs/cgroup/jobs/w1/memory.max":     "1073741824\n",
		"sys/fs/cgroup/jobs/w1/memory.current": "536870912\n",
		"sys/fs/cgroup/jobs/w1/memory.stat":    "anon 100\nfile 200\ninactive_file 134217728\nactive_file 5\n",
		"sys/fs/cgroup/jobs/cpu.max":           "50000 100000\n",
		"sys/fs/cgroup/jobs/memory.max":        "max\n",
		"sys/fs/cgroup/memory.max":             "max\n",
		"sys/fs/cgroup/cpu.max":                "max 100000\n",
	})

	probe, err := probeHost(root)
	if err != nil {
		t.Fatal(err)
	}

	// The parent's quota of 0.5 cores is lower than the job's own 1.5.
	if want := min(0.5, float64(runtime.NumCPU())); probe.CPUs != want {
		t.Errorf("CPUs = %v, want %v", probe.CPUs, want)
	}
	if probe.MemoryTotalMB != 1024 {
		t.Errorf("MemoryTotalMB = %d, want the 1024 MiB limit", probe.MemoryTotalMB)
	}
	// 1024 MiB limit - (512 MiB used - 128 MiB inactive file cache).
	if probe.MemoryAvailableMB != 640 {
		t.Errorf("MemoryAvailableMB = %d, want 640", probe.MemoryAvailableMB)
	}
}

func TestProbeHostCgroupV1(t *testing.T) {
	root := fakeRoot(t, map[string]string{
		"proc/meminfo":        meminfo16G,
		"proc/self/cgroup":    "9:name=systemd:/\n4:memory:/process_api/abc\n2:cpu,cpuacct:/batch\n0::/\n",
		"proc/self/mountinfo": mountsV1,
		// The hierarchy roots report "no limit".
		"sys/fs/cgroup/memory/memory.limit_in_bytes":  "9223372036854771712\n",
		"sys/fs/cgroup/memory/memory.usage_in_bytes":  "9000000000\n",
		"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us":  "-1\n",
		"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
		// The worker's cgroups.
		"sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes": "2147483648\n",
		"sys/fs/cgroup/memory/process_api/abc/memory.usage_in_bytes": "1073741824\n",
		"sys/fs/cgroup/memory/process_api/abc/memory.stat":           "cache 5\ntotal_inactive_file 0\n",
		"sys/fs/cgroup/cpu,cpuacct/batch/cpu.cfs_quota_us":           "25000\n",
		"sys/fs/cgroup/cpu,cpuacct/batch/cpu.cfs_period_us":          "100000\n",
	})

	probe, err := probeHost(root)
	if err != nil {
		t.Fatal(err)
	}

	if want := min(0.25, float64(runtime.NumCPU())); probe.CPUs != want {
		t.Errorf("CPUs = %v, want %v", probe.CPUs, want)
	}
	if probe.MemoryTotalMB != 2048 {
		t.Errorf("MemoryTotalMB = %d, want the 2048 MiB limit", probe.MemoryTotalMB)
	}
	if probe.MemoryAvailableMB != 1024 {
		t.Errorf("MemoryAvailableMB = %d, want 1024", probe.MemoryAvailableMB)
	}
}

func TestProbeHostNoCgroupLimit(t *testing.T) {
	root := fakeRoot(t, map[string]string{
		"proc/meminfo":        meminfo16G,
		"proc/self/cgroup":    "0::/\n",
		"proc/self/mountinfo": mountV2,
	})

	probe, err := probeHost(root)
	if err != nil {
		t.Fatal(err)
	}
	if probe.CPUs != float64(runtime.NumCPU()) {
		t.Errorf("CPUs = %v, want runtime.NumCPU() = %d", probe.CPUs, runtime.NumCPU())
	}
	if probe.MemoryTotalMB != 16384 || probe.MemoryAvailableMB != 8192 {
		t.Errorf("memory = %d / %d MiB, want 16384 / 8192 from meminfo", probe.MemoryTotalMB, probe.MemoryAvailableMB)
	}
}

func TestProbeHostNamespacedCgroup(t *testing.T) {
	// In a container whose cgroup directory is mounted at /sys/fs/cgroup,
	// /proc/self/cgroup can name a path outside the mounted root.
	root := fakeRoot(t, map[string]string{
		"proc/meminfo":                   meminfo16G,
		"proc/self/cgroup":               "0::/kubepods/pod1/c1\n",
		"proc/self/mountinfo":            "30 23 0:26 /kubepods/pod1/c2 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
		"sys/fs/cgroup/memory.max":       "536870912\n",
		"sys/fs/cgroup/memory.current":   "0\n",
		"sys/fs/cgroup/kubepods/cpu.max": "100 100000\n",
	})

	probe, err := probeHost(root)
	if err != nil {
		t.Fatal(err)
	}
	if probe.MemoryTotalMB != 512 || probe.MemoryAvailableMB != 512 {
		t.Errorf("memory = %d / %d MiB, want 512 / 512 from the mount point", probe.MemoryTotalMB, probe.MemoryAvailableMB)
	}
}

func TestProbeHostMountinfoEscapes(t *testing.T) {
	root := fakeRoot(t, map[string]string{
		"proc/meminfo":                    meminfo16G,
		"proc/self/cgroup":                "0::/\n",
		"proc/self/mountinfo":             `30 23 0:26 / /sys/fs/my\040cgroup rw - cgroup2 cgroup2 rw` + "\n",
		"sys/fs/my cgroup/cpu.max":        "200000 100000\n",
		"sys/fs/my cgroup/memory.max":     "max\n",
		"sys/fs/my cgroup/memory.current": "1\n",
	})

	probe, err := probeHost(root)
	if err != nil {
		t.Fatal(err)
	}
	if want := min(2, float64(runtime.NumCPU())); probe.CPUs != want {
		t.Errorf("CPUs = %v, want %v", probe.CPUs, want)
	}
}

func TestProbeHostBadCgroupFile(t *testing.T) {
	root := fakeRoot(t, map[string]string{
		"proc/meminfo":             meminfo16G,
		"proc/self/cgroup":         "0::/\n",
		"proc/self/mountinfo":      mountV2,
		"sys/fs/cgroup/cpu.max":    "lots\n",
		"sys/fs/cgroup/memory.max": "a lot\n",
	})

	probe, err := probeHost(root)
	if err == nil {
		t.Fatal("probeHost succeeded, want an error")
	}
	for _, want := range []string{"cpu.max", `"lots"`, "memory.max", `"a lot"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if probe.MemoryTotalMB != 16384 {
		t.Errorf("MemoryTotalMB = %d, want 16384 from meminfo despite the error", probe.MemoryTotalMB)
	}
}

func TestProbeHostMissingMeminfo(t *testing.T) {
	root := fakeRoot(t, map[string]string{"proc/self/cgroup": "0::/\n", "proc/self/mountinfo": mountV2})

	_, err := probeHost(root)
	if err == nil || !strings.Contains(err.Error(), "meminfo") {
		t.Fatalf("probeHost error = %v, want one naming meminfo", err)
	}
}

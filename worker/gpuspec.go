package worker

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jetqueue/jetqueue/messages"
)

// DefaultStaticGPUName is the name of a declared GPU whose spec gives none.
const DefaultStaticGPUName = "GPU"

// ParseGPUSpec parses a comma-separated list of GPUs declared by hand, for
// accelerators that nvidia-smi does not report or machines without it. Each
// entry is INDEX:MEMORY_MIB or INDEX:MEMORY_MIB:NAME, such as
// "0:24576,1:24576:Gaudi2": the index that CUDA_VISIBLE_DEVICES uses, the
// memory size in MiB, and a model name that defaults to
// DefaultStaticGPUName. The returned GPUs have no UUID, and their used and
// free memory are left for the worker to fill in. An error names the entry
// and what to fix.
func ParseGPUSpec(spec string) ([]messages.GPU, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, errors.New(`GPU spec is empty: list GPUs as INDEX:MEMORY_MIB[:NAME], separated by commas, such as "0:24576,1:24576:Gaudi2"`)
	}

	var gpus []messages.GPU
	for i, entry := range strings.Split(spec, ",") {
		gpu, err := parseGPUEntry(strings.TrimSpace(entry))
		if err != nil {
			return nil, fmt.Errorf("GPU spec entry %d %q: %w", i+1, entry, err)
		}
		gpus = append(gpus, gpu)
	}
	if err := validateStaticGPUs(gpus); err != nil {
		return nil, err
	}
	return gpus, nil
}

func parseGPUEntry(entry string) (messages.GPU, error) {
	parts := strings.SplitN(entry, ":", 3)
	if len(parts) < 2 {
		return messages.GPU{}, errors.New(`expected INDEX:MEMORY_MIB[:NAME], such as "0:24576" or "1:24576:Gaudi2"`)
	}

	gpu := messages.GPU{Name: DefaultStaticGPUName, UtilizationPct: -1}
	index, err := strconv.Atoi(strings.TrimSpace(parts[0]))
	if err != nil || index < 0 {
		return gpu, fmt.Errorf("index %q is not a GPU index: use a whole number of 0 or more", parts[0])
	}
	gpu.Index = index
	memory, err := strconv.ParseInt(strings.TrimSpace(parts[1]), 10, 64)
	if err != nil || memory <= 0 {
		return gpu, fmt.Errorf("memory %q is not a size in MiB: use a whole number above 0, such as 24576 for 24 GiB", parts[1])
	}
	gpu.MemoryTotalMB = memory
	if len(parts) == 3 {
		gpu.Name = strings.TrimSpace(parts[2])
		if gpu.Name == "" {
			return gpu, errors.New("name is empty: give a name after the second colon, or leave out the colon")
		}
	}
	return gpu, nil
}

// validateStaticGPUs checks declared GPUs: at most maxGPUs, indexes of 0 or
// more and each only once, memory above 0.
func validateStaticGPUs(gpus []messages.GPU) error {
	if len(gpus) > maxGPUs {
		return fmt.Errorf("%d GPUs declared: use at most %d", len(gpus), maxGPUs)
	}
	seen := make(map[int]bool)
	for _, g := range gpus {
		if g.Index < 0 {
			return fmt.Errorf("GPU index %d is negative: use 0 or more", g.Index)
		}
		if seen[g.Index] {
			return fmt.Errorf("GPU index %d is declared twice: give each index once", g.Index)
		}
		seen[g.Index] = true
		if g.MemoryTotalMB <= 0 {
			return fmt.Errorf("GPU %d has %d MiB of memory: declare its size in MiB, above 0", g.Index, g.MemoryTotalMB)
		}
	}
	return nil
}

// staticGPUs returns the declared GPUs, sorted by index, each with the used
// memory of usedMB for its index (MiB, capped at the total) and the rest
// free. Utilisation is unknown (-1), and an empty name becomes
// DefaultStaticGPUName.
//
// NOTE: memory held by programs other than this worker's plugin processes
// is not seen, so free memory may be overstated.
func staticGPUs(declared []messages.GPU, usedMB map[int]int64) []messages.GPU {
	gpus := make([]messages.GPU, len(declared))
	for i, d := range declared {
		used := min(max(usedMB[d.Index], 0), d.MemoryTotalMB)
		name := d.Name
		if name == "" {
			name = DefaultStaticGPUName
		}
		gpus[i] = messages.GPU{
			Index:          d.Index,
			UUID:           d.UUID,
			Name:           name,
			MemoryTotalMB:  d.MemoryTotalMB,
			MemoryUsedMB:   used,
			MemoryFreeMB:   d.MemoryTotalMB - used,
			UtilizationPct: -1,
		}
	}
	slices.SortFunc(gpus, func(a, b messages.GPU) int { return a.Index - b.Index })
	return gpus
}

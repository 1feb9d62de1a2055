package cli

import (
	"strings"
	"testing"
)

func TestInvalidPolicyIsUsageError(t *testing.T) {
	for _, command := range []string{"coordinator", "serve"} {
		r := runCLI(t, nil, command, "--policy", "fifo")
		if r.code != ExitUsage {
			t.Errorf("%s --policy fifo: exit %d, want %d", command, r.code, ExitUsage)
		}
		if !strings.Contains(r.stderr, `invalid --policy "fifo": use strict or backfill`) {
			t.Errorf("%s --policy fifo: stderr %q does not name the value and the choices", command, r.stderr)
		}
	}
}

package cli

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for concurrent writers and readers, for
// the output of commands that run in another goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// result is the outcome of one command line.
type result struct {
	code   int
	stdout string
	stderr string
}

// runCLI runs a command line with the environment variables in environ and
// returns its exit code and output. It fails the test after 30s.
func runCLI(t *testing.T, environ map[string]string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var stdout, stderr syncBuffer
	e := &env{stdout: &stdout, stderr: &stderr, getenv: func(key string) string { return environ[key] }}
	code := run(ctx, args, e)
	if ctx.Err() != nil {
		t.Fatalf("jetqueue %s did not end within 30s", strings.Join(args, " "))
	}
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// wantContains fails the test for each of wants that text lacks.
func wantContains(t *testing.T, what, text string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(text, want) {
			t.Errorf("%s does not contain %q:\n%s", what, want, text)
		}
	}
}

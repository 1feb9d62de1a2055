package plugins

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteTo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "plugins")
	if err := WriteTo(dir); err != nil {
		t.Fatal(err)
	}

	want := map[string]os.FileMode{
		"jetqueue_plugin.py": 0o755,
		"hash_files.py":      0o755,
		"compress.py":        0o755,
		"sleep.py":           0o755,
		"hash-files.json":    0o644,
		"compress.json":      0o644,
		"sleep.json":         0o644,
		"sleep-exec.json":    0o644,
	}
	for name, mode := range want {
		path := filepath.Join(dir, name)
		info, err := os.Stat(path)
		if err != nil {
			t.Errorf("%s not written: %v", name, err)
			continue
		}
		if info.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", name, info.Mode().Perm(), mode)
		}
		written, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		source, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(written, source) {
			t.Errorf("%s differs from the source file", name)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(want) {
		t.Errorf("wrote %d files, want %d", len(entries), len(want))
	}
}

func TestWriteToReplacesFiles(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "sleep.py")
	if err := os.WriteFile(stale, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}

	if err := WriteTo(dir); err != nil {
		t.Fatal(err)
	}

	info, err := os.Stat(stale)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o755 || info.Size() <= 3 {
		t.Errorf("sleep.py has mode %v and %d bytes, want the embedded script with mode 0755", info.Mode().Perm(), info.Size())
	}
}

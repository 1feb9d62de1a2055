// Package plugins holds the example plugins: Python 3.11 scripts that use
// only the standard library, their JSON manifests, and jetqueue_plugin.py,
// the helper that speaks the worker's protocol. They are embedded so that
// `jetqueue demo` can write them out and run them anywhere.
package plugins

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Files contains the example plugins' scripts and manifests.
//
//go:embed *.py *.json
var Files embed.FS

// WriteTo writes every file of Files into dir, which it creates if needed:
// scripts with mode 0755, manifests with mode 0644. Existing files of the
// same names are replaced.
func WriteTo(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create plugin directory: %w", err)
	}

	entries, err := fs.ReadDir(Files, ".")
	if err != nil {
		return fmt.Errorf("list embedded plugins: %w", err)
	}
	for _, entry := range entries {
		data, err := Files.ReadFile(entry.Name())
		if err != nil {
			return fmt.Errorf("read embedded plugin file %s: %w", entry.Name(), err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(entry.Name(), ".py") {
			mode = 0o755
		}
		path := filepath.Join(dir, entry.Name())
		if err := os.WriteFile(path, data, mode); err != nil {
			return fmt.Errorf("write plugin file: %w", err)
		}
		if err := os.Chmod(path, mode); err != nil {
			return fmt.Errorf("set mode of plugin file: %w", err)
		}
	}
	return nil
}

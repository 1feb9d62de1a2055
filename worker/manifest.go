package worker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jetqueue/jetqueue/messages"
)

// Manifest defaults.
const (
	// DefaultCancelTimeout is how long a plugin has to stop after a cancel
	// message (or a shutdown message) before its process group gets SIGTERM.
	DefaultCancelTimeout = 3 * time.Second
	// DefaultKillGrace is how long a process group has between SIGTERM and SIGKILL.
	DefaultKillGrace = 2 * time.Second
	// DefaultIdleTimeout is how long a warm persistent process may stay idle
	// before it is sent a shutdown message.
	DefaultIdleTimeout = 10 * time.Minute
	// DefaultInstances is how many jobs of one plugin a worker runs at once.
	DefaultInstances = 1
)

// maxGPUs is the largest GPU count a manifest may ask for, the same bound
// that messages.ValidateRequirements puts on a submit.
const maxGPUs = 64

// Environment variables the worker sets for every plugin process. A manifest
// may not set them itself.
const (
	envCUDAVisibleDevices = "CUDA_VISIBLE_DEVICES"
	envPlugin             = "JETQUEUE_PLUGIN"
	envJobID              = "JETQUEUE_JOB_ID"
)

// Manifest is one plugin's JSON manifest: which program runs the plugin, how,
// and what one job of it needs.
type Manifest struct {
	// Name is the plugin name that jobs ask for: 1 to 64 ASCII letters,
	// digits, '-' and '_' (see messages.ValidateToken).
	Name string
	// Command is the program and its arguments. A relative program path that
	// contains a slash resolves against Dir; a bare name is looked up in PATH.
	Command []string
	// Mode is messages.ModePersistent or messages.ModeExec. Defaults to
	// messages.ModePersistent.
	Mode string
	// Resources are the GPUs, GPU memory and system memory (in MiB) and CPU
	// cores that one job of the plugin needs.
	Resources messages.Resources
	// CancelTimeout is how long the plugin has to stop after a cancel
	// message before its process group gets SIGTERM. Defaults to
	// DefaultCancelTimeout.
	CancelTimeout time.Duration
	// KillGrace is the time between SIGTERM and SIGKILL. Defaults to
	// DefaultKillGrace.
	KillGrace time.Duration
	// IdleTimeout is how long an idle persistent process stays warm before
	// it is stopped. Zero means DefaultIdleTimeout; a negative value keeps
	// idle processes until they are evicted or the worker stops.
	IdleTimeout time.Duration
	// Instances is how many jobs of this plugin one worker runs at once,
	// each in its own process. Defaults to DefaultInstances.
	Instances int
	// Env holds extra environment variables for the plugin's processes.
	Env map[string]string
	// Dir is the working directory of the plugin's processes: the
	// directory of the manifest file, as an absolute path.
	Dir string
}

// withDefaults returns a copy of m with zero fields set to their defaults.
func (m *Manifest) withDefaults() *Manifest {
	c := *m
	if c.Mode == "" {
		c.Mode = messages.ModePersistent
	}
	if c.CancelTimeout == 0 {
		c.CancelTimeout = DefaultCancelTimeout
	}
	if c.KillGrace == 0 {
		c.KillGrace = DefaultKillGrace
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.Instances == 0 {
		c.Instances = DefaultInstances
	}
	c.Command = append([]string(nil), m.Command...)
	c.Env = make(map[string]string, len(m.Env))
	for k, v := range m.Env {
		c.Env[k] = v
	}
	return &c
}

// validate checks a manifest after defaults were applied.
func (m *Manifest) validate() error {
	if err := messages.ValidateToken("plugin name", m.Name); err != nil {
		return fmt.Errorf("field name: %w", err)
	}
	if len(m.Command) == 0 || m.Command[0] == "" {
		return errors.New(`field command is empty: give the program and its arguments, such as ["python3", "plugin.py"]`)
	}
	if m.Mode != messages.ModePersistent && m.Mode != messages.ModeExec {
		return fmt.Errorf("field mode is %q: use %q or %q", m.Mode, messages.ModePersistent, messages.ModeExec)
	}
	if err := validateResources(m.Resources); err != nil {
		return err
	}
	if m.CancelTimeout < 0 {
		return fmt.Errorf("field cancel_timeout is %v: use a positive duration such as \"3s\"", m.CancelTimeout)
	}
	if m.KillGrace < 0 {
		return fmt.Errorf("field kill_grace is %v: use a positive duration such as \"2s\"", m.KillGrace)
	}
	if m.Instances < 1 {
		return fmt.Errorf("field instances is %d: use 1 or more", m.Instances)
	}
	for k, v := range m.Env {
		if err := validateEnv(k, v); err != nil {
			return err
		}
	}
	if m.Dir == "" || !filepath.IsAbs(m.Dir) {
		return fmt.Errorf("plugin directory %q is not an absolute path: set Dir to the directory the command runs in", m.Dir)
	}
	return nil
}

func validateResources(r messages.Resources) error {
	if r.GPUs < 0 || r.GPUs > maxGPUs {
		return fmt.Errorf("field resources.gpus is %d: use 0 to %d", r.GPUs, maxGPUs)
	}
	if r.GPUMemoryMB < 0 {
		return fmt.Errorf("field resources.gpu_memory_mb is %d: use 0 or more MiB", r.GPUMemoryMB)
	}
	if r.MemoryMB < 0 {
		return fmt.Errorf("field resources.memory_mb is %d: use 0 or more MiB", r.MemoryMB)
	}
	if r.CPUs < 0 || math.IsNaN(r.CPUs) || math.IsInf(r.CPUs, 0) {
		return fmt.Errorf("field resources.cpus is %v: use 0 or more cores, fractions allowed", r.CPUs)
	}
	return nil
}

func validateEnv(key, value string) error {
	if key == "" || strings.ContainsAny(key, "=\x00") {
		return fmt.Errorf("field env has the invalid variable name %q: names must be non-empty and contain no '=' or NUL", key)
	}
	if strings.ContainsRune(value, 0) {
		return fmt.Errorf("field env.%s contains a NUL byte: remove it", key)
	}
	switch key {
	case envCUDAVisibleDevices, envPlugin, envJobID:
		return fmt.Errorf("field env sets %s, which the worker sets for each job: remove it", key)
	}
	return nil
}

// ParseManifest parses one JSON manifest. dir is the directory the manifest
// came from; it becomes Manifest.Dir. Missing fields take their defaults.
// Unknown keys, bad modes, empty commands, negative numbers, invalid
// durations and invalid names are rejected with an error that names the
// field and the value.
func ParseManifest(data []byte, dir string) (*Manifest, error) {
	m, err := parseManifest(data, dir)
	if err != nil {
		return nil, fmt.Errorf("invalid plugin manifest in %s: %w", dir, err)
	}
	return m, nil
}

// LoadManifests parses every *.json file in dir, sorted by file name. An
// error names the file and the field. Two manifests with the same plugin
// name are an error.
func LoadManifests(dir string) ([]*Manifest, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("list plugin manifests in %s: %w", dir, err)
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("read plugin directory: %w", err)
	}
	sort.Strings(paths)

	var manifests []*Manifest
	files := make(map[string]string)
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read plugin manifest: %w", err)
		}
		m, err := parseManifest(data, filepath.Dir(path))
		if err != nil {
			return nil, fmt.Errorf("invalid plugin manifest %s: %w", path, err)
		}
		if other, ok := files[m.Name]; ok {
			return nil, fmt.Errorf("plugin manifests %s and %s both name plugin %q: rename one", other, path, m.Name)
		}
		files[m.Name] = path
		manifests = append(manifests, m)
	}
	return manifests, nil
}

// manifestKeys are the top-level keys of a manifest. The cjm-plugin-system
// resource aliases are accepted at the top level as well as inside
// "resources".
var manifestKeys = map[string]bool{
	"name": true, "command": true, "mode": true, "resources": true,
	"cancel_timeout": true, "kill_grace": true, "idle_timeout": true,
	"instances": true, "env": true,
	"requires_gpu": true, "min_gpu_vram_mb": true, "min_system_ram_mb": true,
}

var resourceKeys = map[string]bool{
	"gpus": true, "gpu_memory_mb": true, "memory_mb": true, "cpus": true,
	"requires_gpu": true, "min_gpu_vram_mb": true, "min_system_ram_mb": true,
}

func parseManifest(data []byte, dir string) (*Manifest, error) {
	top, err := decodeObject(data, "manifest")
	if err != nil {
		return nil, err
	}
	for key := range top {
		if !manifestKeys[key] {
			return nil, fmt.Errorf("unknown key %q: remove it (known keys: %s)", key, knownKeys(manifestKeys))
		}
	}

	absDir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("resolve plugin directory %q: %w", dir, err)
	}
	m := &Manifest{Dir: absDir}

	if err := decodeField(top, "name", &m.Name); err != nil {
		return nil, err
	}
	if _, ok := top["name"]; !ok {
		return nil, errors.New("field name is missing: give the plugin name that jobs ask for")
	}
	if err := decodeField(top, "command", &m.Command); err != nil {
		return nil, err
	}
	for i, arg := range m.Command {
		if strings.ContainsRune(arg, 0) {
			return nil, fmt.Errorf("field command[%d] contains a NUL byte: remove it", i)
		}
	}
	if err := decodeField(top, "mode", &m.Mode); err != nil {
		return nil, err
	}
	if _, ok := top["mode"]; ok && m.Mode == "" {
		return nil, fmt.Errorf("field mode is empty: use %q or %q, or leave it out for %q", messages.ModePersistent, messages.ModeExec, messages.ModePersistent)
	}
	if m.Resources, err = parseResources(top); err != nil {
		return nil, err
	}
	if m.CancelTimeout, err = parseDuration(top, "cancel_timeout", false); err != nil {
		return nil, err
	}
	if m.KillGrace, err = parseDuration(top, "kill_grace", false); err != nil {
		return nil, err
	}
	if m.IdleTimeout, err = parseDuration(top, "idle_timeout", true); err != nil {
		return nil, err
	}
	if raw, ok := top["instances"]; ok {
		if err := decodeField(top, "instances", &m.Instances); err != nil {
			return nil, err
		}
		if m.Instances < 1 {
			return nil, fmt.Errorf("field instances is %s: use 1 or more, or leave it out for %d", raw, DefaultInstances)
		}
	}
	if err := decodeField(top, "env", &m.Env); err != nil {
		return nil, err
	}

	m = m.withDefaults()
	if err := m.validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// parseResources reads "resources" and the aliases at the top level. An
// alias set in both places must have the same value.
func parseResources(top map[string]json.RawMessage) (messages.Resources, error) {
	fields := make(map[string]json.RawMessage)
	for key, raw := range top {
		if resourceKeys[key] {
			fields[key] = raw
		}
	}
	if _, ok := top["resources"]; ok {
		inner, err := decodeObject(top["resources"], "field resources")
		if err != nil {
			return messages.Resources{}, err
		}
		for key, raw := range inner {
			if !resourceKeys[key] {
				return messages.Resources{}, fmt.Errorf("unknown key %q in resources: remove it (known keys: %s)", key, knownKeys(resourceKeys))
			}
			if prev, ok := fields[key]; ok && !bytes.Equal(compactJSON(prev), compactJSON(raw)) {
				return messages.Resources{}, fmt.Errorf("field %s is %s at the top level but %s in resources: keep one", key, prev, raw)
			}
			fields[key] = raw
		}
	}

	var r messages.Resources
	_, gpusSet := fields["gpus"]
	if raw, ok := fields["gpus"]; ok {
		if err := decodeNumber("gpus", raw, &r.GPUs); err != nil {
			return r, err
		}
	}
	if raw, ok := fields["requires_gpu"]; ok {
		var need bool
		if err := json.Unmarshal(raw, &need); err != nil {
			return r, fmt.Errorf("field requires_gpu is %s: use true or false", raw)
		}
		switch {
		case need && !gpusSet:
			r.GPUs = 1
		case !need && r.GPUs > 0:
			return r, fmt.Errorf("field requires_gpu is false but gpus is %d: remove one of them", r.GPUs)
		case need && r.GPUs == 0:
			return r, errors.New("field requires_gpu is true but gpus is 0: remove one of them")
		}
	}
	if err := decodeAlias(fields, "gpu_memory_mb", "min_gpu_vram_mb", &r.GPUMemoryMB); err != nil {
		return r, err
	}
	if err := decodeAlias(fields, "memory_mb", "min_system_ram_mb", &r.MemoryMB); err != nil {
		return r, err
	}
	if raw, ok := fields["cpus"]; ok {
		if err := decodeNumber("cpus", raw, &r.CPUs); err != nil {
			return r, err
		}
	}
	return r, validateResources(r)
}

// decodeAlias reads key or its alias into v; both set must agree.
func decodeAlias(fields map[string]json.RawMessage, key, alias string, v *int64) error {
	raw, hasKey := fields[key]
	aliasRaw, hasAlias := fields[alias]
	if hasKey && hasAlias && !bytes.Equal(compactJSON(raw), compactJSON(aliasRaw)) {
		return fmt.Errorf("field %s is %s but its alias %s is %s: keep one", key, raw, alias, aliasRaw)
	}
	switch {
	case hasKey:
		return decodeNumber(key, raw, v)
	case hasAlias:
		return decodeNumber(alias, aliasRaw, v)
	}
	return nil
}

// decodeNumber decodes a JSON number into an int, int64 or float64 and
// rejects negative values.
func decodeNumber[T int | int64 | float64](field string, raw json.RawMessage, v *T) error {
	if err := json.Unmarshal(raw, v); err != nil {
		var zero T
		kind := "an integer"
		if _, ok := any(zero).(float64); ok {
			kind = "a number"
		}
		return fmt.Errorf("field %s is %s: use %s of 0 or more", field, raw, kind)
	}
	if *v < 0 {
		return fmt.Errorf("field %s is %s: negative values are not allowed; use 0 or more", field, raw)
	}
	return nil
}

// parseDuration reads a Go duration string such as "3s". A missing field, 0
// or "0s" means the default (returned as 0). When allowNever is set, "never"
// and negative durations return -1, which disables the timeout.
func parseDuration(top map[string]json.RawMessage, field string, allowNever bool) (time.Duration, error) {
	raw, ok := top[field]
	if !ok {
		return 0, nil
	}
	hint := `a Go duration string such as "3s" or "1m30s"`
	if allowNever {
		hint += `, or "never"`
	}

	var number float64
	if err := json.Unmarshal(raw, &number); err == nil {
		switch {
		case number == 0:
			return 0, nil
		case number < 0 && allowNever:
			return -1, nil
		}
		return 0, fmt.Errorf("field %s is the number %s: use %s", field, raw, hint)
	}

	var text string
	if err := json.Unmarshal(raw, &text); err != nil {
		return 0, fmt.Errorf("field %s is %s: use %s", field, raw, hint)
	}
	if allowNever && text == "never" {
		return -1, nil
	}
	d, err := time.ParseDuration(text)
	if err != nil {
		return 0, fmt.Errorf("field %s is %q, which is not a duration: use %s", field, text, hint)
	}
	if d < 0 {
		if allowNever {
			return -1, nil
		}
		return 0, fmt.Errorf("field %s is %q: use a positive duration, %s", field, text, hint)
	}
	return d, nil
}

// decodeObject decodes data as one JSON object with unique keys.
func decodeObject(data []byte, what string) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%s is not valid JSON: %w", what, err)
	}
	if delim, ok := tok.(json.Delim); !ok || delim != '{' {
		return nil, fmt.Errorf("%s is not a JSON object: write it as {\"key\": value, ...}", what)
	}

	obj := make(map[string]json.RawMessage)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%s is not valid JSON: %w", what, err)
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("%s is not valid JSON at key %q: %w", what, key, err)
		}
		if _, dup := obj[key]; dup {
			return nil, fmt.Errorf("%s has the key %q twice: keep one", what, key)
		}
		obj[key] = raw
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%s is not valid JSON: %w", what, err)
	}
	if _, err := dec.Token(); err == nil {
		return nil, fmt.Errorf("%s has data after its closing brace: remove it", what)
	}
	return obj, nil
}

// decodeField decodes top[field] into v when present. JSON null is rejected.
func decodeField(top map[string]json.RawMessage, field string, v any) error {
	raw, ok := top[field]
	if !ok {
		return nil
	}
	if string(compactJSON(raw)) == "null" {
		return fmt.Errorf("field %s is null: give a value or leave the key out", field)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("field %s is %.80s: expected %s", field, raw, jsonKind(v))
	}
	return nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case *string:
		return "a string"
	case *[]string:
		return "an array of strings"
	case *int:
		return "an integer"
	case *map[string]string:
		return "an object of string values"
	}
	return fmt.Sprintf("a value for %T", v)
}

func compactJSON(raw json.RawMessage) []byte {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return raw
	}
	return buf.Bytes()
}

func knownKeys(keys map[string]bool) string {
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

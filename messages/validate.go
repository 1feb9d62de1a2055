package messages

import (
	"math"

	"github.com/google/uuid"
)

// Limits on request fields. The coordinator's payload limit is configurable
// up to the NATS max_payload; the others are fixed.
const (
	// MaxNameLength is the longest plugin or worker name, in bytes.
	MaxNameLength = 64
	// MaxIdempotencyKeyLength is the longest idempotency key, in bytes.
	MaxIdempotencyKeyLength = 256
	// MaxLabels is the most labels one job may carry.
	MaxLabels = 32
	// MaxLabelLength is the longest label key or value, in bytes.
	MaxLabelLength = 256
	// MaxAttemptsLimit is the highest max_attempts a submit may ask for.
	MaxAttemptsLimit = 100
	// DefaultMaxPayloadBytes is the default limit on args plus kwargs of one
	// job, and on one result: 256 KiB.
	DefaultMaxPayloadBytes = 256 << 10
)

// ValidateToken checks that value is usable as one NATS subject token:
// 1 to MaxNameLength bytes of ASCII letters, digits, '-' and '_'. what names
// the value in the error, such as "plugin name".
func ValidateToken(what, value string) error {
	if value == "" {
		return Errorf(CodeInvalid, "%s is empty: give 1 to %d letters, digits, '-' or '_'", what, MaxNameLength)
	}
	if len(value) > MaxNameLength {
		return Errorf(CodeInvalid, "%s %.20q... is %d bytes long: the maximum is %d", what, value, len(value), MaxNameLength)
	}
	for _, c := range value {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
		if !ok {
			return Errorf(CodeInvalid, "%s %q contains %q: use only letters, digits, '-' and '_'", what, value, c)
		}
	}
	return nil
}

// ValidatePriority checks that p lies within int32.
func ValidatePriority(p int) error {
	if p < math.MinInt32 || p > math.MaxInt32 {
		return Errorf(CodeInvalid, "priority %d is out of range: use %d to %d", p, math.MinInt32, math.MaxInt32)
	}
	return nil
}

// ValidateJobID checks that id is a UUID in its canonical text form.
func ValidateJobID(id string) error {
	if id == "" {
		return Errorf(CodeInvalid, "job id is empty")
	}
	u, err := uuid.Parse(id)
	if err != nil || u.String() != id {
		return Errorf(CodeInvalid, "job id %.64q is not a UUID such as 0190c1a2-7b3c-7d4e-8f90-123456789abc", id)
	}
	return nil
}

// ValidateSubmit checks a submit request against the limits above and
// maxPayload, the byte limit on args plus kwargs.
func ValidateSubmit(r *SubmitRequest, maxPayload int) error {
	if r.V > ProtocolVersion {
		return Errorf(CodeUnsupported, "request protocol version %d is newer than this coordinator's %d: upgrade the coordinator", r.V, ProtocolVersion)
	}
	if err := ValidateToken("plugin name", r.PluginName); err != nil {
		return err
	}
	if err := ValidatePriority(r.Priority); err != nil {
		return err
	}
	if k := r.Args.Kind(); k != "nil" && k != "array" {
		return Errorf(CodeInvalid, "args is a msgpack %s: send an array or nil", k)
	}
	if k := r.Kwargs.Kind(); k != "nil" && k != "map" {
		return Errorf(CodeInvalid, "kwargs is a msgpack %s: send a map or nil", k)
	}
	if n := len(r.Args) + len(r.Kwargs); n > maxPayload {
		return Errorf(CodeTooLarge, "args and kwargs of plugin %q take %d bytes: the limit is %d; pass a path or URL to large inputs instead", r.PluginName, n, maxPayload)
	}
	if r.MaxAttempts < 0 || r.MaxAttempts > MaxAttemptsLimit {
		return Errorf(CodeInvalid, "max_attempts %d is out of range: use 1 to %d, or 0 for the default", r.MaxAttempts, MaxAttemptsLimit)
	}
	if len(r.IdempotencyKey) > MaxIdempotencyKeyLength {
		return Errorf(CodeInvalid, "idempotency key is %d bytes long: the maximum is %d", len(r.IdempotencyKey), MaxIdempotencyKeyLength)
	}
	if err := validateLabels(r.Labels); err != nil {
		return err
	}
	return ValidateRequirements(r.Requirements)
}

// ValidateRequirements checks that every requirement set is not negative.
func ValidateRequirements(r *Requirements) error {
	if r == nil {
		return nil
	}
	if r.GPUs != nil && (*r.GPUs < 0 || *r.GPUs > 64) {
		return Errorf(CodeInvalid, "requirement gpus %d is out of range: use 0 to 64", *r.GPUs)
	}
	if r.GPUMemoryMB != nil && *r.GPUMemoryMB < 0 {
		return Errorf(CodeInvalid, "requirement gpu_memory_mb %d is negative", *r.GPUMemoryMB)
	}
	if r.MemoryMB != nil && *r.MemoryMB < 0 {
		return Errorf(CodeInvalid, "requirement memory_mb %d is negative", *r.MemoryMB)
	}
	if r.CPUs != nil && (*r.CPUs < 0 || math.IsNaN(*r.CPUs) || math.IsInf(*r.CPUs, 0)) {
		return Errorf(CodeInvalid, "requirement cpus %v is not a non-negative number", *r.CPUs)
	}
	return nil
}

func validateLabels(labels map[string]string) error {
	if len(labels) > MaxLabels {
		return Errorf(CodeInvalid, "%d labels given: the maximum is %d", len(labels), MaxLabels)
	}
	for k, v := range labels {
		if k == "" || len(k) > MaxLabelLength || len(v) > MaxLabelLength {
			return Errorf(CodeInvalid, "label %.40q is empty or longer than %d bytes, or its value is", k, MaxLabelLength)
		}
	}
	return nil
}

// ValidateProgress checks that p is -1 or within 0..1.
func ValidateProgress(p float64) error {
	if p == -1 || (p >= 0 && p <= 1) {
		return nil
	}
	return Errorf(CodeInvalid, "progress %v is out of range: use 0 to 1, or -1 when indeterminate", p)
}

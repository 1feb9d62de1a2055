package messages_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/jetqueue/jetqueue/messages"
)

// assertCode fails unless err is a *messages.Error with the code whose
// message contains every one of parts.
func assertCode(t *testing.T, caseName string, err error, code messages.ErrorCode, parts ...string) {
	t.Helper()

	var apiErr *messages.Error
	if !errors.As(err, &apiErr) {
		t.Errorf("%s: error %v (%T) is not a *messages.Error with code %q", caseName, err, err, code)
		return
	}
	if apiErr.Code != code {
		t.Errorf("%s: code %q, want %q (message %q)", caseName, apiErr.Code, code, apiErr.Message)
	}
	for _, p := range parts {
		if !strings.Contains(apiErr.Message, p) {
			t.Errorf("%s: message %q does not contain %q", caseName, apiErr.Message, p)
		}
	}
}

func TestValidateTokenAccepts(t *testing.T) {
	for _, name := range []string{
		"a", "whisper", "hash-files", "stable_diffusion", "Model-2", "0", strings.Repeat("x", messages.MaxNameLength),
	} {
		if err := messages.ValidateToken("plugin name", name); err != nil {
			t.Errorf("ValidateToken(%q): %v", name, err)
		}
	}
}

func TestValidateTokenRejects(t *testing.T) {
	tooLong := strings.Repeat("y", messages.MaxNameLength+1)
	tests := map[string]struct {
		name  string
		parts []string
	}{
		"empty":      {"", []string{"plugin name is empty"}},
		"too long":   {tooLong, []string{tooLong[:20], "65 bytes", "64"}},
		"dot":        {"a.b", []string{`"a.b"`, `'.'`}},
		"space":      {"a b", []string{`"a b"`, `' '`}},
		"star":       {"*", []string{`"*"`, `'*'`}},
		"greater":    {"whisper>", []string{`"whisper>"`, `'>'`}},
		"slash":      {"a/b", []string{`"a/b"`}},
		"tab":        {"a\tb", []string{`"a\tb"`}},
		"dollar":     {"$SYS", []string{`"$SYS"`}},
		"unicode":    {"café", []string{`"café"`}},
		"emoji only": {"🚀", []string{`"🚀"`}},
	}
	for caseName, tt := range tests {
		err := messages.ValidateToken("plugin name", tt.name)
		assertCode(t, caseName, err, messages.CodeInvalid, tt.parts...)
	}
}

// The message must quote the offending character, not the first byte of
// its UTF-8 encoding ('Ã' for 'é').
func TestValidateTokenNamesRune(t *testing.T) {
	err := messages.ValidateToken("plugin name", "café")
	assertCode(t, "unicode", err, messages.CodeInvalid, `'é'`)
}

func TestValidatePriority(t *testing.T) {
	for _, p := range []int{0, 1, -1, math.MinInt32, math.MaxInt32} {
		if err := messages.ValidatePriority(p); err != nil {
			t.Errorf("ValidatePriority(%d): %v", p, err)
		}
	}
	for _, p := range []int{math.MinInt32 - 1, math.MaxInt32 + 1, math.MinInt64, math.MaxInt64} {
		assertCode(t, fmt.Sprint(p), messages.ValidatePriority(p), messages.CodeInvalid, fmt.Sprint(p))
	}
}

func TestValidateJobID(t *testing.T) {
	v7 := uuid.Must(uuid.NewV7()).String()
	for _, id := range []string{v7, uuid.NewString(), "0190c1a2-7b3c-7d4e-8f90-123456789abc"} {
		if err := messages.ValidateJobID(id); err != nil {
			t.Errorf("ValidateJobID(%q): %v", id, err)
		}
	}

	tests := map[string]string{
		"uppercase":    strings.ToUpper(v7),
		"garbage":      "not-a-uuid",
		"no dashes":    strings.ReplaceAll(v7, "-", ""),
		"braces":       "{" + v7 + "}",
		"urn":          "urn:uuid:" + v7,
		"trailing":     v7 + "0",
		"subject wild": "*",
	}
	for caseName, id := range tests {
		assertCode(t, caseName, messages.ValidateJobID(id), messages.CodeInvalid, id)
	}
	assertCode(t, "empty", messages.ValidateJobID(""), messages.CodeInvalid, "empty")
}

func TestValidateSubmitAccepts(t *testing.T) {
	tests := map[string]messages.SubmitRequest{
		"full":          fullSubmitRequest(),
		"minimal":       {PluginName: "p"},
		"version 0":     {V: 0, PluginName: "p"},
		"nil payloads":  {PluginName: "p", Args: messages.Payload{0xc0}, Kwargs: messages.Payload{0xc0}},
		"empty args":    {PluginName: "p", Args: messages.MustPayload([]any{}), Kwargs: messages.MustPayload(map[string]any{})},
		"max attempts":  {PluginName: "p", MaxAttempts: messages.MaxAttemptsLimit},
		"max priority":  {PluginName: "p", Priority: math.MaxInt32},
		"min priority":  {PluginName: "p", Priority: math.MinInt32},
		"longest key":   {PluginName: "p", IdempotencyKey: strings.Repeat("k", messages.MaxIdempotencyKeyLength)},
		"most labels":   {PluginName: "p", Labels: labels(messages.MaxLabels)},
		"longest label": {PluginName: "p", Labels: map[string]string{strings.Repeat("k", messages.MaxLabelLength): strings.Repeat("v", messages.MaxLabelLength)}},
		"empty label":   {PluginName: "p", Labels: map[string]string{"k": ""}},
		"zero requirements": {PluginName: "p", Requirements: &messages.Requirements{
			GPUs: ptr(0), GPUMemoryMB: ptr(int64(0)), MemoryMB: ptr(int64(0)), CPUs: ptr(0.0)}},
		"64 gpus": {PluginName: "p", Requirements: &messages.Requirements{GPUs: ptr(64)}},
	}
	for name, req := range tests {
		if err := messages.ValidateSubmit(&req, messages.DefaultMaxPayloadBytes); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestValidateSubmitRejects(t *testing.T) {
	tests := map[string]struct {
		req   messages.SubmitRequest
		code  messages.ErrorCode
		parts []string
	}{
		"newer version":     {messages.SubmitRequest{V: messages.ProtocolVersion + 1, PluginName: "p"}, messages.CodeUnsupported, []string{"version 2"}},
		"bad plugin":        {messages.SubmitRequest{PluginName: "a.b"}, messages.CodeInvalid, []string{`"a.b"`}},
		"no plugin":         {messages.SubmitRequest{}, messages.CodeInvalid, []string{"plugin name"}},
		"priority above":    {messages.SubmitRequest{PluginName: "p", Priority: math.MaxInt32 + 1}, messages.CodeInvalid, []string{"2147483648"}},
		"priority below":    {messages.SubmitRequest{PluginName: "p", Priority: math.MinInt32 - 1}, messages.CodeInvalid, []string{"-2147483649"}},
		"args map":          {messages.SubmitRequest{PluginName: "p", Args: messages.MustPayload(map[string]int{"a": 1})}, messages.CodeInvalid, []string{"args", "map"}},
		"args string":       {messages.SubmitRequest{PluginName: "p", Args: messages.MustPayload("x")}, messages.CodeInvalid, []string{"args", "other"}},
		"kwargs array":      {messages.SubmitRequest{PluginName: "p", Kwargs: messages.MustPayload([]int{1})}, messages.CodeInvalid, []string{"kwargs", "array"}},
		"kwargs number":     {messages.SubmitRequest{PluginName: "p", Kwargs: messages.MustPayload(3)}, messages.CodeInvalid, []string{"kwargs", "other"}},
		"max attempts -1":   {messages.SubmitRequest{PluginName: "p", MaxAttempts: -1}, messages.CodeInvalid, []string{"-1"}},
		"max attempts 101":  {messages.SubmitRequest{PluginName: "p", MaxAttempts: messages.MaxAttemptsLimit + 1}, messages.CodeInvalid, []string{"101"}},
		"idempotency key":   {messages.SubmitRequest{PluginName: "p", IdempotencyKey: strings.Repeat("k", messages.MaxIdempotencyKeyLength+1)}, messages.CodeInvalid, []string{"257"}},
		"too many labels":   {messages.SubmitRequest{PluginName: "p", Labels: labels(messages.MaxLabels + 1)}, messages.CodeInvalid, []string{"33"}},
		"empty label key":   {messages.SubmitRequest{PluginName: "p", Labels: map[string]string{"": "v"}}, messages.CodeInvalid, []string{`label ""`}},
		"long label key":    {messages.SubmitRequest{PluginName: "p", Labels: map[string]string{strings.Repeat("k", messages.MaxLabelLength+1): "v"}}, messages.CodeInvalid, []string{"kkkkkkkkkk"}},
		"long label value":  {messages.SubmitRequest{PluginName: "p", Labels: map[string]string{"team": strings.Repeat("v", messages.MaxLabelLength+1)}}, messages.CodeInvalid, []string{`"team"`}},
		"negative gpus":     {messages.SubmitRequest{PluginName: "p", Requirements: &messages.Requirements{GPUs: ptr(-1)}}, messages.CodeInvalid, []string{"gpus", "-1"}},
		"65 gpus":           {messages.SubmitRequest{PluginName: "p", Requirements: &messages.Requirements{GPUs: ptr(65)}}, messages.CodeInvalid, []string{"gpus", "65"}},
		"negative gpu mem":  {messages.SubmitRequest{PluginName: "p", Requirements: &messages.Requirements{GPUMemoryMB: ptr(int64(-5))}}, messages.CodeInvalid, []string{"gpu_memory_mb", "-5"}},
		"negative memory":   {messages.SubmitRequest{PluginName: "p", Requirements: &messages.Requirements{MemoryMB: ptr(int64(-6))}}, messages.CodeInvalid, []string{"memory_mb", "-6"}},
		"negative cpus":     {messages.SubmitRequest{PluginName: "p", Requirements: &messages.Requirements{CPUs: ptr(-0.5)}}, messages.CodeInvalid, []string{"cpus", "-0.5"}},
		"NaN cpus":          {messages.SubmitRequest{PluginName: "p", Requirements: &messages.Requirements{CPUs: ptr(math.NaN())}}, messages.CodeInvalid, []string{"cpus", "NaN"}},
		"infinite cpus":     {messages.SubmitRequest{PluginName: "p", Requirements: &messages.Requirements{CPUs: ptr(math.Inf(1))}}, messages.CodeInvalid, []string{"cpus", "+Inf"}},
		"payload one past":  {payloadRequest(messages.DefaultMaxPayloadBytes + 1), messages.CodeTooLarge, []string{fmt.Sprint(messages.DefaultMaxPayloadBytes + 1), fmt.Sprint(messages.DefaultMaxPayloadBytes), `"p"`}},
		"payload way above": {payloadRequest(4 * messages.DefaultMaxPayloadBytes), messages.CodeTooLarge, []string{fmt.Sprint(4 * messages.DefaultMaxPayloadBytes)}},
	}
	for name, tt := range tests {
		err := messages.ValidateSubmit(&tt.req, messages.DefaultMaxPayloadBytes)
		assertCode(t, name, err, tt.code, tt.parts...)
	}
}

func TestValidateSubmitPayloadLimit(t *testing.T) {
	at := payloadRequest(messages.DefaultMaxPayloadBytes)
	if n := len(at.Args) + len(at.Kwargs); n != messages.DefaultMaxPayloadBytes {
		t.Fatalf("payload fixture has %d bytes, want %d", n, messages.DefaultMaxPayloadBytes)
	}
	if err := messages.ValidateSubmit(&at, messages.DefaultMaxPayloadBytes); err != nil {
		t.Errorf("payload of exactly the limit: %v", err)
	}

	past := payloadRequest(messages.DefaultMaxPayloadBytes + 1)
	assertCode(t, "one byte past the limit", messages.ValidateSubmit(&past, messages.DefaultMaxPayloadBytes), messages.CodeTooLarge)

	small := payloadRequest(100)
	assertCode(t, "custom limit", messages.ValidateSubmit(&small, 99), messages.CodeTooLarge, "100", "99")
}

func TestValidateSubmitDecodedRequest(t *testing.T) {
	// The coordinator validates what it decoded, so validate after a round trip.
	var req messages.SubmitRequest
	if err := messages.Decode(messages.MustEncode(payloadRequest(messages.DefaultMaxPayloadBytes+1)), &req); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	assertCode(t, "decoded oversized request", messages.ValidateSubmit(&req, messages.DefaultMaxPayloadBytes), messages.CodeTooLarge)
}

func TestValidateRequirementsNil(t *testing.T) {
	if err := messages.ValidateRequirements(nil); err != nil {
		t.Errorf("ValidateRequirements(nil): %v", err)
	}
	if err := messages.ValidateRequirements(&messages.Requirements{}); err != nil {
		t.Errorf("ValidateRequirements of no fields: %v", err)
	}
}

func TestValidateProgress(t *testing.T) {
	for _, p := range []float64{-1, 0, 0.5, 1, math.SmallestNonzeroFloat64} {
		if err := messages.ValidateProgress(p); err != nil {
			t.Errorf("ValidateProgress(%v): %v", p, err)
		}
	}
	for _, p := range []float64{-0.5, -2, 1.0000001, 2, math.NaN(), math.Inf(1), math.Inf(-1)} {
		err := messages.ValidateProgress(p)
		if err == nil {
			t.Errorf("ValidateProgress(%v) gave no error", p)
			continue
		}
		if !strings.Contains(err.Error(), fmt.Sprint(p)) {
			t.Errorf("ValidateProgress(%v): message %q does not name the value", p, err)
		}
	}
}

// ValidateProgress must return a *messages.Error, because CodeOf reports any
// other error as internal.
func TestValidateProgressCode(t *testing.T) {
	assertCode(t, "progress 2", messages.ValidateProgress(2), messages.CodeInvalid, "2")
}

// payloadRequest returns a valid submit request whose args and kwargs take n
// bytes together; n must be at least 8.
func payloadRequest(n int) messages.SubmitRequest {
	// An array of one str32 takes 6 header bytes; the empty map takes 1.
	args := append([]byte{0x91, 0xdb, 0, 0, 0, 0}, bytes.Repeat([]byte{'a'}, n-7)...)
	size := uint32(n - 7)
	args[2], args[3], args[4], args[5] = byte(size>>24), byte(size>>16), byte(size>>8), byte(size)
	return messages.SubmitRequest{PluginName: "p", Args: args, Kwargs: messages.Payload{0x80}}
}

// labels returns n distinct labels.
func labels(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[fmt.Sprintf("key-%d", i)] = "value"
	}
	return m
}

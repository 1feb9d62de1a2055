package main

import (
	"io"
	"maps"
	"strings"
	"testing"
)

func TestParseFlagsDefaults(t *testing.T) {
	env := map[string]string{"JETQUEUE_NATS": "nats://127.0.0.1:4333", "JETQUEUE_PREFIX": "team"}
	cfg, err := parseFlags(nil, func(key string) string { return env[key] }, io.Discard)
	if err != nil {
		t.Fatalf("parseFlags: %v", err)
	}
	if cfg.natsURL != "nats://127.0.0.1:4333" {
		t.Errorf("natsURL = %q, want the JETQUEUE_NATS value", cfg.natsURL)
	}
	if cfg.prefix != "team" {
		t.Errorf("prefix = %q, want the JETQUEUE_PREFIX value", cfg.prefix)
	}
	if cfg.plugin != "hash-files" {
		t.Errorf("plugin = %q, want hash-files", cfg.plugin)
	}
	if cfg.durable != "subscriber-hash-files" {
		t.Errorf("durable = %q, want subscriber-hash-files", cfg.durable)
	}
	if cfg.deliver != "all" {
		t.Errorf("deliver = %q, want all", cfg.deliver)
	}
}

func TestParseFlagsFollowUpMap(t *testing.T) {
	args := []string{"--plugin", "compress", "--follow-up", "hash-files", "--map", "path=dst", "--map", "size=bytes_out"}
	cfg, err := parseFlags(args, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatalf("parseFlags: %v", err)
	}
	want := map[string]string{"path": "dst", "size": "bytes_out"}
	if !maps.Equal(cfg.fieldMap, want) {
		t.Errorf("fieldMap = %v, want %v", cfg.fieldMap, want)
	}
	if cfg.durable != "subscriber-compress" {
		t.Errorf("durable = %q, want subscriber-compress", cfg.durable)
	}
}

func TestParseFlagsRejectsInvalid(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"map without follow-up", []string{"--map", "path=dst"}, "--map needs --follow-up"},
		{"map without field", []string{"--follow-up", "x", "--map", "path="}, "is not KEY=FIELD"},
		{"map without equals", []string{"--follow-up", "x", "--map", "path"}, "is not KEY=FIELD"},
		{"deliver", []string{"--deliver", "last"}, `--deliver "last" is invalid`},
		{"plugin", []string{"--plugin", "a.b"}, "--plugin"},
		{"durable", []string{"--durable", "a b"}, "--durable"},
		{"prefix", []string{"--prefix", "Jq"}, "--prefix"},
		{"arguments", []string{"extra"}, "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseFlags(tt.args, func(string) string { return "" }, io.Discard)
			if err == nil {
				t.Fatalf("parseFlags(%q) succeeded, want an error containing %q", tt.args, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("parseFlags(%q) = %v, want an error containing %q", tt.args, err, tt.want)
			}
		})
	}
}

package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/jetqueue/jetqueue/messages"
)

var submitCommand = &command{
	name:     "submit",
	synopsis: "[flags] PLUGIN [key=value ...]",
	summary:  "Queue a job of PLUGIN and print its id.",
	details: `
Each key=value argument sets one keyword argument of the job. A value that is
valid JSON (a number, true, false, null, an array, an object or a quoted
string) is sent as that JSON value; any other value is sent as a string. So
n=3 sends the integer 3, n='"3"' the string "3", and path=/data the string
"/data". key=value arguments override keys of the same name in --kwargs-json.

With --wait the command waits for the job and exits like jetqueue wait.`,
	setup: setupSubmit,
}

func setupSubmit(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
	var conn clientFlags
	conn.register(fs, e, "request-timeout")
	var (
		priority    = fs.Int("priority", 0, "job priority, within int32: higher runs first, equal priorities run in submission order")
		wait        = fs.Bool("wait", false, "wait for the job to end and exit like jetqueue wait")
		waitTimeout = fs.Duration("timeout", 0, "with --wait, how long to wait before exiting 3; 0 waits without limit")
		maxAttempts = fs.Int("max-attempts", 0, "how often the job may start when workers are lost, 1 to 100; 0 takes the coordinator's default")
		idemKey     = fs.String("idempotency-key", "", "`KEY` that makes a repeated submit return the first job instead of queuing another")
		gpus        = fs.Int("gpus", 0, "GPUs the job needs on one worker, overriding the plugin manifest (default: the manifest's)")
		gpuMemory   = fs.Int64("gpu-memory-mb", 0, "free memory the job needs on each GPU, in MiB (default: the manifest's)")
		memory      = fs.Int64("memory-mb", 0, "system memory the job needs, in MiB (default: the manifest's)")
		cpus        = fs.Float64("cpus", 0, "CPU cores the job needs, fractions allowed (default: the manifest's)")
		kwargsJSON  = fs.String("kwargs-json", "", "keyword arguments as one JSON `OBJECT`, merged under the key=value arguments")
		argsJSON    = fs.String("args-json", "", "positional arguments as one JSON `ARRAY`")
		labels      = labelsFlag{}
	)
	fs.Var(labels, "label", "label `KEY=VALUE` stored with the job; repeat for several")

	return func(ctx context.Context, args []string) error {
		if len(args) == 0 {
			return usagef("missing PLUGIN: name the plugin to run, such as hash-files")
		}
		plugin := args[0]
		kwargs, err := buildKwargs(*kwargsJSON, args[1:])
		if err != nil {
			return err
		}

		req := messages.SubmitRequest{
			V:              messages.ProtocolVersion,
			PluginName:     plugin,
			Priority:       *priority,
			MaxAttempts:    *maxAttempts,
			IdempotencyKey: *idemKey,
			Requirements:   requirementsFromFlags(fs, *gpus, *gpuMemory, *memory, *cpus),
		}
		if len(labels) > 0 {
			req.Labels = labels
		}
		if kwargs != nil {
			if req.Kwargs, err = messages.NewPayload(kwargs); err != nil {
				return err
			}
		}
		if *argsJSON != "" {
			if req.Args, err = parseArgsJSON(*argsJSON); err != nil {
				return err
			}
		}

		c, nc, err := conn.open("submit")
		if err != nil {
			return err
		}
		defer nc.Close()

		reply, err := c.SubmitRequest(ctx, req)
		if err != nil {
			return interrupted(ctx, err)
		}
		if reply.Duplicate {
			fmt.Fprintf(e.stderr, "jetqueue: the idempotency key matched job %s, so no new job was queued\n", reply.ID)
		}

		if !*wait {
			return printSubmitted(e.stdout, reply, conn.json)
		}
		if !conn.json {
			fmt.Fprintln(e.stdout, reply.ID)
		}
		return waitAndPrint(ctx, e, c, reply.ID, *waitTimeout, conn.json)
	}
}

func printSubmitted(w io.Writer, reply messages.SubmitReply, asJSON bool) error {
	if asJSON {
		return printJSON(w, reply)
	}
	_, err := fmt.Fprintln(w, reply.ID)
	return err
}

// requirementsFromFlags returns the requirements that the resource flags
// set, or nil when none is set, so the manifest's values apply.
func requirementsFromFlags(fs *flag.FlagSet, gpus int, gpuMemory, memory int64, cpus float64) *messages.Requirements {
	var r messages.Requirements
	set := false
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "gpus":
			r.GPUs, set = &gpus, true
		case "gpu-memory-mb":
			r.GPUMemoryMB, set = &gpuMemory, true
		case "memory-mb":
			r.MemoryMB, set = &memory, true
		case "cpus":
			r.CPUs, set = &cpus, true
		}
	})
	if !set {
		return nil
	}
	return &r
}

// buildKwargs merges the --kwargs-json object with the key=value arguments,
// which win on equal keys. It returns nil when both are empty.
func buildKwargs(kwargsJSON string, pairs []string) (map[string]any, error) {
	var kwargs map[string]any
	if kwargsJSON != "" {
		v, err := decodeJSON(kwargsJSON)
		if err != nil {
			return nil, usagef("invalid --kwargs-json %.60q: %v", kwargsJSON, err)
		}
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, usagef("invalid --kwargs-json %.60q: expected a JSON object such as {\"path\": \"/data\"}", kwargsJSON)
		}
		kwargs = obj
	}

	for _, pair := range pairs {
		key, value, err := parseKeyValue(pair)
		if err != nil {
			return nil, err
		}
		if kwargs == nil {
			kwargs = map[string]any{}
		}
		kwargs[key] = value
	}
	return kwargs, nil
}

// parseKeyValue splits a key=value argument. The value is the JSON value it
// spells when it is valid JSON, else the text as a string.
func parseKeyValue(arg string) (string, any, error) {
	key, text, ok := strings.Cut(arg, "=")
	if !ok {
		return "", nil, usagef("argument %q is not key=value: keyword arguments look like path=/data or n=3", arg)
	}
	if key == "" {
		return "", nil, usagef("argument %q has an empty key: write key=value", arg)
	}

	if v, err := decodeJSON(text); err == nil {
		return key, v, nil
	}
	return key, text, nil
}

func parseArgsJSON(text string) (messages.Payload, error) {
	v, err := decodeJSON(text)
	if err != nil {
		return nil, usagef("invalid --args-json %.60q: %v", text, err)
	}
	if _, ok := v.([]any); !ok {
		return nil, usagef("invalid --args-json %.60q: expected a JSON array such as [1, \"two\"]", text)
	}
	return messages.NewPayload(v)
}

// decodeJSON decodes exactly one JSON value. Integers become int64 and
// other numbers float64, so a plugin receives 3 as an integer.
func decodeJSON(text string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("text follows the JSON value")
	}
	return convertNumbers(v), nil
}

func convertNumbers(v any) any {
	switch t := v.(type) {
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		f, _ := t.Float64()
		return f
	case map[string]any:
		for k, e := range t {
			t[k] = convertNumbers(e)
		}
	case []any:
		for i, e := range t {
			t[i] = convertNumbers(e)
		}
	}
	return v
}

package cli

import (
	"flag"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestParseKeyValue(t *testing.T) {
	cases := []struct {
		arg   string
		key   string
		value any
	}{
		{"n=3", "n", int64(3)},
		{"n=-3", "n", int64(-3)},
		{"x=1.5", "x", 1.5},
		{"x=1e3", "x", 1000.0},
		{"ok=true", "ok", true},
		{"ok=false", "ok", false},
		{"none=null", "none", nil},
		{`s="3"`, "s", "3"},
		{`list=[1,"a",true]`, "list", []any{int64(1), "a", true}},
		{`obj={"a":{"b":2}}`, "obj", map[string]any{"a": map[string]any{"b": int64(2)}}},
		{"path=/data/set-1", "path", "/data/set-1"},
		{"empty=", "empty", ""},
		{"zero=01", "zero", "01"},
		{"two=3 4", "two", "3 4"},
		{"word=True", "word", "True"},
		{"eq=a=b", "eq", "a=b"},
		{`half={"a":`, "half", `{"a":`},
	}
	for _, tc := range cases {
		key, value, err := parseKeyValue(tc.arg)
		if err != nil {
			t.Errorf("%s: %v", tc.arg, err)
			continue
		}
		if key != tc.key {
			t.Errorf("%s: key = %q, want %q", tc.arg, key, tc.key)
		}
		if !reflect.DeepEqual(value, tc.value) {
			t.Errorf("%s: value = %#v, want %#v", tc.arg, value, tc.value)
		}
	}
}

func TestParseKeyValueRejects(t *testing.T) {
	for _, arg := range []string{"noequals", "=value"} {
		_, _, err := parseKeyValue(arg)
		if _, ok := err.(*usageError); !ok {
			t.Errorf("%s: err = %v, want a usage error", arg, err)
			continue
		}
		if !strings.Contains(err.Error(), arg) {
			t.Errorf("%s: err = %q, want the argument named", arg, err)
		}
	}
}

func TestBuildKwargsMerges(t *testing.T) {
	got, err := buildKwargs(`{"a": 1, "b": 2, "nested": {"x": 1.5}}`, []string{"b=3", "c=text"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"a": int64(1), "b": int64(3), "c": "text", "nested": map[string]any{"x": 1.5}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("kwargs = %#v, want %#v", got, want)
	}

	got, err = buildKwargs("", nil)
	if err != nil || got != nil {
		t.Errorf("no kwargs = %#v, %v, want nil", got, err)
	}
	got, err = buildKwargs("{}", nil)
	if err != nil || got == nil || len(got) != 0 {
		t.Errorf("--kwargs-json {} = %#v, %v, want an empty map", got, err)
	}
}

func TestBuildKwargsRejectsBadJSON(t *testing.T) {
	for _, text := range []string{`[1, 2]`, `{"a": }`, `"text"`, `{"a": 1} {"b": 2}`} {
		_, err := buildKwargs(text, nil)
		if _, ok := err.(*usageError); !ok {
			t.Errorf("%s: err = %v, want a usage error", text, err)
			continue
		}
		wantContains(t, "error", err.Error(), "--kwargs-json")
	}
}

func TestParseArgsJSON(t *testing.T) {
	payload, err := parseArgsJSON(`[1, "two", 3.5]`)
	if err != nil {
		t.Fatal(err)
	}
	v, err := payload.Value()
	if err != nil {
		t.Fatal(err)
	}
	if want := []any{int64(1), "two", 3.5}; !reflect.DeepEqual(v, want) {
		t.Errorf("args = %#v, want %#v", v, want)
	}
	if _, err := parseArgsJSON(`{"a": 1}`); err == nil {
		t.Error("--args-json object: no error")
	}
}

func TestParseInterspersed(t *testing.T) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	priority := fs.Int("priority", 0, "")
	wait := fs.Bool("wait", false, "")
	name := fs.String("name", "", "")

	args := []string{"plugin", "a=1", "--priority", "5", "--wait", "b=2", "-5", "--name=x", "--", "--c=3", "-d"}
	positional, err := parseInterspersed(fs, args)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"plugin", "a=1", "b=2", "-5", "--c=3", "-d"}; !slices.Equal(positional, want) {
		t.Errorf("positional = %q, want %q", positional, want)
	}
	if *priority != 5 || !*wait || *name != "x" {
		t.Errorf("priority, wait, name = %d, %v, %q, want 5, true, x", *priority, *wait, *name)
	}
}

func TestParseInterspersedBoolValue(t *testing.T) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	wait := fs.Bool("wait", true, "")

	positional, err := parseInterspersed(fs, []string{"--wait=false", "job"})
	if err != nil {
		t.Fatal(err)
	}
	if *wait || !slices.Equal(positional, []string{"job"}) {
		t.Errorf("wait, positional = %v, %q, want false, [job]", *wait, positional)
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	cases := []struct {
		args  []string
		wants []string
	}{
		{[]string{"submit", "--priority", "abc", "p"}, []string{"-priority", `"abc"`}},
		{[]string{"submit", "p", "--max-attempts", "1.5"}, []string{"-max-attempts", `"1.5"`}},
		{[]string{"submit", "p", "--label", "nokey"}, []string{"-label", `"nokey"`}},
		{[]string{"submit", "p", "--kwargs-json", "[1]"}, []string{"--kwargs-json", "[1]"}},
		{[]string{"submit", "p", "novalue"}, []string{`"novalue"`, "key=value"}},
		{[]string{"submit"}, []string{"missing PLUGIN"}},
		{[]string{"wait", "--timeout", "5x", "job"}, []string{"-timeout", `"5x"`}},
		{[]string{"wait"}, []string{"one job id"}},
		{[]string{"logs", "--lines", "many", "job"}, []string{"-lines", `"many"`}},
		{[]string{"logs", "--lines", "-3", "job"}, []string{"--lines -3"}},
		{[]string{"reorder", "job", "high"}, []string{`"high"`, "integer"}},
		{[]string{"status", "--bogus"}, []string{"bogus"}},
		{[]string{"status", "--history", "0"}, []string{"--history 0"}},
		{[]string{"status", "--tls-cert", "c.pem"}, []string{"--tls-key"}},
		{[]string{"status", "--password", "x"}, []string{"--user"}},
		{[]string{"status", "--prefix", "a.b"}, []string{"--prefix", `"a.b"`}},
		{[]string{"serve", "--log-level", "loud"}, []string{"--log-level", `"loud"`}},
		{[]string{"workers", "extra"}, []string{"extra"}},
	}
	for _, tc := range cases {
		r := runCLI(t, nil, tc.args...)
		if r.code != ExitUsage {
			t.Errorf("%q: exit %d, want %d; stderr:\n%s", tc.args, r.code, ExitUsage, r.stderr)
			continue
		}
		wantContains(t, strings.Join(tc.args, " ")+" stderr", r.stderr, tc.wants...)
		wantContains(t, strings.Join(tc.args, " ")+" stderr", r.stderr, "Usage: jetqueue "+tc.args[0])
	}
}

func TestUnknownCommandExit2(t *testing.T) {
	r := runCLI(t, nil, "frobnicate")
	if r.code != ExitUsage {
		t.Errorf("exit %d, want %d", r.code, ExitUsage)
	}
	wantContains(t, "stderr", r.stderr, `unknown command "frobnicate"`, "Commands:")

	r = runCLI(t, nil)
	if r.code != ExitUsage {
		t.Errorf("no arguments: exit %d, want %d", r.code, ExitUsage)
	}
}

func TestHelpListsCommands(t *testing.T) {
	r := runCLI(t, nil, "help")
	if r.code != ExitOK {
		t.Fatalf("exit %d, want 0", r.code)
	}
	for _, name := range commandOrder {
		wantContains(t, "help", r.stdout, "  "+name+" ")
	}
	wantContains(t, "help", r.stdout, "3 timeout")
}

func TestCommandHelpDescribesEveryFlag(t *testing.T) {
	for name, cmd := range commands {
		r := runCLI(t, nil, name, "-h")
		if r.code != ExitOK {
			t.Errorf("%s -h: exit %d, want 0", name, r.code)
			continue
		}
		wantContains(t, name+" -h", r.stdout, "Usage: jetqueue "+name)
		newFlagSet(cmd, &env{getenv: func(string) string { return "" }}).VisitAll(func(f *flag.Flag) {
			if strings.TrimSpace(f.Usage) == "" {
				t.Errorf("%s --%s has no usage text", name, f.Name)
			}
			wantContains(t, name+" -h", r.stdout, "-"+f.Name)
		})
	}
}

func TestSubmitHelpNamesUnitsAndDefaults(t *testing.T) {
	r := runCLI(t, map[string]string{"JETQUEUE_NATS": "nats://10.0.0.1:4222", "JETQUEUE_PASSWORD": "s3cret"}, "help", "submit")
	if r.code != ExitOK {
		t.Fatalf("exit %d, want 0", r.code)
	}
	wantContains(t, "submit help", r.stdout,
		"--priority int", "--gpu-memory-mb", "in MiB", "--request-timeout duration", "(default 5s)",
		"(default nats://10.0.0.1:4222)", "env JETQUEUE_NATS", "Connection flags:", "--timeout duration")
	if strings.Contains(r.stdout, "s3cret") {
		t.Error("help prints the password taken from JETQUEUE_PASSWORD")
	}
}

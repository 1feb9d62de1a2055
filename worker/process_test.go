package worker

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetqueue/jetqueue/messages"
)

func TestLogsOfConcurrentJobsDoNotMix(t *testing.T) {
	p, mark := newTestPlugins(t)
	addProbe(t, p, mark, "probe.json", nil) // two instances

	jobs := []*messages.Job{
		newJob(t, "probe", map[string]any{"actions": []any{map[string]any{"lines": 40}}}),
		newJob(t, "probe", map[string]any{"actions": []any{map[string]any{"lines": 40}}}),
	}
	recs := []*recorder{{}, {}}
	var wg sync.WaitGroup
	for i := range jobs {
		slot, err := p.Acquire("probe")
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			out := slot.Run(context.Background(), Task{Job: jobs[i], Reporter: recs[i]})
			if out.Status != messages.StatusCompleted {
				t.Errorf("job %d: %+v", i, out)
			}
		})
	}
	wg.Wait()

	for i, rec := range recs {
		count := 0
		for _, l := range rec.logLines() {
			if !strings.Contains(l.Text, jobs[i].ID) {
				t.Errorf("job %d got a log line of another job: %q", i, l.Text)
			}
			count++
		}
		if count != 40 {
			t.Errorf("job %d got %d log lines, want 40", i, count)
		}
	}
}

func TestStaleMessagesDropped(t *testing.T) {
	p, mark := newTestPlugins(t)
	addProbe(t, p, mark, "probe.json", func(m *Manifest) { m.Instances = 1 })

	// Job A keeps logging from a thread after its result.
	recA := &recorder{}
	jobA := newJob(t, "probe", map[string]any{"actions": []any{map[string]any{"linger": 30}}})
	resultPID(t, runJob(t, context.Background(), p, Task{Job: jobA, Reporter: recA}))

	// Job B runs in the same process while A's thread writes, and also
	// sends a progress message that names A.
	recB := &recorder{}
	jobB := newJob(t, "probe", map[string]any{"actions": []any{
		map[string]any{"stale": jobA.ID},
		map[string]any{"progress": 0.25},
		map[string]any{"sleep": 0.5},
	}})
	resultPID(t, runJob(t, context.Background(), p, Task{Job: jobB, Reporter: recB}))

	if got := recB.progressValues(); !slices.Equal(got, []float64{0.25}) {
		t.Errorf("job B progress = %v, want only its own [0.25]", got)
	}
	for _, l := range recB.logLines() {
		if strings.Contains(l.Text, jobA.ID) || strings.Contains(l.Text, "linger") {
			t.Errorf("job B got a line of job A: %+v", l)
		}
	}
	for _, l := range recA.logLines() {
		if strings.Contains(l.Text, "linger") {
			t.Errorf("job A got a line after Run returned: %+v", l)
		}
	}
}

func TestOutputLinesBecomeLogs(t *testing.T) {
	p, mark := newTestPlugins(t)
	addProbe(t, p, mark, "probe.json", nil)

	rec := &recorder{}
	out := runJob(t, context.Background(), p, Task{Job: newJob(t, "probe", map[string]any{"actions": []any{
		map[string]any{"stdout": "plain text"},
		map[string]any{"stdout": `{"type": "mystery", "job_id": "x"}`},
		map[string]any{"stderr": "a warning"},
		map[string]any{"log": "hello"},
		map[string]any{"progress": 1.5},
		map[string]any{"progress": -1},
		map[string]any{"bad_progress": true},
		map[string]any{"long_stdout": maxLineBytes + 1000},
		map[string]any{"log": "after the long line"},
	}}), Reporter: rec})
	wantStatus(t, out, messages.StatusCompleted)

	checks := []struct {
		stream messages.LogStream
		level  string
		text   string
	}{
		{messages.LogStdout, "info", "plain text"},
		{messages.LogStdout, "info", `"mystery"`},
		{messages.LogStderr, "warning", "a warning"},
		{messages.LogPlugin, "info", "hello"},
		{messages.LogWorker, "warning", "progress 1.5 is out of range"},
		{messages.LogWorker, "warning", `invalid "progress" message`},
		{messages.LogStdout, "info", "[line cut at 1048576 bytes]"},
		{messages.LogPlugin, "info", "after the long line"},
	}
	for _, c := range checks {
		line, ok := rec.findLog(c.stream, c.text)
		if !ok {
			t.Errorf("no %s log line containing %q", c.stream, c.text)
			continue
		}
		if line.Level != c.level {
			t.Errorf("%s line %q has level %q, want %q", c.stream, truncateText(line.Text, 60), line.Level, c.level)
		}
	}
	if line, ok := rec.findLog(messages.LogStdout, "[line cut"); ok && len(line.Text) > maxLineBytes+100 {
		t.Errorf("cut line is %d bytes long, want at most %d plus the marker", len(line.Text), maxLineBytes)
	}
	if got := rec.progressValues(); !slices.Equal(got, []float64{-1}) {
		t.Errorf("progress = %v, want [-1]: 1.5 and the string value are dropped", got)
	}
}

func TestReadLines(t *testing.T) {
	input := "one\r\ntwo\n\n" + strings.Repeat("x", maxLineBytes+5) + "\nlast without newline"
	type line struct {
		text string
		cut  bool
	}
	var got []line
	readLines(strings.NewReader(input), func(b []byte, cut bool) {
		got = append(got, line{string(b), cut})
	})

	want := []line{{"one", false}, {"two", false}, {"", false}, {strings.Repeat("x", maxLineBytes), true}, {"last without newline", false}}
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d = (%d bytes, cut %v), want (%d bytes, cut %v)", i, len(got[i].text), got[i].cut, len(want[i].text), want[i].cut)
		}
	}
}

func TestParseMessage(t *testing.T) {
	cases := []struct {
		line    string
		isMsg   bool
		wantErr bool
	}{
		{`{"type":"progress","job_id":"a","progress":0.5}`, true, false},
		{`  {"type":"result","job_id":"a","result":{"x":[1,2]}}  `, true, false},
		{`{"type":"log","job_id":"a","level":"info","message":"m"}`, true, false},
		{`{"type":"error","job_id":"a","error":"e","cancelled":true}`, true, false},
		{`{"type":"progress","job_id":"a","progress":"half"}`, true, true},
		{`{"type":"unknown"}`, false, false},
		{`{"type":7}`, false, false},
		{`["type","progress"]`, false, false},
		{`plain text`, false, false},
		{`{"type":"progress"`, false, false},
	}
	for _, c := range cases {
		msg, err := parseMessage([]byte(c.line))
		if (msg != nil) != c.isMsg || (err != nil) != c.wantErr {
			t.Errorf("parseMessage(%s) = %+v, %v; want message %v, error %v", c.line, msg, err, c.isMsg, c.wantErr)
		}
	}
}

func TestNormalizeLevel(t *testing.T) {
	cases := map[string]string{"": "info", "INFO": "info", "warn": "warning", "CRITICAL": "error", "debug": "debug"}
	for in, want := range cases {
		if got, text := normalizeLevel(in, "t"); got != want || text != "t" {
			t.Errorf("normalizeLevel(%q) = %q, %q; want %q, \"t\"", in, got, text, want)
		}
	}
	if level, text := normalizeLevel("verbose", "t"); level != "info" || text != "[verbose] t" {
		t.Errorf("normalizeLevel(verbose) = %q, %q; want info and the level kept in the text", level, text)
	}
}

func TestStartFailure(t *testing.T) {
	p, mark := newTestPlugins(t)
	addProbe(t, p, mark, "probe.json", func(m *Manifest) { m.Command = []string{"./no-such-program"} })

	out := runJob(t, context.Background(), p, Task{Job: newJob(t, "probe", nil)})

	wantStatus(t, out, messages.StatusFailed)
	for _, want := range []string{`start plugin "probe"`, "no-such-program", "check the command"} {
		if !strings.Contains(out.Error, want) {
			t.Errorf("error %q does not contain %q", out.Error, want)
		}
	}
}

func TestGroupClearedAfterLeaderExits(t *testing.T) {
	p, mark := newTestPlugins(t)

	// The exec plugin starts a background sleeper that holds its stdout and
	// exits; the worker must stop the sleeper and return.
	dir := t.TempDir()
	script := dir + "/bg.sh"
	writeFile(t, script, "#!/bin/sh\nsleep 60 &\necho started\nexit 0\n")
	addProbe(t, p, mark, "probe-exec.json", func(m *Manifest) {
		m.Name = "bg"
		m.Command = []string{"/bin/sh", script}
	})

	start := time.Now()
	rec := &recorder{}
	job := newJob(t, "bg", nil)
	out := runJob(t, context.Background(), p, Task{Job: job, Reporter: rec})

	wantStatus(t, out, messages.StatusCompleted)
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("Run took %v, want about the 1s kill_grace", elapsed)
	}
	if _, ok := rec.findLog(messages.LogStdout, "started"); !ok {
		t.Errorf("job log %+v lacks the script's output", rec.logLines())
	}
	if pids := processesWithEnv(t, "JETQUEUE_JOB_ID="+job.ID); len(pids) > 0 {
		t.Errorf("processes %v of the job survived", pids)
	}
}

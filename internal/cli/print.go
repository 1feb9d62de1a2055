package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jetqueue/jetqueue/messages"
)

// timeLayout formats times in the text output, in local time.
const timeLayout = "2006-01-02 15:04:05"

// printJSON writes v as indented JSON followed by a newline.
func printJSON(w io.Writer, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode JSON output: %w", err)
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// printJSONLine writes v as JSON on one line.
func printJSONLine(w io.Writer, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode JSON output: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", data)
	return err
}

// formatDuration rounds d for people: milliseconds below a minute, seconds
// above.
func formatDuration(d time.Duration) string {
	if d < time.Minute {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func formatTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.Local().Format(timeLayout)
}

// formatProgress returns the progress in percent, or "?" while it is
// indeterminate.
func formatProgress(p float64) string {
	if p < 0 {
		return "?"
	}
	return fmt.Sprintf("%.0f%%", p*100)
}

// formatPayload returns the payload as compact JSON, or "-" when empty.
func formatPayload(p messages.Payload) string {
	if len(p) == 0 {
		return "-"
	}
	data, err := json.Marshal(p)
	if err != nil {
		return fmt.Sprintf("(%d bytes that do not decode: %v)", len(p), err)
	}
	return string(data)
}

// runTime returns how long the job has run: until it ended, or until now.
func runTime(job messages.Job, now time.Time) (time.Duration, bool) {
	if job.StartedAt == nil {
		return 0, false
	}
	end := now
	if job.CompletedAt != nil {
		end = *job.CompletedAt
	}
	return end.Sub(*job.StartedAt), true
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printJob writes one job record as a list of fields. Empty optional fields
// are left out.
func printJob(w io.Writer, job messages.Job, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	field := func(name, value string) { fmt.Fprintf(tw, "%s\t%s\n", name, value) }
	optional := func(name, value string) {
		if value != "" && value != "-" {
			field(name, value)
		}
	}

	field("id", job.ID)
	field("plugin", job.PluginName)
	field("status", string(job.Status))
	field("priority", fmt.Sprint(job.Priority))
	field("seq", fmt.Sprint(job.Seq))
	optional("worker", job.Worker)
	field("attempt", formatAttempt(job))
	field("created", formatTime(&job.CreatedAt))
	optional("started", formatTime(job.StartedAt))
	optional("completed", formatTime(job.CompletedAt))
	if d, ok := runTime(job, now); ok {
		field("run time", formatDuration(d))
	}
	if job.Status == messages.StatusRunning {
		field("progress", formatProgress(job.Progress))
	}
	optional("status message", job.StatusMessage)
	optional("pending reason", job.PendingReason)
	optional("cancel phase", string(job.CancelPhase))
	optional("error", job.Error)
	optional("result", formatPayload(job.Result))
	optional("kwargs", formatPayload(job.Kwargs))
	optional("args", formatPayload(job.Args))
	optional("idempotency key", job.IdempotencyKey)
	optional("labels", formatLabels(job.Labels))
	optional("requirements", formatRequirements(job.Requirements))
	for _, r := range job.Requeues {
		field("requeued", fmt.Sprintf("%s from worker %s after attempt %d: %s", formatTime(&r.Time), r.Worker, r.Attempt, r.Reason))
	}
	return tw.Flush()
}

func formatAttempt(job messages.Job) string {
	if job.MaxAttempts > 0 {
		return fmt.Sprintf("%d of %d", job.Attempt, job.MaxAttempts)
	}
	return fmt.Sprint(job.Attempt)
}

func formatLabels(labels map[string]string) string {
	keys := slices.Sorted(maps.Keys(labels))
	pairs := make([]string, len(keys))
	for i, k := range keys {
		pairs[i] = k + "=" + labels[k]
	}
	return strings.Join(pairs, ", ")
}

func formatRequirements(r *messages.Requirements) string {
	if r == nil {
		return ""
	}
	var parts []string
	if r.GPUs != nil {
		parts = append(parts, fmt.Sprintf("%d GPUs", *r.GPUs))
	}
	if r.GPUMemoryMB != nil {
		parts = append(parts, fmt.Sprintf("%d MiB per GPU", *r.GPUMemoryMB))
	}
	if r.MemoryMB != nil {
		parts = append(parts, fmt.Sprintf("%d MiB memory", *r.MemoryMB))
	}
	if r.CPUs != nil {
		parts = append(parts, fmt.Sprintf("%g CPUs", *r.CPUs))
	}
	return strings.Join(parts, ", ")
}

// printOutcome writes how a finished job ended: the status and run time,
// then the result or the error.
func printOutcome(w io.Writer, job messages.Job) error {
	took := ""
	if d, ok := runTime(job, time.Now()); ok {
		took = " after " + formatDuration(d)
	}

	var err error
	switch job.Status {
	case messages.StatusCompleted:
		_, err = fmt.Fprintf(w, "job %s completed%s\nresult: %s\n", job.ID, took, formatPayload(job.Result))
	case messages.StatusFailed:
		_, err = fmt.Fprintf(w, "job %s failed%s on attempt %s\nerror: %s\n", job.ID, took, formatAttempt(job), orDash(job.Error))
	default:
		_, err = fmt.Fprintf(w, "job %s %s%s\n", job.ID, job.Status, took)
	}
	return err
}

// printState writes the queue: running, pending and finished jobs, the job
// counts and the workers.
func printState(w io.Writer, state messages.StateReply, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)

	fmt.Fprintf(tw, "RUNNING (%d)\n", len(state.Running))
	if len(state.Running) > 0 {
		fmt.Fprintln(tw, "JOB\tPLUGIN\tPRIORITY\tWORKER\tATTEMPT\tPROGRESS\tRUN TIME\tMESSAGE")
		for _, job := range state.Running {
			d, _ := runTime(job, now)
			message := job.StatusMessage
			if job.CancelPhase != messages.CancelNone {
				message = "cancelling (" + string(job.CancelPhase) + ") " + message
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", job.ID, job.PluginName, job.Priority,
				orDash(job.Worker), formatAttempt(job), formatProgress(job.Progress), formatDuration(d), orDash(message))
		}
	}

	fmt.Fprintf(tw, "\nPENDING (%d)\n", len(state.Pending))
	if len(state.Pending) > 0 {
		fmt.Fprintln(tw, "POS\tJOB\tPLUGIN\tPRIORITY\tWAITING\tREASON")
		for _, p := range state.Pending {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\n", p.Position, p.Job.ID, p.Job.PluginName, p.Job.Priority,
				formatDuration(now.Sub(p.Job.CreatedAt)), orDash(p.Job.PendingReason))
		}
	}

	fmt.Fprintf(tw, "\nHISTORY (%d shown)\n", len(state.History))
	if len(state.History) > 0 {
		fmt.Fprintln(tw, "JOB\tPLUGIN\tSTATUS\tPRIORITY\tFINISHED\tRUN TIME\tERROR")
		for _, job := range state.History {
			runFor := "-"
			if d, ok := runTime(job, now); ok {
				runFor = formatDuration(d)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", job.ID, job.PluginName, job.Status, job.Priority,
				formatTime(job.CompletedAt), runFor, orDash(firstLine(job.Error)))
		}
	}

	s := state.Stats
	fmt.Fprintf(tw, "\nJOBS  %d pending, %d running, %d completed, %d failed, %d cancelled; %d submitted in all\n",
		s.Pending, s.Running, s.Completed, s.Failed, s.Cancelled, s.Submitted)
	if state.Leader != "" {
		fmt.Fprintf(tw, "COORDINATOR  %s\n", state.Leader)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(w, "\nWORKERS (%d)\n", len(state.Workers))
	if len(state.Workers) == 0 {
		return nil
	}
	return printWorkers(w, state.Workers, now)
}

// printWorkers writes one row per worker.
func printWorkers(w io.Writer, workers []messages.WorkerState, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATUS\tJOBS\tCPUS\tMEMORY MiB (AVAIL/TOTAL)\tGPUS MiB (FREE/TOTAL)\tPLUGINS (BUSY/WARM)\tLAST SEEN")
	for _, ws := range workers {
		info := ws.Info
		status := ws.Status
		if info.Draining && status != "draining" {
			status += " (draining)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%g\t%d/%d\t%s\t%s\t%s ago\n",
			info.Name, orDash(status), len(ws.Jobs), info.MaxJobs, info.CPUs,
			info.MemoryAvailableMB, info.MemoryTotalMB, formatGPUs(info.GPUs), formatPlugins(info.Plugins),
			formatDuration(now.Sub(ws.LastSeen).Truncate(time.Second)))
		// The last cell of a line does not count for the column widths, so
		// the detail lines leave the table aligned.
		for _, line := range gpuDetails(ws) {
			fmt.Fprintln(tw, "  "+line)
		}
	}
	return tw.Flush()
}

// gpuDetails describes each GPU of a worker on one line: free, reserved
// and evictable memory, jobs, utilisation and health.
func gpuDetails(ws messages.WorkerState) []string {
	var lines []string
	for i, g := range ws.Info.GPUs {
		line := fmt.Sprintf("GPU %d %s: %d of %d MiB free", g.Index, orDash(g.Name), g.MemoryFreeMB, g.MemoryTotalMB)
		if i < len(ws.GPUs) && ws.GPUs[i].Index == g.Index {
			st := ws.GPUs[i]
			line += fmt.Sprintf(", %d MiB reserved by %d jobs, %d MiB held by idle plugins", st.ReservedMB, st.Jobs, st.EvictableMB)
		}
		if g.UtilizationPct >= 0 {
			line += fmt.Sprintf(", %d%% busy", g.UtilizationPct)
		}
		if g.Unhealthy != "" {
			line += ", UNHEALTHY: " + g.Unhealthy
		}
		lines = append(lines, line)
	}
	for _, p := range ws.Info.Plugins {
		for _, proc := range p.Processes {
			state := "warm"
			if proc.Busy {
				state = "busy"
			}
			lines = append(lines, fmt.Sprintf("plugin %s pid %d %s on GPUs %v, %d MiB each, last used %s",
				p.Name, proc.PID, state, proc.GPUs, proc.GPUMemoryMB, proc.LastUsed.Local().Format(timeLayout)))
		}
	}
	return lines
}

func formatGPUs(gpus []messages.GPU) string {
	if len(gpus) == 0 {
		return "-"
	}
	parts := make([]string, len(gpus))
	for i, g := range gpus {
		parts[i] = fmt.Sprintf("%d:%s %d/%d", g.Index, g.Name, g.MemoryFreeMB, g.MemoryTotalMB)
	}
	return strings.Join(parts, ", ")
}

func formatPlugins(plugins []messages.PluginInfo) string {
	if len(plugins) == 0 {
		return "-"
	}
	parts := make([]string, len(plugins))
	for i, p := range plugins {
		parts[i] = fmt.Sprintf("%s %d/%d", p.Name, p.Busy, p.Warm)
	}
	return strings.Join(parts, ", ")
}

// printLogLine writes one log line: local time, source, level and text.
func printLogLine(w io.Writer, line messages.LogLine) error {
	_, err := fmt.Fprintf(w, "%s %-6s %-7s %s\n", line.Time.Local().Format(timeLayout+".000"), line.Stream, line.Level, line.Text)
	return err
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}

package messages_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/jetqueue/jetqueue/messages"
)

const jobID = "0190c1a2-7b3c-7d4e-8f90-123456789abc"

func TestSubjectsDefaultPrefix(t *testing.T) {
	s := messages.DefaultSubjects()
	fromEmpty, err := messages.NewSubjects("")
	if err != nil {
		t.Fatalf("NewSubjects(\"\"): %v", err)
	}
	if fromEmpty != s {
		t.Errorf("NewSubjects(\"\") = %+v, want DefaultSubjects %+v", fromEmpty, s)
	}

	tests := map[string][2]string{
		"Prefix":                      {s.Prefix(), "jq"},
		"API submit":                  {s.API(messages.VerbSubmit), "jq.api.submit"},
		"API submit_batch":            {s.API(messages.VerbSubmitBatch), "jq.api.submit_batch"},
		"APIGroup":                    {s.APIGroup(), "jq.api"},
		"Event":                       {s.Event("whisper", jobID, messages.EventCompleted), "jq.evt.whisper." + jobID + ".completed"},
		"EventFilter all":             {s.EventFilter("", "", ""), "jq.evt.*.*.*"},
		"EventFilter plugin and kind": {s.EventFilter("whisper", "", messages.EventCompleted), "jq.evt.whisper.*.completed"},
		"EventFilter job":             {s.EventFilter("", jobID, ""), "jq.evt.*." + jobID + ".*"},
		"Events":                      {s.Events(), "jq.evt.>"},
		"Log":                         {s.Log(jobID), "jq.log." + jobID},
		"Logs":                        {s.Logs(), "jq.log.>"},
		"Heartbeat":                   {s.Heartbeat(), "jq.wrk.hb"},
		"Report":                      {s.Report(), "jq.wrk.report"},
		"WorkerCommand":               {s.WorkerCommand("gpu-node-1"), "jq.wrk.cmd.gpu-node-1"},
		"EventsStream":                {s.EventsStream(), "JQ_EVENTS"},
		"LogsStream":                  {s.LogsStream(), "JQ_LOGS"},
	}
	for name, tt := range tests {
		if tt[0] != tt[1] {
			t.Errorf("%s = %q, want %q", name, tt[0], tt[1])
		}
	}
}

func TestSubjectsCustomPrefix(t *testing.T) {
	s, err := messages.NewSubjects("team_a2")
	if err != nil {
		t.Fatalf("NewSubjects: %v", err)
	}

	tests := map[string][2]string{
		"Prefix":        {s.Prefix(), "team_a2"},
		"API":           {s.API(messages.VerbCancel), "team_a2.api.cancel"},
		"APIGroup":      {s.APIGroup(), "team_a2.api"},
		"Event":         {s.Event("p", jobID, messages.EventStarted), "team_a2.evt.p." + jobID + ".started"},
		"EventFilter":   {s.EventFilter("p", "", ""), "team_a2.evt.p.*.*"},
		"Events":        {s.Events(), "team_a2.evt.>"},
		"Log":           {s.Log(jobID), "team_a2.log." + jobID},
		"Logs":          {s.Logs(), "team_a2.log.>"},
		"Heartbeat":     {s.Heartbeat(), "team_a2.wrk.hb"},
		"Report":        {s.Report(), "team_a2.wrk.report"},
		"WorkerCommand": {s.WorkerCommand("w1"), "team_a2.wrk.cmd.w1"},
		"EventsStream":  {s.EventsStream(), "TEAM_A2_EVENTS"},
		"LogsStream":    {s.LogsStream(), "TEAM_A2_LOGS"},
	}
	for name, tt := range tests {
		if tt[0] != tt[1] {
			t.Errorf("%s = %q, want %q", name, tt[0], tt[1])
		}
	}
}

func TestNewSubjectsRejects(t *testing.T) {
	for _, prefix := range []string{"jq.x", "jq x", "*", ">", "jq>", "$JS", "préfixe", strings.Repeat("p", messages.MaxNameLength+1)} {
		_, err := messages.NewSubjects(prefix)
		want := prefix
		if len(want) > 20 {
			want = want[:20]
		}
		assertCode(t, prefix, err, messages.CodeInvalid, "subject prefix", want)
	}
}

// Two valid prefixes must not share a stream name, because two queues would
// then write into one stream. Stream names upper-case the prefix and map '-'
// to '_', so "jq" and "JQ" both give JQ_EVENTS.
func TestStreamNamesDistinct(t *testing.T) {
	pairs := [][2]string{{"jq", "JQ"}, {"a-b", "a_b"}, {"Queue", "queue"}}
	for _, pair := range pairs {
		a, errA := messages.NewSubjects(pair[0])
		b, errB := messages.NewSubjects(pair[1])
		if errA != nil || errB != nil {
			// Rejecting one of the two prefixes also removes the clash.
			continue
		}
		if a.EventsStream() == b.EventsStream() {
			t.Errorf("prefixes %q and %q share the stream %s", pair[0], pair[1], a.EventsStream())
		}
		if a.LogsStream() == b.LogsStream() {
			t.Errorf("prefixes %q and %q share the stream %s", pair[0], pair[1], a.LogsStream())
		}
	}
}

func TestVerbs(t *testing.T) {
	want := []string{"submit", "submit_batch", "cancel", "reorder", "get", "state", "logs", "workers", "drain"}
	if !slices.Equal(messages.Verbs, want) {
		t.Errorf("Verbs = %v, want %v", messages.Verbs, want)
	}
	for _, v := range messages.Verbs {
		if err := messages.ValidateToken("verb", v); err != nil {
			t.Errorf("verb %q is not a subject token: %v", v, err)
		}
	}
}

func TestEventKinds(t *testing.T) {
	want := []messages.EventKind{
		"submitted", "started", "progress", "completed", "failed", "cancelled", "requeued",
		"reordered", "cancel_requested", "evicting",
	}
	if !slices.Equal(messages.EventKinds, want) {
		t.Errorf("EventKinds = %v, want %v", messages.EventKinds, want)
	}
	for _, k := range messages.EventKinds {
		if err := messages.ValidateToken("event kind", string(k)); err != nil {
			t.Errorf("event kind %q is not a subject token: %v", k, err)
		}
	}
}

func TestParseEventSubjectRoundTrip(t *testing.T) {
	for _, prefix := range []string{"jq", "team-a"} {
		s, err := messages.NewSubjects(prefix)
		if err != nil {
			t.Fatal(err)
		}
		for _, kind := range messages.EventKinds {
			plugin, id, gotKind, err := s.ParseEventSubject(s.Event("hash-files", jobID, kind))
			if err != nil {
				t.Errorf("%s, %s: %v", prefix, kind, err)
				continue
			}
			if plugin != "hash-files" || id != jobID || gotKind != kind {
				t.Errorf("%s, %s: parsed %q, %q, %q", prefix, kind, plugin, id, gotKind)
			}
		}
	}
}

func TestParseEventSubjectRejects(t *testing.T) {
	s := messages.DefaultSubjects()
	for _, subject := range []string{
		"",
		"jq.evt",
		"jq.evt.",
		"jq.evt.p." + jobID,
		"jq.evt.p." + jobID + ".completed.extra",
		"jq.log." + jobID,
		"other.evt.p." + jobID + ".completed",
		"jqx.evt.p." + jobID + ".completed",
		"JQ.evt.p." + jobID + ".completed",
	} {
		_, _, _, err := s.ParseEventSubject(subject)
		if err == nil {
			t.Errorf("ParseEventSubject(%q) gave no error", subject)
			continue
		}
		if !strings.Contains(err.Error(), `"`+subject+`"`) {
			t.Errorf("ParseEventSubject(%q): error %q does not name the subject", subject, err)
		}
	}
}

// ParseEventSubject must reject empty tokens, which no NATS subject has.
func TestParseEventSubjectEmptyToken(t *testing.T) {
	s := messages.DefaultSubjects()
	for _, subject := range []string{
		"jq.evt..x.completed",
		"jq.evt.p..completed",
		"jq.evt.p.x.",
		"jq.evt...",
	} {
		plugin, id, kind, err := s.ParseEventSubject(subject)
		if err == nil {
			t.Errorf("ParseEventSubject(%q) = %q, %q, %q and no error", subject, plugin, id, kind)
		}
	}
}

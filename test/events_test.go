package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetqueue/jetqueue/client"
	"github.com/jetqueue/jetqueue/coordinator"
	"github.com/jetqueue/jetqueue/messages"
	"github.com/jetqueue/jetqueue/worker"
)

// kwargsHandler returns the job's kwargs as its result.
func kwargsHandler(_ context.Context, job *messages.Job, _ worker.Reporter) (any, error) {
	return job.Kwargs.Value()
}

// submitAndWait submits n jobs of plugin, waits until each has completed,
// and returns their ids in submission order.
func (e *env) submitAndWait(plugin string, n int) []string {
	e.t.Helper()

	ids := make([]string, n)
	for i := range ids {
		ids[i] = e.submit(plugin, map[string]any{"i": i})
	}
	for _, id := range ids {
		if j := e.wait(id, 20*time.Second); j.Status != messages.StatusCompleted {
			e.t.Fatalf("job %s ended %s: %s", id, j.Status, j.Error)
		}
	}
	return ids
}

// receive reads n messages from it, failing the test when they do not
// arrive within timeout. With ack set, it acknowledges each message as it
// arrives, so none waits long enough for the server to deliver it again.
func receive(t *testing.T, it jetstream.MessagesContext, n int, timeout time.Duration, ack bool) []jetstream.Msg {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	msgs := make([]jetstream.Msg, 0, n)
	for len(msgs) < n {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			t.Fatalf("received %d of %d messages: %v", len(msgs), n, err)
		}
		if ack {
			if err := msg.DoubleAck(ctx); err != nil {
				t.Fatalf("acknowledge message %d: %v", len(msgs)+1, err)
			}
		}
		msgs = append(msgs, msg)
	}
	return msgs
}

// storedSequences returns the stream sequences of the events that filter
// selects, oldest first, as an independent ordered consumer reads them.
func storedSequences(t *testing.T, js jetstream.JetStream, filter string) []uint64 {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream := messages.DefaultSubjects().EventsStream()
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatalf("ordered consumer on %s: %v", stream, err)
	}
	var seqs []uint64
	for {
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			t.Fatalf("fetch from %s: %v", stream, err)
		}
		count := 0
		for msg := range batch.Messages() {
			meta, err := msg.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, meta.Sequence.Stream)
			count++
		}
		if count == 0 {
			return seqs
		}
	}
}

func TestDurableConsumerMissesNoCompletion(t *testing.T) {
	e := newEnv(t, nil)
	e.startWorker(worker.Config{Name: "w1", MaxJobs: 4}, map[string]worker.Handler{"echo": kwargsHandler})
	ctx := context.Background()
	stream := messages.DefaultSubjects().EventsStream()
	filter := "jq.evt.*.*.completed"

	// The app's consumer lives on the server. A short ack wait makes the
	// server redeliver the event that the app left unacknowledged soon
	// after the app comes back.
	cfg := jetstream.ConsumerConfig{
		Durable:       "app",
		FilterSubject: filter,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       2 * time.Second,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	appConn := e.connect()
	appJS, err := jetstream.New(appConn)
	if err != nil {
		t.Fatal(err)
	}
	consumer, err := appJS.CreateOrUpdateConsumer(ctx, stream, cfg)
	if err != nil {
		t.Fatalf("create durable consumer: %v", err)
	}

	// First run: the app handles the first batch, acknowledges all but the
	// last event, and stops.
	first := e.submitAndWait("echo", 5)
	it, err := consumer.Messages()
	if err != nil {
		t.Fatal(err)
	}
	firstRun := receive(t, it, len(first)-1, 10*time.Second, true)
	unacked := receive(t, it, 1, 10*time.Second, false)[0]
	firstRun = append(firstRun, unacked)
	it.Stop()
	appConn.Close()

	// While the app is stopped, a second batch completes.
	second := e.submitAndWait("echo", 10)

	// Second run, on a new connection: the durable consumer resumes.
	appConn = e.connect()
	appJS, err = jetstream.New(appConn)
	if err != nil {
		t.Fatal(err)
	}
	consumer, err = appJS.Consumer(ctx, stream, "app")
	if err != nil {
		t.Fatalf("find durable consumer after the restart: %v", err)
	}
	it, err = consumer.Messages()
	if err != nil {
		t.Fatal(err)
	}
	defer it.Stop()
	secondRun := receive(t, it, len(second)+1, 20*time.Second, true)

	// Every delivery is a message exactly as the stream stores it.
	events, err := appJS.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	deliveries := map[uint64]int{}
	var jobIDs []string
	for _, msg := range slices.Concat(firstRun, secondRun) {
		meta, err := msg.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		seq := meta.Sequence.Stream
		deliveries[seq]++
		raw, err := events.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get stored message %d: %v", seq, err)
		}
		if raw.Subject != msg.Subject() || !bytes.Equal(raw.Data, msg.Data()) {
			t.Errorf("delivery of sequence %d differs from the stored message: subject %s, stored %s", seq, msg.Subject(), raw.Subject)
		}
		var ev messages.Event
		if err := messages.Decode(msg.Data(), &ev); err != nil {
			t.Fatalf("decode event %d: %v", seq, err)
		}
		if ev.Kind != messages.EventCompleted {
			t.Errorf("event %d is %s, want completed", seq, ev.Kind)
		}
		if ev.Job.Status != messages.StatusCompleted {
			t.Errorf("job in event %d has status %s, want completed", seq, ev.Job.Status)
		}
		if deliveries[seq] == 1 {
			jobIDs = append(jobIDs, ev.Job.ID)
		}
	}

	// No gaps: the app saw every completion the stream stores. No
	// duplicates, except the one event it had not acknowledged.
	stored := storedSequences(t, appJS, filter)
	if len(stored) != len(first)+len(second) {
		t.Fatalf("stream stores %d completed events, want %d", len(stored), len(first)+len(second))
	}
	unackedMeta, err := unacked.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	for _, seq := range stored {
		want := 1
		if seq == unackedMeta.Sequence.Stream {
			want = 2
		}
		if deliveries[seq] != want {
			t.Errorf("stream sequence %d delivered %d times, want %d", seq, deliveries[seq], want)
		}
	}
	if len(deliveries) != len(stored) {
		t.Errorf("app received %d distinct sequences, the stream stores %d", len(deliveries), len(stored))
	}
	slices.Sort(jobIDs)
	allIDs := slices.Sorted(slices.Values(slices.Concat(first, second)))
	if !slices.Equal(jobIDs, allIDs) {
		t.Errorf("completed job ids received:\n got %v\nwant %v", jobIDs, allIDs)
	}

	info, err := consumer.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumPending != 0 {
		t.Errorf("consumer has %d undelivered events, want none", info.NumPending)
	}
	if info.NumAckPending != 0 {
		t.Errorf("consumer has %d unacknowledged events, want none", info.NumAckPending)
	}
}

func TestProgressEventsAreRateLimited(t *testing.T) {
	e := newEnv(t, nil)
	const reports = 1000
	last := float64(reports-1) / reports
	release := make(chan struct{})
	chatty := func(ctx context.Context, job *messages.Job, r worker.Reporter) (any, error) {
		for i := range reports {
			r.Progress(float64(i)/reports, fmt.Sprintf("step %d", i))
		}
		select {
		case <-release:
			return "done", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	e.startWorker(worker.Config{Name: "w1", MaxJobs: 1}, map[string]worker.Handler{"chatty": chatty})
	id := e.submit("chatty", nil)

	// The latest value wins: it arrives in a progress event while the
	// handler still runs.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	errLastValue := errors.New("last value seen")
	filter := client.WatchFilter{JobID: id, Kinds: []messages.EventKind{messages.EventProgress}, DeliverAll: true}
	err := e.client.Watch(ctx, filter, func(ev messages.Event) error {
		if ev.Job.Progress == last {
			return errLastValue
		}
		return nil
	})
	if !errors.Is(err, errLastValue) {
		t.Fatalf("no progress event with the last value %v: %v", last, err)
	}
	close(release)
	final := e.wait(id, 20*time.Second)

	var events []messages.Event
	err = e.client.Watch(ctx, client.WatchFilter{JobID: id, DeliverAll: true}, func(ev messages.Event) error {
		events = append(events, ev)
		if ev.Job.Status.Final() {
			return errLastValue
		}
		return nil
	})
	if !errors.Is(err, errLastValue) {
		t.Fatalf("read the job's events: %v", err)
	}

	var progress []messages.Event
	for _, ev := range events {
		if ev.Kind == messages.EventProgress {
			progress = append(progress, ev)
		}
	}
	t.Logf("%d progress reports became %d progress events", reports, len(progress))
	if len(progress) == 0 || len(progress) > 10 {
		t.Fatalf("%d progress events for %d reports in a tight loop, want 1 to 10", len(progress), reports)
	}
	for i := 1; i < len(progress); i++ {
		if progress[i].Job.Progress < progress[i-1].Job.Progress {
			t.Errorf("progress went back from %v to %v", progress[i-1].Job.Progress, progress[i].Job.Progress)
		}
		// The coordinator stamps an event a moment after it decides to
		// send it, so allow 10ms less than the interval.
		if gap := progress[i].Time.Sub(progress[i-1].Time); gap < coordinator.DefaultProgressInterval-10*time.Millisecond {
			t.Errorf("progress events %d and %d are %s apart, want at least %s", i-1, i, gap, coordinator.DefaultProgressInterval)
		}
	}
	latest := progress[len(progress)-1]
	if latest.Job.Progress != last {
		t.Errorf("last progress event has progress %v, want the last value reported, %v", latest.Job.Progress, last)
	}
	if want := fmt.Sprintf("step %d", reports-1); latest.Job.StatusMessage != want {
		t.Errorf("last progress event has message %q, want %q", latest.Job.StatusMessage, want)
	}
	if final.Status != messages.StatusCompleted {
		t.Errorf("job ended %s: %s", final.Status, final.Error)
	}
	if final.Progress != 1 {
		t.Errorf("progress of the completed job = %v, want 1", final.Progress)
	}
}

// subscriberProcess is one run of the examples/subscriber program.
type subscriberProcess struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr *lockedBuffer
	exited chan error
}

func startSubscriber(t *testing.T, bin string, args ...string) *subscriberProcess {
	t.Helper()

	p := &subscriberProcess{lines: make(chan string, 100), stderr: &lockedBuffer{}, exited: make(chan error, 1)}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stderr = p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start subscriber: %v", err)
	}

	var read sync.WaitGroup
	read.Go(func() {
		scanner := bufio.NewScanner(stdout)
		for scanner.Scan() {
			p.lines <- scanner.Text()
		}
	})
	go func() {
		read.Wait()
		p.exited <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// summaries reads n summary lines of the subscriber.
func (p *subscriberProcess) summaries(t *testing.T, n int) []map[string]any {
	t.Helper()

	var out []map[string]any
	timeout := time.After(30 * time.Second)
	for len(out) < n {
		select {
		case line := <-p.lines:
			var s map[string]any
			if err := json.Unmarshal([]byte(line), &s); err != nil {
				t.Fatalf("subscriber line %q is not JSON: %v", line, err)
			}
			out = append(out, s)
		case err := <-p.exited:
			t.Fatalf("subscriber exited (%v) after %d of %d lines; stderr:\n%s", err, len(out), n, p.stderr.String())
		case <-timeout:
			t.Fatalf("subscriber printed %d of %d lines within 30s; stderr:\n%s", len(out), n, p.stderr.String())
		}
	}
	return out
}

// compressJobs writes n small files and submits a compress job for each.
// It returns the job ids and the gzip paths by job id.
func compressJobs(e *env, dir string, n int) ([]string, map[string]string) {
	e.t.Helper()

	ids := make([]string, n)
	dst := map[string]string{}
	for i := range ids {
		src := filepath.Join(dir, fmt.Sprintf("file-%d-%d.txt", time.Now().UnixNano(), i))
		if err := os.WriteFile(src, bytes.Repeat([]byte("jetqueue "), 1000+i), 0o644); err != nil {
			e.t.Fatal(err)
		}
		ids[i] = e.submit("compress", map[string]any{"src": src, "dst": src + ".gz"})
		dst[ids[i]] = src + ".gz"
	}
	for _, id := range ids {
		if j := e.wait(id, 30*time.Second); j.Status != messages.StatusCompleted {
			e.t.Fatalf("compress job %s ended %s: %s", id, j.Status, j.Error)
		}
	}
	return ids, dst
}

func TestSubscriberSurvivesRestart(t *testing.T) {
	bin := goBuild(t, "../examples/subscriber")
	e := newEnv(t, nil)
	e.startWorker(worker.Config{Name: "w1", MaxJobs: 2, PluginsDir: pluginsDir}, nil)
	dir := t.TempDir()
	args := []string{"--nats", e.url, "--plugin", "compress", "--durable", "restart-test",
		"--follow-up", "hash-files", "--map", "path=dst"}

	// First run: handle two completions, then wait until the server has
	// every acknowledgement and kill the process.
	sub := startSubscriber(t, bin, args...)
	firstIDs, dst := compressJobs(e, dir, 2)
	lines := sub.summaries(t, len(firstIDs))
	js, err := jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	e.eventually(10*time.Second, "every event acknowledged", func() bool {
		c, err := js.Consumer(context.Background(), "JQ_EVENTS", "restart-test")
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	if err := sub.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-sub.exited

	// Three completions while it is down, then a second run.
	secondIDs, secondDst := compressJobs(e, dir, 3)
	for id, path := range secondDst {
		dst[id] = path
	}
	sub = startSubscriber(t, bin, args...)
	lines = append(lines, sub.summaries(t, len(secondIDs))...)

	// Each completion was printed once, with one follow-up job.
	printed := map[string]int{}
	followUps := map[string]string{}
	for _, line := range lines {
		id, _ := line["job_id"].(string)
		printed[id]++
		followUps[id], _ = line["follow_up"].(string)
		if line["delivery"] != 1.0 {
			t.Errorf("job %s was delivered %v times, want once", id, line["delivery"])
		}
	}
	for _, id := range slices.Concat(firstIDs, secondIDs) {
		if printed[id] != 1 {
			t.Errorf("compress job %s printed %d times, want once", id, printed[id])
		}
		if followUps[id] == "" {
			t.Errorf("compress job %s has no follow-up", id)
			continue
		}
		j := e.wait(followUps[id], 30*time.Second)
		if j.PluginName != "hash-files" {
			t.Errorf("follow-up of %s runs plugin %s, want hash-files", id, j.PluginName)
		}
		if j.Status != messages.StatusCompleted {
			t.Errorf("follow-up of %s ended %s: %s", id, j.Status, j.Error)
		}
		if j.Labels["follows"] != id {
			t.Errorf("follow-up of %s has label follows=%q, want the compress job's id", id, j.Labels["follows"])
		}
		kwargs, err := j.Kwargs.Value()
		if err != nil {
			t.Fatal(err)
		}
		if path := kwargs.(map[string]any)["path"]; path != dst[id] {
			t.Errorf("follow-up of %s hashes %v, want %s", id, path, dst[id])
		}
	}

	// SIGTERM stops the subscriber cleanly.
	if err := sub.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-sub.exited:
		if err != nil {
			t.Errorf("subscriber exited with %v after SIGTERM, want status 0; stderr:\n%s", err, sub.stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Errorf("subscriber did not stop within 10s of SIGTERM")
	}
}

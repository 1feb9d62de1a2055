package test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetqueue/jetqueue/client"
	"github.com/jetqueue/jetqueue/coordinator"
	"github.com/jetqueue/jetqueue/messages"
	"github.com/jetqueue/jetqueue/worker"
)

// deployNATSDir holds the shipped NATS configs, relative to this package.
const deployNATSDir = "../deploy/nats"

// rolePasswords maps each user of the shipped configs to the environment
// variable that holds its password and the password the tests set there.
var rolePasswords = map[string]struct{ env, password string }{
	"coordinator": {"JQ_COORDINATOR_PASSWORD", "coordinator-test-password"},
	"worker":      {"JQ_WORKER_PASSWORD", "worker-test-password"},
	"client":      {"JQ_CLIENT_PASSWORD", "client-test-password"},
	"observer":    {"JQ_OBSERVER_PASSWORD", "observer-test-password"},
	"admin":       {"JQ_ADMIN_PASSWORD", "admin-test-password"},
	"system":      {"NATS_SYSTEM_PASSWORD", "system-test-password"},
}

// setRolePasswords sets the password variables the shipped configs read.
func setRolePasswords(t *testing.T) {
	t.Helper()
	for _, p := range rolePasswords {
		t.Setenv(p.env, p.password)
	}
}

// nodeOptions parses the shipped config of cluster node n (1 to 3) and
// moves it onto loopback: a random client port, no monitoring port and the
// store in a temporary directory. With no routes the node runs standalone.
// Otherwise it listens for routes on 127.0.0.1:clusterPort and connects to
// routes. The users, accounts, permissions and cluster name stay as shipped.
// Call setRolePasswords first.
func nodeOptions(t *testing.T, n, clusterPort int, routes []*url.URL) *server.Options {
	t.Helper()
	path := filepath.Join(deployNATSDir, fmt.Sprintf("cluster-node%d.conf", n))
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}

	opts.Host = "127.0.0.1"
	opts.Port = -1
	opts.HTTPHost = ""
	opts.HTTPPort = 0
	opts.StoreDir = t.TempDir()
	opts.NoSigs = true
	opts.NoLog = !testLogging()
	opts.Logtime = true

	opts.RoutesStr = ""
	opts.Routes = routes
	if len(routes) == 0 {
		opts.Cluster = server.ClusterOpts{}
	} else {
		opts.Cluster.Host = "127.0.0.1"
		opts.Cluster.Port = clusterPort
	}
	return opts
}

// startNode starts a nats-server with opts and stops it at the end of the test.
func startNode(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats-server %s: %v", opts.ServerName, err)
	}
	if testLogging() {
		ns.ConfigureLogger()
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		t.Fatalf("nats-server %s not ready within 10s", opts.ServerName)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

// violations records the permission violations the server reports to one
// connection.
type violations struct {
	mu     sync.Mutex
	errors []string
}

func (v *violations) record(_ *nats.Conn, _ *nats.Subscription, err error) {
	if !errors.Is(err, nats.ErrPermissionViolation) {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.errors = append(v.errors, err.Error())
}

func (v *violations) list() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.errors)
}

// find returns the first recorded violation of op ("Publish" or
// "Subscription") on a subject that starts with subjectPrefix.
func (v *violations) find(op, subjectPrefix string) (string, bool) {
	want := fmt.Sprintf("Permissions Violation for %s to %q", op, subjectPrefix)
	want = strings.TrimSuffix(want, `"`)
	for _, e := range v.list() {
		if strings.Contains(e, want) {
			return e, true
		}
	}
	return "", false
}

// expect waits until the server reported a violation of op on a subject
// starting with subjectPrefix.
func (v *violations) expect(t *testing.T, op, subjectPrefix string) {
	t.Helper()
	pollUntil(t, 5*time.Second, fmt.Sprintf("a permissions violation for %s to %s", op, subjectPrefix), func() bool {
		_, ok := v.find(op, subjectPrefix)
		return ok
	})
}

// roleConn is a connection authenticated as one user of the shipped config.
type roleConn struct {
	nc         *nats.Conn
	violations *violations
}

// connectAs connects to urls (comma-separated) as user. The connection
// reconnects without limit, so it fails over between cluster nodes.
func connectAs(t *testing.T, urls, user string, extra ...nats.Option) *roleConn {
	t.Helper()
	p, ok := rolePasswords[user]
	if !ok {
		t.Fatalf("no test password for user %q", user)
	}
	rc := &roleConn{violations: &violations{}}
	opts := append([]nats.Option{
		nats.Name("jetqueue test " + user),
		nats.UserInfo(user, p.password),
		nats.ErrorHandler(rc.violations.record),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50 * time.Millisecond),
	}, extra...)
	nc, err := nats.Connect(urls, opts...)
	if err != nil {
		t.Fatalf("connect to %s as %s: %v", urls, user, err)
	}
	t.Cleanup(nc.Close)
	rc.nc = nc
	return rc
}

// newClient returns a jetqueue client on rc with a request timeout.
func (rc *roleConn) newClient(t *testing.T, timeout time.Duration, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(rc.nc, append([]client.Option{client.WithTimeout(timeout)}, opts...)...)
	if err != nil {
		t.Fatalf("client.New: %v", err)
	}
	return c
}

// pollUntil polls cond until it holds or the timeout passes.
func pollUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// roleEnv is the shipped node 1 config running standalone, with a
// coordinator and a worker connected as their roles.
type roleEnv struct {
	url string
	// coordinator is the connection of leader, the first coordinator.
	coordinator *roleConn
	leader      *coordinator.Coordinator
	worker      *roleConn
	// release unblocks the jobs of the "gate" plugin.
	release chan struct{}
}

// authWorkerName is the worker of roleEnv.
const authWorkerName = "auth-worker"

func newRoleEnv(t *testing.T) *roleEnv {
	t.Helper()
	setRolePasswords(t)
	ns := startNode(t, nodeOptions(t, 1, 0, nil))
	e := &roleEnv{url: ns.ClientURL(), release: make(chan struct{})}
	t.Cleanup(func() {
		select {
		case <-e.release:
		default:
			close(e.release)
		}
	})

	// A snapshot every 5 journal events puts the snapshot store to use.
	e.coordinator, e.leader = e.startCoordinator(t, "auth-coordinator", func(c *coordinator.Config) { c.SnapshotEvery = 5 })

	e.worker = connectAs(t, e.url, "worker")
	w, err := worker.New(e.worker.nc, worker.Config{Name: authWorkerName, MaxJobs: 4, HeartbeatInterval: 200 * time.Millisecond, Logger: testLogger()})
	if err != nil {
		t.Fatalf("worker.New: %v", err)
	}
	handlers := map[string]worker.Handler{"echo": echoHandler, "gate": e.gate}
	for name, h := range handlers {
		if err := w.Handle(name, messages.Resources{}, h); err != nil {
			t.Fatalf("Handle %s: %v", name, err)
		}
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatalf("worker Start as user worker: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := w.Stop(ctx); err != nil {
			t.Errorf("worker Stop: %v", err)
		}
	})
	return e
}

// startCoordinator starts a coordinator on its own connection as user
// coordinator. The first one started leads; later ones are standbys. tune
// adjusts the config.
func (e *roleEnv) startCoordinator(t *testing.T, name string, tune func(*coordinator.Config)) (*roleConn, *coordinator.Coordinator) {
	t.Helper()
	rc := connectAs(t, e.url, "coordinator")
	cfg := coordinator.Config{Name: name, Logger: testLogger()}
	tune(&cfg)
	coord, err := coordinator.New(rc.nc, cfg)
	if err != nil {
		t.Fatalf("coordinator.New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := coord.Start(ctx); err != nil {
		t.Fatalf("coordinator %s Start as user coordinator: %v\npermission violations:\n%s", name, err, strings.Join(rc.violations.list(), "\n"))
	}
	t.Cleanup(func() { stopCoordinator(t, coord) })
	return rc, coord
}

// echoHandler writes three log lines and returns its kwargs.
func echoHandler(_ context.Context, job *messages.Job, r worker.Reporter) (any, error) {
	for i := 1; i <= 3; i++ {
		r.Log(messages.LogPlugin, "info", fmt.Sprintf("echo line %d", i))
	}
	return job.Kwargs.Value()
}

// gate blocks each job until the test ends or the job is cancelled.
func (e *roleEnv) gate(ctx context.Context, _ *messages.Job, _ worker.Reporter) (any, error) {
	select {
	case <-e.release:
		return "released", nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// waitWorkerReady waits until the coordinator lists the worker as ready.
func waitWorkerReady(t *testing.T, c *client.Client, name string) {
	t.Helper()
	pollUntil(t, 10*time.Second, "worker "+name+" ready", func() bool {
		ws, err := c.Workers(context.Background())
		if err != nil {
			return false
		}
		return slices.ContainsFunc(ws, func(w messages.WorkerState) bool {
			return w.Info.Name == name && w.Status == "ready"
		})
	})
}

// checkNoViolations fails the test if any of the connections got a
// permission violation: each role must have every permission it uses.
func checkNoViolations(t *testing.T, conns map[string]*roleConn) {
	t.Helper()
	for user, rc := range conns {
		if got := rc.violations.list(); len(got) > 0 {
			t.Errorf("user %s got permission violations:\n%s", user, strings.Join(got, "\n"))
		}
	}
}

func TestClientRoleSubmitsWaitsAndReadsLogs(t *testing.T) {
	e := newRoleEnv(t)
	cl := connectAs(t, e.url, "client")
	c := cl.newClient(t, 5*time.Second)
	waitWorkerReady(t, c, authWorkerName)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	id, err := c.Submit(ctx, "echo", map[string]any{"word": "hello"})
	if err != nil {
		t.Fatalf("submit as client: %v", err)
	}
	job, err := c.WaitForJob(ctx, id)
	if err != nil {
		t.Fatalf("wait as client: %v", err)
	}
	if job.Status != messages.StatusCompleted {
		t.Fatalf("job %s ended %s: %s", id, job.Status, job.Error)
	}
	result, err := job.Result.Value()
	if err != nil {
		t.Fatalf("decode result: %v", err)
	}
	if m, _ := result.(map[string]any); m["word"] != "hello" {
		t.Errorf("result = %v, want word=hello", result)
	}

	logs, err := c.Logs(ctx, id, -1)
	if err != nil {
		t.Fatalf("logs as client: %v", err)
	}
	var texts []string
	for _, l := range logs.Lines {
		texts = append(texts, l.Text)
	}
	for i := 1; i <= 3; i++ {
		if want := fmt.Sprintf("echo line %d", i); !slices.Contains(texts, want) {
			t.Errorf("logs reply %q lacks %q", texts, want)
		}
	}

	var followed []string
	if err := c.FollowLogs(ctx, id, -1, func(l messages.LogLine) { followed = append(followed, l.Text) }); err != nil {
		t.Fatalf("follow logs as client: %v", err)
	}
	if !slices.Contains(followed, "echo line 3") {
		t.Errorf("followed log %q lacks %q", followed, "echo line 3")
	}

	var kinds []messages.EventKind
	watchCtx, stopWatch := context.WithTimeout(ctx, 5*time.Second)
	defer stopWatch()
	err = c.Watch(watchCtx, client.WatchFilter{JobID: id, DeliverAll: true}, func(ev messages.Event) error {
		kinds = append(kinds, ev.Kind)
		if ev.Kind == messages.EventCompleted {
			return errWatchDone
		}
		return nil
	})
	if !errors.Is(err, errWatchDone) {
		t.Fatalf("watch as client: %v (events %v)", err, kinds)
	}
	if !slices.Contains(kinds, messages.EventSubmitted) {
		t.Errorf("watched events %v lack %s", kinds, messages.EventSubmitted)
	}

	if _, err := c.State(ctx, messages.StateRequest{}); err != nil {
		t.Errorf("state as client: %v", err)
	}

	// Large jobs make a snapshot of some megabytes, which the standby reads
	// with flow control.
	blob := strings.Repeat("x", 150<<10)
	for i := range 6 {
		big, err := c.Submit(ctx, "echo", map[string]any{"blob": blob, "i": i})
		if err != nil {
			t.Fatalf("submit a large job as client: %v", err)
		}
		if _, err := c.WaitForJob(ctx, big); err != nil {
			t.Fatalf("wait for a large job: %v", err)
		}
	}

	// A standby takes over when the leader stops: it loads the snapshot,
	// replays the journal, holds the lease and, with a short retention,
	// purges the journal. That uses the rest of the coordinator's
	// permissions.
	standbyConn, standby := e.startCoordinator(t, "auth-standby", func(c *coordinator.Config) {
		c.SnapshotEvery = 5
		c.EventRetention = 500 * time.Millisecond
	})
	if standby.IsLeader() {
		t.Fatal("the second coordinator leads while the first one runs")
	}
	stopCoordinator(t, e.leader)
	pollUntil(t, 10*time.Second, "the standby to lead", standby.IsLeader)
	next, err := c.Submit(ctx, "echo", map[string]any{"word": "again"})
	if err != nil {
		t.Fatalf("submit after the handover: %v", err)
	}
	if job, err := c.WaitForJob(ctx, next); err != nil || job.Status != messages.StatusCompleted {
		t.Fatalf("job %s after the handover: %v, status %s", next, err, job.Status)
	}
	events, err := jsFor(t, standbyConn).Stream(ctx, "JQ_EVENTS")
	if err != nil {
		t.Fatalf("stream JQ_EVENTS: %v", err)
	}
	pollUntil(t, 10*time.Second, "the standby to purge old events from JQ_EVENTS", func() bool {
		info, err := events.Info(ctx)
		return err == nil && info.State.FirstSeq > 1
	})
	checkNoViolations(t, map[string]*roleConn{
		"client": cl, "coordinator": e.coordinator, "standby coordinator": standbyConn, "worker": e.worker,
	})
}

var errWatchDone = errors.New("watched the completed event")

func TestClientRoleCannotActAsWorker(t *testing.T) {
	e := newRoleEnv(t)
	cl := connectAs(t, e.url, "client")
	c := cl.newClient(t, 5*time.Second)
	waitWorkerReady(t, c, authWorkerName)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	id, err := c.Submit(ctx, "gate", nil)
	if err != nil {
		t.Fatalf("submit as client: %v", err)
	}
	pollUntil(t, 10*time.Second, "job "+id+" running", func() bool {
		j, err := c.Get(ctx, id)
		return err == nil && j.Status == messages.StatusRunning
	})
	running, err := c.Get(ctx, id)
	if err != nil {
		t.Fatalf("get: %v", err)
	}

	// A forged final report for the running job, as its own worker would
	// send it, and a heartbeat of a worker that does not exist.
	report := messages.MustEncode(&messages.Report{
		V: messages.ProtocolVersion, Kind: messages.ReportCompleted, Worker: authWorkerName,
		JobID: id, Attempt: running.Attempt, Time: time.Now(),
	})
	heartbeat := messages.MustEncode(&messages.Heartbeat{
		V: messages.ProtocolVersion, Time: time.Now(),
		Info: messages.WorkerInfo{Name: "forged-worker", Instance: "forged", MaxJobs: 8},
	})
	forbidden := []struct {
		subject string
		data    []byte
	}{
		{"jq.wrk.report", report},
		{"jq.wrk.hb", heartbeat},
		// Events and log lines go into the streams only through the
		// coordinator and the workers.
		{"jq.evt.gate." + id + ".completed", report},
		{"jq.log." + id, []byte("forged line")},
		{"jq.api.drain", nil},
		{"$JS.API.STREAM.DELETE.JQ_EVENTS", nil},
		{"$JS.API.STREAM.PURGE.JQ_EVENTS", nil},
	}
	for _, f := range forbidden {
		if err := cl.nc.Publish(f.subject, f.data); err != nil {
			t.Fatalf("publish %s: %v", f.subject, err)
		}
	}
	if err := cl.nc.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	for _, f := range forbidden {
		cl.violations.expect(t, "Publish", f.subject)
	}

	// Receiving worker commands would hand the client other users' jobs.
	if _, err := cl.nc.SubscribeSync("jq.wrk.cmd.*"); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	cl.violations.expect(t, "Subscription", "jq.wrk.cmd.*")

	// Nothing forged took effect: the job still runs, the forged worker is
	// unknown and the journal stream still exists.
	after, err := c.Get(ctx, id)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if after.Status != messages.StatusRunning {
		t.Errorf("job %s is %s after the forged report, want running", id, after.Status)
	}
	ws, err := c.Workers(ctx)
	if err != nil {
		t.Fatalf("workers: %v", err)
	}
	for _, w := range ws {
		if w.Info.Name == "forged-worker" {
			t.Errorf("the forged heartbeat registered worker %s", w.Info.Name)
		}
	}
	info, err := jsFor(t, e.coordinator).Stream(ctx, "JQ_EVENTS")
	if err != nil {
		t.Fatalf("stream JQ_EVENTS after the forged delete: %v", err)
	}
	if info.CachedInfo().State.Msgs == 0 {
		t.Error("stream JQ_EVENTS is empty after the forged purge")
	}
	checkNoViolations(t, map[string]*roleConn{"coordinator": e.coordinator, "worker": e.worker})
}

func TestWorkerRoleCannotSubmitOrReadEvents(t *testing.T) {
	e := newRoleEnv(t)
	cl := connectAs(t, e.url, "client")
	waitWorkerReady(t, cl.newClient(t, 5*time.Second), authWorkerName)

	// The worker role's own connection, used as a client would use it.
	wk := connectAs(t, e.url, "worker")
	// The server drops denied requests without a reply, so the client
	// would retry them until its retry time ends.
	as := wk.newClient(t, 200*time.Millisecond, client.WithRetry(0))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	_, err := as.Submit(ctx, "echo", map[string]any{"word": "forged"})
	if err == nil {
		t.Fatal("submit as worker succeeded, want a permissions violation")
	}
	wk.violations.expect(t, "Publish", "jq.api.submit")

	_, err = as.Cancel(ctx, "0190a8e0-0000-7000-8000-000000000000")
	if err == nil {
		t.Fatal("cancel as worker succeeded, want a permissions violation")
	}
	wk.violations.expect(t, "Publish", "jq.api.cancel")

	watchCtx, stopWatch := context.WithTimeout(ctx, 2*time.Second)
	defer stopWatch()
	err = as.Watch(watchCtx, client.WatchFilter{}, func(messages.Event) error { return nil })
	if err == nil {
		t.Fatal("watch as worker returned no error")
	}
	wk.violations.expect(t, "Publish", "$JS.API.CONSUMER.CREATE.JQ_EVENTS.")

	// A worker that could subscribe to the API would see every request.
	if _, err := wk.nc.SubscribeSync("jq.api.>"); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	wk.violations.expect(t, "Subscription", "jq.api.>")

	st, err := cl.newClient(t, 5*time.Second).State(ctx, messages.StateRequest{})
	if err != nil {
		t.Fatalf("state: %v", err)
	}
	if st.Stats.Submitted != 0 {
		t.Errorf("%d jobs submitted, want 0 after the worker's submit", st.Stats.Submitted)
	}
}

func TestObserverRoleReadsButCannotChange(t *testing.T) {
	e := newRoleEnv(t)
	cl := connectAs(t, e.url, "client")
	c := cl.newClient(t, 5*time.Second)
	waitWorkerReady(t, c, authWorkerName)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	done, err := c.Submit(ctx, "echo", map[string]any{"word": "seen"})
	if err != nil {
		t.Fatalf("submit as client: %v", err)
	}
	if _, err := c.WaitForJob(ctx, done); err != nil {
		t.Fatalf("wait: %v", err)
	}
	// No worker runs "absent", so this job stays pending.
	pending, err := c.Submit(ctx, "absent", nil, client.Priority(1))
	if err != nil {
		t.Fatalf("submit as client: %v", err)
	}

	ob := connectAs(t, e.url, "observer")
	o := ob.newClient(t, 5*time.Second)

	job, err := o.WaitForJob(ctx, done)
	if err != nil {
		t.Fatalf("wait as observer: %v", err)
	}
	if job.Status != messages.StatusCompleted {
		t.Errorf("observer sees job %s %s, want completed", done, job.Status)
	}
	st, err := o.State(ctx, messages.StateRequest{})
	if err != nil {
		t.Fatalf("state as observer: %v", err)
	}
	if st.Stats.Completed != 1 || st.Stats.Pending != 1 {
		t.Errorf("observer sees %d completed and %d pending, want 1 and 1", st.Stats.Completed, st.Stats.Pending)
	}
	if _, err := o.Workers(ctx); err != nil {
		t.Errorf("workers as observer: %v", err)
	}
	logs, err := o.Logs(ctx, done, -1)
	if err != nil {
		t.Fatalf("logs as observer: %v", err)
	}
	if len(logs.Lines) != 3 {
		t.Errorf("observer reads %d log lines, want 3", len(logs.Lines))
	}
	var kinds []messages.EventKind
	err = o.Watch(ctx, client.WatchFilter{JobID: done, DeliverAll: true}, func(ev messages.Event) error {
		kinds = append(kinds, ev.Kind)
		if ev.Kind == messages.EventCompleted {
			return errWatchDone
		}
		return nil
	})
	if !errors.Is(err, errWatchDone) {
		t.Fatalf("watch as observer: %v (events %v)", err, kinds)
	}
	checkNoViolations(t, map[string]*roleConn{"observer": ob})

	// Denied requests get no reply, so they end with the request timeout.
	denied := ob.newClient(t, 200*time.Millisecond, client.WithRetry(0))
	if _, err := denied.Cancel(ctx, pending); err == nil {
		t.Error("cancel as observer succeeded")
	}
	ob.violations.expect(t, "Publish", "jq.api.cancel")
	if _, err := denied.Reorder(ctx, pending, 9); err == nil {
		t.Error("reorder as observer succeeded")
	}
	ob.violations.expect(t, "Publish", "jq.api.reorder")
	if _, err := denied.Submit(ctx, "echo", nil); err == nil {
		t.Error("submit as observer succeeded")
	}
	ob.violations.expect(t, "Publish", "jq.api.submit")
	if _, err := denied.SubmitBatch(ctx, []messages.SubmitRequest{{PluginName: "echo"}}); err == nil {
		t.Error("submit_batch as observer succeeded")
	}
	ob.violations.expect(t, "Publish", "jq.api.submit_batch")

	after, err := c.Get(ctx, pending)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if after.Status != messages.StatusPending || after.Priority != 1 {
		t.Errorf("job %s is %s with priority %d after the observer's cancel and reorder, want pending with priority 1",
			pending, after.Status, after.Priority)
	}
}

// testLogging reports whether JETQUEUE_TEST_LOG is set, which also makes
// testLogger print.
func testLogging() bool { return os.Getenv("JETQUEUE_TEST_LOG") != "" }

// jsFor returns a JetStream context on rc.
func jsFor(t *testing.T, rc *roleConn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(rc.nc)
	if err != nil {
		t.Fatalf("jetstream.New: %v", err)
	}
	return js
}

package test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetqueue/jetqueue/client"
	"github.com/jetqueue/jetqueue/coordinator"
	"github.com/jetqueue/jetqueue/internal/cli"
	"github.com/jetqueue/jetqueue/messages"
	"github.com/jetqueue/jetqueue/worker"
)

// testCluster is the three shipped node configs running as a cluster on
// loopback.
type testCluster struct {
	servers []*server.Server // servers[i] runs cluster-node<i+1>.conf
	admin   *roleConn
	js      jetstream.JetStream
}

// freePorts returns n loopback ports that were free a moment ago. The route
// ports of a cluster must be known before its first server starts, because
// every node lists every route.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var listeners []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range listeners {
		l.Close()
	}
	return ports
}

// startCluster starts the three nodes and waits until JetStream has a meta
// leader.
func startCluster(t *testing.T) *testCluster {
	t.Helper()
	setRolePasswords(t)
	ports := freePorts(t, 3)
	routes := make([]*url.URL, len(ports))
	for i, p := range ports {
		routes[i] = &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", p)}
	}

	c := &testCluster{}
	for i, p := range ports {
		c.servers = append(c.servers, startNode(t, nodeOptions(t, i+1, p, routes)))
	}

	c.admin = connectAs(t, c.urlsFrom(2), "admin", nats.DontRandomize())
	c.js = jsFor(t, c.admin)
	pollUntil(t, 30*time.Second, "a JetStream meta leader", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := c.js.AccountInfo(ctx)
		return err == nil
	})
	return c
}

// urlsFrom returns the client URLs of every node, node first, as the
// comma-separated list that nats.Connect and --nats take.
func (c *testCluster) urlsFrom(node int) string {
	var urls []string
	for i := range c.servers {
		urls = append(urls, c.servers[(node+i)%len(c.servers)].ClientURL())
	}
	return strings.Join(urls, ",")
}

// streamInfo reads a stream's info as the admin user.
func (c *testCluster) streamInfo(t *testing.T, name string) *jetstream.StreamInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := c.js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	return s.CachedInfo()
}

// moveStreamLeader requests leader step-downs of stream until serverName
// leads it.
func (c *testCluster) moveStreamLeader(t *testing.T, stream, serverName string) {
	t.Helper()
	request := fmt.Appendf(nil, `{"placement":{"preferred":%q}}`, serverName)
	lastTry := time.Time{}
	pollUntil(t, 20*time.Second, "the "+stream+" leader on "+serverName, func() bool {
		info := c.streamInfo(t, stream)
		if info.Cluster != nil && info.Cluster.Leader == serverName {
			return true
		}
		if time.Since(lastTry) > time.Second {
			lastTry = time.Now()
			if _, err := c.admin.nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, request, 5*time.Second); err != nil {
				t.Logf("step down %s leader: %v", stream, err)
			}
		}
		return false
	})
}

// syncBuffer is a bytes.Buffer safe for concurrent writes and reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// runCoordinatorCommand runs `jetqueue coordinator` in this process until
// the test ends, and returns its stderr.
func runCoordinatorCommand(t *testing.T, args ...string) *syncBuffer {
	t.Helper()
	stderr := &syncBuffer{}
	var out io.Writer = stderr
	if testLogging() {
		out = io.MultiWriter(stderr, os.Stderr)
	}

	ctx, stop := context.WithCancel(context.Background())
	exit := make(chan int, 1)
	go func() { exit <- cli.Main(ctx, append([]string{"coordinator"}, args...), io.Discard, out) }()
	t.Cleanup(func() {
		stop()
		select {
		case code := <-exit:
			if code != cli.ExitOK {
				t.Errorf("jetqueue coordinator exited %d; stderr:\n%s", code, stderr)
			}
		case <-time.After(40 * time.Second):
			t.Errorf("jetqueue coordinator did not stop within 40s; stderr:\n%s", stderr)
		}
	})
	return stderr
}

// startRecorder records every start of a job in the in-process handlers.
type startRecorder struct {
	mu       sync.Mutex
	attempts map[string][]int // job id to the attempts started, in order
	finished atomic.Int64     // handler calls that returned a result
}

// handler runs a job for 5 to 25 ms and returns its attempt.
func (r *startRecorder) handler(ctx context.Context, job *messages.Job, _ worker.Reporter) (any, error) {
	r.mu.Lock()
	r.attempts[job.ID] = append(r.attempts[job.ID], job.Attempt)
	r.mu.Unlock()

	select {
	case <-time.After(time.Duration(5+rand.IntN(20)) * time.Millisecond):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	r.finished.Add(1)
	return job.Attempt, nil
}

func (r *startRecorder) runs(id string) []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.attempts[id]...)
}

// startClusterWorker starts a worker connected to urls in their order.
func startClusterWorker(t *testing.T, urls, name string, runs *startRecorder) *roleConn {
	t.Helper()
	rc := connectAs(t, urls, "worker", nats.DontRandomize())
	w, err := worker.New(rc.nc, worker.Config{Name: name, MaxJobs: 8, HeartbeatInterval: 500 * time.Millisecond, Logger: testLogger()})
	if err != nil {
		t.Fatalf("worker.New: %v", err)
	}
	if err := w.Handle("count", messages.Resources{}, runs.handler); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatalf("worker %s Start: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := w.Stop(ctx); err != nil {
			t.Errorf("worker %s Stop: %v", name, err)
		}
	})
	return rc
}

// submitAll submits one job of plugin "count" per key, in batches, and
// returns the job id of each key. A batch that fails, as while the cluster
// elects a new stream leader, is sent again: the idempotency keys make the
// retry return the ids of jobs the failed attempt queued.
func submitAll(t *testing.T, c *client.Client, keys []string, ids map[string]string) {
	t.Helper()
	const batchSize = 100
	for start := 0; start < len(keys); start += batchSize {
		batch := keys[start:min(start+batchSize, len(keys))]
		reqs := make([]messages.SubmitRequest, len(batch))
		// Ten attempts, so that jobs re-queued by the failover cannot run
		// out of them.
		for i, key := range batch {
			reqs[i] = messages.SubmitRequest{PluginName: "count", IdempotencyKey: key, MaxAttempts: 10}
		}

		deadline := time.Now().Add(40 * time.Second)
		for {
			results, err := c.SubmitBatch(context.Background(), reqs)
			if err == nil {
				err = collectIDs(batch, results, ids)
			}
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("submit batch %s..%s: %v", batch[0], batch[len(batch)-1], err)
			}
			t.Logf("submit batch %s..%s failed, retrying: %v", batch[0], batch[len(batch)-1], err)
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// collectIDs stores the id of each key, and fails when a result carries an
// error or when a retry returned another id for a key than before.
func collectIDs(keys []string, results []messages.SubmitResult, ids map[string]string) error {
	for i, r := range results {
		if r.Error != nil {
			return fmt.Errorf("job %s: %w", keys[i], r.Error)
		}
	}
	for i, r := range results {
		if old, ok := ids[keys[i]]; ok && old != r.ID {
			return fmt.Errorf("idempotency key %s returned job %s, earlier %s", keys[i], r.ID, old)
		}
		ids[keys[i]] = r.ID
	}
	return nil
}

func TestClusterSurvivesLossOfStreamLeader(t *testing.T) {
	began := time.Now()
	c := startCluster(t)

	// Coordinator a leads, from node 1. Coordinator b, a standby, is the
	// command line with --replicas 3. A standby creates or updates the
	// leader bucket and the snapshot store as it starts, so their replica
	// count shows that the flag took effect.
	coordConn := connectAs(t, c.urlsFrom(0), "coordinator", nats.DontRandomize())
	coordA, err := coordinator.New(coordConn.nc, coordinator.Config{Name: "coordinator-a", Replicas: 3, Logger: testLogger()})
	if err != nil {
		t.Fatalf("coordinator.New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := coordA.Start(ctx); err != nil {
		t.Fatalf("coordinator a Start: %v", err)
	}
	t.Cleanup(func() { stopCoordinator(t, coordA) })
	if !coordA.IsLeader() {
		t.Fatal("coordinator a, the first one, does not lead")
	}
	stderrB := runCoordinatorCommand(t, "--nats", c.urlsFrom(1), "--user", "coordinator",
		"--password", rolePasswords["coordinator"].password, "--replicas", "3", "--name", "coordinator-b")
	pollUntil(t, 20*time.Second, "coordinator b to start as a standby", func() bool {
		return strings.Contains(stderrB.String(), "coordinator started as a standby")
	})
	for _, stream := range []string{"JQ_EVENTS", "JQ_LOGS", "KV_JQ_LEADER", "OBJ_JQ_SNAPSHOTS"} {
		if got := c.streamInfo(t, stream).Config.Replicas; got != 3 {
			t.Errorf("stream %s has %d replicas, want 3", stream, got)
		}
	}

	// Node 1 holds the JQ_EVENTS leader, coordinator a, worker gpu-1 and
	// the client, so losing it cuts every kind of connection at once.
	c.moveStreamLeader(t, "JQ_EVENTS", "nats-1")
	runs := &startRecorder{attempts: map[string][]int{}}
	worker1 := startClusterWorker(t, c.urlsFrom(0), "gpu-1", runs)
	worker2 := startClusterWorker(t, c.urlsFrom(1), "gpu-2", runs)
	cl := connectAs(t, c.urlsFrom(0), "client", nats.DontRandomize())
	jq := cl.newClient(t, 5*time.Second)
	waitWorkerReady(t, jq, "gpu-1")
	waitWorkerReady(t, jq, "gpu-2")

	const jobs = 1000
	keys := make([]string, jobs)
	for i := range keys {
		keys[i] = fmt.Sprintf("cluster-job-%04d", i)
	}
	ids := make(map[string]string, jobs)
	submitAll(t, jq, keys[:jobs/2], ids)

	pollUntil(t, 20*time.Second, "150 finished runs", func() bool { return runs.finished.Load() >= 150 })
	if leader := c.streamInfo(t, "JQ_EVENTS").Cluster.Leader; leader != "nats-1" {
		t.Fatalf("the JQ_EVENTS leader moved to %s before the stop", leader)
	}
	killedAt := time.Now()
	c.servers[0].Shutdown()
	t.Logf("stopped nats-1, the JQ_EVENTS leader, after %d finished runs", runs.finished.Load())

	submitAll(t, jq, keys[jobs/2:], ids)
	t.Logf("the second %d submits took %s from the stop", jobs/2, time.Since(killedAt).Round(time.Millisecond))

	stats := waitJobsEnded(t, jq, jobs, 45*time.Second)
	t.Logf("all jobs ended %s after the stop: %+v", time.Since(killedAt).Round(time.Millisecond), stats)

	if stats.Submitted != jobs || stats.Completed != jobs {
		t.Errorf("stats %+v: want %d submitted and %d completed", stats, jobs, jobs)
	}
	if len(ids) != jobs {
		t.Fatalf("%d job ids for %d keys", len(ids), jobs)
	}
	requeued := 0
	for _, key := range keys {
		id := ids[key]
		job, err := jq.Get(context.Background(), id)
		if err != nil {
			t.Errorf("get job %s (%s): %v", id, key, err)
			continue
		}
		if job.Status != messages.StatusCompleted {
			t.Errorf("job %s (%s) is %s: %s", id, key, job.Status, job.Error)
			continue
		}
		if len(job.Requeues) > 0 {
			requeued++
		}
		checkRunsAccounted(t, job, runs.runs(id))
	}

	info := c.streamInfo(t, "JQ_EVENTS")
	if info.Cluster == nil || info.Cluster.Leader == "" || info.Cluster.Leader == "nats-1" {
		t.Fatalf("JQ_EVENTS cluster after the stop: %+v, want a leader other than nats-1", info.Cluster)
	}
	t.Logf("%d of %d jobs were re-queued at least once; JQ_EVENTS leader now %s and holds %d events of %d bytes; test took %s",
		requeued, jobs, info.Cluster.Leader, info.State.Msgs, info.State.Bytes, time.Since(began).Round(time.Millisecond))
	checkNoViolations(t, map[string]*roleConn{"client": cl, "coordinator a": coordConn, "worker gpu-1": worker1, "worker gpu-2": worker2})
}

// waitJobsEnded waits until n jobs have ended and returns the counters.
// On a timeout it reports what the queue looked like last.
func waitJobsEnded(t *testing.T, jq *client.Client, n int, timeout time.Duration) messages.Stats {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last messages.StateReply
	var lastErr error
	for time.Now().Before(deadline) {
		st, err := jq.State(context.Background(), messages.StateRequest{HistoryLimit: 1, PendingLimit: 3})
		lastErr = err
		if err == nil {
			last = st
			if st.Stats.Completed+st.Stats.Failed+st.Stats.Cancelled >= n {
				return st.Stats
			}
		}
		time.Sleep(50 * time.Millisecond)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "timed out after %s waiting for %d jobs to end; last state request error: %v\n", timeout, n, lastErr)
	fmt.Fprintf(&b, "last state from %s: %+v\n", last.Leader, last.Stats)
	for _, p := range last.Pending {
		fmt.Fprintf(&b, "pending #%d %s: %s\n", p.Position, p.Job.ID, p.Job.PendingReason)
	}
	for _, j := range last.Running {
		fmt.Fprintf(&b, "running %s on %s attempt %d since %v\n", j.ID, j.Worker, j.Attempt, j.StartedAt)
	}
	for _, w := range last.Workers {
		fmt.Fprintf(&b, "worker %s %s, %d jobs, last seen %s\n", w.Info.Name, w.Status, len(w.Jobs), w.LastSeen.Format(time.RFC3339Nano))
	}
	t.Fatal(b.String())
	return messages.Stats{}
}

// checkRunsAccounted checks that the record of a completed job explains
// every start of it that the handlers saw. Delivery is at least once, so a
// job may start more than once, but each start other than the one that
// completed it must have ended in a re-queue.
func checkRunsAccounted(t *testing.T, job messages.Job, attempts []int) {
	t.Helper()
	if len(attempts) == 0 {
		t.Errorf("job %s completed without a run", job.ID)
		return
	}
	if len(attempts) > 1+len(job.Requeues) {
		t.Errorf("job %s started %d times (attempts %v) but records %d re-queues", job.ID, len(attempts), attempts, len(job.Requeues))
	}
	ranFinal := false
	for _, a := range attempts {
		if a < 1 || a > job.Attempt {
			t.Errorf("job %s started attempt %d, outside 1..%d of its record", job.ID, a, job.Attempt)
		}
		ranFinal = ranFinal || a == job.Attempt
	}
	if !ranFinal {
		t.Errorf("job %s completed attempt %d, but the handlers saw attempts %v", job.ID, job.Attempt, attempts)
	}
}

func TestDeployNATSConfigsParse(t *testing.T) {
	setRolePasswords(t)
	var first *server.Options
	for n := 1; n <= 3; n++ {
		path := filepath.Join(deployNATSDir, fmt.Sprintf("cluster-node%d.conf", n))
		opts, err := server.ProcessConfigFile(path)
		if err != nil {
			t.Fatalf("parse %s: %v", path, err)
		}

		if want := fmt.Sprintf("nats-%d", n); opts.ServerName != want {
			t.Errorf("%s: server_name %q, want %q", path, opts.ServerName, want)
		}
		if !opts.JetStream || opts.StoreDir == "" {
			t.Errorf("%s: JetStream %v with store %q, want it on with a store directory", path, opts.JetStream, opts.StoreDir)
		}
		if opts.Cluster.Name != "jetqueue" || opts.Cluster.Port != 6222 || len(opts.Routes) != 3 {
			t.Errorf("%s: cluster %q on port %d with %d routes, want jetqueue on 6222 with 3", path, opts.Cluster.Name, opts.Cluster.Port, len(opts.Routes))
		}
		if opts.SystemAccount != "SYS" {
			t.Errorf("%s: system account %q, want SYS", path, opts.SystemAccount)
		}

		users := map[string]*server.User{}
		for _, u := range opts.Users {
			users[u.Username] = u
		}
		for name, p := range rolePasswords {
			u, ok := users[name]
			if !ok {
				t.Errorf("%s: no user %s", path, name)
				continue
			}
			if u.Password != p.password {
				t.Errorf("%s: user %s does not take its password from %s", path, name, p.env)
			}
		}
		for _, role := range []string{"coordinator", "worker", "client", "observer"} {
			if u := users[role]; u != nil && (u.Permissions == nil || u.Account == nil || u.Account.Name != "JETQUEUE") {
				t.Errorf("%s: user %s has permissions %v in account %v, want the role's permissions in JETQUEUE", path, role, u.Permissions, u.Account)
			}
		}

		if first == nil {
			first = opts
			continue
		}
		for _, role := range []string{"coordinator", "worker", "client", "observer"} {
			if !reflect.DeepEqual(userPermissions(first, role), userPermissions(opts, role)) {
				t.Errorf("%s: user %s has other permissions than in cluster-node1.conf", path, role)
			}
		}
	}
}

// userPermissions returns the permissions of user name in opts, or nil.
func userPermissions(opts *server.Options, name string) *server.Permissions {
	for _, u := range opts.Users {
		if u.Username == name {
			return u.Permissions
		}
	}
	return nil
}

func TestDeployNATSConfigNeedsEveryPassword(t *testing.T) {
	setRolePasswords(t)
	// A config that parses without a password would let that user in with
	// an empty one.
	os.Unsetenv(rolePasswords["worker"].env)
	path := filepath.Join(deployNATSDir, "cluster-node1.conf")
	_, err := server.ProcessConfigFile(path)
	if err == nil {
		t.Fatalf("parse %s without %s succeeded, want an error", path, rolePasswords["worker"].env)
	}
	if !strings.Contains(err.Error(), rolePasswords["worker"].env) {
		t.Errorf("parse error %q does not name %s", err, rolePasswords["worker"].env)
	}
}

// configMapFile returns the text of one file of a ConfigMap manifest: the
// block scalar under "  name: |", without its four spaces of indentation.
func configMapFile(t *testing.T, manifest, name string) string {
	t.Helper()
	var lines []string
	inside := false
	for line := range strings.SplitSeq(manifest, "\n") {
		switch {
		case line == "  "+name+": |":
			inside = true
		case !inside:
		case line == "" || strings.HasPrefix(line, "    "):
			lines = append(lines, strings.TrimPrefix(line, "    "))
		default:
			inside = false
		}
		if !inside && len(lines) > 0 {
			break
		}
	}
	if len(lines) == 0 {
		t.Fatalf("the manifest has no ConfigMap file %s", name)
	}
	return strings.TrimRight(strings.Join(lines, "\n"), "\n") + "\n"
}

func TestDeployKubernetesNATSConfigParses(t *testing.T) {
	setRolePasswords(t)
	t.Setenv("POD_NAME", "nats-1")
	manifest, err := os.ReadFile("../deploy/kubernetes/nats.yaml")
	if err != nil {
		t.Fatalf("read the NATS manifest: %v", err)
	}
	roles, err := os.ReadFile(filepath.Join(deployNATSDir, "roles.conf"))
	if err != nil {
		t.Fatalf("read roles.conf: %v", err)
	}

	if got := configMapFile(t, string(manifest), "roles.conf"); got != string(roles) {
		t.Errorf("the ConfigMap's roles.conf differs from %s/roles.conf: copy the file into deploy/kubernetes/nats.yaml", deployNATSDir)
	}
	dir := t.TempDir()
	for _, name := range []string{"nats.conf", "roles.conf"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(configMapFile(t, string(manifest), name)), 0o600); err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
	}
	opts, err := server.ProcessConfigFile(filepath.Join(dir, "nats.conf"))
	if err != nil {
		t.Fatalf("parse the ConfigMap's nats.conf: %v", err)
	}

	if opts.ServerName != "nats-1" {
		t.Errorf("server_name %q, want the pod name nats-1", opts.ServerName)
	}
	if !opts.JetStream || opts.Cluster.Name != "jetqueue" || len(opts.Routes) != 3 {
		t.Errorf("JetStream %v, cluster %q with %d routes: want JetStream in cluster jetqueue with 3 routes", opts.JetStream, opts.Cluster.Name, len(opts.Routes))
	}
	node, err := server.ProcessConfigFile(filepath.Join(deployNATSDir, "cluster-node1.conf"))
	if err != nil {
		t.Fatalf("parse cluster-node1.conf: %v", err)
	}
	for _, role := range []string{"coordinator", "worker", "client", "observer", "admin", "system"} {
		if !reflect.DeepEqual(userPermissions(node, role), userPermissions(opts, role)) {
			t.Errorf("user %s has other permissions in Kubernetes than in cluster-node1.conf", role)
		}
		if userPermissions(opts, role) == nil && role != "admin" && role != "system" {
			t.Errorf("user %s is missing or has no permissions in Kubernetes", role)
		}
	}
}

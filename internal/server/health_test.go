package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/marina-redis/marina/internal/api"
	"github.com/marina-redis/marina/internal/client"
	"github.com/marina-redis/marina/internal/doctor"
	"github.com/marina-redis/marina/internal/health"
	"github.com/marina-redis/marina/internal/testutil"
)

// checkVia runs the check evaluation as `marina check` does, through
// node i's API.
func checkVia(tc *testCluster, i int, db string) health.Result {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	in, err := health.Gather(ctx, tc.client(i), db)
	if err != nil {
		return health.UnknownResult(err.Error())
	}
	return health.Evaluate(in, health.DefaultLimits())
}

// waitCheck waits until the check through node i gives code with a line
// containing every one of want.
func waitCheck(t *testing.T, tc *testCluster, i int, db string, code int, want ...string) health.Result {
	t.Helper()
	var res health.Result
	testutil.WaitFor(t, 30*time.Second, fmt.Sprintf("check %s %s", db, health.CodeName(code)), func() error {
		res = checkVia(tc, i, db)
		if res.Code != code {
			return fmt.Errorf("%s", res.Line())
		}
		for _, w := range want {
			if !strings.Contains(res.Line(), w) {
				return fmt.Errorf("%q lacks %q", res.Line(), w)
			}
		}
		return nil
	})
	return res
}

func TestHealthCheckAndDoctor(t *testing.T) {
	tc := newTestCluster(t, 3, 256<<20)
	ctx := testutil.Ctx(t, 3*time.Minute)
	c := tc.client(0)

	// Every node's doctor report, asked through another node.
	names := []string{doctor.NameOvercommit, doctor.NameTHP, doctor.NameNoFile, doctor.NameFileMax, doctor.NameSomaxconn, doctor.NameRedis}
	for i := range tc.nodes {
		via := tc.client((i + 1) % 3)
		rep, err := via.NodeDoctor(ctx, tc.cfgs[i].ID)
		if err != nil {
			t.Fatalf("doctor of %s via n%d: %v", tc.cfgs[i].ID, (i+1)%3+1, err)
		}
		if rep.Node != tc.cfgs[i].ID || len(rep.Checks) != len(names) {
			t.Fatalf("doctor of %s: %+v", tc.cfgs[i].ID, rep)
		}
		for j, ch := range rep.Checks {
			if ch.Name != names[j] || (ch.Status != doctor.OK && ch.Status != doctor.Warn) || ch.Value == "" || ch.Want == "" {
				t.Errorf("check %d: %+v", j, ch)
			}
		}
		// The node reads its own host: the redis-server it was started with.
		if v := rep.Checks[5].Value; !strings.Contains(v, tc.nodes[i].cfg.RedisServer) {
			t.Errorf("redis-server check %q, want the node's binary %s", v, tc.nodes[i].cfg.RedisServer)
		}
	}
	if rep, err := tc.client(1).LocalDoctor(ctx); err != nil || rep.Node != "n2" {
		t.Fatalf("local doctor of n2: %+v %v", rep, err)
	}
	var ae *client.Error
	if _, err := c.NodeDoctor(ctx, "nope"); !errors.As(err, &ae) || ae.Code != http.StatusNotFound || !strings.Contains(ae.Msg, "node nope not found") {
		t.Fatalf("unknown node: %v", err)
	}
	if _, err := client.New(tc.cfgs[0].Bind+":7000", "wrong-token", client.CAFile(tc.caFile())).NodeDoctor(ctx, "n2"); !errors.As(err, &ae) || ae.Code != http.StatusUnauthorized {
		t.Fatalf("wrong token: %v", err)
	}

	// A sharded database with replicas, and one without (nothing to fail
	// over to: its master's node going away stays critical).
	if _, err := c.CreateDB(ctx, api.CreateDBRequest{Name: "hc", Memory: 16 << 20, Shards: 2, Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateDB(ctx, api.CreateDBRequest{Name: "solo", Memory: 16 << 20}); err != nil {
		t.Fatal(err)
	}
	hc := tc.waitReady(c, "hc")
	solo := tc.waitReady(c, "solo")

	// The node's open-files target now counts the endpoints it serves.
	if rep, err := tc.client(2).NodeDoctor(ctx, "n1"); err != nil || !strings.Contains(rep.Checks[2].Want, "proxy: 2 endpoints") {
		t.Fatalf("doctor after creates: %+v %v", rep, err)
	}

	// Healthy, asked through every node (followers forward to the leader).
	for i := range tc.nodes {
		waitCheck(t, tc, i, "", health.OK, "MARINA OK - 3/3 nodes up, 2 databases, 3/3 shards with a master |", "instances_running=5;;;0;5")
	}
	waitCheck(t, tc, 1, "hc", health.OK, "database hc ready, 2/2 shards with a master, 4/4 instances running")
	if res := checkVia(tc, 0, "nope"); res.Code != health.Unknown || !strings.Contains(res.Line(), "MARINA UNKNOWN - database nope not found") {
		t.Fatalf("unknown db: %s", res.Line())
	}

	// A hung master (SIGSTOP) of a database without replicas: nothing to
	// fail over to, the check is CRITICAL until it answers again.
	sm := solo.Shards[0].Master
	pid := pidOf(tc, sm)
	if pid == 0 {
		t.Fatalf("no pid for %s", sm.ID)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	// The agent may report it "not answering" or, once it acts on the hang,
	// "starting": critical either way.
	res := waitCheck(t, tc, 2, "", health.Critical, fmt.Sprintf("MARINA CRITICAL - solo shard 0: master %s on %s ", sm.ID, sm.Node))
	t.Logf("master stopped: %s", res.Line())
	waitCheck(t, tc, 1, "solo", health.Critical, "0/1 instances running")
	waitCheck(t, tc, 0, "hc", health.OK)
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitCheck(t, tc, 0, "", health.OK, "3/3 shards with a master")

	// Stop the node holding hc's first master, with its redis-servers: hc
	// fails over and then only misses what ran there; the node is down.
	id := hc.Shards[0].Master.Node
	victim := tc.nodeIndex(id)
	onVictim := 0
	for _, in := range instances(hc) {
		if in.Node == id {
			onVictim++
		}
	}
	tc.nodes[victim].Stop()
	tc.nodes[victim] = nil
	live := (victim + 1) % 3
	res = waitCheck(t, tc, live, "hc", health.Warning, "on "+id+" down",
		fmt.Sprintf("2/2 shards with a master, %d/4 instances running", 4-onVictim))
	t.Logf("hc after stopping %s: %s", id, res.Line())
	if sm.Node == id {
		// solo's only instance went with the node.
		res = waitCheck(t, tc, live, "", health.Critical, fmt.Sprintf("solo shard 0: master %s on %s down", sm.ID, id), "node "+id+" down", "2/3 nodes up")
	} else {
		res = waitCheck(t, tc, live, "", health.Warning, "node "+id+" down", "2/3 nodes up, 2 databases, 3/3 shards with a master")
	}
	t.Logf("after stopping %s: %s", id, res.Line())

	// The stopped node's doctor report cannot be had: 502 or 503 with why.
	_, err := tc.client(live).NodeDoctor(ctx, id)
	if !errors.As(err, &ae) || (ae.Code != http.StatusBadGateway && ae.Code != http.StatusServiceUnavailable) || !strings.Contains(ae.Msg, "did not answer") {
		t.Fatalf("doctor of stopped node: %v", err)
	}
}

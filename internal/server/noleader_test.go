package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/marina-redis/marina/internal/api"
	"github.com/marina-redis/marina/internal/client"
	"github.com/marina-redis/marina/internal/testutil"
)

// A node that has lost its quorum answers the API at once: reads from its
// own copy of the state, marked as such; changes with a retry-safe refusal
// that the CLI turns into "no leader, retrying". Its agent fences its
// masters and its endpoint refuses writes to them; both lift once a leader
// confirms the node's state again.
func TestNoLeader(t *testing.T) {
	tc := newTestCluster(t, 3, 256<<20)
	ctx := context.Background()
	if _, err := tc.client(0).CreateDB(ctx, api.CreateDBRequest{Name: "nl", Memory: 16 << 20, Replicas: 1, Password: "nl-password-1"}); err != nil {
		t.Fatal(err)
	}
	db := tc.waitReady(tc.client(0), "nl")
	var s int // the survivor: the master's node
	for i := range tc.nodes {
		if tc.cfgs[i].ID == db.Shards[0].Master.Node {
			s = i
		}
	}
	ep := ""
	for _, e := range db.Endpoints {
		if strings.HasPrefix(e, tc.cfgs[s].Bind+":") {
			ep = e
		}
	}
	px := rc(ep, "", "nl-password-1")
	defer px.Close()
	direct := rc(db.Shards[0].Master.Addr, "", "nl-password-1")
	defer direct.Close()
	if err := px.Set(ctx, "before", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	for i := range tc.nodes {
		if i != s {
			tc.nodes[i].Stop()
			tc.nodes[i] = nil
		}
	}
	cl := tc.client(s)
	testutil.WaitFor(t, 10*time.Second, "no leader", func() error {
		if id := tc.nodes[s].Raft.LeaderID(); id != "" {
			return errors.New("leader " + id)
		}
		return nil
	})

	// Reads: answered from local state, marked, within the read budget.
	var local string
	cl.OnLocal = func(msg string, stale time.Duration) { local = msg }
	t0 := time.Now()
	got, err := cl.GetDB(ctx, "nl")
	if err != nil || got.Name != "nl" {
		t.Fatalf("db show without a leader: %v", err)
	}
	if took := time.Since(t0); took > 5*time.Second {
		t.Errorf("db show took %v without a leader", took)
	}
	if !strings.Contains(local, "no leader reachable") {
		t.Errorf("local read not marked: %q", local)
	}
	// Changes: refused as retry-safe, nothing applied.
	t0 = time.Now()
	err = cl.SetZonePriority(ctx, "z", 5)
	var ae *client.Error
	if !errors.As(err, &ae) || ae.Code != http.StatusServiceUnavailable || !ae.RetrySafe() || !strings.Contains(ae.Msg, "no leader") {
		t.Fatalf("a change without a leader: %v", err)
	}
	if took := time.Since(t0); took > 10*time.Second {
		t.Errorf("the refusal took %v", took)
	}
	// A client that retries says so and gives up after its time.
	retries := 0
	cl.RetryFor, cl.OnRetry = 4*time.Second, func(string) { retries++ }
	if err := cl.SetZonePriority(ctx, "z", 5); err == nil || retries == 0 {
		t.Errorf("retrying client: %v after %d retries", err, retries)
	}
	cl.RetryFor = 0

	// The master is fenced by its agent, and its node's endpoint refuses
	// writes to it with a clear error; reads go on.
	testutil.WaitFor(t, 5*time.Second, "master fenced", func() error {
		if err := direct.Set(ctx, "k", "v", 0).Err(); err == nil || !strings.Contains(err.Error(), "NOREPLICAS") {
			return errors.New("direct write answered " + errString(err))
		}
		return nil
	})
	if err := px.Set(ctx, "k", "v", 0).Err(); err == nil || !strings.HasPrefix(err.Error(), "READONLY") || !strings.Contains(err.Error(), "lost contact") {
		t.Errorf("endpoint write on a fenced node: %v", err)
	}
	if v, err := px.Get(ctx, "before").Result(); err != nil || v != "1" {
		t.Errorf("endpoint read on a fenced node: %q %v", v, err)
	}

	// Quorum back: the fence lifts once a leader confirms the node's state.
	ctx60 := testutil.Ctx(t, 60*time.Second)
	for i := range tc.nodes {
		if i != s {
			nd, err := Start(ctx60, tc.cfgs[i])
			if err != nil {
				t.Fatal(err)
			}
			tc.nodes[i] = nd
		}
	}
	testutil.WaitFor(t, 30*time.Second, "writes again", func() error {
		if err := px.Set(ctx, "after", "1", 0).Err(); err != nil {
			return err
		}
		return direct.Set(ctx, "after2", "1", 0).Err()
	})
	if err := cl.SetZonePriority(ctx, "z", 5); err != nil {
		t.Fatalf("a change with a leader again: %v", err)
	}
}

func errString(err error) string {
	if err == nil {
		return "OK"
	}
	return err.Error()
}

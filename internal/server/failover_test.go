package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/api"
	"github.com/marina-redis/marina/internal/client"
	"github.com/marina-redis/marina/internal/testutil"
)

func pidOf(tc *testCluster, inst api.Instance) int {
	for _, s := range tc.nodes[tc.nodeIndex(inst.Node)].Agent.Statuses() {
		if s.ID == inst.ID {
			return s.PID
		}
	}
	return 0
}

// waitNewMaster waits until the shard's master is no longer old and serves
// writes, and returns the database as then.
func waitNewMaster(t *testing.T, tc *testCluster, c *client.Client, name string, shard int, old string) *api.DB {
	t.Helper()
	var db *api.DB
	testutil.WaitFor(t, 15*time.Second, "new master", func() error {
		var err error
		db, err = c.GetDB(context.Background(), name)
		if err != nil {
			return err
		}
		m := db.Shards[shard].Master
		if m.ID == "" || m.ID == old {
			return fmt.Errorf("master still %q", m.ID)
		}
		cl := tc.rc(m.Addr, "", db.Password)
		defer cl.Close()
		return cl.Set(context.Background(), "probe", "1", 0).Err()
	})
	return db
}

func TestFailover(t *testing.T) {
	tc := newTestClusterWith(t, 3, 256<<20, func(i int, c *Config) { c.DownAfter = time.Second })
	ctx := testutil.Ctx(t, 3*time.Minute)
	c := tc.client(0)
	if _, err := c.CreateDB(ctx, api.CreateDBRequest{Name: "fo", Memory: 16 << 20, Replicas: 2}); err != nil {
		t.Fatal(err)
	}
	db := tc.waitReady(c, "fo")
	m := rc(db.Shards[0].Master.Addr, "", db.Password)
	for i := 0; i < 100; i++ {
		if err := m.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Let the replicas catch up, as an operator's WAIT would.
	// (A replica may still be in its first full sync: a long WAIT.)
	waiter := redis.NewClient(&redis.Options{Addr: db.Shards[0].Master.Addr, Password: db.Password, Protocol: 2, DisableIdentity: true, ReadTimeout: 15 * time.Second})
	defer waiter.Close()
	if n, err := waiter.Do(ctx, "WAIT", 2, 10000).Int(); err != nil || n != 2 {
		info, _ := admin(tc, "fo", db.Shards[0].Master.Addr).Info(ctx, "replication").Result()
		t.Fatalf("WAIT: %d %v; master: %s; db %+v", n, err, info, db.Shards)
	}

	t.Run("kill -9 master", func(t *testing.T) {
		old := db.Shards[0].Master
		start := time.Now()
		if err := syscall.Kill(pidOf(tc, old), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		db = waitNewMaster(t, tc, c, "fo", 0, old.ID)
		t.Logf("kill -9: new master %s serving after %v", db.Shards[0].Master.ID, time.Since(start))
		nm := rc(db.Shards[0].Master.Addr, "", db.Password)
		if n, err := nm.DBSize(ctx).Result(); err != nil || n < 100 {
			t.Fatalf("new master has %d keys (%v)", n, err)
		}
		// The old master comes back as a replica of the new one.
		testutil.WaitFor(t, 15*time.Second, "old master back as replica", func() error {
			got, err := c.GetDB(ctx, "fo")
			if err != nil {
				return err
			}
			for _, r := range got.Shards[0].Replicas {
				if r.ID == old.ID {
					if r.State != "running" || r.ObservedRole != "replica" || !r.LinkUp {
						return fmt.Errorf("old master: %+v", r)
					}
					return nil
				}
			}
			return fmt.Errorf("old master not among replicas")
		})
		events, err := c.Events(ctx, "fo")
		if err != nil {
			t.Fatal(err)
		}
		var types []string
		for _, e := range events {
			types = append(types, e.Type)
		}
		if !strings.Contains(strings.Join(types, ","), "failover-started,failover") {
			t.Fatalf("events %v", types)
		}
	})

	t.Run("SIGSTOP master", func(t *testing.T) {
		old := db.Shards[0].Master
		pid := pidOf(tc, old)
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
		start := time.Now()
		db = waitNewMaster(t, tc, c, "fo", 0, old.ID)
		t.Logf("SIGSTOP: new master %s serving after %v", db.Shards[0].Master.ID, time.Since(start))
		_ = syscall.Kill(pid, syscall.SIGCONT)
		// The stopped master never takes a write again: it comes back a replica.
		oldc := rc(old.Addr, "", db.Password)
		testutil.WaitFor(t, 15*time.Second, "old master back as replica", func() error {
			role, err := oldc.Do(ctx, "ROLE").Slice()
			if err != nil {
				return err
			}
			if role[0] != "slave" {
				return fmt.Errorf("role %v", role[0])
			}
			return nil
		})
		if err := oldc.Set(ctx, "late", "x", 0).Err(); err == nil || !strings.Contains(err.Error(), "READONLY") {
			t.Fatalf("old master accepted a write: %v", err)
		}
	})
}

func masterDiscover(c *client.Client, name string, shard int) func(ctx context.Context) (string, string, error) {
	return func(ctx context.Context) (string, string, error) {
		db, err := c.GetDB(ctx, name)
		if err != nil {
			return "", "", err
		}
		return db.Shards[shard].Master.Addr, db.Password, nil
	}
}

func TestPlannedOperations(t *testing.T) {
	tc := newTestClusterWith(t, 4, 256<<20, func(i int, c *Config) {
		c.HealAfter = 2 * time.Second
		c.NodeDownAfter = time.Second
		c.Zone = []string{"a", "b", "c", "dr"}[i]
	})
	ctx := testutil.Ctx(t, 4*time.Minute)
	c := tc.client(0)
	if _, err := c.CreateDB(ctx, api.CreateDBRequest{Name: "sw", Memory: 16 << 20, Replicas: 2}); err != nil {
		t.Fatal(err)
	}
	db := tc.waitReady(c, "sw")

	t.Run("switchover under write load loses nothing", func(t *testing.T) {
		w := &testutil.Writer{Discover: masterDiscover(c, "sw", 0), Prefix: "sw:"}
		wctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { w.Run(wctx); close(done) }()
		testutil.WaitFor(t, 5*time.Second, "writes flowing", func() error {
			if len(w.Acks()) < 200 {
				return fmt.Errorf("%d acks", len(w.Acks()))
			}
			return nil
		})
		old := db.Shards[0].Master
		res, err := c.Switchover(ctx, "sw", -1)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 1 || res[0].From != old.ID || res[0].To == old.ID {
			t.Fatalf("switchover result %+v", res)
		}
		if res[0].Pause >= time.Second {
			t.Errorf("write pause %v, want < 1s", res[0].Pause)
		}
		n := len(w.Acks())
		testutil.WaitFor(t, 5*time.Second, "writes on the new master", func() error {
			if len(w.Acks()) < n+200 {
				return fmt.Errorf("%d acks", len(w.Acks()))
			}
			return nil
		})
		stop()
		<-done
		db = waitNewMaster(t, tc, c, "sw", 0, old.ID)
		r, err := w.Check(ctx, db.Shards[0].Master.Addr, db.Password)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("switchover: %d acked writes, %d lost, pause %v, longest gap %v", r.Acked, len(r.Lost), res[0].Pause, r.Gap)
		if len(r.Lost) != 0 {
			t.Fatalf("lost %d acknowledged writes, e.g. %+v", len(r.Lost), r.Lost[0])
		}
	})

	t.Run("zone priority 0 is never promoted", func(t *testing.T) {
		db = tc.waitReady(c, "sw")
		zones := map[string]string{"n1": "a", "n2": "b", "n3": "c", "n4": "dr"}
		for _, r := range db.Shards[0].Replicas {
			if err := c.SetZonePriority(ctx, zones[r.Node], 0); err != nil {
				t.Fatal(err)
			}
		}
		_, err := c.Switchover(ctx, "sw", 0)
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Code != 409 || !strings.Contains(ce.Msg, "priority 0") {
			t.Fatalf("switchover to priority-0 replicas: %v", err)
		}
		if got, _ := c.GetDB(ctx, "sw"); got.Shards[0].Master.ID != db.Shards[0].Master.ID {
			t.Fatal("master changed")
		}
		for _, z := range zones {
			if err := c.SetZonePriority(ctx, z, 100); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("drain moves everything off a node", func(t *testing.T) {
		db = tc.waitReady(c, "sw")
		victim := db.Shards[0].Master.Node
		if err := c.Drain(ctx, victim, true); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 30*time.Second, "node drained", func() error {
			got, err := c.GetDB(ctx, "sw")
			if err != nil {
				return err
			}
			for _, in := range instances(got) {
				if in.Node == victim {
					return fmt.Errorf("%s still on %s as %s", in.ID, victim, in.Role)
				}
			}
			if got.Status != api.DBReady {
				return fmt.Errorf("status %s", got.Status)
			}
			return nil
		})
		nodes, _ := c.Nodes(ctx)
		for _, n := range nodes {
			if n.ID == victim && (!n.Draining || n.Instances != 0) {
				t.Fatalf("drained node %+v", n)
			}
		}
		// A draining node gets no new instances.
		if _, err := c.CreateDB(ctx, api.CreateDBRequest{Name: "wide", Memory: 8 << 20, Replicas: 3}); err == nil {
			t.Fatal("placed 4 instances on 3 eligible nodes")
		}
		if err := c.Drain(ctx, victim, false); err != nil {
			t.Fatal(err)
		}
		if _, err := c.CreateDB(ctx, api.CreateDBRequest{Name: "wide", Memory: 8 << 20, Replicas: 3}); err != nil {
			t.Fatalf("undrained node not used: %v", err)
		}
		tc.waitReady(c, "wide")
		if err := c.DeleteDB(ctx, "wide"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("replicas of a dead node are rebuilt elsewhere", func(t *testing.T) {
		db = tc.waitReady(c, "sw")
		var victim string
		for _, r := range db.Shards[0].Replicas {
			if tc.nodeIndex(r.Node) != tc.leader() {
				victim = r.Node
			}
		}
		i := tc.nodeIndex(victim)
		tc.nodes[i].Stop() // instances stop with it
		tc.nodes[i] = nil
		ci := (i + 1) % 4
		if tc.nodes[ci] == nil {
			ci = (i + 2) % 4
		}
		oc := tc.client(ci)
		testutil.WaitFor(t, 30*time.Second, "replica rebuilt", func() error {
			got, err := oc.GetDB(ctx, "sw")
			if err != nil {
				return err
			}
			for _, in := range instances(got) {
				if in.Node == victim {
					return fmt.Errorf("%s still on %s", in.ID, victim)
				}
			}
			if got.Status != api.DBReady || len(got.Shards[0].Replicas) != 2 {
				return fmt.Errorf("status %s, %d replicas", got.Status, len(got.Shards[0].Replicas))
			}
			return nil
		})
		evs, err := oc.Events(ctx, "sw")
		if err != nil {
			t.Fatal(err)
		}
		var heal bool
		for _, e := range evs {
			heal = heal || e.Type == "heal"
		}
		if !heal {
			t.Fatalf("no heal event in %+v", evs)
		}
	})
}

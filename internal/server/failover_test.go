package server

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

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
		return rc(m.Addr, "", db.Password).Set(context.Background(), "probe", "1", 0).Err()
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
	if n, err := m.Do(ctx, "WAIT", 2, 2000).Int(); err != nil || n != 2 {
		t.Fatalf("WAIT: %d %v", n, err)
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

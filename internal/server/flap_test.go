package server

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/marina-redis/marina/internal/api"
	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/testutil"
)

// Flap damping spaces failovers instead of forbidding them: with the
// default schedule (3 failovers of a shard within the hour at once, then
// 10s after the previous one, doubling), the fourth failure of a shard's
// master right after its third failover is held (an event says so), then
// failed over once the delay has passed, well before the hour is out.
// The hold does not age the replicas out of promotion: --max-link-down
// (here far below the 10s hold) counts from when the master failed, so a
// replica that had not linked to the third master yet when it stopped is
// still promoted.
func TestFlapDampingDelaysFourthFailover(t *testing.T) {
	tc := newTestClusterWith(t, 3, 256<<20, func(i int, c *Config) { c.DownAfter, c.MaxLinkDown = time.Second, 3*time.Second })
	ctx := testutil.Ctx(t, 8*time.Minute)
	c := tc.client(0)
	if _, err := c.CreateDB(ctx, api.CreateDBRequest{Name: "flap", Memory: 16 << 20, Replicas: 2}); err != nil {
		t.Fatal(err)
	}
	db := tc.waitReady(c, "flap")
	// Three failovers within the window: none is held.
	for i := 1; i <= 3; i++ {
		old := db.Shards[0].Master
		if err := syscall.Kill(pidOf(tc, old), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		db = waitNewMaster(t, tc, c, "flap", 0, old.ID)
		if i < 3 {
			db = tc.waitReady(c, "flap") // every replica back: promotable again
		}
	}
	events := func() []state.Event {
		evs, err := c.Events(ctx, "flap")
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
	for _, e := range events() {
		if e.Type == "failover-damped" {
			t.Fatalf("one of the first three failovers was held: %s", e.Reason)
		}
	}
	// The fourth failure, right after the third failover: a hung master
	// (SIGSTOP) does not come back by itself.
	fourth := db.Shards[0].Master
	pid := pidOf(tc, fourth)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	testutil.WaitFor(t, 15*time.Second, "the fourth failover held by flap damping", func() error {
		for _, e := range events() {
			if e.Type == "failover-damped" {
				if !strings.Contains(e.Reason, "failover of "+fourth.ID+" delayed") || !strings.Contains(e.Reason, "(4th failover within 1h0m0s)") {
					t.Fatalf("damped event %q", e.Reason)
				}
				t.Logf("event: %s", e.Reason)
				return nil
			}
		}
		return fmt.Errorf("no failover-damped event")
	})
	// Failed over once the documented delay (10s after the third) passed.
	// (The deadline is the delay's cap, far beyond the 10s due.)
	testutil.WaitFor(t, 5*time.Minute, "the fourth failover", func() error {
		var err error
		if db, err = c.GetDB(ctx, "flap"); err != nil {
			return err
		}
		m := db.Shards[0].Master
		if m.ID == "" || m.ID == fourth.ID {
			return fmt.Errorf("master still %q", m.ID)
		}
		cl := tc.rc(m.Addr, "", db.Password)
		defer cl.Close()
		return cl.Set(ctx, "probe", "1", 0).Err()
	})
	evs := events()
	held := -1
	for i, e := range evs {
		if e.Type == "failover-damped" {
			held = i
		}
	}
	promoted := false
	for _, e := range evs[held+1:] {
		promoted = promoted || (e.Type == "failover" && strings.Contains(e.Reason, "was master: "+fourth.ID))
	}
	if !promoted {
		t.Fatalf("no failover of %s after it was held: %+v", fourth.ID, evs)
	}
	t.Logf("fourth failover: new master %s", db.Shards[0].Master.ID)
}

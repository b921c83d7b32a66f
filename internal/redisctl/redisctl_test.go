package redisctl

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/redisconf"
	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/testutil"
)

func TestOrder(t *testing.T) {
	fenced := func(e uint64) Recorded { return Recorded{Fenced: true, Epoch: e, Known: true} }
	open := func(e uint64) Recorded { return Recorded{Fenced: false, Epoch: e, Known: true} }
	cases := []struct {
		name string
		cur  Recorded
		next Fence
		want Verdict
	}{
		{"no epoch recorded: apply and record", Recorded{Fenced: true}, Fence{Fenced: false, Epoch: 3}, Apply},
		{"no epoch recorded, same fence: record the epoch", Recorded{Fenced: true}, Fence{Fenced: true, Epoch: 3}, Apply},
		{"same decision", fenced(4), Fence{Fenced: true, Epoch: 4}, Same},
		{"same epoch: the lease comes back, the agent lifts", fenced(4), Fence{Fenced: false, Epoch: 4}, Apply},
		{"same epoch: the lease runs out, fence", open(4), Fence{Fenced: true, Epoch: 4}, Apply},
		{"newer epoch fences", open(4), Fence{Fenced: true, Epoch: 5}, Apply},
		{"newer epoch lifts", fenced(4), Fence{Fenced: false, Epoch: 5}, Apply},
		{"newer epoch, same fence: record it", fenced(4), Fence{Fenced: true, Epoch: 5}, Apply},
		{"stale fence never re-fences a later master", open(6), Fence{Fenced: true, Epoch: 5}, Stale},
		{"stale lift never undoes a later fence", fenced(6), Fence{Fenced: false, Epoch: 5}, Stale},
		{"stale, even when it agrees", fenced(6), Fence{Fenced: true, Epoch: 5}, Stale},
	}
	for _, c := range cases {
		if got := Order(c.cur, c.next); got != c.want {
			t.Errorf("%s: Order(%+v, %+v) = %v, want %v", c.name, c.cur, c.next, got, c.want)
		}
	}
}

func TestFenceEpochEncoding(t *testing.T) {
	for _, e := range []uint64{0, 1, 7, 1 << 20} {
		got, ok := redisconf.ParseFenceEpoch(redisconf.FenceEpochValue(e))
		if !ok || got != e {
			t.Errorf("epoch %d read back as %d %v", e, got, ok)
		}
	}
	// Redis's default, and what a server from before the epoch says.
	if _, ok := redisconf.ParseFenceEpoch("10"); ok {
		t.Error("the default min-replicas-max-lag read as an epoch")
	}
}

// Two writers of one real redis-server's fence: whichever comes later in
// time, a decision of an older epoch never undoes a newer one, fence or
// lift; within an epoch the fence goes both ways.
func TestStaleWriterCannotUndo(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	addr := start(t, host, redisconf.Config{MaxMemory: 8 << 20, Policy: "noeviction", Persistence: state.PersistNone,
		Password: "password1", Secret: "secret-123", Fenced: true, Epoch: 1})
	ctx := testutil.Ctx(t, 30*time.Second)
	agent := Client(nil, addr, "secret-123", time.Second, 1)
	leader := Client(nil, addr, "secret-123", time.Second, 1)
	user := redis.NewClient(&redis.Options{Addr: addr, Password: "password1", Protocol: 2, DisableIdentity: true, MaxRetries: -1})
	defer agent.Close()
	defer leader.Close()
	defer user.Close()
	testutil.WaitFor(t, 5*time.Second, "redis up", func() error { return agent.Ping(ctx).Err() })
	writable := func() bool {
		err := user.Set(ctx, "k", "v", 0).Err()
		if err != nil && !strings.Contains(err.Error(), "NOREPLICAS") {
			t.Fatalf("write: %v", err)
		}
		return err == nil
	}
	// A replica's login and PSYNC, as the replication user.
	syncable := func() bool {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		repl := redis.NewClient(&redis.Options{Addr: addr, Username: redisconf.ReplUser, Password: redisconf.ReplSecret("secret-123"),
			Protocol: 2, DisableIdentity: true, MaxRetries: -1})
		defer repl.Close() // PSYNC turns the connection into a replication link
		err := repl.Do(sctx, "PSYNC", "?", "-1").Err()
		return err == nil || !strings.Contains(err.Error(), "NOPERM") && !strings.Contains(err.Error(), "WRONGPASS")
	}
	check := func(what string, wantWritable bool, wantEpoch uint64) {
		t.Helper()
		if got := writable(); got != wantWritable {
			t.Fatalf("%s: writable %v, want %v", what, got, wantWritable)
		}
		if got := syncable(); got != wantWritable {
			t.Fatalf("%s: sync source %v, want %v", what, got, wantWritable)
		}
		r, err := ReadFence(ctx, leader)
		if err != nil || !r.Known || r.Epoch != wantEpoch || r.Fenced == wantWritable {
			t.Fatalf("%s: server carries %+v (%v), want fenced %v at epoch %d", what, r, err, !wantWritable, wantEpoch)
		}
	}
	check("rendered fenced at epoch 1", false, 1)

	// The agent of the master of epoch 1 lifts the fence (it holds the lease).
	if _, err := ApplyFence(ctx, agent, Fence{Fenced: false, Epoch: 1}); err != nil {
		t.Fatal(err)
	}
	check("lifted in epoch 1", true, 1)

	// A demotion: epoch 2 fences it.
	if _, err := ApplyFence(ctx, leader, Fence{Fenced: true, Epoch: 2}); err != nil {
		t.Fatal(err)
	}
	check("fenced in epoch 2", false, 2)

	// A writer still in epoch 1 (an agent whose state lags) tries to lift it.
	if _, err := ApplyFence(ctx, agent, Fence{Fenced: false, Epoch: 1}); !errors.Is(err, ErrStale) {
		t.Fatalf("stale lift: %v, want ErrStale", err)
	}
	check("a stale lift changed nothing", false, 2)

	// The instance is promoted back in epoch 3 and its agent lifts the fence.
	if _, err := ApplyFence(ctx, agent, Fence{Fenced: false, Epoch: 3}); err != nil {
		t.Fatal(err)
	}
	check("lifted in epoch 3", true, 3)

	// The leader's direct fence of the epoch-2 demotion, late.
	if _, err := ApplyFence(ctx, leader, Fence{Fenced: true, Epoch: 2}); !errors.Is(err, ErrStale) {
		t.Fatalf("stale fence: %v, want ErrStale", err)
	}
	check("a stale fence changed nothing", true, 3)

	// Within epoch 3 the lease runs out and comes back.
	if _, err := ApplyFence(ctx, agent, Fence{Fenced: true, Epoch: 3}); err != nil {
		t.Fatal(err)
	}
	check("fenced again in epoch 3", false, 3)
	if _, err := ApplyFence(ctx, agent, Fence{Fenced: false, Epoch: 3}); err != nil {
		t.Fatal(err)
	}
	check("lifted again in epoch 3", true, 3)
	if ok, err := Writable(ctx, leader); err != nil || !ok {
		t.Fatalf("Writable: %v %v", ok, err)
	}

	// A fence whose parts disagree (a server from before the replication
	// user has none) is read as partial and the same decision applied
	// again, whole.
	if err := leader.Do(ctx, "ACL", "DELUSER", redisconf.ReplUser).Err(); err != nil {
		t.Fatal(err)
	}
	if r, err := ReadFence(ctx, leader); err != nil || !r.Partial {
		t.Fatalf("without the replication user: %+v %v, want partial", r, err)
	}
	if syncable() {
		t.Fatal("a sync source without the replication user")
	}
	if _, err := ApplyFence(ctx, agent, Fence{Fenced: false, Epoch: 3}); err != nil {
		t.Fatal(err)
	}
	check("the same lift again, whole", true, 3)
	if r, _ := ReadFence(ctx, leader); r.Partial {
		t.Fatalf("still partial: %+v", r)
	}
}

// start runs a redis-server from the config Marina renders for c (a fresh
// port and dir on host filled in) and returns its address.
func start(t *testing.T, host string, c redisconf.Config) string {
	t.Helper()
	c.Port, c.Bind, c.Dir = testutil.FreePort(t, host), host, t.TempDir()
	testutil.StartRedis(t, c.Dir, c.Render())
	return fmt.Sprintf("%s:%d", host, c.Port)
}

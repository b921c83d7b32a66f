package faulttest

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/marina-redis/marina/internal/api"
	"github.com/marina-redis/marina/internal/client"
	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/testutil"
)

// Every fault test allows many failovers of one shard; damping has its own test.
var fastFlags = []string{"--down-after", "1s", "--flap-max", "100", "--heal-after", "1h"}

func createDB(t *testing.T, c *cluster, req api.CreateDBRequest) *api.DB {
	t.Helper()
	ctx := context.Background()
	if _, err := c.anyClient(ctx).CreateDB(ctx, req); err != nil {
		t.Fatal(err)
	}
	return waitReady(t, c, req.Name)
}

func waitReady(t *testing.T, c *cluster, name string) *api.DB {
	t.Helper()
	var db *api.DB
	testutil.WaitFor(t, 30*time.Second, name+" ready", func() error {
		var err error
		db, err = c.anyClient(context.Background()).GetDB(context.Background(), name)
		if err != nil {
			return err
		}
		if db.Status != api.DBReady {
			return fmt.Errorf("status %s", db.Status)
		}
		return nil
	})
	return db
}

func discover(c *cluster, name string) func(ctx context.Context) (string, string, error) {
	return func(ctx context.Context) (string, string, error) {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		db, err := c.anyClient(qctx).GetDB(qctx, name)
		if err != nil {
			return "", "", err
		}
		return db.Shards[0].Master.Addr, db.Password, nil
	}
}

// writing starts a writer and waits until writes flow.
func writing(t *testing.T, c *cluster, name string) (*testutil.Writer, func()) {
	t.Helper()
	w := &testutil.Writer{Discover: discover(c, name), Prefix: "w:", CAFile: c.caFile()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	testutil.WaitFor(t, 10*time.Second, "writes flowing", func() error {
		if len(w.Acks()) < 100 {
			return fmt.Errorf("%d acks", len(w.Acks()))
		}
		return nil
	})
	return w, func() { cancel(); <-done }
}

// newMaster waits until the shard has a master other than old that takes writes.
func newMaster(t *testing.T, c *cluster, name, old string, within time.Duration) *api.DB {
	t.Helper()
	var db *api.DB
	testutil.WaitFor(t, within, "new master", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		var err error
		db, err = c.anyClient(ctx).GetDB(ctx, name)
		if err != nil {
			return err
		}
		m := db.Shards[0].Master
		if m.ID == "" || m.ID == old {
			return fmt.Errorf("master %q", m.ID)
		}
		return nil
	})
	return db
}

// promotedAt returns when the last failover of a database was written.
func promotedAt(t *testing.T, cl *client.Client, name string) time.Time {
	t.Helper()
	evs, err := cl.Events(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	var at time.Time
	for _, e := range evs {
		if e.Type == "failover" {
			at = e.Time
		}
	}
	if at.IsZero() {
		t.Fatalf("no failover event in %+v", evs)
	}
	return at
}

// check stops the writer, verifies the acknowledged writes on the new
// master and reports the figures.
func check(t *testing.T, c *cluster, w *testutil.Writer, stop func(), fault, name string) testutil.Result {
	t.Helper()
	time.Sleep(300 * time.Millisecond) // writes on the new master, then stop (not a wait for a condition)
	stop()
	addr, pw, err := discover(c, name)(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r, err := w.Check(context.Background(), addr, pw)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d acknowledged writes, %d lost, write unavailability %v", fault, r.Acked, len(r.Lost), r.Gap.Round(time.Millisecond))
	return r
}

// noAckAfter fails if the old master acknowledged a write after the promotion.
func noAckAfter(t *testing.T, w *testutil.Writer, oldAddr string, promoted time.Time) {
	t.Helper()
	for _, a := range w.Acks() {
		if a.Addr == oldAddr && a.At.After(promoted) {
			t.Fatalf("old master %s acknowledged %s at %v, after the promotion at %v", oldAddr, a.Key, a.At, promoted)
		}
	}
}

func TestKillMasterRedis(t *testing.T) {
	c := newCluster(t, options{n: 3, extra: fastFlags})
	db := createDB(t, c, api.CreateDBRequest{Name: "k", Memory: 16 << 20, Replicas: 1})
	w, stop := writing(t, c, "k")
	old := db.Shards[0].Master
	if err := syscall.Kill(c.redisPid(old), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	newMaster(t, c, "k", old.ID, 10*time.Second)
	r := check(t, c, w, stop, "kill -9 master redis-server", "k")
	if r.Gap > 3*time.Second {
		t.Errorf("write unavailability %v", r.Gap)
	}
	// Asynchronous replication: what the master acknowledged but had not yet
	// sent is lost; on one machine that is a handful of writes at most.
	if len(r.Lost) > 50 {
		t.Errorf("lost %d acknowledged writes", len(r.Lost))
	}
	// The old master comes back as a replica.
	testutil.WaitFor(t, 20*time.Second, "old master replica", func() error {
		db := waitReady(t, c, "k")
		for _, in := range db.Shards[0].Replicas {
			if in.ID == old.ID {
				return nil
			}
		}
		return fmt.Errorf("old master not a replica: %+v", db.Shards[0])
	})
}

func TestKillNode(t *testing.T) {
	c := newCluster(t, options{n: 3, extra: fastFlags})
	db := createDB(t, c, api.CreateDBRequest{Name: "kn", Memory: 16 << 20, Replicas: 1})
	w, stop := writing(t, c, "kn")
	old := db.Shards[0].Master
	i := c.index(old.Node)
	c.killAll(c.nodes[i]) // the marina server and its redis-servers
	newMaster(t, c, "kn", old.ID, 15*time.Second)
	r := check(t, c, w, stop, "kill -9 whole node", "kn")
	if r.Gap > 6*time.Second {
		t.Errorf("write unavailability %v", r.Gap)
	}
	if len(r.Lost) > 50 {
		t.Errorf("lost %d acknowledged writes", len(r.Lost))
	}
	// The node comes back; its old master rejoins as a replica.
	c.start(i)
	c.waitUp(3)
	testutil.WaitFor(t, 30*time.Second, "old master back as replica", func() error {
		db := waitReady(t, c, "kn")
		for _, in := range db.Shards[0].Replicas {
			if in.ID == old.ID && in.ObservedRole == "replica" {
				return nil
			}
		}
		return fmt.Errorf("%+v", db.Shards[0])
	})
}

func TestSigstopMaster(t *testing.T) {
	c := newCluster(t, options{n: 3, extra: fastFlags})
	db := createDB(t, c, api.CreateDBRequest{Name: "st", Memory: 16 << 20, Replicas: 1})
	w, stop := writing(t, c, "st")
	old := db.Shards[0].Master
	pid := c.redisPid(old)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	newMaster(t, c, "st", old.ID, 15*time.Second)
	_ = syscall.Kill(pid, syscall.SIGCONT)
	r := check(t, c, w, stop, "SIGSTOP master", "st")
	if r.Gap > 4*time.Second {
		t.Errorf("write unavailability %v", r.Gap)
	}
	promoted := promotedAt(t, c.anyClient(context.Background()), "st")
	noAckAfter(t, w, old.Addr, promoted)
	if len(r.Lost) > 0 {
		// Writes the stopped master had not yet replicated were never
		// acknowledged: it was stopped. Nothing acknowledged may be lost.
		t.Errorf("lost %d acknowledged writes, e.g. %+v", len(r.Lost), r.Lost[0])
	}
	testutil.WaitFor(t, 20*time.Second, "old master back as replica", func() error {
		db := waitReady(t, c, "st")
		for _, in := range db.Shards[0].Replicas {
			if in.ID == old.ID && in.ObservedRole == "replica" {
				return nil
			}
		}
		return fmt.Errorf("%+v", db.Shards[0])
	})
}

// The raft leader dies while a failover is under way: the next leader
// finishes it, and the shard ends with one master.
func TestLeaderDiesDuringFailover(t *testing.T) {
	c := newCluster(t, options{n: 3, extra: fastFlags})
	ctx := context.Background()
	var db *api.DB
	// A database whose master is not on the leader's node.
	for i := 0; i < 10; i++ {
		db = createDB(t, c, api.CreateDBRequest{Name: fmt.Sprintf("ld%d", i), Memory: 16 << 20, Replicas: 1})
		if c.index(db.Shards[0].Master.Node) != c.leaderIndex(ctx) {
			break
		}
	}
	leader := c.leaderIndex(ctx)
	old := db.Shards[0].Master
	if c.index(old.Node) == leader {
		t.Skip("could not place a master away from the leader")
	}
	if err := syscall.Kill(c.redisPid(old), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Kill the leader as soon as the failover has started.
	testutil.WaitFor(t, 10*time.Second, "failover started", func() error {
		evs, err := c.client(leader).Events(ctx, db.Name)
		if err != nil {
			return err
		}
		for _, e := range evs {
			if e.Type == "failover-started" {
				return nil
			}
		}
		return fmt.Errorf("not yet")
	})
	c.killServer(leader)
	got := newMaster(t, c, db.Name, old.ID, 20*time.Second)
	masters := 0
	for _, in := range append([]api.Instance{got.Shards[0].Master}, got.Shards[0].Replicas...) {
		if in.Role == state.RoleMaster {
			masters++
		}
	}
	if masters != 1 {
		t.Fatalf("%d masters", masters)
	}
}

// A replica in the middle of a full sync holds incomplete data: the
// in-sync replica is promoted instead.
func TestReplicaInFullSyncNotPromoted(t *testing.T) {
	c := newCluster(t, options{n: 3, extra: fastFlags})
	ctx := context.Background()
	db := createDB(t, c, api.CreateDBRequest{Name: "sync", Memory: 128 << 20, Replicas: 2})
	m := c.rcl(db.Shards[0].Master.Addr, db.Password)
	defer m.Close()
	adm := c.admin(db.Shards[0].Master)
	defer adm.Close()
	val := strings.Repeat("v", 100)
	for b := 0; b < 20000; b += 500 {
		args := make([]any, 0, 1000)
		for k := b; k < b+500; k++ {
			args = append(args, fmt.Sprintf("key:%d", k), val)
		}
		if err := m.MSet(ctx, args...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Do(ctx, "WAIT", 2, 5000).Err(); err != nil {
		t.Fatal(err)
	}
	// Full syncs from now on take 10s: the master's RDB save waits 500µs a key.
	if err := adm.ConfigSet(ctx, "rdb-key-save-delay", "500").Err(); err != nil {
		t.Fatal(err)
	}
	syncing, good := db.Shards[0].Replicas[0], db.Shards[0].Replicas[1]
	// kill -9 the replica and remove its data: it comes back empty and asks for a full sync.
	if err := syscall.Kill(c.redisPid(syncing), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "replica in full sync", func() error {
		r := c.rcl(syncing.Addr, db.Password)
		defer r.Close()
		info, err := r.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "master_sync_in_progress:1") {
			return fmt.Errorf("not syncing yet")
		}
		return nil
	})
	time.Sleep(600 * time.Millisecond) // let a heartbeat carry the sync state (a pause, not a wait for a condition)
	if err := syscall.Kill(c.redisPid(db.Shards[0].Master), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	got := newMaster(t, c, "sync", db.Shards[0].Master.ID, 15*time.Second)
	if got.Shards[0].Master.ID != good.ID {
		t.Fatalf("promoted %s, want the in-sync replica %s (not %s)", got.Shards[0].Master.ID, good.ID, syncing.ID)
	}
	nm := c.rcl(got.Shards[0].Master.Addr, got.Password)
	defer nm.Close()
	if n, _ := nm.DBSize(ctx).Result(); n < 20000 {
		t.Fatalf("new master has %d keys", n)
	}
}

// A master cut off from the rest is fenced by its own agent: clients on its
// side of the partition get errors, while the majority fails over.
func TestPartitionedMasterIsFenced(t *testing.T) {
	c := newCluster(t, options{n: 3, netns: true, extra: fastFlags})
	ctx := context.Background()
	var db *api.DB
	for i := 0; i < 10; i++ {
		db = createDB(t, c, api.CreateDBRequest{Name: fmt.Sprintf("p%d", i), Memory: 16 << 20, Replicas: 1})
		if c.index(db.Shards[0].Master.Node) != c.leaderIndex(ctx) {
			break
		}
	}
	old := db.Shards[0].Master
	i := c.index(old.Node)
	host, port, _ := strings.Cut(old.Addr, ":")
	// A client inside the isolated host's namespace keeps writing.
	inside := func(key string) (string, error) {
		out, err := exec.Command("ip", "netns", "exec", c.nodes[i].ns, "redis-cli", "--tls", "--cacert", c.caFile(), "-h", host, "-p", port,
			"--no-auth-warning", "-a", db.Password, "SET", key, "x").CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if out, err := inside("before"); err != nil || out != "OK" {
		t.Fatalf("write before the partition: %q %v", out, err)
	}
	cut := time.Now()
	c.net.cut(i)
	defer c.net.heal(i)
	// Within the lease (1.5s) plus a check interval, the isolated master refuses writes.
	var fencedAt time.Duration
	testutil.WaitFor(t, 10*time.Second, "isolated master fenced", func() error {
		out, _ := inside("during")
		if strings.Contains(out, "NOREPLICAS") || strings.Contains(out, "READONLY") {
			fencedAt = time.Since(cut)
			return nil
		}
		return fmt.Errorf("write answered %q", out)
	})
	t.Logf("isolated master fenced %v after the cut", fencedAt.Round(time.Millisecond))
	if fencedAt > 3*time.Second {
		t.Errorf("fenced only after %v", fencedAt)
	}
	// The majority promotes the replica.
	got := newMaster(t, c, db.Name, old.ID, 20*time.Second)
	promoted := promotedAt(t, c.anyClient(ctx), db.Name)
	t.Logf("majority promoted %s %v after the cut", got.Shards[0].Master.ID, promoted.Sub(cut).Round(time.Millisecond))
	if promoted.Before(cut.Add(fencedAt)) && !promoted.After(cut) {
		t.Errorf("promoted at %v, before the old master was fenced", promoted)
	}
	// After the promotion the isolated master takes no write at all.
	for k := 0; k < 5; k++ {
		if out, _ := inside(fmt.Sprintf("after%d", k)); out == "OK" {
			t.Fatalf("isolated master acknowledged a write after the promotion")
		}
	}
	c.net.heal(i)
	testutil.WaitFor(t, 30*time.Second, "old master back as replica", func() error {
		out, err := exec.Command("ip", "netns", "exec", c.nodes[i].ns, "redis-cli", "--tls", "--cacert", c.caFile(), "-h", host, "-p", port,
			"--no-auth-warning", "-a", db.Password, "ROLE").CombinedOutput()
		if err != nil || !strings.HasPrefix(strings.TrimSpace(string(out)), "slave") {
			return fmt.Errorf("role %q %v", out, err)
		}
		return nil
	})
	// Once back, the isolated agent's fence is an event.
	testutil.WaitFor(t, 10*time.Second, "fence event", func() error {
		evs, err := c.anyClient(ctx).Events(ctx, db.Name)
		if err != nil {
			return err
		}
		for _, e := range evs {
			if e.Type == "fence" && e.Node == old.Node && e.Instance == old.ID {
				return nil
			}
		}
		return fmt.Errorf("no fence event among %d", len(evs))
	})
}

// One observer that cannot reach a master (its route to the master's host
// is black-holed, everything else works) never causes a failover: the
// master's own agent still sees it healthy.
func TestSingleObserverNoFailover(t *testing.T) {
	c := newCluster(t, options{n: 3, netns: true, extra: fastFlags})
	ctx := context.Background()
	leader := c.leaderIndex(ctx)
	// Master, observer and leader on three different nodes: the observer's
	// reports reach the leader, and the master's node talks to the leader.
	db := createDB(t, c, api.CreateDBRequest{Name: "obs", Memory: 16 << 20, Replicas: 2})
	for k := 0; k < 2 && c.index(db.Shards[0].Master.Node) == leader; k++ {
		if _, err := c.anyClient(ctx).Switchover(ctx, "obs", 0); err != nil {
			t.Fatal(err)
		}
		db = waitReady(t, c, "obs")
	}
	m, r := c.index(db.Shards[0].Master.Node), -1
	for _, in := range db.Shards[0].Replicas {
		if c.index(in.Node) != leader {
			r = c.index(in.Node)
		}
	}
	if m == leader || r < 0 {
		t.Fatalf("placement: master n%d, leader n%d, replicas %+v", m+1, leader+1, db.Shards[0].Replicas)
	}
	t.Logf("master on n%d, partitioned observer n%d, leader n%d", m+1, r+1, leader+1)
	run(t, "ip", "netns", "exec", c.nodes[r].ns, "ip", "route", "add", "blackhole", c.nodes[m].host+"/32")
	defer run(t, "ip", "netns", "exec", c.nodes[r].ns, "ip", "route", "del", "blackhole", c.nodes[m].host+"/32")
	w, stop := writing(t, c, db.Name)
	// Five times down-after: the observer reports the master unreachable all along.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		got, err := c.anyClient(ctx).GetDB(ctx, db.Name)
		if err == nil && got.Shards[0].Master.ID != db.Shards[0].Master.ID {
			t.Fatalf("failover caused by one observer: master now %s", got.Shards[0].Master.ID)
		}
		time.Sleep(100 * time.Millisecond)
	}
	r2 := check(t, c, w, stop, "one partitioned observer", db.Name)
	if len(r2.Lost) != 0 || r2.Gap > time.Second {
		t.Fatalf("writes disturbed: lost %d, gap %v", len(r2.Lost), r2.Gap)
	}
}

// Flap damping: with --flap-max 1 and --flap-delay 1m, a second failure of
// the same shard within the minute after its first failover is held; the
// agent restarts the crashed master in place after its crash hold (5s),
// before the delay ends, so the shard keeps its master and no second
// failover happens. (internal/server's TestFlapDampingDelaysFourthFailover
// shows a held failover that does happen once its delay passes.)
func TestFlapDamping(t *testing.T) {
	c := newCluster(t, options{n: 3, extra: []string{"--down-after", "1s", "--flap-max", "1", "--flap-window", "1h", "--flap-delay", "1m"}})
	ctx := context.Background()
	db := createDB(t, c, api.CreateDBRequest{Name: "flap", Memory: 16 << 20, Replicas: 1, Persistence: "aof"})
	first := db.Shards[0].Master
	if err := syscall.Kill(c.redisPid(first), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	db = newMaster(t, c, "flap", first.ID, 15*time.Second)
	db = waitReady(t, c, "flap")
	second := db.Shards[0].Master
	if err := syscall.Kill(c.redisPid(second), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 15*time.Second, "failover damped", func() error {
		evs, err := c.anyClient(ctx).Events(ctx, "flap")
		if err != nil {
			return err
		}
		for _, e := range evs {
			if e.Type == "failover-damped" {
				return nil
			}
		}
		return fmt.Errorf("no failover-damped event")
	})
	// The same master comes back after the crash hold; no second failover.
	got := waitReady(t, c, "flap")
	if got.Shards[0].Master.ID != second.ID {
		t.Fatalf("master %s, want %s kept (damped)", got.Shards[0].Master.ID, second.ID)
	}
}

// Through the proxy with durability replicated, no acknowledged write is
// lost in a single fault: the master's whole node killed, or its
// redis-server stopped.
func TestProxyReplicatedNoLoss(t *testing.T) {
	for _, fault := range []string{"kill node", "sigstop"} {
		t.Run(fault, func(t *testing.T) {
			c := newCluster(t, options{n: 3, extra: fastFlags})
			ctx := context.Background()
			// Two replicas: after losing a node the new master still has
			// one to confirm writes (with one, writes are refused until the
			// replica is rebuilt; acknowledged ones are still never lost).
			db := createDB(t, c, api.CreateDBRequest{Name: "dur", Memory: 16 << 20, Replicas: 2, Durability: "replicated"})
			old := db.Shards[0].Master
			victim := c.index(old.Node)
			var ep string
			for _, e := range db.Endpoints {
				if !strings.HasPrefix(e, c.nodes[victim].host+":") {
					ep = e // an endpoint on a node that survives
				}
			}
			w := &testutil.Writer{Prefix: "d:", Discover: func(context.Context) (string, string, error) { return ep, db.Password, nil },
				CheckCAFile: c.caFile()}
			wctx, stopW := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { w.Run(wctx); close(done) }()
			testutil.WaitFor(t, 10*time.Second, "writes through the proxy", func() error {
				if len(w.Acks()) < 300 {
					return fmt.Errorf("%d acks", len(w.Acks()))
				}
				return nil
			})
			switch fault {
			case "kill node":
				c.killAll(c.nodes[victim])
			case "sigstop":
				pid := c.redisPid(old)
				if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
					t.Fatal(err)
				}
				defer syscall.Kill(pid, syscall.SIGCONT)
			}
			got := newMaster(t, c, "dur", old.ID, 20*time.Second)
			n := len(w.Acks())
			testutil.WaitFor(t, 10*time.Second, "writes after the failover", func() error {
				if len(w.Acks()) < n+100 {
					return fmt.Errorf("%d acks", len(w.Acks()))
				}
				return nil
			})
			stopW()
			<-done
			r, err := w.Check(ctx, got.Shards[0].Master.Addr, got.Password)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s through the proxy, durability replicated: %d acknowledged, %d lost, write unavailability %v", fault, r.Acked, len(r.Lost), r.Gap.Round(time.Millisecond))
			if len(r.Lost) != 0 {
				t.Fatalf("lost %d acknowledged writes, e.g. %+v", len(r.Lost), r.Lost[0])
			}
		})
	}
}

package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/api"
	"github.com/marina-redis/marina/internal/sentinel"
	"github.com/marina-redis/marina/internal/testutil"
	"github.com/marina-redis/marina/internal/topology"
)

const testSentinelPort = 7002

func sentinelClient(addr, password string) *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{Addr: addr, Password: password, DialTimeout: time.Second,
		ReadTimeout: 2 * time.Second, MaxRetries: -1})
}

func masterNames(t *testing.T, sc *redis.SentinelClient) []string {
	t.Helper()
	ms, err := sc.Masters(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range ms {
		kv := m.([]any)
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i] == "name" {
				names = append(names, kv[i+1].(string))
			}
		}
	}
	sort.Strings(names)
	return names
}

// TestSentinel runs go-redis's FailoverClient against the nodes' Sentinel
// endpoints through a kill -9 of the master.
func TestSentinel(t *testing.T) {
	tc := newTestClusterWith(t, 3, 256<<20, func(i int, c *Config) {
		c.DownAfter = time.Second
		c.SentinelPort = testSentinelPort
	})
	ctx := testutil.Ctx(t, 3*time.Minute)
	c := tc.client(0)
	if _, err := c.CreateDB(ctx, api.CreateDBRequest{Name: "sdb", Memory: 16 << 20, Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateDB(ctx, api.CreateDBRequest{Name: "two", Memory: 16 << 20, Shards: 2, Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	db := tc.waitReady(c, "sdb")
	two := tc.waitReady(c, "two")
	var addrs []string
	for i, nd := range tc.nodes {
		want := topology.HostPort(tc.cfgs[i].Bind, testSentinelPort)
		if nd.Sentinel == nil || nd.Sentinel.Addr() != want {
			t.Fatalf("node %d sentinel endpoint %v, want %s", i+1, nd.Sentinel, want)
		}
		addrs = append(addrs, want)
	}

	t.Run("node list shows the endpoints", func(t *testing.T) {
		nodes, err := c.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			if want := net.JoinHostPort(n.Addr, fmt.Sprint(testSentinelPort)); n.SentinelAddr != want {
				t.Errorf("node %s sentinel_addr %q, want %q", n.ID, n.SentinelAddr, want)
			}
		}
	})

	t.Run("discovery", func(t *testing.T) {
		sc := sentinelClient(addrs[1], testToken)
		defer sc.Close()
		for name, want := range map[string]string{"sdb": db.Shards[0].Master.Addr, "sdb-0": db.Shards[0].Master.Addr,
			"two": two.Shards[0].Master.Addr, "two-1": two.Shards[1].Master.Addr} {
			got, err := sc.GetMasterAddrByName(ctx, name).Result()
			if err != nil || net.JoinHostPort(got[0], got[1]) != want {
				t.Errorf("%s: master %v %v, want %s", name, got, err, want)
			}
		}
		reps, err := sc.Replicas(ctx, "two-1").Result()
		if err != nil || len(reps) != 1 || net.JoinHostPort(reps[0]["ip"], reps[0]["port"]) != two.Shards[1].Replicas[0].Addr || reps[0]["flags"] != "slave" {
			t.Errorf("replicas of two-1: %v %v", reps, err)
		}
		sents, err := sc.Sentinels(ctx, "sdb").Result()
		if err != nil || len(sents) != 2 {
			t.Fatalf("sentinels %v %v", sents, err)
		}
		for _, s := range sents {
			if a := net.JoinHostPort(s["ip"], s["port"]); a == addrs[1] || (a != addrs[0] && a != addrs[2]) {
				t.Errorf("sentinel %s listed by %s", a, addrs[1])
			}
		}
		if got := masterNames(t, sc); strings.Join(got, " ") != "sdb sdb-0 two two-0 two-1" {
			t.Errorf("masters %v", got)
		}
	})

	t.Run("auth", func(t *testing.T) {
		anon := sentinelClient(addrs[0], "")
		defer anon.Close()
		if err := anon.Ping(ctx).Err(); err != nil {
			t.Fatalf("PING needs no password: %v", err)
		}
		if _, err := anon.GetMasterAddrByName(ctx, "sdb").Result(); err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
			t.Errorf("no password: %v", err)
		}
		wrong := sentinelClient(addrs[0], "not-the-password")
		defer wrong.Close()
		if err := wrong.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
			t.Errorf("wrong password: %v", err)
		}
		// A database's password sees that database only.
		scoped := sentinelClient(addrs[2], db.Password)
		defer scoped.Close()
		if got := masterNames(t, scoped); strings.Join(got, " ") != "sdb sdb-0" {
			t.Errorf("scoped masters %v", got)
		}
		if _, err := scoped.GetMasterAddrByName(ctx, "two").Result(); !errors.Is(err, redis.Nil) {
			t.Errorf("another database's master: %v", err)
		}
		if err := scoped.Master(ctx, "two-1").Err(); err == nil || !strings.Contains(err.Error(), "No such master") {
			t.Errorf("another database's master details: %v", err)
		}
		// Neither can the FailoverClient reach a database with a wrong sentinel password.
		fc := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "sdb", SentinelAddrs: addrs, SentinelPassword: two.Password,
			Password: db.Password, DialTimeout: time.Second, MaxRetries: -1})
		defer fc.Close()
		if err := fc.Ping(ctx).Err(); err == nil {
			t.Errorf("FailoverClient found sdb with another database's password")
		}
	})

	t.Run("shard name", func(t *testing.T) {
		fc := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "two-1", SentinelAddrs: addrs, SentinelPassword: two.Password,
			Password: two.Password, DialTimeout: time.Second, ReadTimeout: time.Second})
		defer fc.Close()
		if err := fc.Set(ctx, "on-shard-1", "x", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if v, err := rc(two.Shards[1].Master.Addr, "", two.Password).Get(ctx, "on-shard-1").Result(); err != nil || v != "x" {
			t.Fatalf("shard 1's master: %q %v", v, err)
		}
	})

	t.Run("failover client follows kill -9", func(t *testing.T) {
		// A subscriber on +switch-master, as FailoverClient has internally.
		sub := sentinelClient(addrs[0], db.Password)
		defer sub.Close()
		ps := sub.Subscribe(ctx, sentinel.ChannelSwitch)
		defer ps.Close()
		if _, err := ps.Receive(ctx); err != nil {
			t.Fatal(err)
		}
		fc := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "sdb", SentinelAddrs: addrs, SentinelPassword: db.Password,
			Password: db.Password, DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
		defer fc.Close()
		for i := 0; i < 50; i++ {
			if err := fc.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		if v, err := fc.Get(ctx, "k7").Result(); err != nil || v != "7" {
			t.Fatalf("GET %q %v", v, err)
		}
		old := db.Shards[0].Master
		if err := syscall.Kill(pidOf(tc, old), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		// Writes through the same client succeed again once the replica
		// is promoted; errors in between are the failover window.
		var failed int
		testutil.WaitFor(t, 30*time.Second, "write through FailoverClient after failover", func() error {
			wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			err := fc.Set(wctx, "after", "failover", 0).Err()
			if err != nil {
				failed++
			}
			return err
		})
		t.Logf("FailoverClient writes again %v after kill -9 (%d failed attempts)", time.Since(start), failed)
		db = waitNewMaster(t, tc, c, "sdb", 0, old.ID)
		nm := db.Shards[0].Master
		if v, err := rc(nm.Addr, "", db.Password).Get(ctx, "after").Result(); err != nil || v != "failover" {
			t.Fatalf("the write is not on the new master %s: %q %v", nm.Addr, v, err)
		}
		// Later writes keep going to the new master.
		for i := 0; i < 20; i++ {
			if err := fc.Set(ctx, fmt.Sprintf("later%d", i), i, 0).Err(); err != nil {
				t.Fatalf("write %d after failover: %v", i, err)
			}
		}
		if n, err := rc(nm.Addr, "", db.Password).Exists(ctx, "later19").Result(); err != nil || n != 1 {
			t.Fatalf("later writes not on the new master: %d %v", n, err)
		}
		oh, op, _ := net.SplitHostPort(old.Addr)
		nh, np, _ := net.SplitHostPort(nm.Addr)
		want := strings.Join([]string{"sdb", oh, op, nh, np}, " ")
		for {
			mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			msg, err := ps.ReceiveMessage(mctx)
			cancel()
			if err != nil {
				t.Fatalf("no +switch-master %q: %v", want, err)
			}
			if msg.Channel == sentinel.ChannelSwitch && msg.Payload == want {
				break
			}
			if !strings.HasPrefix(msg.Payload, "sdb") {
				t.Fatalf("subscriber with sdb's password got %q", msg.Payload)
			}
		}
		got, err := sentinelClient(addrs[2], testToken).GetMasterAddrByName(ctx, "sdb").Result()
		if err != nil || net.JoinHostPort(got[0], got[1]) != nm.Addr {
			t.Fatalf("get-master-addr-by-name after failover: %v %v, want %s", got, err, nm.Addr)
		}
	})
}

package server

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/api"
	"github.com/marina-redis/marina/internal/slots"
	"github.com/marina-redis/marina/internal/testutil"
)

// Every node serves every database's endpoint; a failover switches the
// backend under the proxy without closing client connections.
func TestProxyEndpoints(t *testing.T) {
	for _, dur := range []string{"async", "replicated"} {
		t.Run(dur, func(t *testing.T) { proxyFailover(t, dur) })
	}
}

func proxyFailover(t *testing.T, durability string) {
	tc := newTestClusterWith(t, 3, 256<<20, func(i int, c *Config) { c.DownAfter = time.Second })
	ctx := testutil.Ctx(t, 3*time.Minute)
	c := tc.client(0)
	db, err := c.CreateDB(ctx, api.CreateDBRequest{Name: "px", Memory: 16 << 20, Shards: 2, Replicas: 1, Durability: durability})
	if err != nil {
		t.Fatal(err)
	}
	db = tc.waitReady(c, "px")
	if len(db.Endpoints) != 3 {
		t.Fatalf("endpoints %v", db.Endpoints)
	}
	clients := make([]*redis.Client, 3)
	for i, ep := range db.Endpoints {
		clients[i] = redis.NewClient(&redis.Options{Addr: ep, Password: db.Password, Protocol: 2, DisableIdentity: true,
			MaxRetries: -1, PoolSize: 1, ReadTimeout: 2 * time.Second})
		defer clients[i].Close()
		testutil.WaitFor(t, 10*time.Second, "endpoint "+ep, func() error { return clients[i].Ping(ctx).Err() })
	}
	// With durability replicated a write also waits for a replica's first
	// sync to settle; ready means linked, which can come a moment before.
	var firstErr error
	deadline := time.Now().Add(10 * time.Second)
	for {
		if firstErr = clients[0].Set(ctx, "k0", 0, 0).Err(); firstErr == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if firstErr != nil {
		for _, in := range instances(db) {
			a := admin(tc, "px", in.Addr)
			info, _ := a.Info(ctx, "replication").Result()
			mr, _ := a.ConfigGet(ctx, "min-replicas-to-write").Result()
			t.Logf("%s %s %v:\n%s", in.Role, in.Addr, mr, info)
		}
		t.Fatal(firstErr)
	}
	for k := 0; k < 100; k++ {
		if err := clients[0].Set(ctx, fmt.Sprintf("k%d", k), k, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := clients[2].DBSize(ctx).Result(); err != nil || n != 100 {
		t.Fatalf("DBSIZE through another node: %d %v", n, err)
	}

	// A writer on one proxy connection across a failover of shard 0.
	ep := db.Endpoints[1]
	w := &testutil.Writer{Prefix: "{a}w:", Discover: func(context.Context) (string, string, error) { return ep, db.Password, nil }}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { w.Run(wctx); close(done) }()
	testutil.WaitFor(t, 5*time.Second, "writes through the proxy", func() error {
		if len(w.Acks()) < 200 {
			return fmt.Errorf("%d acks", len(w.Acks()))
		}
		return nil
	})
	// The shard that key {a}... lives on.
	shard := 0
	if sl := slotOf("{a}w:0"); sl > db.Shards[0].SlotEnd {
		shard = 1
	}
	old := db.Shards[shard].Master
	if err := syscall.Kill(pidOf(tc, old), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	after := waitNewMaster(t, tc, c, "px", shard, old.ID)
	n := len(w.Acks())
	testutil.WaitFor(t, 10*time.Second, "writes after the failover", func() error {
		if len(w.Acks()) < n+200 {
			return fmt.Errorf("%d acks", len(w.Acks()))
		}
		return nil
	})
	stop()
	<-done
	r, err := w.Check(ctx, after.Shards[shard].Master.Addr, after.Password)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("failover through the proxy (durability %s): %d acked, %d lost, write gap %v", durability, r.Acked, len(r.Lost), r.Gap)
	if len(r.Lost) != 0 {
		t.Fatalf("lost %d acknowledged writes", len(r.Lost))
	}
	if r.Gap > 3*time.Second {
		t.Fatalf("writes blocked for %v", r.Gap)
	}
	// The other proxies' clients kept their connections and see the data.
	if n, err := clients[0].Exists(ctx, "k1", "k2").Result(); err != nil || n != 2 {
		t.Fatalf("old connection after failover: %d %v", n, err)
	}
}

func slotOf(key string) int { return slots.Of([]byte(key)) }

package proxy

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/redisconf"
	"github.com/marina-redis/marina/internal/slots"
	"github.com/marina-redis/marina/internal/testutil"
)

// On a fenced node the proxy refuses writes to the masters on that node at
// once, with a clear error, and keeps the connection: reads, and writes to
// masters on other nodes, go on.
func TestFencedNodeRefusesLocalWrites(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	local, remote := backend(t, host), backend(t, host)
	onEngines(t, host, func(t *testing.T, e *endpoint) {
		var fenced atomic.Bool
		ranges := slots.Split(2)
		d := e.listen(t, Route{Name: "f", Addr: host + ":0", Password: testPW, Secret: proxySecret, MaxRequest: 1 << 20,
			Node: "n1", Fenced: fenced.Load, Shards: []ShardRoute{
				{Index: 0, SlotStart: ranges[0].Start, SlotEnd: ranges[0].End, Master: local, Local: true},
				{Index: 1, SlotStart: ranges[1].Start, SlotEnd: ranges[1].End, Master: remote}}})
		px := redis.NewClient(e.options(&redis.Options{Addr: d.Addr(), Password: testPW, Protocol: 2, DisableIdentity: true, MaxRetries: -1, PoolSize: 1}))
		defer px.Close()
		ctx := context.Background()
		// One key on each shard.
		var k0, k1 string
		for i := 0; k0 == "" || k1 == ""; i++ {
			k := "k" + strings.Repeat("x", i)
			if slots.Of([]byte(k)) <= ranges[0].End {
				k0 = k
			} else {
				k1 = k
			}
		}
		for _, k := range []string{k0, k1} {
			if err := px.Set(ctx, k, "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		fenced.Store(true)
		err := px.Set(ctx, k0, "w", 0).Err()
		if err == nil || !strings.HasPrefix(err.Error(), "READONLY") || !strings.Contains(err.Error(), "lost contact with the cluster leader") {
			t.Fatalf("write to the local master while fenced: %v", err)
		}
		if err := px.Set(ctx, k1, "w", 0).Err(); err != nil {
			t.Fatalf("write to the other node's master while fenced: %v", err)
		}
		if v, err := px.Get(ctx, k0).Result(); err != nil || v != "v" {
			t.Fatalf("read while fenced: %q %v", v, err)
		}
		if err := px.MSet(ctx, k0, "1", k1, "1").Err(); err == nil || !strings.HasPrefix(err.Error(), "READONLY") {
			t.Fatalf("MSET touching the local master while fenced: %v", err)
		}
		if err := px.Del(ctx, k0).Err(); err == nil || !strings.HasPrefix(err.Error(), "READONLY") {
			t.Fatalf("DEL while fenced: %v", err)
		}
		if v, err := px.Get(ctx, k0).Result(); err != nil || v != "v" {
			t.Fatalf("the refused writes changed %s: %q %v", k0, v, err)
		}
		fenced.Store(false)
		if err := px.Set(ctx, k0, "w", 0).Err(); err != nil {
			t.Fatalf("write after the fence was lifted: %v", err)
		}
	})
}

// The slow log keeps a bounded prefix of a command, not raw client input
// of any length.
func TestSlowLogTruncates(t *testing.T) {
	var l latency
	l.observe(SlowThreshold, strings.Repeat("x", 1<<20))
	if len(l.slow) != 1 || len(l.slow[0].Command) > slowCommandMax+64 || !strings.Contains(l.slow[0].Command, "more bytes") {
		t.Fatalf("slow log kept %d bytes", len(l.slow[0].Command))
	}
}

// After a pinned command the proxy relays raw, and the server's ACL must
// refuse what the proxy refuses (the attack: AUTH, BLPOP to pin, then
// MIGRATE the key's DUMP payload to a listener of the attacker's).
func TestPinnedRelayRefusesWhatTheProxyRefuses(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	onEngines(t, host, func(t *testing.T, e *endpoint) {
		_, px := e.start(t, backend(t, host))
		ctx := context.Background()
		ln, err := net.Listen("tcp", host+":0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		got := make(chan struct{}, 1)
		go func() {
			if c, err := ln.Accept(); err == nil {
				got <- struct{}{}
				c.Close()
			}
		}()
		if err := px.Set(ctx, "secret-key", "secret-value", 0).Err(); err != nil {
			t.Fatal(err)
		}
		conn := px.Conn()
		defer conn.Close()
		if err := conn.BLPop(ctx, 10*time.Millisecond, "nothing").Err(); err != redis.Nil {
			t.Fatalf("BLPOP to pin: %v", err)
		}
		lhost, lport, _ := net.SplitHostPort(ln.Addr().String())
		err = conn.Do(ctx, "MIGRATE", lhost, lport, "secret-key", 0, 1000).Err()
		if err == nil || !strings.Contains(err.Error(), "NOPERM") {
			t.Fatalf("MIGRATE after a pinned command: %v", err)
		}
		for _, cmd := range redisconf.DeniedCommands {
			if !denied[cmd] {
				t.Errorf("%s is in the ACL's list but not the proxy's", cmd)
			}
		}
		select {
		case <-got:
			t.Fatal("the server connected to the attacker's listener")
		case <-time.After(300 * time.Millisecond):
		}
	})
}

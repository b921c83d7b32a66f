package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/redisconf"
	"github.com/marina-redis/marina/internal/resp"
	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/testutil"
)

const (
	testPW     = "client-password-1"
	testSecret = "internal-secret-1"
)

// proxySecret is what the proxy logs in with: the marina-proxy user's.
var proxySecret = redisconf.ProxySecret(testSecret)

// backend starts a real redis-server configured as Marina configures one.
func backend(t *testing.T, host string) string {
	t.Helper()
	port := testutil.FreePort(t, host)
	dir := t.TempDir()
	c := redisconf.Config{Port: port, Bind: host, Dir: dir, MaxMemory: 64 << 20, Policy: "noeviction", Persistence: state.PersistNone,
		Password: testPW, Secret: testSecret}
	conf := filepath.Join(dir, "redis.conf")
	if err := os.WriteFile(conf, []byte(c.Render()), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("redis-server", conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := fmt.Sprintf("%s:%d", host, port)
	cl := redis.NewClient(&redis.Options{Addr: addr, Password: testPW, Protocol: 2, DisableIdentity: true})
	defer cl.Close()
	testutil.WaitFor(t, 5*time.Second, "redis up", func() error { return cl.Ping(context.Background()).Err() })
	return addr
}

// startProxy serves shards on the default engine, with a client.
func startProxy(t *testing.T, host string, shards ...string) (*DB, *redis.Client) {
	t.Helper()
	d, err := Listen(testRoute(host, shards...), testutil.Logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	cl := redis.NewClient(&redis.Options{Addr: d.Addr(), Password: testPW, Protocol: 2, DisableIdentity: true, MaxRetries: -1})
	t.Cleanup(func() { cl.Close() })
	return d, cl
}

func direct(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, Password: testPW, Protocol: 2, DisableIdentity: true})
}

// Every command family gives the same reply through the proxy as directly.
func TestCommandFamiliesMatchDirect(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	onEngines(t, host, func(t *testing.T, e *endpoint) {
		ref := direct(backend(t, host))
		defer ref.Close()
		_, px := e.start(t, backend(t, host))
		ctx := context.Background()
		cmds := [][]any{
			{"SET", "s", "v"}, {"GET", "s"}, {"APPEND", "s", "x"}, {"STRLEN", "s"}, {"GETRANGE", "s", 0, 1}, {"SETNX", "s", "y"},
			{"INCR", "n"}, {"INCRBY", "n", 5}, {"DECR", "n"}, {"INCRBYFLOAT", "f", "1.5"},
			{"SET", "e", "1", "EX", 100}, {"TTL", "e"}, {"PERSIST", "e"}, {"TTL", "e"}, {"EXPIRE", "e", 50}, {"TYPE", "e"},
			{"LPUSH", "l", "a", "b", "c"}, {"RPUSH", "l", "d"}, {"LRANGE", "l", 0, -1}, {"LPOP", "l"}, {"LLEN", "l"}, {"LINDEX", "l", 1},
			{"HSET", "h", "f1", "v1", "f2", "v2"}, {"HGET", "h", "f1"}, {"HGETALL", "h"}, {"HDEL", "h", "f1"}, {"HLEN", "h"}, {"HINCRBY", "h", "c", 3},
			{"SADD", "set", "a", "b", "c"}, {"SISMEMBER", "set", "a"}, {"SCARD", "set"}, {"SREM", "set", "a"},
			{"ZADD", "z", 1, "a", 2, "b", 3, "c"}, {"ZRANGE", "z", 0, -1, "WITHSCORES"}, {"ZSCORE", "z", "b"}, {"ZRANK", "z", "c"}, {"ZINCRBY", "z", 5, "a"},
			{"PFADD", "hll", "a", "b"}, {"PFCOUNT", "hll"},
			{"XADD", "x", "1-1", "f", "v"}, {"XLEN", "x"}, {"XRANGE", "x", "-", "+"},
			{"SETBIT", "b", 7, 1}, {"GETBIT", "b", 7}, {"BITCOUNT", "b"},
			{"GEOADD", "g", "13.361389", "38.115556", "Palermo"}, {"GEOPOS", "g", "Palermo"},
			{"MSET", "m1", "1", "m2", "2"}, {"MGET", "m1", "m2", "nope"}, {"EXISTS", "m1", "m2", "nope"}, {"DEL", "m1", "nope"},
			{"EVAL", "return redis.call('GET', KEYS[1])", 1, "s"}, {"OBJECT", "ENCODING", "n"},
			{"RENAME", "s", "s2"}, {"GET", "s2"}, {"DBSIZE"}, {"PING"}, {"ECHO", "hi"},
			{"GET"}, {"SET", "k"}, {"LPUSH", "s2", "x"}, {"INCR", "s2"},
		}
		for _, c := range cmds {
			want, werr := ref.Do(ctx, c...).Result()
			got, gerr := px.Do(ctx, c...).Result()
			if fmt.Sprint(want) != fmt.Sprint(got) || fmt.Sprint(werr) != fmt.Sprint(gerr) {
				t.Errorf("%v: proxy %v %v, direct %v %v", c, got, gerr, want, werr)
			}
		}
	})
}

func TestShardedSplitMergeAndErrors(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	onEngines(t, host, func(t *testing.T, e *endpoint) {
		b0, b1, b2 := backend(t, host), backend(t, host), backend(t, host)
		_, px := e.start(t, b0, b1, b2)
		ctx := context.Background()
		var kv []any
		var keys []string
		for i := 0; i < 300; i++ {
			k := fmt.Sprintf("key:%d", i)
			keys = append(keys, k)
			kv = append(kv, k, i)
		}
		if err := px.MSet(ctx, kv...).Err(); err != nil {
			t.Fatal(err)
		}
		// The keys really are spread: every backend holds some.
		total := int64(0)
		for _, b := range []string{b0, b1, b2} {
			n, _ := direct(b).DBSize(ctx).Result()
			if n == 0 {
				t.Fatalf("backend %s holds no key", b)
			}
			total += n
		}
		if total != 300 {
			t.Fatalf("backends hold %d keys", total)
		}
		vals, err := px.MGet(ctx, append(keys, "missing")...).Result()
		if err != nil || len(vals) != 301 || vals[300] != nil {
			t.Fatalf("MGET: %v %d", err, len(vals))
		}
		for i := 0; i < 300; i++ {
			if vals[i] != fmt.Sprint(i) {
				t.Fatalf("MGET[%d] = %v", i, vals[i])
			}
		}
		if n, err := px.Exists(ctx, keys[:50]...).Result(); err != nil || n != 50 {
			t.Fatalf("EXISTS %d %v", n, err)
		}
		if n, err := px.DBSize(ctx).Result(); err != nil || n != 300 {
			t.Fatalf("DBSIZE %d %v", n, err)
		}
		// SCAN walks every shard with one cursor.
		seen := map[string]bool{}
		var cur uint64
		for {
			ks, next, err := px.Scan(ctx, cur, "key:*", 50).Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range ks {
				seen[k] = true
			}
			if cur = next; cur == 0 {
				break
			}
		}
		if len(seen) != 300 {
			t.Fatalf("SCAN saw %d keys", len(seen))
		}
		ks, _ := px.Keys(ctx, "key:1*").Result()
		sort.Strings(ks)
		if len(ks) != 111 {
			t.Fatalf("KEYS key:1* = %d", len(ks))
		}
		if n, err := px.Del(ctx, keys[:100]...).Result(); err != nil || n != 100 {
			t.Fatalf("DEL %d %v", n, err)
		}
		// Keys in different slots: refused with CROSSSLOT; hash tags keep them together.
		if err := px.Rename(ctx, "key:150", "key:151").Err(); err == nil || !strings.HasPrefix(err.Error(), "CROSSSLOT") {
			t.Fatalf("RENAME across slots: %v", err)
		}
		if err := px.MSetNX(ctx, "a", 1, "b", 2).Err(); err == nil || !strings.HasPrefix(err.Error(), "CROSSSLOT") {
			t.Fatalf("MSETNX across slots: %v", err)
		}
		if err := px.Set(ctx, "{user1}:a", 1, 0).Err(); err != nil {
			t.Fatal(err)
		}
		if err := px.Rename(ctx, "{user1}:a", "{user1}:b").Err(); err != nil {
			t.Fatalf("RENAME within a hash tag: %v", err)
		}
		if err := px.Eval(ctx, "return redis.call('INCR', KEYS[1]) + redis.call('INCR', KEYS[2])", []string{"{t}x", "{t}y"}).Err(); err != nil {
			t.Fatalf("EVAL with keys in one slot: %v", err)
		}
		if err := px.Eval(ctx, "return 1", []string{"x", "y"}).Err(); err == nil || !strings.HasPrefix(err.Error(), "CROSSSLOT") {
			t.Fatalf("EVAL across slots: %v", err)
		}
		if err := px.Do(ctx, "RANDOMKEY").Err(); err != nil {
			t.Fatalf("RANDOMKEY: %v", err)
		}
		for _, cmd := range [][]any{{"INFO", "server"}, {"TIME"}, {"COMMAND", "COUNT"}} {
			if err := px.Do(ctx, cmd...).Err(); err != nil {
				t.Fatalf("%v on a sharded database: %v", cmd, err)
			}
		}
	})
}

func TestErrorsKeepTheConnection(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	onEngines(t, host, func(t *testing.T, e *endpoint) {
		d, _ := e.start(t, backend(t, host))
		conn := e.dial(t, d.Addr())
		defer conn.Close()
		rd := bufio.NewReader(conn)
		say := func(cmd string) string {
			if _, err := io.WriteString(conn, cmd); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			line, err := rd.ReadString('\n')
			if err != nil {
				t.Fatalf("%q: %v", cmd, err)
			}
			return strings.TrimSpace(line)
		}
		cases := []struct{ cmd, want string }{
			{"GET k\r\n", "-NOAUTH Authentication required."},
			{"AUTH wrong-password\r\n", "-WRONGPASS invalid username-password pair or user is disabled."},
			{"AUTH " + testPW + "\r\n", "+OK"},
			{"PING\r\n", "+PONG"},
			{"NOSUCHCMD a b\r\n", "-ERR unknown command 'NOSUCHCMD', with args beginning with: 'a' 'b'"},
			{"CONFIG SET maxmemory 1\r\n", "-ERR command 'config' is not allowed through the Marina proxy"},
			{"SHUTDOWN\r\n", "-ERR command 'shutdown' is not allowed through the Marina proxy"},
			{"GET\r\n", "-ERR wrong number of arguments for 'get' command"},
			{"SELECT 1\r\n", "-ERR DB index is out of range"},
			{"SELECT 0\r\n", "+OK"},
			{"CLIENT SETNAME app\r\n", "+OK"},
			{"SET k v\r\n", "+OK"},
			{"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", "$1"},
		}
		for _, c := range cases {
			if got := say(c.cmd); got != c.want {
				t.Errorf("%q: got %q, want %q", c.cmd, got, c.want)
			}
		}
		if line, _ := rd.ReadString('\n'); strings.TrimSpace(line) != "v" {
			t.Fatalf("GET payload %q", line)
		}
		// A protocol error is answered, then the connection closes.
		if got := say("*1\r\n$x\r\n"); !strings.HasPrefix(got, "-ERR Protocol error") {
			t.Fatalf("protocol error: %q", got)
		}
	})
}

func TestPipelineOfThousands(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	onEngines(t, host, func(t *testing.T, e *endpoint) {
		_, px := e.start(t, backend(t, host), backend(t, host))
		ctx := context.Background()
		pipe := px.Pipeline()
		const n = 5000
		for i := 0; i < n; i++ {
			switch i % 4 {
			case 0:
				pipe.Set(ctx, fmt.Sprintf("p:%d", i), i, 0)
			case 1:
				pipe.Get(ctx, fmt.Sprintf("p:%d", i-1))
			case 2:
				pipe.Incr(ctx, "{c}counter")
			case 3:
				pipe.MGet(ctx, fmt.Sprintf("p:%d", i-3), "nope")
			}
		}
		cmds, err := pipe.Exec(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range cmds {
			switch i % 4 {
			case 1:
				if v, _ := c.(*redis.StringCmd).Result(); v != fmt.Sprint(i-1) {
					t.Fatalf("reply %d out of order: %q", i, v)
				}
			case 2:
				if v, _ := c.(*redis.IntCmd).Result(); v != int64(i/4+1) {
					t.Fatalf("INCR %d = %d", i, v)
				}
			case 3:
				if v, _ := c.(*redis.SliceCmd).Result(); len(v) != 2 || v[0] != fmt.Sprint(i-3) {
					t.Fatalf("MGET %d = %v", i, v)
				}
			}
		}
	})
}

// On a single-shard database MULTI/EXEC, WATCH, blocking commands and
// pub/sub work through the proxy on a pinned connection.
func TestPinnedCommandsSingleShard(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	onEngines(t, host, func(t *testing.T, e *endpoint) {
		d, px := e.start(t, backend(t, host))
		ctx := context.Background()
		// Replies before the pinning command come first, in order.
		pipe := px.Pipeline()
		set := pipe.Set(ctx, "before", "1", 0)
		get := pipe.Get(ctx, "before")
		if _, err := pipe.Exec(ctx); err != nil || set.Val() != "OK" || get.Val() != "1" {
			t.Fatalf("pipeline: %v %v %v", err, set.Val(), get.Val())
		}
		// MULTI/EXEC.
		cmds, err := px.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Incr(ctx, "tx")
			p.Incr(ctx, "tx")
			return nil
		})
		if err != nil || len(cmds) != 2 || cmds[1].(*redis.IntCmd).Val() != 2 {
			t.Fatalf("MULTI/EXEC: %v %v", err, cmds)
		}
		// WATCH: a concurrent change aborts the transaction.
		other := redis.NewClient(e.options(&redis.Options{Addr: d.Addr(), Password: testPW, Protocol: 2, DisableIdentity: true}))
		defer other.Close()
		err = px.Watch(ctx, func(tx *redis.Tx) error {
			if err := other.Set(ctx, "w", "changed", 0).Err(); err != nil {
				return err
			}
			_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, "w", "mine", 0)
				return nil
			})
			return err
		}, "w")
		if err != redis.TxFailedErr {
			t.Fatalf("WATCH conflict: %v", err)
		}
		// BLPOP waits for another client's push.
		got := make(chan []string, 1)
		go func() {
			v, _ := px.BLPop(ctx, 5*time.Second, "queue").Result()
			got <- v
		}()
		testutil.WaitFor(t, 5*time.Second, "BLPOP blocked on the backend", func() error {
			info, err := direct(d.topo.Load().route.Shards[0].Master).Info(ctx, "clients").Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "blocked_clients:1") {
				return errors.New("not blocked yet")
			}
			return nil
		})
		if err := other.RPush(ctx, "queue", "job").Err(); err != nil {
			t.Fatal(err)
		}
		select {
		case v := <-got:
			if len(v) != 2 || v[1] != "job" {
				t.Fatalf("BLPOP %v", v)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("BLPOP did not return")
		}
		// SUBSCRIBE receives another client's PUBLISH.
		sub := redis.NewClient(e.options(&redis.Options{Addr: d.Addr(), Password: testPW, Protocol: 2, DisableIdentity: true}))
		defer sub.Close()
		ps := sub.Subscribe(ctx, "news")
		defer ps.Close()
		if _, err := ps.Receive(ctx); err != nil {
			t.Fatal(err)
		}
		if n, err := other.Publish(ctx, "news", "hello").Result(); err != nil || n != 1 {
			t.Fatalf("PUBLISH: %d %v", n, err)
		}
		msg, err := ps.ReceiveMessage(ctx)
		if err != nil || msg.Payload != "hello" {
			t.Fatalf("message %v %v", msg, err)
		}
	})
}

func TestTransactionsWhenSharded(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	onEngines(t, host, func(t *testing.T, e *endpoint) {
		_, px := e.start(t, backend(t, host), backend(t, host))
		ctx := context.Background()
		// MULTI/EXEC with every key in one slot works.
		cmds, err := px.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "{u7}:name", "ann", 0)
			p.Incr(ctx, "{u7}:visits")
			p.Ping(ctx)
			return nil
		})
		if err != nil || len(cmds) != 3 || cmds[1].(*redis.IntCmd).Val() != 1 {
			t.Fatalf("MULTI/EXEC in one slot: %v %v", err, cmds)
		}
		if v, _ := px.Get(ctx, "{u7}:name").Result(); v != "ann" {
			t.Fatalf("after EXEC: %q", v)
		}
		// Keys in different slots abort the transaction; nothing is applied.
		_, err = px.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "a", "1", 0)
			p.Set(ctx, "b", "2", 0)
			return nil
		})
		// As in Redis Cluster: the command is refused when queued, EXEC aborts.
		if err == nil || !strings.Contains(err.Error(), "EXECABORT") {
			t.Fatalf("MULTI across slots: %v", err)
		}
		if n, _ := px.Exists(ctx, "a", "b").Result(); n != 0 {
			t.Fatalf("aborted transaction applied %d keys", n)
		}
		// Blocking and pub/sub still need a single-shard database.
		err = px.Do(ctx, "SUBSCRIBE", "x").Err()
		if err == nil || !strings.Contains(err.Error(), "single-shard databases only") {
			t.Fatalf("SUBSCRIBE on a sharded database: %v", err)
		}
		// The connection is still usable.
		if err := px.Set(context.Background(), "k", "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestScriptsOnEveryShardAndResp3(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	onEngines(t, host, func(t *testing.T, e *endpoint) {
		_, px := e.start(t, backend(t, host), backend(t, host))
		ctx := context.Background()
		sha, err := px.ScriptLoad(ctx, "return redis.call('INCR', KEYS[1])").Result()
		if err != nil {
			t.Fatal(err)
		}
		for k := 0; k < 20; k++ { // keys on both shards
			if err := px.EvalSha(ctx, sha, []string{fmt.Sprintf("c%d", k)}).Err(); err != nil {
				t.Fatalf("EVALSHA on key %d: %v", k, err)
			}
		}
		// RESP3 on a single-shard database, through the pinned connection.
		d1, _ := e.start(t, backend(t, host))
		r3 := redis.NewClient(e.options(&redis.Options{Addr: d1.Addr(), Password: testPW, Protocol: 3}))
		defer r3.Close()
		if err := r3.HSet(ctx, "h", "a", "1").Err(); err != nil {
			t.Fatal(err)
		}
		m, err := r3.HGetAll(ctx, "h").Result()
		if err != nil || m["a"] != "1" {
			t.Fatalf("RESP3 HGETALL %v %v", m, err)
		}
	})
}

func TestCrossSlotQueueingError(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	onEngines(t, host, func(t *testing.T, e *endpoint) {
		d, _ := e.start(t, backend(t, host), backend(t, host))
		conn := e.dial(t, d.Addr())
		defer conn.Close()
		rd := bufio.NewReader(conn)
		fmt.Fprintf(conn, "AUTH %s\r\nMULTI\r\nSET a 1\r\nSET b 2\r\nEXEC\r\n", testPW)
		var got []string
		for i := 0; i < 5; i++ {
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			line, err := rd.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, strings.TrimSpace(line))
		}
		want := []string{"+OK", "+OK", "+QUEUED", "-CROSSSLOT Keys in request don't hash to the same slot", "-EXECABORT Transaction discarded because of previous errors."}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("got %q\nwant %q", got, want)
		}
	})
}

func TestDurabilityReplicated(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	onEngines(t, host, func(t *testing.T, e *endpoint) {
		master := backend(t, host)
		// A replica of it, configured as Marina does.
		port := testutil.FreePort(t, host)
		dir := t.TempDir()
		rc := redisconf.Config{Port: port, Bind: host, Dir: dir, MaxMemory: 64 << 20, Policy: "noeviction", Persistence: state.PersistNone,
			Password: testPW, Secret: testSecret, ReplicaOf: master, Fenced: true}
		conf := filepath.Join(dir, "redis.conf")
		if err := os.WriteFile(conf, []byte(rc.Render()), 0o600); err != nil {
			t.Fatal(err)
		}
		rcmd := exec.Command("redis-server", conf)
		if err := rcmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = rcmd.Process.Kill(); _ = rcmd.Wait() })
		replica := direct(fmt.Sprintf("%s:%d", host, port))
		defer replica.Close()
		ctx := context.Background()
		testutil.WaitFor(t, 10*time.Second, "replica in sync", func() error {
			info, err := replica.Info(ctx, "replication").Result()
			if err != nil || !strings.Contains(info, "master_link_status:up") {
				return fmt.Errorf("link not up: %v", err)
			}
			return nil
		})
		d := e.listen(t, Route{Name: "dur", Addr: host + ":0", Password: testPW, Secret: proxySecret, Replicated: true, WaitTimeout: 300 * time.Millisecond,
			Shards: []ShardRoute{{Index: 0, SlotStart: 0, SlotEnd: 16383, Master: master}}})
		defer d.Close()
		px := redis.NewClient(e.options(&redis.Options{Addr: d.Addr(), Password: testPW, Protocol: 2, DisableIdentity: true, MaxRetries: -1}))
		defer px.Close()
		// An acknowledged write is on the replica already: no waiting here.
		for i := 0; i < 200; i++ {
			k := fmt.Sprintf("d%d", i)
			if err := px.Set(ctx, k, i, 0).Err(); err != nil {
				t.Fatal(err)
			}
			if v, err := replica.Get(ctx, k).Result(); err != nil || v != fmt.Sprint(i) {
				t.Fatalf("acknowledged %s not on the replica: %q %v", k, v, err)
			}
		}
		// A pipeline of writes is confirmed by one WAIT.
		pipe := px.Pipeline()
		for i := 0; i < 1000; i++ {
			pipe.Incr(ctx, "counter")
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		if v, _ := replica.Get(ctx, "counter").Result(); v != "1000" {
			t.Fatalf("replica counter %q", v)
		}
		// Without a replica, writes are refused as unconfirmed; reads still work.
		_ = rcmd.Process.Kill()
		_ = rcmd.Wait()
		start := time.Now()
		err := px.Set(ctx, "lonely", "1", 0).Err()
		if err == nil || !strings.HasPrefix(err.Error(), "NOREPLICAS") {
			t.Fatalf("write without a replica: %v", err)
		}
		if time.Since(start) > 2*time.Second {
			t.Fatalf("unconfirmed write took %v", time.Since(start))
		}
		if v, err := px.Get(ctx, "d1").Result(); err != nil || v != "1" {
			t.Fatalf("read without a replica: %q %v", v, err)
		}
	})
}

func TestReadFrom(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	onEngines(t, host, func(t *testing.T, e *endpoint) {
		master, other := backend(t, host), backend(t, host)
		ctx := context.Background()
		// Different values tell where a read went.
		_ = direct(master).Set(ctx, "k", "master", 0).Err()
		_ = direct(other).Set(ctx, "k", "replica", 0).Err()
		for _, c := range []struct {
			from string
			want map[string]bool
		}{
			{"master", map[string]bool{"master": true}},
			{"replica", map[string]bool{"replica": true}},
			{"any", map[string]bool{"master": true, "replica": true}},
		} {
			d := e.listen(t, Route{Name: "rf", Addr: host + ":0", Password: testPW, Secret: proxySecret, ReadFrom: c.from,
				Shards: []ShardRoute{{Index: 0, SlotStart: 0, SlotEnd: 16383, Master: master, Replicas: []string{other}}}})
			seen := map[string]bool{}
			for i := 0; i < 6; i++ { // several clients: "any" spreads them
				cl := redis.NewClient(e.options(&redis.Options{Addr: d.Addr(), Password: testPW, Protocol: 2, DisableIdentity: true, PoolSize: 1}))
				v, err := cl.Get(ctx, "k").Result()
				if err != nil {
					t.Fatal(err)
				}
				seen[v] = true
				// Writes always go to the master.
				if err := cl.Set(ctx, "w", c.from, 0).Err(); err != nil {
					t.Fatal(err)
				}
				cl.Close()
			}
			d.Close()
			if fmt.Sprint(seen) != fmt.Sprint(c.want) {
				t.Errorf("read-from %s: reads went to %v", c.from, seen)
			}
			if v, _ := direct(master).Get(ctx, "w").Result(); v != c.from {
				t.Errorf("read-from %s: write not on the master", c.from)
			}
		}
	})
}

func TestLimitsAndStats(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	onEngines(t, host, func(t *testing.T, e *endpoint) {
		be := backend(t, host)
		d := e.listen(t, Route{Name: "lim", Addr: host + ":0", Password: testPW, Secret: proxySecret, MaxClients: 2, MaxRequest: 1024,
			Idle: 300 * time.Millisecond, Shards: []ShardRoute{{Index: 0, SlotStart: 0, SlotEnd: 16383, Master: be}}})
		defer d.Close()
		ctx := context.Background()
		dial := func() (net.Conn, *bufio.Reader) {
			c := e.dial(t, d.Addr())
			return c, bufio.NewReader(c)
		}
		line := func(c net.Conn, r *bufio.Reader) (string, error) {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			s, err := r.ReadString('\n')
			return strings.TrimSpace(s), err
		}
		c1, r1 := dial()
		defer c1.Close()
		c2, r2 := dial()
		defer c2.Close()
		fmt.Fprintf(c1, "AUTH %s\r\n", testPW)
		fmt.Fprintf(c2, "AUTH %s\r\n", testPW)
		line(c1, r1)
		line(c2, r2)
		if e.tls {
			// Refused before the handshake: no words, the connection closes.
			if c3, err := tls.Dial("tcp", d.Addr(), e.clientTLS()); err == nil {
				c3.Close()
				t.Fatal("third client served")
			}
		} else {
			c3, r3 := dial()
			defer c3.Close()
			if got, _ := line(c3, r3); got != "-ERR max number of clients reached" {
				t.Fatalf("third client: %q", got)
			}
		}
		// A request over the size limit: an error, then the connection closes.
		fmt.Fprintf(c1, "SET k %s\r\n", strings.Repeat("x", 2000))
		if got, _ := line(c1, r1); !strings.HasPrefix(got, "-ERR Protocol error") {
			t.Fatalf("oversized request: %q", got)
		}
		// An idle client is closed.
		start := time.Now()
		if _, err := line(c2, r2); err == nil {
			t.Fatal("idle client got data")
		}
		if time.Since(start) > 3*time.Second {
			t.Fatalf("idle client closed after %v", time.Since(start))
		}
		px := redis.NewClient(e.options(&redis.Options{Addr: d.Addr(), Password: testPW, Protocol: 2, DisableIdentity: true}))
		defer px.Close()
		testutil.WaitFor(t, 5*time.Second, "a free client slot", func() error { return px.Ping(ctx).Err() })
		for i := 0; i < 50; i++ {
			_ = px.Set(ctx, "s", i, 0).Err()
		}
		_ = px.Do(ctx, "NOSUCH").Err()
		s := d.Snapshot()
		var n int64
		for _, b := range s.Buckets {
			n += b
		}
		if s.Ops < 50 || s.Errors < 1 || n < 50 || s.Engine != e.engine || s.Rejected != 1 {
			t.Fatalf("snapshot %+v", s)
		}
	})
}

// Several event loops share the port; each has its own backends (the
// event loop only).
func TestSeveralLoops(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	b0, b1 := backend(t, host), backend(t, host)
	d, err := Listen(Route{Name: "multi", Addr: host + ":0", Password: testPW, Secret: proxySecret, Loops: 2,
		Shards: []ShardRoute{{Index: 0, SlotStart: 0, SlotEnd: 8191, Master: b0}, {Index: 1, SlotStart: 8192, SlotEnd: 16383, Master: b1}}}, testutil.Logger())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	for i := 0; i < 8; i++ {
		cl := redis.NewClient(&redis.Options{Addr: d.Addr(), Password: testPW, Protocol: 2, DisableIdentity: true, PoolSize: 1})
		if err := cl.MSet(ctx, fmt.Sprintf("a%d", i), i, fmt.Sprintf("b%d", i), i).Err(); err != nil {
			t.Fatal(err)
		}
		cl.Close()
	}
	px := redis.NewClient(&redis.Options{Addr: d.Addr(), Password: testPW, Protocol: 2, DisableIdentity: true})
	defer px.Close()
	if n, err := px.DBSize(ctx).Result(); err != nil || n != 16 {
		t.Fatalf("DBSIZE %d %v", n, err)
	}
	if ls, ok := d.eng.(loops); !ok || len(ls) != 2 {
		t.Fatalf("engine %T %v", d.eng, d.eng)
	}
}

// Regressions from a review: no way around AUTH or the deny list, and no
// way to disturb the connection the proxy shares between clients.
func TestNoBypasses(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	onEngines(t, host, func(t *testing.T, e *endpoint) {
		single, _ := e.start(t, backend(t, host))
		sharded, spx := e.start(t, backend(t, host), backend(t, host))
		ctx := context.Background()
		raw := func(d *DB, script string, n int) []string {
			conn := e.dial(t, d.Addr())
			defer conn.Close()
			io.WriteString(conn, script)
			rd := bufio.NewReader(conn)
			var out []string
			for i := 0; i < n; i++ {
				_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
				line, err := rd.ReadString('\n')
				if err != nil {
					break
				}
				if strings.HasPrefix(line, "$") && line != "$-1\r\n" {
					body, _ := rd.ReadString('\n')
					line = "$" + strings.TrimSpace(body)
				}
				out = append(out, strings.TrimSpace(line))
			}
			return out
		}
		// HELLO cannot smuggle a login: neither a stray "auth" token nor a wrong password.
		if got := raw(single, "HELLO 3 SETNAME auth\r\nCONFIG GET requirepass\r\n", 2); len(got) < 1 || !strings.HasPrefix(got[0], "-") {
			t.Fatalf("HELLO 3 SETNAME auth: %q", got)
		}
		if got := raw(single, "HELLO 3 AUTH default wrong\r\nGET k\r\n", 2); len(got) < 2 || !strings.HasPrefix(got[0], "-WRONGPASS") || !strings.HasPrefix(got[1], "-NOAUTH") {
			t.Fatalf("HELLO 3 with a wrong password: %q", got)
		}
		// A pinned connection runs data commands only.
		got := raw(single, "AUTH "+testPW+"\r\nBLPOP nokey 0.01\r\nCONFIG GET requirepass\r\n", 3)
		if len(got) < 3 || !strings.Contains(got[2], "NOPERM") {
			t.Fatalf("admin command on a pinned connection: %q", got)
		}
		// Scripts run with the proxy's rights: no SWAPDB.
		if err := spx.Eval(ctx, "return redis.call('swapdb','0','1')", []string{"k"}).Err(); err == nil || !strings.Contains(err.Error(), "can't run this command") && !strings.Contains(err.Error(), "NOPERM") {
			t.Fatalf("SWAPDB from a script: %v", err)
		}
		// RESET and WAIT would act on the shared connection.
		for _, cmd := range [][]any{{"RESET"}, {"WAIT", 1, 0}} {
			if err := spx.Do(ctx, cmd...).Err(); err == nil || !strings.Contains(err.Error(), "not allowed") {
				t.Fatalf("%v: %v", cmd, err)
			}
		}
		// SELECT inside a sharded transaction is refused; others are unaffected.
		if err := spx.Set(ctx, "{x}k", "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		got = raw(sharded, "AUTH "+testPW+"\r\nMULTI\r\nSELECT 3\r\nCLIENT REPLY SKIP\r\nEXEC\r\n", 5)
		if len(got) < 5 || !strings.HasPrefix(got[4], "-EXECABORT") {
			t.Fatalf("SELECT/CLIENT in a sharded transaction: %q", got)
		}
		if v, err := spx.Get(ctx, "{x}k").Result(); err != nil || v != "v" {
			t.Fatalf("shared connection disturbed: %q %v", v, err)
		}
		// A failed AUTH leaves an authenticated connection authenticated.
		got = raw(single, "AUTH "+testPW+"\r\nAUTH wrong\r\nPING\r\n", 3)
		if len(got) < 3 || got[2] != "+PONG" {
			t.Fatalf("after a failed AUTH: %q", got)
		}
	})
}

func TestLargeRepliesAndSlowReaders(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	onEngines(t, host, func(t *testing.T, e *endpoint) {
		d, px := e.start(t, backend(t, host))
		ctx := context.Background()
		vals := make([]any, 0, 200000)
		for i := 0; i < 200000; i++ {
			vals = append(vals, fmt.Sprintf("value-%06d", i))
		}
		for i := 0; i < len(vals); i += 10000 {
			if err := px.RPush(ctx, "big", vals[i:i+10000]...).Err(); err != nil {
				t.Fatal(err)
			}
		}
		start := time.Now()
		got, err := px.LRange(ctx, "big", 0, -1).Result()
		if err != nil || len(got) != 200000 || got[199999] != "value-199999" {
			t.Fatalf("LRANGE: %d %v", len(got), err)
		}
		t.Logf("200000-element reply through the proxy in %v", time.Since(start))
		// A client that writes a long pipeline and reads slowly gets every
		// reply, in order.
		conn := e.dial(t, d.Addr())
		defer conn.Close()
		const n = 150000
		go func() {
			w := bufio.NewWriter(conn)
			fmt.Fprintf(w, "AUTH %s\r\n", testPW)
			for i := 0; i < n; i++ {
				fmt.Fprintf(w, "*2\r\n$4\r\nECHO\r\n$%d\r\n%d\r\n", len(strconv.Itoa(i)), i)
			}
			w.Flush()
		}()
		rd := bufio.NewReader(conn)
		_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		if l, _ := rd.ReadString('\n'); l != "+OK\r\n" {
			t.Fatalf("AUTH: %q", l)
		}
		time.Sleep(300 * time.Millisecond) // read late on purpose (not a wait for a condition)
		for i := 0; i < n; i++ {
			if _, err := rd.ReadString('\n'); err != nil {
				t.Fatalf("reply %d: %v", i, err)
			}
			l, err := rd.ReadString('\n')
			if err != nil || strings.TrimSpace(l) != strconv.Itoa(i) {
				t.Fatalf("reply %d: %q %v", i, l, err)
			}
		}
	})
}

// A backend that cannot be reached fails commands at once, again and again,
// without stalling the loop; the client connection stays usable.
func TestUnreachableBackendFailsFast(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	onEngines(t, host, func(t *testing.T, e *endpoint) {
		good := backend(t, host)
		dead := fmt.Sprintf("%s:%d", host, testutil.FreePort(t, host)) // nothing listens
		d := e.listen(t, Route{Name: "dead", Addr: host + ":0", Password: testPW, Secret: proxySecret,
			Shards: []ShardRoute{{Index: 0, SlotStart: 0, SlotEnd: 8191, Master: good}, {Index: 1, SlotStart: 8192, SlotEnd: 16383, Master: dead}}})
		defer d.Close()
		px := redis.NewClient(e.options(&redis.Options{Addr: d.Addr(), Password: testPW, Protocol: 2, DisableIdentity: true, MaxRetries: -1}))
		defer px.Close()
		ctx := context.Background()
		// "foo" hashes to slot 12182: the dead shard; "bar" (5061) to the good one.
		start := time.Now()
		for i := 0; i < 200; i++ {
			if err := px.Get(ctx, "foo").Err(); err == nil || !strings.Contains(err.Error(), "backend unavailable") {
				t.Fatalf("GET on the dead shard: %v", err)
			}
		}
		if el := time.Since(start); el > 3*time.Second {
			t.Fatalf("200 commands to a dead backend took %v", el)
		}
		if err := px.Set(ctx, "bar", "1", 0).Err(); err != nil {
			t.Fatalf("the good shard: %v", err)
		}
	})
}

// A backend that accepts and logs in but then never answers (a host gone
// silent) fails its requests after the deadline; other shards keep serving.
// The event loop's own protection (doc.go), so on the loop only.
func TestSilentBackendDeadline(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	good := backend(t, host)
	ln, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				// Answer the login, then read and never reply.
				if args, err := resp.NewReader(r, 4096).ReadCommand(); err == nil && len(args) > 0 {
					io.WriteString(c, "+OK\r\n")
				}
				io.Copy(io.Discard, r)
			}()
		}
	}()
	d, err := Listen(Route{Name: "silent", Addr: host + ":0", Password: testPW, Secret: proxySecret,
		Shards: []ShardRoute{{Index: 0, SlotStart: 0, SlotEnd: 8191, Master: good}, {Index: 1, SlotStart: 8192, SlotEnd: 16383, Master: ln.Addr().String()}}}, testutil.Logger())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	px := redis.NewClient(&redis.Options{Addr: d.Addr(), Password: testPW, Protocol: 2, DisableIdentity: true, MaxRetries: -1, ReadTimeout: 30 * time.Second})
	defer px.Close()
	other := redis.NewClient(&redis.Options{Addr: d.Addr(), Password: testPW, Protocol: 2, DisableIdentity: true})
	defer other.Close()
	start := time.Now()
	errc := make(chan error, 1)
	go func() { errc <- px.Get(ctx, "foo").Err() }() // slot 12182: the silent shard
	// Meanwhile the good shard serves ("bar": slot 5061).
	for i := 0; i < 20; i++ {
		if err := other.Set(ctx, "bar", i, 0).Err(); err != nil {
			t.Fatalf("good shard during the wait: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // spread over the wait (not a wait for a condition)
	}
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "no answer") {
			t.Fatalf("silent backend: %v", err)
		}
		if el := time.Since(start); el < backendDeadline || el > backendDeadline+3*time.Second {
			t.Fatalf("failed after %v, deadline %v", el, backendDeadline)
		}
	case <-time.After(backendDeadline + 5*time.Second):
		t.Fatal("request to a silent backend never failed")
	}
}

// A pinned connection is opened without blocking the loop: against a
// backend that cannot be reached, or that refuses the proxy's login, the
// client gets a clear error (and other clients are served meanwhile).
func TestPinnedConnectFailures(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	onEngines(t, host, func(t *testing.T, e *endpoint) {
		dead := fmt.Sprintf("%s:%d", host, testutil.FreePort(t, host)) // nothing listens
		good := backend(t, host)
		for _, c := range []struct {
			name, master, secret, want string
		}{
			{"unreachable", dead, proxySecret, "backend unavailable"},
			{"login refused", good, "wrong-secret", "refused AUTH"},
		} {
			t.Run(c.name, func(t *testing.T) {
				route := Route{Name: "pin", Addr: host + ":0", Password: testPW, Secret: proxySecret,
					Shards: []ShardRoute{{Index: 0, SlotStart: 0, SlotEnd: 16383, Master: good}}}
				d := e.listen(t, route)
				defer d.Close()
				// The command table is learned while the backend is fine; then
				// the route changes under the proxy.
				px := redis.NewClient(e.options(&redis.Options{Addr: d.Addr(), Password: testPW, Protocol: 2, DisableIdentity: true}))
				defer px.Close()
				if err := px.Get(context.Background(), "x").Err(); err != redis.Nil {
					t.Fatalf("GET: %v", err)
				}
				route = d.topo.Load().route // as served: its engine and TLS
				route.Addr, route.Secret = d.Addr(), c.secret
				route.Shards = []ShardRoute{{Index: 0, SlotStart: 0, SlotEnd: 16383, Master: c.master}} // the proxy holds the old slice
				d.Update(route)
				conn := e.dial(t, d.Addr())
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				fmt.Fprintf(conn, "AUTH %s\r\nSUBSCRIBE ch\r\n", testPW)
				r := bufio.NewReader(conn)
				if l, err := r.ReadString('\n'); err != nil || l != "+OK\r\n" {
					t.Fatalf("AUTH: %q %v", l, err)
				}
				l, err := r.ReadString('\n')
				if err != nil || !strings.HasPrefix(l, "-ERR") || !strings.Contains(l, c.want) {
					t.Fatalf("SUBSCRIBE with a %s backend: %q %v", c.name, l, err)
				}
				start := time.Now()
				if _, err := r.ReadString('\n'); err == nil || time.Since(start) > 2*time.Second {
					t.Fatalf("the connection stays open after its pinned backend failed: %v after %v", err, time.Since(start))
				}
			})
		}
	})
}

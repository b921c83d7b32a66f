package sentinel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/resp"
	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/testutil"
)

// fakeSrc is a state that tests change by hand.
type fakeSrc struct {
	mu sync.Mutex
	st *state.State
	ch chan struct{}
}

func (f *fakeSrc) State() *state.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st.Clone()
}

func (f *fakeSrc) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ch
}

func (f *fakeSrc) update(fn func(st *state.State)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.st.Clone()
	fn(st)
	f.st = st
	close(f.ch)
	f.ch = make(chan struct{})
}

func startServer(t *testing.T) (*Server, *fakeSrc) {
	t.Helper()
	src := &fakeSrc{st: testState(), ch: make(chan struct{})}
	host := testutil.LoopbackHosts(t, 1)[0]
	s, err := Listen(Config{Addr: net.JoinHostPort(host, "0"), NodeID: "n1", Src: src, HashToken: hashTok,
		DownAfter: time.Second, MaxClients: 50, Log: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return s, src
}

// rawConn speaks RESP by hand, to see exact replies.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	r  *resp.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc, r: resp.NewReader(bufio.NewReader(nc), 4096)}
}

// do sends a command and returns the raw reply.
func (c *rawConn) do(args ...string) string {
	c.t.Helper()
	var bs [][]byte
	for _, a := range args {
		bs = append(bs, []byte(a))
	}
	return c.send(string(resp.AppendCommand(nil, bs...)))
}

func (c *rawConn) send(raw string) string {
	c.t.Helper()
	_ = c.nc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.nc.Write([]byte(raw)); err != nil {
		c.t.Fatal(err)
	}
	return c.read()
}

func (c *rawConn) read() string {
	c.t.Helper()
	_ = c.nc.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := c.r.ReadReply(nil)
	if err != nil {
		c.t.Fatalf("read reply: %v", err)
	}
	return string(b)
}

func TestProtocol(t *testing.T) {
	s, _ := startServer(t)
	c := dialRaw(t, s.Addr())
	steps := []struct {
		args []string
		want string // prefix of the raw reply
	}{
		{[]string{"PING"}, "+PONG\r\n"},
		{[]string{"SENTINEL", "masters"}, "-NOAUTH "},
		{[]string{"SUBSCRIBE", "+switch-master"}, "-NOAUTH "},
		{[]string{"CLIENT", "SETINFO", "LIB-NAME", "x"}, "-NOAUTH "},
		{[]string{"HELLO", "3", "AUTH", "default", "orders-pw"}, "-NOPROTO "},
		{[]string{"HELLO", "2"}, "-NOAUTH HELLO must be called"},
		{[]string{"HELLO", "x"}, "-ERR Protocol version"},
		{[]string{"AUTH", "wrong"}, "-WRONGPASS "},
		{[]string{"AUTH", "someone", "orders-pw"}, "-WRONGPASS "},
		{[]string{"AUTH", "a", "b", "c"}, "-ERR wrong number of arguments for 'auth'"},
		{[]string{"SENTINEL", "myid"}, "-NOAUTH "},
		{[]string{"AUTH", "orders-pw"}, "+OK\r\n"},
		{[]string{"HELLO", "2", "SETNAME", "me"}, "*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n"},
		{[]string{"CLIENT", "GETNAME"}, "$2\r\nme\r\n"},
		{[]string{"CLIENT", "SETNAME", "a b"}, "-ERR Client names"},
		{[]string{"CLIENT", "SETINFO", "LIB-NAME", "go-redis"}, "+OK\r\n"},
		{[]string{"CLIENT", "KILL"}, "-ERR unknown subcommand 'KILL'"},
		{[]string{"SENTINEL", "get-master-addr-by-name", "orders"}, "*2\r\n$9\r\n127.0.0.1\r\n$4\r\n7100\r\n"},
		{[]string{"SENTINEL", "get-master-addr-by-name", "orders-1"}, "*2\r\n$9\r\n127.0.0.2\r\n$4\r\n7101\r\n"},
		{[]string{"SENTINEL", "get-master-addr-by-name", "orders-2"}, "*-1\r\n"},
		// Another database's password: as unknown as a name that does not exist.
		{[]string{"SENTINEL", "get-master-addr-by-name", "cache"}, "*-1\r\n"},
		{[]string{"SENTINEL", "master", "cache"}, "-ERR No such master with that name"},
		{[]string{"SENTINEL", "replicas", "cache"}, "-ERR No such master with that name"},
		{[]string{"SENTINEL", "get-master-addr-by-name"}, "-ERR wrong number of arguments"},
		{[]string{"SENTINEL", "masters"}, "*3\r\n*40\r\n$4\r\nname\r\n$6\r\norders\r\n"},
		{[]string{"SENTINEL", "slaves", "orders"}, "*1\r\n*42\r\n$4\r\nname\r\n$14\r\n127.0.0.2:7100\r\n"},
		{[]string{"SENTINEL", "sentinels", "orders"}, "*1\r\n*28\r\n"},
		{[]string{"SENTINEL", "myid"}, "$40\r\n"},
		{[]string{"SENTINEL", "ckquorum", "orders"}, "+OK 2 usable Sentinels"},
		{[]string{"SENTINEL", "failover", "orders"}, "-ERR Marina fails masters over by itself"},
		{[]string{"SENTINEL", "monitor", "x", "1.2.3.4", "6379", "2"}, "-ERR SENTINEL MONITOR is not supported"},
		{[]string{"SENTINEL", "bogus"}, "-ERR Unknown sentinel subcommand 'bogus'"},
		{[]string{"SENTINEL"}, "-ERR wrong number of arguments"},
		{[]string{"ROLE"}, "*2\r\n$8\r\nsentinel\r\n*3\r\n"},
		{[]string{"GET", "k"}, "-ERR unknown command 'GET', with args beginning with: 'k'"},
		{[]string{"PING", "hi"}, "$2\r\nhi\r\n"},
		{[]string{"AUTH", "the-token"}, "+OK\r\n"},
		{[]string{"SENTINEL", "get-master-addr-by-name", "cache"}, "*2\r\n$9\r\n127.0.0.3\r\n$4\r\n7105\r\n"},
		{[]string{"SENTINEL", "masters"}, "*5\r\n"},
		// A failed AUTH keeps the earlier login.
		{[]string{"AUTH", "nope"}, "-WRONGPASS "},
		{[]string{"SENTINEL", "masters"}, "*5\r\n"},
	}
	for _, st := range steps {
		got := c.do(st.args...)
		if !strings.HasPrefix(got, st.want) {
			t.Fatalf("%q: got %q, want prefix %q", st.args, got, st.want)
		}
	}
	info := c.do("INFO")
	for _, want := range []string{"# Server\r\n", "redis_mode:sentinel", "# Sentinel\r\n", "sentinel_masters:5",
		"name=cache,status=ok,address=127.0.0.3:7105,slaves=0,sentinels=2"} {
		if !strings.Contains(info, want) {
			t.Errorf("INFO lacks %q: %q", want, info)
		}
	}
	if got := c.do("INFO", "sentinel"); strings.Contains(got, "# Server") || !strings.Contains(got, "# Sentinel") {
		t.Errorf("INFO sentinel: %q", got)
	}
	// Inline commands, as redis-cli or telnet send them.
	if got := c.send("sentinel get-master-addr-by-name orders\r\n"); !strings.HasPrefix(got, "*2\r\n$9\r\n127.0.0.1") {
		t.Errorf("inline: %q", got)
	}
	if got := c.do("QUIT"); got != "+OK\r\n" {
		t.Fatalf("QUIT: %q", got)
	}
	if _, err := c.r.ReadReply(nil); err == nil {
		t.Fatal("connection open after QUIT")
	}

	// Malformed input: an error, then the connection closes (Redis does too).
	c2 := dialRaw(t, s.Addr())
	if got := c2.send("*1\r\n$x\r\n"); !strings.HasPrefix(got, "-ERR Protocol error") {
		t.Fatalf("protocol error reply %q", got)
	}
	if _, err := c2.r.ReadReply(nil); err == nil {
		t.Fatal("connection open after a protocol error")
	}
}

func TestPasswordChangeEndsAccess(t *testing.T) {
	s, src := startServer(t)
	c := dialRaw(t, s.Addr())
	if got := c.do("AUTH", "cache-pw"); got != "+OK\r\n" {
		t.Fatal(got)
	}
	src.update(func(st *state.State) { st.DBs["cache"].Password = "rotated-pw" })
	testutil.WaitFor(t, 5*time.Second, "old password refused", func() error {
		if got := c.do("SENTINEL", "masters"); !strings.HasPrefix(got, "-NOAUTH") {
			return fmt.Errorf("reply %q", got)
		}
		return nil
	})
}

func TestSubscribeSwitchMaster(t *testing.T) {
	s, src := startServer(t)
	scoped := dialRaw(t, s.Addr()) // orders' password: sees orders only
	other := dialRaw(t, s.Addr())  // cache's password: must not see orders' switch
	pat := dialRaw(t, s.Addr())    // the token, with a pattern
	for c, pw := range map[*rawConn]string{scoped: "orders-pw", other: "cache-pw", pat: "the-token"} {
		if got := c.do("AUTH", pw); got != "+OK\r\n" {
			t.Fatal(got)
		}
	}
	if got := scoped.do("SUBSCRIBE", "+switch-master", "+sdown"); got != "*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n" {
		t.Fatalf("subscribe reply %q", got)
	}
	if got := scoped.read(); got != "*3\r\n$9\r\nsubscribe\r\n$6\r\n+sdown\r\n:2\r\n" {
		t.Fatalf("second subscribe reply %q", got)
	}
	if got := other.do("SUBSCRIBE", "+switch-master"); !strings.HasPrefix(got, "*3\r\n$9\r\nsubscribe") {
		t.Fatal(got)
	}
	if got := pat.do("PSUBSCRIBE", "*"); got != "*3\r\n$10\r\npsubscribe\r\n$1\r\n*\r\n:1\r\n" {
		t.Fatalf("psubscribe reply %q", got)
	}
	// Subscribed: only the pub/sub commands and PING.
	if got := scoped.do("SENTINEL", "masters"); !strings.HasPrefix(got, "-ERR Can't execute 'sentinel'") {
		t.Fatalf("command while subscribed: %q", got)
	}
	if got := scoped.do("PING"); got != "*2\r\n$4\r\npong\r\n$0\r\n\r\n" {
		t.Fatalf("PING while subscribed: %q", got)
	}

	// Shard 0 of orders fails over: first pending, then n2's replica promoted.
	src.update(func(st *state.State) {
		sh := &st.DBs["orders"].Shards[0]
		sh.Instances[0].Role, sh.Pending = state.RoleReplica, &state.Pending{Old: "orders-0-aaaaaa"}
	})
	src.update(func(st *state.State) {
		sh := &st.DBs["orders"].Shards[0]
		sh.Instances[1].Role, sh.Pending = state.RoleMaster, nil
	})
	for _, want := range []string{"orders 127.0.0.1 7100 127.0.0.2 7100", "orders-0 127.0.0.1 7100 127.0.0.2 7100"} {
		msg := "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$" + itoa(len(want)) + "\r\n" + want + "\r\n"
		if got := scoped.read(); got != msg {
			t.Fatalf("message %q, want %q", got, msg)
		}
		pmsg := "*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$14\r\n+switch-master\r\n$" + itoa(len(want)) + "\r\n" + want + "\r\n"
		if got := pat.read(); got != pmsg {
			t.Fatalf("pmessage %q, want %q", got, pmsg)
		}
	}
	// The other database's subscriber got nothing: its next reply is its PING.
	if got := other.do("PING", "x"); got != "*2\r\n$4\r\npong\r\n$1\r\nx\r\n" {
		t.Fatalf("other subscriber: %q", got)
	}
	if got := scoped.do("UNSUBSCRIBE"); !strings.HasPrefix(got, "*3\r\n$11\r\nunsubscribe\r\n") {
		t.Fatalf("unsubscribe %q", got)
	}
	if got := scoped.read(); !strings.HasSuffix(got, ":0\r\n") {
		t.Fatalf("second unsubscribe %q", got)
	}
	if got := scoped.do("SENTINEL", "get-master-addr-by-name", "orders-0"); got != "*2\r\n$9\r\n127.0.0.2\r\n$4\r\n7100\r\n" {
		t.Fatalf("after the switch: %q", got)
	}
	if got := pat.do("PUNSUBSCRIBE", "*"); got != "*3\r\n$12\r\npunsubscribe\r\n$1\r\n*\r\n:0\r\n" {
		t.Fatalf("punsubscribe %q", got)
	}
	if got := pat.do("UNSUBSCRIBE"); got != "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n" {
		t.Fatalf("unsubscribe with none %q", got)
	}
}

// TestGoRedisSentinelClient checks that go-redis parses every reply.
func TestGoRedisSentinelClient(t *testing.T) {
	s, src := startServer(t)
	ctx := testutil.Ctx(t, 30*time.Second)
	// Protocol 3 is go-redis's default: HELLO 3 is refused, it falls back to AUTH.
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), Password: "orders-pw", DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
	defer sc.Close()
	if err := sc.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	addr, err := sc.GetMasterAddrByName(ctx, "orders-1").Result()
	if err != nil || strings.Join(addr, ":") != "127.0.0.2:7101" {
		t.Fatalf("master addr %v %v", addr, err)
	}
	m, err := sc.Master(ctx, "orders").Result()
	if err != nil || m["ip"] != "127.0.0.1" || m["port"] != "7100" || m["flags"] != "master" {
		t.Fatalf("master %v %v", m, err)
	}
	masters, err := sc.Masters(ctx).Result()
	if err != nil || len(masters) != 3 {
		t.Fatalf("masters %v %v", masters, err)
	}
	reps, err := sc.Replicas(ctx, "orders-1").Result()
	if err != nil || len(reps) != 1 || reps[0]["ip"] != "127.0.0.3" || reps[0]["flags"] != "slave" {
		t.Fatalf("replicas %v %v", reps, err)
	}
	sents, err := sc.Sentinels(ctx, "orders").Result()
	if err != nil || len(sents) != 1 || sents[0]["ip"] != "127.0.0.2" || sents[0]["port"] != "26379" {
		t.Fatalf("sentinels %v %v", sents, err)
	}
	if _, err := sc.GetMasterAddrByName(ctx, "cache").Result(); err != redis.Nil {
		t.Fatalf("other database: %v", err)
	}
	ps := sc.Subscribe(ctx, ChannelSwitch)
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	src.update(func(st *state.State) {
		sh := &st.DBs["orders"].Shards[1]
		sh.Instances[0].Role, sh.Instances[1].Role = state.RoleReplica, state.RoleMaster
	})
	msg, err := ps.ReceiveMessage(ctx)
	if err != nil || msg.Payload != "orders-1 127.0.0.2 7101 127.0.0.3 7100" {
		t.Fatalf("message %v %v", msg, err)
	}
	// Without a password nothing is answered but PING.
	anon := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), DialTimeout: time.Second})
	defer anon.Close()
	if err := anon.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := anon.GetMasterAddrByName(ctx, "orders").Result(); err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
		t.Fatalf("anonymous: %v", err)
	}
	bad := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), Password: "wrong-password", DialTimeout: time.Second, MaxRetries: -1})
	defer bad.Close()
	if err := bad.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("wrong password: %v", err)
	}
}

func TestMaxClientsAndClose(t *testing.T) {
	s, _ := startServer(t)
	var conns []*rawConn
	for i := 0; i < 50; i++ {
		c := dialRaw(t, s.Addr())
		if got := c.do("PING"); got != "+PONG\r\n" {
			t.Fatal(got)
		}
		conns = append(conns, c)
	}
	extra := dialRaw(t, s.Addr())
	if got := extra.read(); !strings.HasPrefix(got, "-ERR max number of clients reached") {
		t.Fatalf("over the limit: %q", got)
	}
	_ = s.Close()
	for _, c := range conns {
		_ = c.nc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.r.ReadReply(nil); err == nil {
			t.Fatal("connection open after Close")
		}
	}
}

// RESET drops the login, as Redis's does, with the subscriptions and the
// name; it is answered before a login too.
func TestResetDropsAuth(t *testing.T) {
	s, _ := startServer(t)
	c := dialRaw(t, s.Addr())
	for _, st := range []struct {
		args []string
		want string
	}{
		{[]string{"RESET"}, "+RESET\r\n"},
		{[]string{"AUTH", "orders-pw"}, "+OK\r\n"},
		{[]string{"CLIENT", "SETNAME", "me"}, "+OK\r\n"},
		{[]string{"SENTINEL", "get-master-addr-by-name", "orders"}, "*2\r\n"},
		{[]string{"RESET", "x"}, "-ERR wrong number of arguments for 'reset'"},
		{[]string{"RESET"}, "+RESET\r\n"},
		{[]string{"SENTINEL", "get-master-addr-by-name", "orders"}, "-NOAUTH "},
		{[]string{"SUBSCRIBE", ChannelSwitch}, "-NOAUTH "},
		{[]string{"AUTH", "orders-pw"}, "+OK\r\n"},
		{[]string{"CLIENT", "GETNAME"}, "$-1\r\n"},
		{[]string{"SUBSCRIBE", ChannelSwitch}, "*3\r\n$9\r\nsubscribe\r\n"},
		// Subscribed: RESET leaves pub/sub mode and the login.
		{[]string{"RESET"}, "+RESET\r\n"},
		{[]string{"SENTINEL", "masters"}, "-NOAUTH "},
		{[]string{"PING"}, "+PONG\r\n"},
		{[]string{"AUTH", "the-token"}, "+OK\r\n"},
		{[]string{"SENTINEL", "masters"}, "*5\r\n"},
	} {
		if got := c.do(st.args...); !strings.HasPrefix(got, st.want) {
			t.Fatalf("%q: got %q, want prefix %q", st.args, got, st.want)
		}
	}
}

// QUIT while subscribed: the +OK is written (by the writer goroutine)
// before the connection closes.
func TestQuitWhileSubscribed(t *testing.T) {
	s, _ := startServer(t)
	c := dialRaw(t, s.Addr())
	if got := c.do("AUTH", "orders-pw"); got != "+OK\r\n" {
		t.Fatal(got)
	}
	if got := c.do("SUBSCRIBE", ChannelSwitch); !strings.HasPrefix(got, "*3\r\n$9\r\nsubscribe\r\n") {
		t.Fatal(got)
	}
	if got := c.do("QUIT"); got != "+OK\r\n" {
		t.Fatalf("QUIT: %q", got)
	}
	if _, err := c.r.ReadReply(nil); err == nil {
		t.Fatal("connection open after QUIT")
	}
}

// flipAll swaps master and replica of every shard 0 of the databases
// named in dbs.
func flipAll(src *fakeSrc, dbs []string) {
	src.update(func(st *state.State) {
		for _, name := range dbs {
			sh := &st.DBs[name].Shards[0]
			sh.Instances[0].Role, sh.Instances[1].Role = sh.Instances[1].Role, sh.Instances[0].Role
		}
	})
}

// Subscribers that never read hold up nobody: every switch reaches a
// reading subscriber within a deadline well under the write timeout, and
// a subscriber that falls maxOutput behind is disconnected.
func TestSlowSubscriberDelaysNobody(t *testing.T) {
	s, src := startServer(t)
	// 200 more databases: every flip publishes 400 messages to the token.
	dbs := []string{"orders"}
	src.update(func(st *state.State) {
		for i := range 200 {
			name := fmt.Sprintf("big%03d", i)
			st.DBs[name] = &state.Database{Spec: state.Spec{Name: name, Password: "big-pw", Shards: 1}, Shards: []state.Shard{
				{Index: 0, Instances: []state.Instance{{ID: name + "-0-aaaaaa", Node: "n1", Port: 8000 + i, Role: state.RoleMaster},
					{ID: name + "-0-bbbbbb", Node: "n2", Port: 8000 + i, Role: state.RoleReplica}}},
			}}
			dbs = append(dbs, name)
		}
	})
	var slow []*rawConn
	for range 4 {
		c := dialRaw(t, s.Addr())
		if got := c.do("AUTH", "the-token"); got != "+OK\r\n" {
			t.Fatal(got)
		}
		if got := c.do("SUBSCRIBE", ChannelSwitch); !strings.HasPrefix(got, "*3\r\n$9\r\nsubscribe") {
			t.Fatal(got)
		}
		slow = append(slow, c)
	}
	reader := dialRaw(t, s.Addr())
	if got := reader.do("AUTH", "orders-pw"); got != "+OK\r\n" {
		t.Fatal(got)
	}
	if got := reader.do("SUBSCRIBE", ChannelSwitch); !strings.HasPrefix(got, "*3\r\n$9\r\nsubscribe") {
		t.Fatal(got)
	}
	conns := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.conns)
	}
	// Each flip is 400 messages of about 80 bytes for each slow one: their
	// socket buffers fill up (a few MB on loopback), then their queues,
	// until they are disconnected.
	const deadline = time.Second // writeTimeout is 2s
	flips := 0
	for ; conns() > 1; flips++ {
		if flips == 2000 {
			t.Fatalf("slow subscribers still connected after %d flips: %d connections", flips, conns())
		}
		start := time.Now()
		flipAll(src, dbs)
		for range 2 { // orders and orders-0
			_ = reader.nc.SetReadDeadline(start.Add(deadline))
			b, err := reader.r.ReadReply(nil)
			if err != nil {
				t.Fatalf("flip %d: no message within %v: %v", flips, deadline, err)
			}
			if !strings.Contains(string(b), "+switch-master") || !strings.Contains(string(b), "orders") {
				t.Fatalf("flip %d: %q", flips, b)
			}
		}
	}
	t.Logf("slow subscribers disconnected after %d flips", flips)
	// Reading on, each slow one gets what was written before, then the
	// end of the connection.
	for i, c := range slow {
		_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := io.Copy(io.Discard, c.nc)
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("slow subscriber %d: read %d bytes, then %v (not closed)", i, n, err)
		}
		if n >= int64(flips)*400*80 {
			t.Fatalf("slow subscriber %d got all %d bytes", i, n)
		}
	}
	// The reading subscriber still gets the next switch.
	flipAll(src, dbs)
	_ = reader.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := reader.r.ReadReply(nil); err != nil || !strings.Contains(string(b), "orders") {
		t.Fatalf("after: %q %v", b, err)
	}
}

package redisconf

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/testutil"
)

// A fenced server refuses writes and refuses the replication user's login
// (no sync source); an unfenced one does both. The internal user never
// syncs.
func TestFenceOnRealRedis(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	for _, fenced := range []bool{true, false} {
		addr := startRendered(t, host, Config{MaxMemory: 8 << 20, Policy: "noeviction", Persistence: state.PersistNone,
			Password: "password1", Secret: "secret-123", Fenced: fenced})
		ctx := context.Background()
		client := redis.NewClient(&redis.Options{Addr: addr, Password: "password1", Protocol: 2, DisableIdentity: true})
		internal := redis.NewClient(&redis.Options{Addr: addr, Username: InternalUser, Password: "secret-123", Protocol: 2, DisableIdentity: true})
		repl := redis.NewClient(&redis.Options{Addr: addr, Username: ReplUser, Password: ReplSecret("secret-123"), Protocol: 2, DisableIdentity: true, MaxRetries: -1})
		testutil.WaitFor(t, 5*time.Second, "redis up", func() error { return client.Ping(ctx).Err() })
		werr := client.Set(ctx, "k", "v", 0).Err()
		if err := internal.Do(ctx, "PSYNC", "?", "-1").Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
			t.Errorf("fenced=%v: the internal user's PSYNC answered %v, want NOPERM", fenced, err)
		}
		if err := repl.Get(ctx, "k").Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") && !strings.Contains(err.Error(), "WRONGPASS") {
			t.Errorf("fenced=%v: the replication user read a key: %v", fenced, err)
		}
		serr := repl.Do(ctx, "PSYNC", "?", "-1").Err()
		if fenced {
			if werr == nil || !strings.Contains(werr.Error(), "NOREPLICAS") {
				t.Errorf("fenced: write answered %v, want NOREPLICAS", werr)
			}
			if serr == nil || !strings.Contains(serr.Error(), "WRONGPASS") {
				t.Errorf("fenced: the replication user's login answered %v, want WRONGPASS", serr)
			}
		} else {
			if werr != nil {
				t.Errorf("unfenced: write refused: %v", werr)
			}
			if serr != nil && strings.Contains(serr.Error(), "NOPERM") {
				t.Errorf("unfenced: PSYNC refused: %v", serr)
			}
		}
		client.Close()
		internal.Close()
		repl.Close()
	}
}

// The proxy's password logs in as marina-proxy only, for data commands;
// it is not the internal user's (the attack: `AUTH marina SECRET` with the
// password from the HAProxy file, then CONFIG GET masterauth).
func TestProxySecretIsNotTheInternalOne(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	c := Config{MaxMemory: 8 << 20, Policy: "noeviction", Persistence: state.PersistNone, Password: "password1", Secret: "secret-123"}
	addr := startRendered(t, host, c)
	ctx := context.Background()
	login := func(user, pw string) *redis.Client {
		return redis.NewClient(&redis.Options{Addr: addr, Username: user, Password: pw, Protocol: 2, DisableIdentity: true, MaxRetries: -1})
	}
	ps := ProxySecret(c.Secret)
	if ps == c.Secret || strings.Contains(ps, c.Secret) {
		t.Fatalf("proxy secret %q reveals the internal one", ps)
	}
	proxy := login(ProxyUser, ps)
	defer proxy.Close()
	testutil.WaitFor(t, 5*time.Second, "redis up", func() error { return proxy.Ping(ctx).Err() })
	if err := proxy.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("proxy user write: %v", err)
	}
	if err := proxy.ConfigGet(ctx, "masterauth").Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("proxy user CONFIG GET: %v", err)
	}
	stolen := login(InternalUser, ps)
	defer stolen.Close()
	if err := stolen.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("AUTH marina with the proxy's password: %v", err)
	}
	oldProxy := login(ProxyUser, c.Secret)
	defer oldProxy.Close()
	if err := oldProxy.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("AUTH marina-proxy with the internal secret: %v", err)
	}
	internal := login(InternalUser, c.Secret)
	defer internal.Close()
	if err := internal.ConfigGet(ctx, "maxmemory").Err(); err != nil {
		t.Fatalf("internal user: %v", err)
	}
}

// The database password is a data-only login from a server's first reply,
// before any agent has touched it (the attack: CONFIG GET masterauth with
// the client password, looped against a replica restarted after kill -9).
func TestClientRulesFromTheFirstReply(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	c := Config{MaxMemory: 8 << 20, Policy: "noeviction", Persistence: state.PersistNone, Password: "password1", Secret: "secret-123"}
	addr := startRendered(t, host, c)
	ctx := context.Background()
	cl := redis.NewClient(&redis.Options{Addr: addr, Password: "password1", Protocol: 2, DisableIdentity: true,
		MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer cl.Close()
	var first error
	testutil.WaitFor(t, 5*time.Second, "first reply", func() error {
		first = cl.ConfigGet(ctx, "masterauth").Err()
		if first != nil && (strings.Contains(first.Error(), "connection refused") || strings.Contains(first.Error(), "LOADING")) {
			return first
		}
		return nil
	})
	if first == nil || !strings.Contains(first.Error(), "NOPERM") {
		t.Fatalf("CONFIG GET masterauth with the client password at the first reply: %v", first)
	}
	if err := cl.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("client write: %v", err)
	}
	if err := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true}).Ping(ctx).Err(); err == nil ||
		!strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("no password: %v", err)
	}
}

// startRendered runs a redis-server from the config Marina renders for c
// (a fresh port, and a fresh dir unless c has one, on host filled in) and
// returns its address.
func startRendered(t *testing.T, host string, c Config) string {
	t.Helper()
	c.Port, c.Bind = testutil.FreePort(t, host), host
	if c.Dir == "" {
		c.Dir = t.TempDir()
	}
	testutil.StartRedis(t, c.Dir, c.Render())
	return fmt.Sprintf("%s:%d", host, c.Port)
}

// A fenced master is no sync source, and its replicas do not spin: the
// replication user is off, so a replica's AUTH fails and Redis tries again
// at its next replication cron (a refused PSYNC would make it fall back to
// SYNC and, refused again, reconnect at once, as fast as the host allows).
// SYNC itself is never allowed: a link that fell back to it would count its
// offsets one byte apart from the master's for good, and WAIT would never
// count the replica. Once the fence lifts, the replica links with PSYNC.
func TestReplicaOfAFencedMaster(t *testing.T) {
	hosts := testutil.LoopbackHosts(t, 2)
	base := Config{MaxMemory: 8 << 20, Policy: "noeviction", Persistence: state.PersistNone, Password: "password1", Secret: "secret-123"}
	ctx := testutil.Ctx(t, 30*time.Second)
	m := base
	m.Fenced = true
	maddr := startRendered(t, hosts[0], m)
	r := base
	r.Fenced, r.ReplicaOf = true, maddr
	raddr := startRendered(t, hosts[1], r)
	master := redis.NewClient(&redis.Options{Addr: maddr, Username: InternalUser, Password: "secret-123", Protocol: 2, DisableIdentity: true})
	replica := redis.NewClient(&redis.Options{Addr: raddr, Username: InternalUser, Password: "secret-123", Protocol: 2, DisableIdentity: true})
	defer master.Close()
	defer replica.Close()
	// Refused logins of the replication user, as the master's ACL log
	// counts them (one entry, its count growing).
	refused := func() (int64, error) {
		log, err := master.Do(ctx, "ACL", "LOG").Slice()
		if err != nil {
			return 0, err
		}
		var n int64
		for _, e := range log {
			f := map[string]any{}
			if l, ok := e.([]any); ok {
				for i := 0; i+1 < len(l); i += 2 {
					f[fmt.Sprint(l[i])] = l[i+1]
				}
			}
			if f["username"] == ReplUser && f["reason"] == "auth" {
				c, _ := f["count"].(int64)
				n += c
			}
		}
		return n, nil
	}
	var first int64
	testutil.WaitFor(t, 5*time.Second, "the replica refused by the fenced master", func() error {
		var err error
		if first, err = refused(); err != nil || first == 0 {
			return fmt.Errorf("no refused login in the ACL log yet (%v)", err)
		}
		return nil
	})
	// Redis's replication cron allows one attempt a second: three more
	// take two seconds at least (a spinning replica makes them within
	// milliseconds). A slow host only makes them slower.
	start := time.Now()
	testutil.WaitFor(t, 20*time.Second, "three more attempts", func() error {
		n, err := refused()
		if err != nil || n < first+3 {
			return fmt.Errorf("%d refused logins (%v)", n, err)
		}
		return nil
	})
	if took := time.Since(start); took < 1500*time.Millisecond {
		t.Fatalf("three refused logins within %s: the replica spins", took)
	}

	// The fence lifts (as redisctl.ApplyFence does it): the replica links
	// with PSYNC and its offsets are the master's.
	args := []any{"ACL", "SETUSER", ReplUser}
	for _, rule := range ReplRules(false) {
		args = append(args, rule)
	}
	if _, err := master.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ConfigSet(ctx, FenceKey, FenceValue(false))
		p.Do(ctx, args...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "a write a replica confirms", func() error {
		if err := master.Set(ctx, "k", "v", 0).Err(); err != nil {
			return err
		}
		n, err := master.Do(ctx, "WAIT", "1", "200").Int()
		if err != nil || n < 1 {
			return fmt.Errorf("WAIT: %d %v", n, err)
		}
		return nil
	})
	mi, _ := master.InfoMap(ctx, "replication").Result()
	ri, _ := replica.InfoMap(ctx, "replication").Result()
	if mid, rid := mi["Replication"]["master_replid"], ri["Replication"]["master_replid"]; rid != mid {
		t.Fatalf("replica's replication id %q, master's %q", rid, mid)
	}
}

// The node's own clients reach a server through its Unix socket when it
// has one: the TCP port here is one nobody listens on, so only the socket
// can answer; a server without a socket is reached at its address.
func TestDialerPrefersTheLocalSocket(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	base := Config{MaxMemory: 8 << 20, Policy: "noeviction", Persistence: state.PersistNone, Password: "password1", Secret: "secret-123"}
	tcpOnly := startRendered(t, host, base)
	c := base
	c.Dir = t.TempDir()
	c.Socket = SocketPath(c.Dir)
	if !strings.Contains(c.Render(), "unixsocket "+filepath.Join(c.Dir, "redis.sock")+"\nunixsocketperm 700\n") {
		t.Fatalf("no socket in the config:\n%s", c.Render())
	}
	startRendered(t, host, c)
	unreachable := fmt.Sprintf("%s:%d", host, testutil.FreePort(t, host))
	d := &Dialer{Socket: func(a string) string {
		if a == unreachable {
			return c.Socket
		}
		return ""
	}}
	ctx := context.Background()
	viaSocket := redis.NewClient(d.Internal(unreachable, "secret-123", time.Second, 1))
	defer viaSocket.Close()
	testutil.WaitFor(t, 5*time.Second, "ping over the socket", func() error { return viaSocket.Ping(ctx).Err() })
	// The socket logs in as the internal user like any connection.
	if who, err := viaSocket.Do(ctx, "ACL", "WHOAMI").Text(); err != nil || who != InternalUser {
		t.Fatalf("whoami %q %v", who, err)
	}
	if st, err := os.Stat(c.Socket); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("socket mode: %v %v", st, err)
	}
	viaTCP := redis.NewClient(d.Internal(tcpOnly, "secret-123", time.Second, 1))
	defer viaTCP.Close()
	testutil.WaitFor(t, 5*time.Second, "ping over TCP", func() error { return viaTCP.Ping(ctx).Err() })
}

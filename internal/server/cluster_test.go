package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/api"
	"github.com/marina-redis/marina/internal/client"
	"github.com/marina-redis/marina/internal/controller"
	"github.com/marina-redis/marina/internal/pki"
	"github.com/marina-redis/marina/internal/redisconf"
	"github.com/marina-redis/marina/internal/testutil"
	"github.com/marina-redis/marina/internal/topology"
)

const testToken = "test-token-0123456789"

// testCluster is N in-process nodes on their own loopback addresses.
type testCluster struct {
	t     *testing.T
	cfgs  []Config
	nodes []*Node
}

func newTestCluster(t *testing.T, n int, memory int64) *testCluster {
	return newTestClusterWith(t, n, memory, nil)
}

func newTestClusterWith(t *testing.T, n int, memory int64, mod func(i int, c *Config)) *testCluster {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server not installed: apt-get install redis-server")
	}
	return newTestClusterOn(t, testutil.LoopbackHosts(t, n, 7000, 7001, 7100, 7050), memory, mod)
}

// newTestClusterOn starts one node on each of hosts.
func newTestClusterOn(t *testing.T, hosts []string, memory int64, mod func(i int, c *Config)) *testCluster {
	t.Helper()
	n := len(hosts)
	root := t.TempDir()
	tc := &testCluster{t: t}
	t.Cleanup(func() {
		for _, nd := range tc.nodes {
			if nd != nil {
				nd.Stop()
			}
		}
		testutil.KillPidfiles(root)
	})
	for i, h := range hosts {
		cfg := Config{ID: fmt.Sprintf("n%d", i+1), DataDir: filepath.Join(root, fmt.Sprintf("n%d", i+1)), Bind: h,
			HTTPPort: 7000, RaftPort: 7001, PortMin: 7100, PortMax: 7199, ProxyMin: 7050, ProxyMax: 7099, Memory: memory, Token: testToken,
			StopInstancesOnExit: true, ElectionTimeout: 500 * time.Millisecond, NodeDownAfter: 3 * time.Second,
			Heartbeat: 200 * time.Millisecond, Logger: testutil.Logger().With("test", t.Name()), RaftLog: testutil.RaftLog(), Out: &strings.Builder{}}
		if i > 0 {
			cfg.Join, cfg.CACert = topology.HostPort(hosts[0], 7000), filepath.Join(root, "n1", "tls", "ca.pem")
		}
		if mod != nil {
			mod(i, &cfg)
		}
		tc.cfgs = append(tc.cfgs, cfg)
	}
	ctx := testutil.Ctx(t, 60*time.Second)
	for i := range tc.cfgs {
		if i > 0 && tc.cfgs[i].Token == "" {
			// The bootstrap node generated the token and printed it once.
			out := tc.cfgs[0].Out.(*strings.Builder).String()
			_, rest, ok := strings.Cut(out, "MARINA_TOKEN=")
			tok, _, _ := strings.Cut(rest, "\n")
			if !ok || strings.Count(out, "MARINA_TOKEN=") != 1 || !strings.Contains(out, "MARINA_CACERT=") {
				t.Fatalf("bootstrap output %q", out)
			}
			tc.cfgs[i].Token = tok
		}
		nd, err := Start(ctx, tc.cfgs[i])
		if err != nil {
			t.Fatalf("start node %d: %v", i+1, err)
		}
		tc.nodes = append(tc.nodes, nd)
	}
	tc.waitNodesUp(n)
	return tc
}

func (tc *testCluster) client(i int) *client.Client {
	return client.New(tc.cfgs[i].Bind+":7000", tc.cfgs[len(tc.cfgs)-1].Token, client.CAFile(tc.caFile()))
}

// httpClient is a plain HTTPS client that trusts the cluster CA.
func (tc *testCluster) httpClient() *http.Client {
	// The chain is checked against the cluster CA; names are not (the
	// client is shared across nodes; client.New checks them).
	cfg := &tls.Config{InsecureSkipVerify: true, VerifyConnection: func(cs tls.ConnectionState) error {
		pool, err := client.LoadCAFile(tc.caFile())
		if err != nil {
			return err
		}
		_, err = cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool})
		return err
	}}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

// caFile is the cluster CA bundle as the first node keeps it.
func (tc *testCluster) caFile() string { return filepath.Join(tc.cfgs[0].DataDir, "tls", "ca.pem") }

func (tc *testCluster) waitNodesUp(n int) {
	testutil.WaitFor(tc.t, 20*time.Second, "nodes up", func() error {
		for i, nd := range tc.nodes {
			if nd == nil {
				continue
			}
			st, err := tc.client(i).Status(context.Background())
			if err != nil {
				return err
			}
			if st.NodesUp != n || st.Leader == "" {
				return fmt.Errorf("node %d sees %d nodes up, leader %q", i+1, st.NodesUp, st.Leader)
			}
		}
		return nil
	})
}

func (tc *testCluster) leader() int {
	for i, nd := range tc.nodes {
		if nd != nil && nd.Raft.IsLeader() {
			return i
		}
	}
	return -1
}

func (tc *testCluster) waitReady(c *client.Client, name string) *api.DB {
	var db *api.DB
	testutil.WaitFor(tc.t, 20*time.Second, "database "+name+" ready", func() error {
		var err error
		db, err = c.GetDB(context.Background(), name)
		if err != nil {
			return err
		}
		if db.Status != api.DBReady {
			return fmt.Errorf("status %s: %+v", db.Status, db.Shards)
		}
		return nil
	})
	return db
}

// rc connects to a redis-server of the cluster, over TLS when the cluster
// runs its redis-servers with TLS.
func (tc *testCluster) rc(addr, user, pw string) *redis.Client {
	if !tc.cfgs[0].RedisTLS {
		return rc(addr, user, pw)
	}
	var id pki.Identity
	if err := id.Load(tc.cfgs[0].DataDir); err != nil {
		tc.t.Fatal(err)
	}
	return redis.NewClient(&redis.Options{Addr: addr, Username: user, Password: pw, Protocol: 2, DisableIdentity: true,
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, MaxRetries: -1, TLSConfig: id.DialerTLS(addr)})
}

func rc(addr, user, pw string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, Username: user, Password: pw, Protocol: 2, DisableIdentity: true,
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, MaxRetries: -1})
}

func instances(db *api.DB) []api.Instance {
	var out []api.Instance
	for _, sh := range db.Shards {
		out = append(out, sh.Master)
		out = append(out, sh.Replicas...)
	}
	return out
}

// admin connects as the internal user (CONFIG is not the clients').
func admin(tc *testCluster, db, addr string) *redis.Client {
	secret := tc.nodes[0].FSM.State().DBs[db].Secret
	return rc(addr, redisconf.InternalUser, secret)
}

func configGet(t *testing.T, c *redis.Client, key string) string {
	t.Helper()
	v, err := c.ConfigGet(context.Background(), key).Result()
	if err != nil {
		t.Fatalf("CONFIG GET %s: %v", key, err)
	}
	return v[key]
}

func instanceDirs(t *testing.T, tc *testCluster) []string {
	var out []string
	for _, cfg := range tc.cfgs {
		es, _ := os.ReadDir(filepath.Join(cfg.DataDir, "instances"))
		for _, e := range es {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestCluster(t *testing.T) {
	tc := newTestCluster(t, 3, 256<<20)
	ctx := testutil.Ctx(t, 5*time.Minute)
	follower := (tc.leader() + 1) % 3
	c := tc.client(follower) // writes through a follower exercise forwarding

	db, err := c.CreateDB(ctx, api.CreateDBRequest{Name: "orders", Memory: 16 << 20, Shards: 2, Replicas: 1, Persistence: "aof"})
	if err != nil {
		t.Fatal(err)
	}
	if db.Password == "" || len(db.Shards) != 2 {
		t.Fatalf("created db: %+v", db)
	}
	db = tc.waitReady(c, "orders")

	t.Run("placement and config", func(t *testing.T) {
		if db.Shards[0].SlotStart != 0 || db.Shards[0].SlotEnd != 8191 || db.Shards[1].SlotStart != 8192 || db.Shards[1].SlotEnd != 16383 {
			t.Fatalf("slot ranges: %+v", db.Shards)
		}
		for _, sh := range db.Shards {
			if len(sh.Replicas) != 1 {
				t.Fatalf("shard %d has %d replicas", sh.Index, len(sh.Replicas))
			}
			if sh.Master.Node == sh.Replicas[0].Node {
				t.Fatalf("shard %d: master and replica both on %s", sh.Index, sh.Master.Node)
			}
		}
		if db.Shards[0].Master.Node == db.Shards[1].Master.Node {
			t.Errorf("masters not spread: both on %s", db.Shards[0].Master.Node)
		}
		for _, in := range instances(db) {
			r := admin(tc, "orders", in.Addr)
			if got := configGet(t, r, "maxmemory"); got != fmt.Sprint(16<<20) {
				t.Errorf("%s maxmemory = %s", in.ID, got)
			}
			if got := configGet(t, r, "appendonly"); got != "yes" {
				t.Errorf("%s appendonly = %s", in.ID, got)
			}
			if got := configGet(t, r, "bind"); !strings.HasPrefix(in.Addr, got+":") {
				t.Errorf("%s bind = %s, addr %s", in.ID, got, in.Addr)
			}
			if got := configGet(t, r, "protected-mode"); got != "yes" {
				t.Errorf("%s protected-mode = %s", in.ID, got)
			}
			// Clients have data commands only.
			if err := rc(in.Addr, "", db.Password).ConfigGet(ctx, "maxmemory").Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
				t.Errorf("%s: a client may run CONFIG: %v", in.ID, err)
			}
			role, err := r.Do(ctx, "ROLE").Slice()
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"master": "master", "replica": "slave"}[in.Role]
			if role[0] != want {
				t.Errorf("%s role %v, want %s", in.ID, role[0], want)
			}
			// No password, no access.
			if err := rc(in.Addr, "", "").Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
				t.Errorf("%s accepts unauthenticated clients: %v", in.ID, err)
			}
			r.Close()
		}
	})

	t.Run("write on master readable on replica", func(t *testing.T) {
		for _, sh := range db.Shards {
			m := rc(sh.Master.Addr, "", db.Password)
			if err := m.Set(ctx, fmt.Sprintf("k%d", sh.Index), "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
			r := rc(sh.Replicas[0].Addr, "", db.Password)
			testutil.WaitFor(t, 5*time.Second, "replicated key", func() error {
				return r.Get(ctx, fmt.Sprintf("k%d", sh.Index)).Err()
			})
			if err := r.Set(ctx, "x", "y", 0).Err(); err == nil || !strings.Contains(err.Error(), "READONLY") {
				t.Errorf("replica accepted a write: %v", err)
			}
		}
	})

	t.Run("crashed instance is restarted", func(t *testing.T) {
		rep := db.Shards[0].Replicas[0]
		i := tc.nodeIndex(rep.Node)
		var pid int
		for _, s := range tc.nodes[i].Agent.Statuses() {
			if s.ID == rep.ID {
				pid = s.PID
			}
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 10*time.Second, "restarted and resynced", func() error {
			for _, s := range tc.nodes[i].Agent.Statuses() {
				if s.ID == rep.ID {
					if s.PID == pid || s.State != "running" || !s.LinkUp || s.Restarts < 1 {
						return fmt.Errorf("%+v", s)
					}
				}
			}
			return rc(rep.Addr, "", db.Password).Get(ctx, "k0").Err()
		})
	})

	t.Run("update applies live", func(t *testing.T) {
		before := map[string]int{}
		for _, nd := range tc.nodes {
			for _, s := range nd.Agent.Statuses() {
				before[s.ID] = s.PID
			}
		}
		mem, evict := api.Size(32<<20), "allkeys-lru"
		if _, err := c.UpdateDB(ctx, "orders", api.UpdateDBRequest{Memory: &mem, Eviction: &evict}); err != nil {
			t.Fatal(err)
		}
		for _, in := range instances(db) {
			r := admin(tc, "orders", in.Addr)
			testutil.WaitFor(t, 10*time.Second, "live config", func() error {
				if got := configGet(t, r, "maxmemory"); got != fmt.Sprint(32<<20) {
					return fmt.Errorf("maxmemory %s", got)
				}
				if got := configGet(t, r, "maxmemory-policy"); got != evict {
					return fmt.Errorf("policy %s", got)
				}
				return nil
			})
		}
		for _, nd := range tc.nodes {
			for _, s := range nd.Agent.Statuses() {
				if p, ok := before[s.ID]; ok && p != s.PID {
					t.Errorf("%s restarted (pid %d -> %d) for a live-settable change", s.ID, p, s.PID)
				}
			}
		}
		// Persistence changes live too: aof -> rdb -> aof.
		for _, p := range []struct{ mode, appendonly, save string }{{"rdb", "no", "3600 1 300 100 60 10000"}, {"aof", "yes", ""}} {
			mode := p.mode
			if _, err := c.UpdateDB(ctx, "orders", api.UpdateDBRequest{Persistence: &mode}); err != nil {
				t.Fatal(err)
			}
			for _, in := range instances(db) {
				r := admin(tc, "orders", in.Addr)
				testutil.WaitFor(t, 10*time.Second, "persistence "+mode, func() error {
					if got := configGet(t, r, "appendonly"); got != p.appendonly {
						return fmt.Errorf("appendonly %s", got)
					}
					if got := configGet(t, r, "save"); got != p.save {
						return fmt.Errorf("save %q", got)
					}
					return nil
				})
				r.Close()
			}
		}
		// Password change: clients need the new one, replication keeps working.
		pw := "new-password-123"
		if _, err := c.UpdateDB(ctx, "orders", api.UpdateDBRequest{Password: &pw}); err != nil {
			t.Fatal(err)
		}
		m := rc(db.Shards[0].Master.Addr, "", pw)
		testutil.WaitFor(t, 10*time.Second, "new password", func() error { return m.Ping(ctx).Err() })
		if err := m.Set(ctx, "after-pw", "1", 0).Err(); err != nil {
			t.Fatal(err)
		}
		rr := rc(db.Shards[0].Replicas[0].Addr, "", pw)
		testutil.WaitFor(t, 10*time.Second, "replication after password change", func() error { return rr.Get(ctx, "after-pw").Err() })
		db.Password = pw
	})

	t.Run("replicas count changes", func(t *testing.T) {
		two := 2
		if _, err := c.UpdateDB(ctx, "orders", api.UpdateDBRequest{Replicas: &two}); err != nil {
			t.Fatal(err)
		}
		got := tc.waitReady(c, "orders")
		for _, sh := range got.Shards {
			if len(sh.Replicas) != 2 {
				t.Fatalf("shard %d: %d replicas", sh.Index, len(sh.Replicas))
			}
			nodes := map[string]bool{sh.Master.Node: true}
			for _, r := range sh.Replicas {
				if nodes[r.Node] {
					t.Fatalf("shard %d: two instances on %s", sh.Index, r.Node)
				}
				nodes[r.Node] = true
			}
			nr := rc(sh.Replicas[1].Addr, "", db.Password)
			if err := nr.Get(ctx, fmt.Sprintf("k%d", sh.Index)).Err(); err != nil {
				t.Fatalf("new replica lacks data: %v", err)
			}
		}
		one := 1
		if _, err := c.UpdateDB(ctx, "orders", api.UpdateDBRequest{Replicas: &one}); err != nil {
			t.Fatal(err)
		}
		got = tc.waitReady(c, "orders")
		want := map[string]bool{}
		for _, in := range instances(got) {
			want[in.ID] = true
		}
		testutil.WaitFor(t, 10*time.Second, "removed replicas' data dirs deleted", func() error {
			for _, d := range instanceDirs(t, tc) {
				if !want[d] {
					return fmt.Errorf("leftover dir %s", d)
				}
			}
			return nil
		})
		db = got
	})

	t.Run("bad specs refused and change nothing", func(t *testing.T) {
		dirsBefore := len(instanceDirs(t, tc))
		cases := []struct {
			req  api.CreateDBRequest
			code int
			msg  string
		}{
			{api.CreateDBRequest{Name: "Bad Name", Memory: 16 << 20}, 400, "invalid name"},
			{api.CreateDBRequest{Name: "m0", Memory: 0}, 400, "invalid memory"},
			{api.CreateDBRequest{Name: "s300", Memory: 16 << 20, Shards: 300}, 400, "invalid shards"},
			{api.CreateDBRequest{Name: "r9", Memory: 16 << 20, Replicas: 9}, 400, "invalid replicas"},
			{api.CreateDBRequest{Name: "ev", Memory: 16 << 20, Eviction: "sometimes"}, 400, "invalid eviction"},
			{api.CreateDBRequest{Name: "pe", Memory: 16 << 20, Persistence: "tape"}, 400, "invalid persistence"},
			{api.CreateDBRequest{Name: "pw", Memory: 16 << 20, Password: "short"}, 400, "invalid password"},
			{api.CreateDBRequest{Name: "orders", Memory: 16 << 20}, 409, "already exists"},
			{api.CreateDBRequest{Name: "huge", Memory: 200 << 20, Shards: 2, Replicas: 1}, 409, "does not fit"},
			{api.CreateDBRequest{Name: "wide", Memory: 16 << 20, Replicas: 3}, 409, "each shard needs 4 distinct nodes"},
		}
		for _, cs := range cases {
			_, err := c.CreateDB(ctx, cs.req)
			var ce *client.Error
			if !errors.As(err, &ce) || ce.Code != cs.code || !strings.Contains(ce.Msg, cs.msg) {
				t.Errorf("create %+v: err %v, want %d %q", cs.req, err, cs.code, cs.msg)
			}
		}
		bad := 5
		if _, err := c.UpdateDB(ctx, "orders", api.UpdateDBRequest{Shards: &bad}); err == nil || !strings.Contains(err.Error(), "not supported") {
			t.Errorf("shard change: %v", err)
		}
		huge := api.Size(1 << 30)
		if _, err := c.UpdateDB(ctx, "orders", api.UpdateDBRequest{Memory: &huge}); err == nil || !strings.Contains(err.Error(), "does not fit") {
			t.Errorf("huge memory update: %v", err)
		}
		dbs, err := c.ListDBs(ctx)
		if err != nil || len(dbs) != 1 {
			t.Fatalf("dbs after refused creates: %v %v", len(dbs), err)
		}
		if dbs[0].Memory != 32<<20 || dbs[0].ShardCount != 2 {
			t.Fatalf("refused update changed orders: %+v", dbs[0])
		}
		if n := len(instanceDirs(t, tc)); n != dirsBefore {
			t.Fatalf("instance dirs %d -> %d after refused requests", dirsBefore, n)
		}
		// Unauthenticated requests are refused.
		_, err = client.New(tc.cfgs[0].Bind+":7000", "wrong", client.CAFile(tc.caFile())).ListDBs(ctx)
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Code != http.StatusUnauthorized {
			t.Fatalf("wrong token: %v", err)
		}
	})

	t.Run("node identity is protected", func(t *testing.T) {
		n2 := tc.nodes[1].FSM.State().Nodes["n2"]
		clone := *n2
		clone.Addr, clone.RaftAddr, clone.HTTPAddr = "127.0.0.99", "127.0.0.99:7001", "127.0.0.99:7000"
		err := c.Join(ctx, clone)
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Code != http.StatusConflict || !strings.Contains(ce.Msg, "cannot change address") {
			t.Fatalf("join with a taken id: %v", err)
		}
		// A heartbeat keeps a node alive: the token alone is not enough.
		_, err = c.Heartbeat(ctx, controller.Report{Node: *n2})
		if !errors.As(err, &ce) || ce.Code != http.StatusForbidden {
			t.Fatalf("heartbeat without the node's certificate: %v", err)
		}
		// With n2's own certificate (sent to n1, which forwards it when it
		// does not lead), n2 still cannot move or pose as another node.
		var n2id pki.Identity
		if err := n2id.Load(tc.cfgs[1].DataDir); err != nil {
			t.Fatal(err)
		}
		asN2 := client.New(tc.cfgs[0].Bind+":7000", testToken, n2id.ClientTLS("n1"))
		_, err = asN2.Heartbeat(ctx, controller.Report{Node: clone})
		if !errors.As(err, &ce) || ce.Code != http.StatusConflict {
			t.Fatalf("heartbeat under a new address: %v", err)
		}
		stranger := clone
		stranger.ID = "stranger"
		_, err = asN2.Heartbeat(ctx, controller.Report{Node: stranger})
		if !errors.As(err, &ce) || ce.Code != http.StatusForbidden {
			t.Fatalf("heartbeat for another node: %v", err)
		}
		st := tc.nodes[0].FSM.State()
		if st.Nodes["n2"].Addr != n2.Addr || st.Nodes["stranger"] != nil {
			t.Fatalf("state changed: %+v", st.Nodes)
		}
	})

	t.Run("agent restart adopts running instances", func(t *testing.T) {
		i := tc.nodeIndex(db.Shards[0].Master.Node)
		pids := map[string]int{}
		for _, s := range tc.nodes[i].Agent.Statuses() {
			pids[s.ID] = s.PID
		}
		tc.restart(i, tc.cfgs[i], false)
		if len(pids) == 0 {
			t.Fatal("no instances on the node")
		}
		testutil.WaitFor(t, 10*time.Second, "adopted", func() error {
			// A restarted agent starts fenced, until a leader grants it a lease.
			if tc.nodes[i].Agent.Fenced() {
				return errors.New("no lease yet")
			}
			sts := tc.nodes[i].Agent.Statuses()
			if len(sts) != len(pids) {
				return fmt.Errorf("%d instances, want %d", len(sts), len(pids))
			}
			for _, s := range sts {
				if s.State != "running" {
					return fmt.Errorf("%s %s", s.ID, s.State)
				}
				if pids[s.ID] != s.PID {
					return fmt.Errorf("%s pid %d, was %d", s.ID, s.PID, pids[s.ID])
				}
			}
			return nil
		})
		m := rc(db.Shards[0].Master.Addr, "", db.Password)
		if v, err := m.Get(ctx, "k0").Result(); err != nil || v != "v" {
			t.Fatalf("data after adoption: %q %v", v, err)
		}
	})

	t.Run("restart with aof keeps data", func(t *testing.T) {
		i := tc.nodeIndex(db.Shards[1].Master.Node)
		m := rc(db.Shards[1].Master.Addr, "", db.Password)
		// Its node may have just restarted: writable once its fence is lifted.
		testutil.WaitFor(t, 10*time.Second, "master writable", func() error { return m.Set(ctx, "{aof}0", 0, 0).Err() })
		for k := 0; k < 100; k++ {
			if err := m.Set(ctx, fmt.Sprintf("{aof}%d", k), k, 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		var pid int
		for _, s := range tc.nodes[i].Agent.Statuses() {
			if s.ID == db.Shards[1].Master.ID {
				pid = s.PID
			}
		}
		tc.restart(i, tc.cfgs[i], true) // stops the instances too
		if testutil.Alive(pid) {
			t.Fatalf("pid %d still running after stop", pid)
		}
		testutil.WaitFor(t, 15*time.Second, "data reloaded from aof", func() error {
			n, err := m.DBSize(ctx).Result()
			if err != nil {
				return err
			}
			if n < 100 {
				return fmt.Errorf("dbsize %d", n)
			}
			return nil
		})
	})

	t.Run("delete removes instances and frees ports", func(t *testing.T) {
		victim, err := c.CreateDB(ctx, api.CreateDBRequest{Name: "temp", Memory: 8 << 20, Replicas: 1})
		if err != nil {
			t.Fatal(err)
		}
		victim = tc.waitReady(c, "temp")
		var pids []int
		for _, nd := range tc.nodes {
			for _, s := range nd.Agent.Statuses() {
				if s.DB == "temp" {
					pids = append(pids, s.PID)
				}
			}
		}
		if err := c.DeleteDB(ctx, "temp"); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 10*time.Second, "instances gone", func() error {
			for _, p := range pids {
				if testutil.Alive(p) {
					return fmt.Errorf("pid %d alive", p)
				}
			}
			for _, d := range instanceDirs(t, tc) {
				if strings.HasPrefix(d, "temp-") {
					return fmt.Errorf("dir %s left", d)
				}
			}
			return nil
		})
		if _, err := c.GetDB(ctx, "temp"); err == nil {
			t.Fatal("deleted db still shown")
		}
		again, err := c.CreateDB(ctx, api.CreateDBRequest{Name: "temp2", Memory: 8 << 20, Replicas: 1})
		if err != nil {
			t.Fatal(err)
		}
		if again.Shards[0].Master.Addr != victim.Shards[0].Master.Addr {
			t.Errorf("port not reused: %s then %s", victim.Shards[0].Master.Addr, again.Shards[0].Master.Addr)
		}
		tc.waitReady(c, "temp2")
		if err := c.DeleteDB(ctx, "temp2"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("leader loss and node restart", func(t *testing.T) {
		old := tc.leader()
		if old < 0 {
			t.Fatal("no leader")
		}
		tc.nodes[old].Stop()
		tc.nodes[old] = nil
		other := (old + 1) % 3
		oc := tc.client(other)
		testutil.WaitFor(t, 15*time.Second, "new leader", func() error {
			st, err := oc.Status(ctx)
			if err != nil {
				return err
			}
			if st.Leader == "" || st.Leader == tc.cfgs[old].ID {
				return fmt.Errorf("leader %q", st.Leader)
			}
			return nil
		})
		// Missed heartbeats mark the stopped node down; placement avoids it.
		testutil.WaitFor(t, 15*time.Second, "stopped node marked down", func() error {
			nodes, err := oc.Nodes(ctx)
			if err != nil {
				return err
			}
			for _, n := range nodes {
				if n.ID == tc.cfgs[old].ID && n.Status != "down" {
					return fmt.Errorf("%s is %s", n.ID, n.Status)
				}
			}
			return nil
		})
		if _, err := oc.CreateDB(ctx, api.CreateDBRequest{Name: "during", Memory: 8 << 20, Replicas: 1}); err != nil {
			t.Fatalf("create with old leader down: %v", err)
		}
		tc.waitReady(oc, "during")
		// The old leader comes back with its state and catches up.
		nd, err := Start(ctx, tc.cfgs[old])
		if err != nil {
			t.Fatal(err)
		}
		tc.nodes[old] = nd
		testutil.WaitFor(t, 15*time.Second, "restarted node caught up", func() error {
			st := nd.FSM.State()
			if _, ok := st.DBs["during"]; !ok {
				return errors.New("missing db created while down")
			}
			if _, ok := st.DBs["orders"]; !ok {
				return errors.New("missing orders")
			}
			return nil
		})
		tc.waitNodesUp(3)
		got := tc.waitReady(tc.client(old), "orders")
		m := rc(got.Shards[0].Master.Addr, "", got.Password)
		if v, err := m.Get(ctx, "k0").Result(); err != nil || v != "v" {
			t.Fatalf("data after leader loss: %q %v", v, err)
		}
	})
}

func (tc *testCluster) nodeIndex(id string) int {
	for i, c := range tc.cfgs {
		if c.ID == id {
			return i
		}
	}
	tc.t.Fatalf("unknown node %s", id)
	return -1
}

// restart stops node i and starts it again with cfg on the same data dir.
func (tc *testCluster) restart(i int, cfg Config, stopInstances bool) {
	tc.t.Helper()
	tc.nodes[i].Agent.SetStopOnExit(stopInstances)
	tc.nodes[i].Stop()
	cfg.StopInstancesOnExit = true
	nd, err := Start(testutil.Ctx(tc.t, 30*time.Second), cfg)
	if err != nil {
		tc.t.Fatal(err)
	}
	tc.nodes[i] = nd
	tc.waitNodesUp(3)
}

// A data dir with instances but no Raft state must not become a new,
// empty cluster: its agent would treat every instance as deleted.
func TestRefuseBootstrapOverInstances(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1, 7000, 7001)[0]
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "instances", "orders-0-abcdef"), 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := Start(testutil.Ctx(t, 30*time.Second), Config{ID: "n1", DataDir: dir, Bind: host, HTTPPort: 7000, RaftPort: 7001,
		PortMin: 7100, PortMax: 7199, Memory: 64 << 20, Logger: testutil.Logger(), RaftLog: testutil.RaftLog(), Out: &strings.Builder{}})
	if err == nil || !strings.Contains(err.Error(), "refusing to bootstrap") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "instances", "orders-0-abcdef")); err != nil {
		t.Fatal("instance dir touched")
	}
}

package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/api"
	"github.com/marina-redis/marina/internal/client"
	"github.com/marina-redis/marina/internal/pki"
	"github.com/marina-redis/marina/internal/redisconf"
	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/testutil"
	"github.com/marina-redis/marina/internal/topology"
)

// attackerStream is a Raft stream layer that dials with the attacker's
// TLS configuration (nil: plain TCP, as raft.NewTCPTransport does).
type attackerStream struct {
	net.Listener
	tls *tls.Config
}

func (s attackerStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", string(addr), timeout)
	if err != nil || s.tls == nil {
		return c, err
	}
	tc := tls.Client(c, s.tls)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

// inject replays the attack of issue 10: AppendEntries with term 0 to
// learn the follower's term and last index, then term+1 with one entry
// (a delete-db). It returns the error of the first call that failed.
func inject(t *testing.T, target string, cfg *tls.Config) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	trans := raft.NewNetworkTransport(attackerStream{Listener: ln, tls: cfg}, 1, 2*time.Second, io.Discard)
	defer trans.Close()
	var probe raft.AppendEntriesResponse
	hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("attacker"), Addr: []byte(ln.Addr().String())}
	if err := trans.AppendEntries("victim", raft.ServerAddress(target), &raft.AppendEntriesRequest{RPCHeader: hdr, Term: 0}, &probe); err != nil {
		return err
	}
	cmd := &state.DeleteDB{Name: "victim-db"}
	var resp raft.AppendEntriesResponse
	return trans.AppendEntries("victim", raft.ServerAddress(target), &raft.AppendEntriesRequest{RPCHeader: hdr, Term: probe.Term + 1,
		PrevLogEntry: probe.LastLog, PrevLogTerm: probe.Term, LeaderCommitIndex: probe.LastLog + 1,
		Entries: []*raft.Log{{Index: probe.LastLog + 1, Term: probe.Term + 1, Type: raft.LogCommand, Data: state.Encode(cmd)}}}, &resp)
}

// The Raft port takes nothing from a stranger: not in plain TCP, not over
// TLS with a certificate of another CA (even one naming a member), not
// with a certificate of the cluster CA issued to a node that is not a
// member. The follower's log and term do not move, and the database lives.
func TestRaftRefusesStrangers(t *testing.T) {
	tc := newTestCluster(t, 3, 256<<20)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := tc.client(0)
	if _, err := c.CreateDB(ctx, api.CreateDBRequest{Name: "victim-db", Memory: 16 << 20}); err != nil {
		t.Fatal(err)
	}
	tc.waitReady(c, "victim-db")
	f := (tc.leader() + 1) % 3
	target := topology.HostPort(tc.cfgs[f].Bind, 7001)
	before := tc.nodes[f].Raft.Raft.Stats()

	// A CA of the attacker's, with a certificate that names a member.
	evil, err := pki.NewCA("marina", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var forged pki.Identity
	issue := func(id *pki.Identity, ca *pki.CA, node string) {
		key, keyPEM, err := pki.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		csr, _ := pki.NewCSR(key, node)
		cert, err := ca.SignNode(csr, node, []net.IP{net.ParseIP("127.0.0.1")}, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := id.Set(cert, keyPEM, ca.CertPEM); err != nil {
			t.Fatal(err)
		}
	}
	issue(&forged, evil, tc.nodes[tc.leader()].ID())
	forgedCfg := forged.ClientTLS("")
	forgedCfg.VerifyConnection = nil // the attacker does not care who answers

	// A real certificate of the cluster CA, got with the API token, for a
	// node that never became a member.
	var outsider pki.Identity
	key, keyPEM, _ := pki.NewKey()
	csr, _ := pki.NewCSR(key, "n9")
	cr, err := c.Cert(ctx, api.CertRequest{Node: state.Node{ID: "n9", Addr: "127.0.0.1"}, CSR: string(csr)})
	if err != nil {
		t.Fatal(err)
	}
	if err := outsider.Set([]byte(cr.Cert), keyPEM, []byte(cr.CABundle)); err != nil {
		t.Fatal(err)
	}

	for _, a := range []struct {
		name string
		cfg  *tls.Config
	}{
		{"plain TCP", nil},
		{"TLS, no certificate", &tls.Config{InsecureSkipVerify: true}},
		{"TLS, another CA's certificate naming the leader", forgedCfg},
		{"TLS, the cluster CA's certificate of a non-member", outsider.ClientTLS(tc.nodes[f].ID())},
	} {
		if err := inject(t, target, a.cfg); err == nil {
			t.Errorf("%s: AppendEntries accepted", a.name)
		} else {
			t.Logf("%s: refused: %v", a.name, err)
		}
	}
	after := tc.nodes[f].Raft.Raft.Stats()
	if before["term"] != after["term"] {
		t.Errorf("follower's term moved: %s -> %s", before["term"], after["term"])
	}
	if _, err := c.GetDB(ctx, "victim-db"); err != nil {
		t.Fatalf("database after the attack: %v", err)
	}
	if tc.nodes[f].FSM.State().DBs["victim-db"] == nil {
		t.Fatal("the follower's state lost the database")
	}
}

// Node certificates renew themselves before they expire, and a CA
// rotation reaches every node, including one that was down while it
// began and whose certificate expired meanwhile; the rotation cannot be
// finished before that node holds a certificate of the new CA.
func TestCertificatesRenewAndRotate(t *testing.T) {
	tc := newTestClusterWith(t, 3, 256<<20, func(i int, c *Config) { c.CertLifetime, c.RedisTLS = 12*time.Second, true })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := tc.client(0)
	// A database whose redis-servers live through the renewals and the
	// rotation: they must reload the node's files (checked at the end).
	if _, err := c.CreateDB(ctx, api.CreateDBRequest{Name: "early", Memory: 16 << 20, Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	early := tc.waitReady(c, "early")
	serials := map[string]string{}
	for _, nd := range tc.nodes {
		serials[nd.ID()] = nd.id.Leaf().SerialNumber.String()
	}
	testutil.WaitFor(t, 30*time.Second, "every node renewed its certificate", func() error {
		for _, nd := range tc.nodes {
			if nd.id.Leaf().SerialNumber.String() == serials[nd.ID()] {
				return fmt.Errorf("%s not renewed yet", nd.ID())
			}
		}
		return nil
	})
	tc.waitNodesUp(3)

	// n3 goes down; the rotation starts without it.
	tc.nodes[2].Stop()
	tc.nodes[2] = nil
	before, err := c.CA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fp, err := c.RotateCA(ctx)
	if err != nil || fp == before.Active.Fingerprint {
		t.Fatalf("rotate: %s %v", fp, err)
	}
	testutil.WaitFor(t, 20*time.Second, "n1 and n2 on the new CA", func() error {
		st, err := c.CA(ctx)
		if err != nil {
			return err
		}
		for _, n := range st.Nodes {
			if n.Node != "n3" && !n.Current {
				return fmt.Errorf("%s: %+v", n.Node, n)
			}
		}
		return nil
	})
	err = c.FinishCARotation(ctx, false)
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != http.StatusConflict || !strings.Contains(ce.Msg, "n3") {
		t.Fatalf("finish with n3 on the old CA: %v", err)
	}
	// Down longer than its certificate's life: it comes back expired,
	// trusting only the old CA, and renews through a member.
	testutil.WaitFor(t, 20*time.Second, "n3's certificate expired", func() error {
		var id pki.Identity
		if err := id.Load(tc.cfgs[2].DataDir); err != nil {
			return err
		}
		if time.Now().Before(id.Leaf().NotAfter) {
			return fmt.Errorf("valid until %s", id.Leaf().NotAfter)
		}
		return nil
	})
	nd, err := Start(ctx, tc.cfgs[2])
	if err != nil {
		t.Fatal(err)
	}
	tc.nodes[2] = nd
	testutil.WaitFor(t, 30*time.Second, "n3 on the new CA", func() error {
		st, err := c.CA(ctx)
		if err != nil {
			return err
		}
		for _, n := range st.Nodes {
			if !n.Current {
				return fmt.Errorf("%s: %+v", n.Node, n)
			}
		}
		return nil
	})
	if err := c.FinishCARotation(ctx, false); err != nil {
		t.Fatalf("finish: %v", err)
	}
	// Every node trusts the new CA alone, and the cluster works: a new
	// database needs Raft and every agent.
	testutil.WaitFor(t, 10*time.Second, "bundles with the new CA only", func() error {
		for _, cfg := range tc.cfgs {
			b, err := os.ReadFile(filepath.Join(cfg.DataDir, "tls", pki.CAFile))
			if err != nil {
				return err
			}
			certs, err := pki.ParseCerts(b)
			if err != nil {
				return err
			}
			if len(certs) != 1 || pki.Fingerprint(certs[0]) != fp {
				return fmt.Errorf("%s trusts %d CAs", cfg.ID, len(certs))
			}
		}
		return nil
	})
	tc.waitNodesUp(3)
	if _, err := c.CreateDB(ctx, api.CreateDBRequest{Name: "after", Memory: 16 << 20, Replicas: 2}); err != nil {
		t.Fatal(err)
	}
	tc.waitReady(c, "after")
	// The early database's servers present certificates of the new CA
	// (the only one trusted now): a new TLS connection to each works.
	for _, in := range instances(early) {
		cl := tc.rc(in.Addr, "", early.Password)
		testutil.WaitFor(t, 10*time.Second, "a TLS connection to "+in.ID, func() error { return cl.Ping(ctx).Err() })
		cl.Close()
	}
}

// What crosses the network between nodes, Raft and the API (forwards,
// heartbeats, CLI calls), carries no password, secret, token or key in
// clear: read by a sniffer on the wire while a database is created, used
// and changed through a follower.
func TestNoSecretsOnTheWire(t *testing.T) {
	hosts := testutil.LoopbackHosts(t, 3, 7000, 7001, 7100, 7050, 7009)
	control := 7009
	sn := testutil.Sniff(t, hosts, 7000, 7001, control)
	tc := newTestClusterOn(t, hosts, 256<<20, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := (tc.leader() + 1) % 3
	c := tc.client(f)
	const password = "db-password-on-the-wire-1"
	if _, err := c.CreateDB(ctx, api.CreateDBRequest{Name: "wire", Memory: 16 << 20, Replicas: 1, Password: password}); err != nil {
		t.Fatal(err)
	}
	tc.waitReady(c, "wire")
	newPassword := "db-password-on-the-wire-2"
	if _, err := c.UpdateDB(ctx, "wire", api.UpdateDBRequest{Password: &newPassword}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := tc.client(i).ListDBs(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// The control: a secret sent in clear on a watched port is found.
	ln, err := net.Listen("tcp", topology.HostPort(hosts[0], control))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			_, _ = io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(hosts[1])}}
	cc, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = cc.Write([]byte("control-secret-in-clear"))
	cc.Close()
	testutil.WaitFor(t, 5*time.Second, "the sniffer sees the control secret", func() error {
		if _, ok := sn.Find([]byte("control-secret-in-clear")); !ok {
			return fmt.Errorf("not seen")
		}
		return nil
	})

	st := tc.nodes[0].FSM.State()
	db := st.DBs["wire"]
	keyBody := strings.Split(st.CA.KeyPEM, "\n")[1] // a line of the key's base64
	secrets := map[string]string{
		"API token": testToken, "API token hash": st.TokenHash, "old database password": password,
		"database password": newPassword, "internal secret": db.Secret, "proxy secret": redisconf.ProxySecret(db.Secret),
		"CA key": keyBody,
	}
	for what, s := range secrets {
		if flow, ok := sn.Find([]byte(s)); ok {
			t.Errorf("%s seen in clear in %s", what, flow)
		}
	}
	for _, p := range []int{7000, 7001} {
		if n := sn.Bytes(p); n < 10000 {
			t.Errorf("only %d bytes seen on port %d: the sniffer missed the traffic", n, p)
		}
	}
	t.Logf("seen: %d bytes of API traffic, %d of Raft", sn.Bytes(7000), sn.Bytes(7001))
}

// listening returns the TCP ports listening on ip (IPv4), from /proc.
func listening(t *testing.T, ip string) []int {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	v4 := net.ParseIP(ip).To4()
	want := fmt.Sprintf("%02X%02X%02X%02X", v4[3], v4[2], v4[1], v4[0]) // little-endian
	var out []int
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || f[3] != "0A" { // LISTEN
			continue
		}
		addr, port, ok := strings.Cut(f[1], ":")
		if !ok || addr != want {
			continue
		}
		var p int
		fmt.Sscanf(port, "%X", &p)
		out = append(out, p)
	}
	return out
}

// A stranger is refused on every port a node listens on: the API (no
// token, a wrong one, plain HTTP), Raft (plain TCP), the Sentinel
// protocol and every redis-server (plaintext: no answer; TLS: no password,
// a wrong one, a guessed user), every database endpoint, and nothing in
// the state changes. The
// ports are read from the kernel, so a port added later and not checked
// here fails the test.
func TestStrangerIsRefusedEverywhere(t *testing.T) {
	hosts := testutil.LoopbackHosts(t, 3, 7000, 7001, 7100, 7050, 7009)
	// As marina server runs by default: redis-servers and the Sentinel
	// port speak TLS only.
	tc := newTestClusterOn(t, hosts, 256<<20, func(i int, c *Config) { c.SentinelPort, c.RedisTLS = 7009, true })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := tc.client(0)
	for _, spec := range []api.CreateDBRequest{{Name: "one", Memory: 16 << 20, Replicas: 2}, {Name: "two", Memory: 16 << 20, Shards: 2, Replicas: 1}} {
		if _, err := c.CreateDB(ctx, spec); err != nil {
			t.Fatal(err)
		}
		tc.waitReady(c, spec.Name)
	}
	before := tc.nodes[0].FSM.State()

	// A stranger that speaks TLS does not care whose certificate it gets.
	strangerTLS := &tls.Config{InsecureSkipVerify: true}
	plainGetsNothing := func(addr, what string) {
		cl := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1,
			DialTimeout: time.Second, ReadTimeout: time.Second})
		defer cl.Close()
		if err := cl.Ping(ctx).Err(); err == nil {
			t.Errorf("%s %s answered a plaintext client", what, addr)
		}
	}
	redisRefuses := func(addr, what string, tc *tls.Config) {
		for _, o := range []redis.Options{{}, {Password: "wrong"}, {Username: "marina", Password: "wrong"},
			{Username: "marina-proxy", Password: "wrong"}, {Username: "default", Password: ""}} {
			o.Addr, o.Protocol, o.DisableIdentity, o.MaxRetries, o.DialTimeout, o.TLSConfig = addr, 2, true, -1, time.Second, tc
			cl := redis.NewClient(&o)
			err := cl.Ping(ctx).Err()
			if err == nil {
				err = cl.Get(ctx, "k").Err()
			}
			cl.Close()
			if err == nil || !(strings.Contains(err.Error(), "NOAUTH") || strings.Contains(err.Error(), "WRONGPASS")) {
				t.Errorf("%s %s as %q/%q: %v, want NOAUTH or WRONGPASS", what, addr, o.Username, o.Password, err)
			}
		}
	}
	for i, h := range hosts {
		ports := listening(t, h)
		if len(ports) < 4 {
			t.Fatalf("node %d: listening on %v only", i+1, ports)
		}
		for _, p := range ports {
			addr := topology.HostPort(h, p)
			switch {
			case p == 7000:
				hc := tc.httpClient()
				for _, tok := range []string{"", "wrong"} {
					req, _ := http.NewRequest(http.MethodDelete, "https://"+addr+"/v1/dbs/one", nil)
					if tok != "" {
						req.Header.Set("Authorization", "Bearer "+tok)
					}
					res, err := hc.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					res.Body.Close()
					if res.StatusCode != http.StatusUnauthorized {
						t.Errorf("API %s with token %q: %d", addr, tok, res.StatusCode)
					}
				}
				res, err := http.Get("http://" + addr + "/v1/status")
				if err == nil {
					res.Body.Close()
					if res.StatusCode != http.StatusBadRequest {
						t.Errorf("plain HTTP to the API: %d", res.StatusCode)
					}
				}
			case p == 7001:
				if err := inject(t, addr, nil); err == nil {
					t.Errorf("Raft %s took AppendEntries in plain TCP", addr)
				}
			case p == 7009:
				plainGetsNothing(addr, "sentinel")
				cl := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1, TLSConfig: strangerTLS})
				err := cl.Do(ctx, "SENTINEL", "get-master-addr-by-name", "one").Err()
				if err == nil || !strings.Contains(err.Error(), "NOAUTH") {
					t.Errorf("sentinel %s without AUTH: %v", addr, err)
				}
				if err := cl.Do(ctx, "AUTH", "wrong").Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
					t.Errorf("sentinel %s AUTH wrong: %v", addr, err)
				}
				cl.Close()
			case p >= 7050 && p <= 7099:
				redisRefuses(addr, "endpoint", nil)
			case p >= 7100 && p <= 7199:
				plainGetsNothing(addr, "redis-server")
				redisRefuses(addr, "redis-server", strangerTLS)
			default:
				t.Errorf("node %d listens on %s, which this test does not know: check it refuses strangers", i+1, addr)
			}
		}
	}
	after := tc.nodes[0].FSM.State()
	if len(after.DBs) != 2 || after.TokenHash != before.TokenHash || len(after.Nodes) != 3 {
		t.Fatalf("state changed: %d dbs, %d nodes", len(after.DBs), len(after.Nodes))
	}
	for name, db := range before.DBs {
		if a := after.DBs[name]; a == nil || a.Password != db.Password || a.Secret != db.Secret {
			t.Errorf("database %s changed", name)
		}
	}
}

// With --redis-tls, redis-servers speak TLS only: replication, the
// endpoints' traffic to them, the agents, the stats and the leader all go
// over TLS with the nodes' certificates. A sniffer on the redis ports sees
// no password or secret while a database is written through every node's
// endpoint, replicates, and fails over; a plaintext client gets nothing.
func TestRedisTLSBetweenHosts(t *testing.T) {
	hosts := testutil.LoopbackHosts(t, 3, 7000, 7001, 7100, 7050, 7009)
	redisPorts := make([]int, 0, 100)
	for p := 7100; p < 7200; p++ {
		redisPorts = append(redisPorts, p)
	}
	sn := testutil.Sniff(t, hosts, redisPorts...)
	haFile := filepath.Join(t.TempDir(), "haproxy-backends.cfg")
	tc := newTestClusterOn(t, hosts, 256<<20, func(i int, c *Config) {
		c.RedisTLS, c.DownAfter, c.SentinelPort = true, time.Second, 7009
		if i == 0 {
			c.HAProxyConfig = haFile
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := tc.client(0)
	const password = "tls-db-password-1"
	if _, err := c.CreateDB(ctx, api.CreateDBRequest{Name: "sec", Memory: 16 << 20, Shards: 2, Replicas: 1, Password: password,
		Durability: "replicated"}); err != nil {
		t.Fatal(err)
	}
	db := tc.waitReady(c, "sec")
	for i, ep := range db.Endpoints {
		cl := redis.NewClient(&redis.Options{Addr: ep, Password: password, Protocol: 2, DisableIdentity: true, MaxRetries: -1})
		testutil.WaitFor(t, 15*time.Second, "a replicated write through "+ep, func() error {
			return cl.Set(ctx, fmt.Sprintf("k%d", i), "v", 0).Err()
		})
		if v, err := cl.Get(ctx, "k0").Result(); err != nil || v != "v" {
			t.Fatalf("GET through %s: %q %v", ep, v, err)
		}
		cl.Close()
	}
	// A plaintext client of a redis-server gets no answer (it sends a
	// made-up password: the real one would be on the wire in clear); a TLS
	// one with the password does.
	m := db.Shards[0].Master
	plain := redis.NewClient(&redis.Options{Addr: m.Addr, Password: "not-the-password", Protocol: 2, DisableIdentity: true, MaxRetries: -1,
		DialTimeout: time.Second, ReadTimeout: time.Second})
	if err := plain.Ping(ctx).Err(); err == nil {
		t.Fatalf("%s answered a plaintext client", m.Addr)
	}
	plain.Close()
	var id pki.Identity
	if err := id.Load(tc.cfgs[0].DataDir); err != nil {
		t.Fatal(err)
	}
	secure := redis.NewClient(&redis.Options{Addr: m.Addr, Password: password, Protocol: 2, DisableIdentity: true, MaxRetries: -1,
		TLSConfig: id.DialerTLS(m.Addr)})
	if err := secure.Ping(ctx).Err(); err != nil {
		t.Fatalf("TLS client of %s: %v", m.Addr, err)
	}
	secure.Close()
	// Sentinel-aware clients: one TLS configuration (the cluster CA) for
	// the sentinels and the servers they name.
	pool, err := client.LoadCAFile(tc.caFile())
	if err != nil {
		t.Fatal(err)
	}
	var sentinels []string
	for _, h := range hosts {
		sentinels = append(sentinels, topology.HostPort(h, 7009))
	}
	fc := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "sec-0", SentinelAddrs: sentinels, SentinelPassword: password,
		Password: password, DialTimeout: time.Second, ReadTimeout: 2 * time.Second, TLSConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}})
	testutil.WaitFor(t, 10*time.Second, "a write through a FailoverClient over TLS", func() error {
		return fc.Set(ctx, "{sentinel}k", "v", 0).Err()
	})
	fc.Close()
	// The HAProxy backends reach the servers over TLS, checked with the CA.
	testutil.WaitFor(t, 10*time.Second, "HAProxy backends written", func() error {
		b, err := os.ReadFile(haFile)
		if err != nil {
			return err
		}
		if !strings.Contains(string(b), "ssl verify required ca-file "+filepath.Join(tc.cfgs[0].DataDir, "tls", pki.CAFile)) ||
			!strings.Contains(string(b), "tcp-check connect ssl") {
			return fmt.Errorf("no TLS in the backends yet")
		}
		return nil
	})
	if bin, err := exec.LookPath("haproxy"); err == nil {
		main := filepath.Join(t.TempDir(), "main.cfg")
		if err := os.WriteFile(main, []byte("global\n    maxconn 100\ndefaults\n    mode tcp\n    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\n"+
			"frontend f\n    bind 127.0.0.1:16379\n    default_backend sec_0-write\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, "-c", "-f", main, "-f", haFile).CombinedOutput(); err != nil {
			t.Fatalf("haproxy -c with the TLS backends: %v\n%s", err, out)
		}
	}
	// A failover: the replica, over TLS, becomes master; writes go on.
	if err := syscall.Kill(pidOf(tc, m), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitNewMaster(t, tc, c, "sec", 0, m.ID)
	cl := redis.NewClient(&redis.Options{Addr: db.Endpoints[1], Password: password, Protocol: 2, DisableIdentity: true, MaxRetries: -1})
	defer cl.Close()
	testutil.WaitFor(t, 20*time.Second, "writes after the failover", func() error {
		for i := 0; i < 20; i++ {
			if err := cl.Set(ctx, fmt.Sprintf("after%d", i), "v", 0).Err(); err != nil {
				return err
			}
		}
		return nil
	})

	st := tc.nodes[0].FSM.State()
	sec := st.DBs["sec"]
	for what, s := range map[string]string{"database password": password, "internal secret": sec.Secret,
		"proxy secret": redisconf.ProxySecret(sec.Secret)} {
		if flow, ok := sn.Find([]byte(s)); ok {
			t.Errorf("%s seen in clear on a redis port (%s)", what, flow)
		}
	}
	total := 0
	for _, p := range redisPorts {
		total += sn.Bytes(p)
	}
	if total < 10000 {
		t.Errorf("only %d bytes seen on the redis ports: the sniffer missed the traffic", total)
	}
	t.Logf("seen: %d bytes on the redis ports", total)
}

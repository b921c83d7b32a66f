// Package server assembles one Marina node: Raft member, FSM, controller,
// agent, heartbeats and the HTTP API.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/netutil"

	"github.com/marina-redis/marina/internal/agent"
	"github.com/marina-redis/marina/internal/api"
	"github.com/marina-redis/marina/internal/client"
	"github.com/marina-redis/marina/internal/cluster"
	"github.com/marina-redis/marina/internal/console"
	"github.com/marina-redis/marina/internal/controller"
	"github.com/marina-redis/marina/internal/doctor"
	"github.com/marina-redis/marina/internal/hooks"
	"github.com/marina-redis/marina/internal/metrics"
	"github.com/marina-redis/marina/internal/pki"
	"github.com/marina-redis/marina/internal/proxy"
	"github.com/marina-redis/marina/internal/redisconf"
	"github.com/marina-redis/marina/internal/sentinel"
	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/stats"
)

// Config is a node's configuration.
type Config struct {
	ID       string
	DataDir  string
	Bind     string // address for HTTP, Raft and this node's redis-servers
	HTTPPort int
	RaftPort int
	Join     string // HTTP address of any member; empty bootstraps a new cluster
	// CACert (PEM file) verifies the member Join talks to: the cluster CA.
	CACert string
	// CertLifetime of the node certificates this node signs as leader
	// (default 30 days); nodes renew theirs with a third left.
	CertLifetime time.Duration
	// APITLSCert and APITLSKey: an operator's certificate for the API and
	// console, served to clients that do not ask for a node by name.
	APITLSCert string
	APITLSKey  string
	// RedisTLS makes this node's redis-servers speak TLS only (replication
	// included) with its certificate, and everything Marina runs reach
	// redis-servers over TLS. Every node of a cluster must agree.
	RedisTLS    bool
	Memory      int64
	Zone        string
	RedisServer string
	Token       string
	PortMin     int
	PortMax     int
	ProxyMin    int // database endpoints: one port per database, the same on every node
	ProxyMax    int
	// Proxy limits, per database on this node.
	ProxyMaxClients int
	ProxyMaxRequest int
	ProxyIdle       time.Duration
	// ProxyInputBudget bounds the incomplete client requests all of this
	// node's endpoints hold together (256 MiB).
	ProxyInputBudget int64
	// ProxyTLSCert and ProxyTLSKey (PEM files) make endpoints speak TLS.
	ProxyTLSCert string
	ProxyTLSKey  string
	proxyTLS     *tls.Config
	// SentinelPort serves the Redis Sentinel protocol on Bind, so
	// sentinel-aware clients find masters directly (0: off).
	SentinelPort int
	// StopInstancesOnExit stops this node's redis-servers when it stops
	// (marina up); by default they keep serving and are adopted on restart.
	StopInstancesOnExit bool
	NodeDownAfter       time.Duration
	ElectionTimeout     time.Duration
	Heartbeat           time.Duration
	// Failover: DownAfter before a master counts as failed; Lease after
	// which an agent without the leader fences its masters; MaxLinkDown for
	// promotable replicas; flap damping (FlapMax failovers of a shard per
	// FlapWindow at once, then spaced by FlapDelay doubling up to
	// FlapDelayMax); HealAfter. Zero: internal/timing's defaults (timing.go).
	DownAfter    time.Duration
	Lease        time.Duration
	MaxLinkDown  time.Duration
	FlapMax      int
	FlapWindow   time.Duration
	FlapDelay    time.Duration
	FlapDelayMax time.Duration
	HealAfter    time.Duration // replicas of a node down this long are rebuilt elsewhere
	// StatsInterval: how often the node reads INFO from its redis-servers
	// (5s); Graphite (host:port), when set, receives each round.
	StatsInterval  time.Duration
	Graphite       string
	GraphitePrefix string
	// Hooks (internal/hooks, docs/hooks.md): HookExec runs on every
	// topology change with the database's document on stdin; HAProxyConfig
	// is rewritten with a write and a read backend per shard, then
	// HAProxyReload runs. HookTimeout (10s) per attempt, HookRetries after it.
	HookExec      string
	HookTimeout   time.Duration
	HookRetries   int
	HAProxyConfig string
	HAProxyReload string
	Logger        *slog.Logger
	RaftLog       io.Writer // hashicorp/raft's own log lines; default stderr
	// HTTPReadTimeout bounds reading a request, headers and body (10s);
	// HTTPIdleTimeout closes idle keep-alive connections (60s).
	HTTPReadTimeout time.Duration
	HTTPIdleTimeout time.Duration
	// HTTPMaxConns caps the API's open connections (1024): more wait to
	// be accepted, so a flood cannot take every descriptor.
	HTTPMaxConns int
	// Out receives the generated API token, printed once at bootstrap.
	Out io.Writer
}

// httpWriteTimeout bounds writing one API answer.
const httpWriteTimeout = 5 * time.Minute

// DefaultMemory is a safe share of the host's RAM for redis maxmemory:
// the rest covers fork copy-on-write, replication buffers and the OS.
func DefaultMemory() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil && kb > 0 {
			return kb * 1024 * 6 / 10
		}
	}
	return 1 << 30
}

// Validate checks a configuration and fills defaults; errors say what to fix.
func (c *Config) Validate() error {
	if err := state.ValidateNodeID(c.ID); err != nil {
		return fmt.Errorf("--id: %v", err)
	}
	if c.DataDir == "" {
		return errors.New("--data is required")
	}
	if ip := net.ParseIP(c.Bind); ip == nil || ip.IsUnspecified() {
		return fmt.Errorf("--bind %q: must be this node's IP address (not 0.0.0.0): redis-servers bind to it", c.Bind)
	}
	for name, p := range map[string]int{"--http-port": c.HTTPPort, "--raft-port": c.RaftPort} {
		if p < 1 || p > 65535 {
			return fmt.Errorf("%s %d: must be 1..65535", name, p)
		}
	}
	if c.HTTPPort == c.RaftPort {
		return fmt.Errorf("--http-port and --raft-port must differ")
	}
	if c.PortMin < 1024 || c.PortMax > 65535 || c.PortMin > c.PortMax {
		return fmt.Errorf("--redis-ports %d-%d: must be a range within 1024-65535", c.PortMin, c.PortMax)
	}
	for _, p := range []int{c.HTTPPort, c.RaftPort} {
		if p >= c.PortMin && p <= c.PortMax {
			return fmt.Errorf("--redis-ports %d-%d overlaps the HTTP or Raft port %d", c.PortMin, c.PortMax, p)
		}
	}
	if c.ProxyMin != 0 {
		if c.ProxyMin < 1024 || c.ProxyMax > 65535 || c.ProxyMin > c.ProxyMax {
			return fmt.Errorf("--proxy-ports %d-%d: must be a range within 1024-65535", c.ProxyMin, c.ProxyMax)
		}
		if c.ProxyMin <= c.PortMax && c.PortMin <= c.ProxyMax {
			return fmt.Errorf("--proxy-ports %d-%d overlaps --redis-ports %d-%d", c.ProxyMin, c.ProxyMax, c.PortMin, c.PortMax)
		}
		for _, p := range []int{c.HTTPPort, c.RaftPort} {
			if p >= c.ProxyMin && p <= c.ProxyMax {
				return fmt.Errorf("--proxy-ports %d-%d overlaps the HTTP or Raft port %d", c.ProxyMin, c.ProxyMax, p)
			}
		}
	}
	if err := c.validateSentinelPort(); err != nil {
		return err
	}
	if c.Memory == 0 {
		c.Memory = DefaultMemory()
	}
	if c.StatsInterval != 0 && (c.StatsInterval < 100*time.Millisecond || c.StatsInterval > 5*time.Minute) {
		return fmt.Errorf("--stats-interval %s: must be 100ms..5m", c.StatsInterval)
	}
	if c.Graphite != "" {
		if _, p, err := net.SplitHostPort(c.Graphite); err != nil || p == "" {
			return fmt.Errorf("--graphite %q: want host:port of carbon's plaintext listener (usually port 2003)", c.Graphite)
		}
	}
	if (c.ProxyTLSCert == "") != (c.ProxyTLSKey == "") {
		return errors.New("--proxy-tls-cert and --proxy-tls-key go together")
	}
	if c.ProxyTLSCert != "" {
		cert, err := tls.LoadX509KeyPair(c.ProxyTLSCert, c.ProxyTLSKey)
		if err != nil {
			return fmt.Errorf("--proxy-tls-cert/--proxy-tls-key: %v", err)
		}
		c.proxyTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if (c.APITLSCert == "") != (c.APITLSKey == "") {
		return errors.New("--api-tls-cert and --api-tls-key go together")
	}
	if c.CertLifetime != 0 && c.CertLifetime < 10*time.Second {
		return fmt.Errorf("--cert-lifetime %v: must be at least 10s", c.CertLifetime)
	}
	if c.ProxyMaxClients == 0 {
		c.ProxyMaxClients = 10000
	}
	if c.ProxyMaxRequest == 0 {
		c.ProxyMaxRequest = 512 << 20
	}
	if c.ProxyInputBudget == 0 {
		c.ProxyInputBudget = 256 << 20
	}
	if c.ProxyInputBudget < 1<<20 {
		return fmt.Errorf("--proxy-input-budget %d: at least 1MiB", c.ProxyInputBudget)
	}
	if c.Memory < state.MinMemory {
		return fmt.Errorf("--memory %d: must be at least 1MiB", c.Memory)
	}
	if c.RedisServer == "" {
		c.RedisServer = "redis-server"
	}
	path, err := exec.LookPath(c.RedisServer)
	if err != nil {
		return fmt.Errorf("--redis-server %q not found: install redis-server (apt-get install redis-server) or pass its path", c.RedisServer)
	}
	c.RedisServer = path
	if err := checkRedisVersion(path); err != nil {
		return err
	}
	if err := c.fillTiming(); err != nil {
		return err
	}
	if err := c.hooks().Validate(); err != nil {
		return err
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Out == nil {
		c.Out = os.Stdout
	}
	if c.HTTPReadTimeout == 0 {
		c.HTTPReadTimeout = 10 * time.Second
	}
	if c.HTTPIdleTimeout == 0 {
		c.HTTPIdleTimeout = time.Minute
	}
	if c.HTTPMaxConns == 0 {
		c.HTTPMaxConns = 1024
	}
	return nil
}

// validateSentinelPort checks --sentinel-port against the node's other ports.
func (c *Config) validateSentinelPort() error {
	p := c.SentinelPort
	switch {
	case p == 0:
		return nil
	case p < 1 || p > 65535:
		return fmt.Errorf("--sentinel-port %d: must be 1..65535 (0 turns it off)", p)
	case p == c.HTTPPort || p == c.RaftPort:
		return fmt.Errorf("--sentinel-port %d: must differ from the HTTP and Raft ports", p)
	case p >= c.PortMin && p <= c.PortMax:
		return fmt.Errorf("--sentinel-port %d is inside --redis-ports %d-%d", p, c.PortMin, c.PortMax)
	case c.ProxyMin != 0 && p >= c.ProxyMin && p <= c.ProxyMax:
		return fmt.Errorf("--sentinel-port %d is inside --proxy-ports %d-%d", p, c.ProxyMin, c.ProxyMax)
	}
	return nil
}

// checkRedisVersion refuses redis-server older than 7.0: the rendered
// config (appenddirname, ACL users) and multi-key CONFIG GET need it.
func checkRedisVersion(path string) error {
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		return fmt.Errorf("%s --version: %v", path, err)
	}
	_, major, minor, err := doctor.ParseRedisVersion(string(out))
	if err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	if major < doctor.MinRedisMajor || (major == doctor.MinRedisMajor && minor < doctor.MinRedisMinor) {
		return fmt.Errorf("%s is redis %d.%d: Marina needs redis-server %d.%d or later", path, major, minor, doctor.MinRedisMajor, doctor.MinRedisMinor)
	}
	return nil
}

// Node is a running `marina server`.
type Node struct {
	cfg     Config
	FSM     *state.FSM
	Raft    *cluster.Cluster
	Ctl     *controller.Controller
	Agent   *agent.Agent
	Proxies *proxy.Manager
	Stats   *stats.Collector
	http    *http.Server
	ln      net.Listener
	id      *pki.Identity
	// peersSaved: the members' API addresses last written to the peers
	// file (tlsLoop's alone).
	peersSaved string
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	log        *slog.Logger
	// Sentinel is the Redis Sentinel endpoint (nil when --sentinel-port is 0).
	Sentinel *sentinel.Server
}

// Start starts a node and returns once it is a member of a cluster.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("--data %s: %w", cfg.DataDir, err)
	}
	log := cfg.Logger.With("node", cfg.ID)
	n := &Node{cfg: cfg, FSM: state.NewFSM(), log: log, id: &pki.Identity{}}
	if cfg.APITLSCert != "" {
		op, err := operatorCert(cfg.APITLSCert, cfg.APITLSKey)
		if err != nil {
			return nil, err
		}
		n.id.SetOperator(op)
	}
	// The certificate, when this node has one; a new node gets it from
	// the cluster (join) or creates the CA (bootstrap) in enter.
	if err := n.id.Load(cfg.DataDir); err != nil && !errors.Is(err, pki.ErrNoCertificate) {
		return nil, fmt.Errorf("TLS material in %s: %w", n.tlsDir(), err)
	}
	ln, err := net.Listen("tcp", api.HostPort(cfg.Bind, cfg.HTTPPort))
	if err != nil {
		return nil, fmt.Errorf("HTTP listener: %w", err)
	}
	n.ln = ln
	n.Raft, err = cluster.Open(cluster.Config{ID: cfg.ID, DataDir: cfg.DataDir, RaftAddr: api.HostPort(cfg.Bind, cfg.RaftPort),
		ElectionTimeout: cfg.ElectionTimeout, LogOutput: cfg.RaftLog, Logger: log, Identity: n.id}, n.FSM)
	if err != nil {
		ln.Close()
		return nil, err
	}
	n.Ctl = controller.New(n.Raft, n.FSM, cfg.NodeDownAfter, log)
	n.Ctl.SetCertLifetime(cfg.CertLifetime)
	var dialer, local *redisconf.Dialer
	var tlsFiles *redisconf.TLSFiles
	if cfg.RedisTLS {
		// A redis-server's certificate is its node's: checked by address.
		dialer = &redisconf.Dialer{TLS: func(addr string) *tls.Config { return n.id.DialerTLS(addr) }}
		// The agent's own servers may still present an expired certificate
		// when it adopts them; it is what makes them reload it.
		local = &redisconf.Dialer{TLS: func(addr string) *tls.Config {
			if host, _, _ := net.SplitHostPort(addr); host == cfg.Bind {
				return n.id.LocalTLS(addr)
			}
			return n.id.DialerTLS(addr)
		}}
		tlsFiles = &redisconf.TLSFiles{Cert: filepath.Join(n.tlsDir(), pki.CertFile), Key: filepath.Join(n.tlsDir(), pki.KeyFile),
			CA: filepath.Join(n.tlsDir(), pki.CAFile)}
	}
	n.Ctl.SetRedisDialer(dialer)
	// The leader waits longer than an agent's lease (timing.LeaseWait)
	// before it promotes a replica of a silent node.
	n.Ctl.SetTiming(cfg.timing())
	n.Agent = agent.New(agent.Config{Redis: local, TLSFiles: tlsFiles, NodeID: cfg.ID, Dir: filepath.Join(cfg.DataDir, "instances"), RedisServer: cfg.RedisServer,
		StopOnExit: cfg.StopInstancesOnExit, Lease: cfg.Lease, Logger: log}, n.FSM)
	n.Proxies = &proxy.Manager{Node: cfg.ID, Src: n.FSM, Log: log,
		Limits: proxy.Limits{MaxClients: cfg.ProxyMaxClients, MaxRequest: cfg.ProxyMaxRequest, Idle: cfg.ProxyIdle, TLS: cfg.proxyTLS,
			Fenced: n.Agent.Fenced, Input: &proxy.Budget{Max: cfg.ProxyInputBudget}, Redis: dialer}}
	n.Stats = &stats.Collector{Redis: dialer, Node: cfg.ID, Src: n.FSM, Interval: cfg.StatsInterval, Log: log}
	closeGraphite := func() {}
	if cfg.Graphite != "" {
		n.Stats.OnSample, closeGraphite = n.graphiteSink()
	}
	srv := &api.Server{NodeID: cfg.ID, FSM: n.FSM, Raft: n.Raft, Ctl: n.Ctl, Log: log, Identity: n.id,
		Proxies: func() any { return n.Proxies.Snapshots() }, Stats: n.Stats, Doctor: n.doctorReport,
		Metrics: metrics.Handler(metrics.Sources{Node: cfg.ID, State: n.FSM.State, Events: n.FSM.Events, Samples: n.Stats.Samples,
			Proxies: n.Proxies.Snapshots, IsLeader: n.Raft.IsLeader, Applied: n.FSM.Index})}
	srv.Console = console.New() // the web console, at / and /ui/
	// Slow or idle clients must not hold connections (and the file
	// descriptors the proxy and Raft share) forever. No write timeout: a
	// switchover or a drain legitimately answers after seconds.
	n.http = &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: cfg.HTTPReadTimeout, ReadTimeout: cfg.HTTPReadTimeout,
		IdleTimeout: cfg.HTTPIdleTimeout,
		// Long enough for the slowest answer (a drain, a switchover wait),
		// short enough that a client reading nothing does not hold on.
		WriteTimeout: httpWriteTimeout,
		// Failed handshakes (strangers, plain HTTP) are the client's problem.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	// HTTPS only: the token never crosses a network in clear. Clients that
	// present a node certificate are known as that node (heartbeats).
	tln := tls.NewListener(netutil.LimitListener(ln, cfg.HTTPMaxConns), n.id.ServerTLS(false, nil))
	go func() {
		if err := n.http.Serve(tln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "err", err)
		}
	}()
	if cfg.SentinelPort != 0 {
		n.Sentinel, err = sentinel.Listen(sentinel.Config{Addr: api.HostPort(cfg.Bind, cfg.SentinelPort), NodeID: cfg.ID, Src: n.FSM,
			HashToken: api.HashToken, DownAfter: cfg.DownAfter, Log: log, TLS: n.sentinelTLS()})
		if err != nil {
			n.closeBase()
			return nil, fmt.Errorf("--sentinel-port: %w", err)
		}
	}
	if err := n.enter(ctx); err != nil {
		n.closeBase()
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	// Acting on a state older than what this node acted on before (a
	// restart, a wiped Raft dir) would remove instances that still exist,
	// hand out old masters or announce a partial topology: the agent, the
	// Sentinel endpoint and the hooks start once the state has caught up,
	// waited for once here.
	caughtUp := make(chan struct{})
	idx := n.Raft.Raft.LastIndex()
	n.goRun(func() {
		if n.waitCaughtUp(runCtx, idx) {
			close(caughtUp)
		}
	})
	afterCatchUp := func(f func()) {
		n.goRun(func() {
			select {
			case <-caughtUp:
				f()
			case <-runCtx.Done():
			}
		})
	}
	afterCatchUp(func() { _ = n.Agent.Run(runCtx) })
	n.goRun(func() { n.Ctl.Run(runCtx) })
	n.goRun(func() { n.Proxies.Run(runCtx) })
	n.goRun(func() { n.heartbeats(runCtx) })
	n.goRun(func() { n.tlsLoop(runCtx) })
	if n.Sentinel != nil {
		// Meanwhile sentinel clients time out here and ask the other nodes.
		afterCatchUp(func() { _ = n.Sentinel.Serve(runCtx) })
	}
	n.goRun(func() {
		n.Stats.Run(runCtx)
		closeGraphite()
	})
	if hc := n.hooks(); hc.Enabled() {
		// The first announcement is a "sync" of every database.
		afterCatchUp(func() { hooks.Run(runCtx, hc, n.FSM) })
	}
	log.Info("node started", "http", ln.Addr().String(), "raft", api.HostPort(cfg.Bind, cfg.RaftPort))
	return n, nil
}

func (n *Node) goRun(f func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
}

// self is this node as it registers itself.
func (n *Node) self() state.Node {
	c := n.cfg
	self := state.Node{ID: c.ID, Addr: c.Bind, RaftAddr: api.HostPort(c.Bind, c.RaftPort), HTTPAddr: api.HostPort(c.Bind, c.HTTPPort),
		Memory: c.Memory, Zone: c.Zone, PortMin: c.PortMin, PortMax: c.PortMax, ProxyMin: c.ProxyMin, ProxyMax: c.ProxyMax}
	if c.SentinelPort != 0 {
		self.SentinelAddr = api.HostPort(c.Bind, c.SentinelPort)
	}
	return self
}

// enter bootstraps a new cluster, joins an existing one, or (with Raft
// state on disk) simply rejoins with the state it has.
func (n *Node) enter(ctx context.Context) error {
	tokenFile := filepath.Join(n.cfg.DataDir, "token")
	if n.Raft.HasState() {
		n.log.Info("restarting with existing state")
		if n.id.Leaf() == nil {
			return fmt.Errorf("no node certificate in %s: this node cannot talk to its cluster; move %s aside and join again (--join, --token, --cacert)",
				n.tlsDir(), n.cfg.DataDir)
		}
		if n.cfg.Token == "" {
			// Heartbeats to the leader need the token: a restart must not
			// depend on the operator passing it again.
			b, err := os.ReadFile(tokenFile)
			if err != nil {
				return fmt.Errorf("no --token given and none saved in %s: %v", tokenFile, err)
			}
			n.cfg.Token = string(b)
		}
		// A bootstrap cut off before its CA was committed finishes it.
		n.goRun(func() { n.commitPendingCA(ctx) })
		return nil
	}
	if n.cfg.Join == "" {
		instDir := filepath.Join(n.cfg.DataDir, "instances")
		if es, _ := os.ReadDir(instDir); len(es) > 0 {
			return fmt.Errorf("%s holds %d instances but there is no Raft state: refusing to bootstrap a new cluster over them (restore %s, or --join the existing cluster)",
				instDir, len(es), filepath.Join(n.cfg.DataDir, "raft"))
		}
		if err := n.bootstrapIdentity(); err != nil {
			return fmt.Errorf("bootstrap: cluster CA: %w", err)
		}
		if err := n.Raft.Bootstrap(); err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		for !n.Raft.IsLeader() {
			select {
			case <-wctx.Done():
				return fmt.Errorf("bootstrap: not leader after 30s")
			case <-time.After(10 * time.Millisecond):
			}
		}
		// Registering the node before returning lets the caller use the API at once.
		if err := n.Ctl.Register(wctx, controller.Report{Node: n.self()}); err != nil {
			return fmt.Errorf("register node: %w", err)
		}
		if err := n.commitCA(wctx); err != nil {
			return err
		}
		token := n.cfg.Token
		if token == "" {
			token = controller.RandomSecret(24)
			fmt.Fprintf(n.cfg.Out, "MARINA_TOKEN=%s\n", token)
		}
		fmt.Fprintf(n.cfg.Out, "MARINA_CACERT=%s\n", filepath.Join(n.tlsDir(), pki.CAFile))
		n.cfg.Token = token
		if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
			return err
		}
		return n.Ctl.SetToken(wctx, api.HashToken(token))
	}
	if n.cfg.Token == "" {
		return errors.New("--join needs the cluster's API token: pass --token or set MARINA_TOKEN")
	}
	if n.cfg.CACert == "" {
		return errors.New("--join needs the cluster's CA certificate to check the member it talks to: pass --cacert FILE (a member's DATA/tls/ca.pem) or set MARINA_CACERT")
	}
	if _, err := client.LoadCAFile(n.cfg.CACert); err != nil {
		return fmt.Errorf("--cacert: %v", err)
	}
	cl := client.New(n.cfg.Join, n.cfg.Token, client.CAFile(n.cfg.CACert))
	// First a certificate (the leader must reach this node over mutual TLS
	// as soon as it is a member), then membership.
	if err := n.retryJoin(ctx, "certificate", func() error {
		if n.id.Leaf() != nil {
			return nil // from an earlier attempt that did not finish joining
		}
		return n.requestCert(ctx, cl)
	}); err != nil {
		return err
	}
	if err := n.retryJoin(ctx, "join", func() error { return cl.Join(ctx, n.self()) }); err != nil {
		return err
	}
	n.log.Info("joined cluster", "via", n.cfg.Join)
	return os.WriteFile(tokenFile, []byte(n.cfg.Token), 0o600)
}

// retryJoin runs a step of joining until it succeeds, or fails for good
// (a wrong token, a refused request).
func (n *Node) retryJoin(ctx context.Context, what string, f func() error) error {
	delay := 100 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return nil
		}
		var ae *client.Error
		if errors.As(err, &ae) && (ae.Code == http.StatusUnauthorized || ae.Code == http.StatusBadRequest || ae.Code == http.StatusConflict) {
			return fmt.Errorf("join %s: %s: %v", n.cfg.Join, what, err)
		}
		var ue x509.UnknownAuthorityError
		var he x509.HostnameError
		if errors.As(err, &ue) || errors.As(err, &he) {
			return fmt.Errorf("join %s: the member's certificate is not from --cacert %s: %v", n.cfg.Join, n.cfg.CACert, err)
		}
		n.log.Warn(what+" failed, retrying", "via", n.cfg.Join, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("join %s: %s: %w (last error: %v)", n.cfg.Join, what, ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 2*time.Second)
	}
}

// commitPendingCA commits a CA left by an interrupted bootstrap once this
// node leads (no-op without one).
func (n *Node) commitPendingCA(ctx context.Context) {
	for {
		if _, err := os.Stat(filepath.Join(n.tlsDir(), caKeyFile)); err != nil {
			return
		}
		if n.Raft.IsLeader() {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := n.commitCA(cctx)
			cancel()
			if err == nil {
				return
			}
			n.log.Warn("committing the cluster CA", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// waitCaughtUp returns true once the FSM has applied the local log up to
// idx and, on a follower, everything the leader had applied when asked.
func (n *Node) waitCaughtUp(ctx context.Context, idx uint64) bool {
	self := n.selfClient()
	logged := false
	for {
		applied := n.Raft.Raft.AppliedIndex()
		if applied >= idx {
			if n.Raft.IsLeader() {
				return true
			}
			// Our own API forwards the status read to the leader.
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			st, err := self.Status(sctx)
			cancel()
			if err == nil && st.Leader != "" && st.ServedBy == st.Leader && applied >= st.AppliedIndex {
				return true
			}
		}
		if !logged {
			n.log.Info("waiting until the state has caught up (agent, sentinel, hooks)", "local_index", idx)
			logged = true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// heartbeats reports this node and its instances to the leader.
func (n *Node) heartbeats(ctx context.Context) {
	t := time.NewTicker(n.cfg.Heartbeat)
	defer t.Stop()
	var peer *client.Client
	var peerAddr string
	for {
		rep := controller.Report{Node: n.self(), Instances: n.Agent.Statuses(), Probes: n.Agent.Probes(), Fences: n.Agent.Fences(),
			Cert: n.certStatus()}
		// The lease counts from when the report left, not when the answer
		// came back: the leader counts its wait from when it arrived.
		sent := time.Now()
		hctx, cancel := context.WithTimeout(ctx, n.cfg.timing().HeartbeatTimeout())
		var err error
		var ack controller.Ack
		id := n.Raft.LeaderID()
		err = errNoLeader
		switch {
		case id == "":
		case id == n.cfg.ID:
			ack, err = n.Ctl.Heartbeat(hctx, rep)
		default:
			if ln, ok := n.FSM.State().Nodes[id]; ok {
				if ln.HTTPAddr != peerAddr {
					peer, peerAddr = n.peerClient(id, ln.HTTPAddr), ln.HTTPAddr
				}
				ack, err = peer.Heartbeat(hctx, rep)
			}
		}
		cancel()
		if err == nil {
			n.Agent.Grant(sent, ack.LeaseAge, ack.Index)
			n.Agent.AckFences(rep.Fences)
		}
		if err != nil && ctx.Err() == nil {
			n.log.Debug("heartbeat", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-n.Agent.Urgent():
		case <-n.Agent.Notify():
			// A change to report: soon, but coalesced with others.
			select {
			case <-time.After(20 * time.Millisecond):
			case <-ctx.Done():
				return
			}
		}
	}
}

var errNoLeader = errors.New("no leader known")

// HTTPAddr is the node's API address.
func (n *Node) HTTPAddr() string { return n.ln.Addr().String() }

// ID is the node id.
func (n *Node) ID() string { return n.cfg.ID }

// Stop stops the node. Its redis-servers keep running unless
// StopInstancesOnExit is set.
func (n *Node) Stop() {
	if n.Raft.IsLeader() {
		// Hand leadership over instead of making the others wait out a timeout.
		_ = n.Raft.Raft.LeadershipTransfer().Error()
	}
	n.cancel()
	n.wg.Wait()
	n.closeBase()
	n.log.Info("node stopped")
}

func (n *Node) closeBase() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = n.http.Shutdown(ctx)
	if n.Sentinel != nil {
		_ = n.Sentinel.Close()
	}
	if err := n.Raft.Close(); err != nil {
		n.log.Warn("raft shutdown", "err", err)
	}
}

// ParsePortRange reads "7000-7999".
func ParsePortRange(s string) (int, int, error) {
	var lo, hi int
	if _, err := fmt.Sscanf(s, "%d-%d", &lo, &hi); err != nil || strconv.Itoa(lo)+"-"+strconv.Itoa(hi) != s {
		return 0, 0, fmt.Errorf("invalid port range %q: use FROM-TO, e.g. 7000-7999", s)
	}
	return lo, hi, nil
}

// graphiteSink sends each stats round to the configured Graphite server;
// a failure is logged when its message changes, never retried into the
// next round. close drops the connection when the collector stops.
func (n *Node) graphiteSink() (send func(context.Context, time.Time), close func()) {
	g := &stats.Graphite{Addr: n.cfg.Graphite, Prefix: n.cfg.GraphitePrefix}
	var lastErr string
	send = func(ctx context.Context, now time.Time) {
		var figs []stats.ProxyFigures
		for _, p := range n.Proxies.Snapshots() {
			var count int64
			for _, b := range p.Buckets {
				count += b
			}
			figs = append(figs, stats.ProxyFigures{DB: p.DB, Connections: p.Connections, Ops: p.Ops, Errors: p.Errors,
				LatencySumNs: p.LatencyNs, LatencyCount: count})
		}
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		err := g.Send(ctx, stats.GraphiteLines(g.Prefix, n.cfg.ID, now, n.Stats.Samples(), figs), time.Second)
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		if msg != lastErr {
			if err != nil {
				n.log.Warn("graphite", "err", err)
			} else {
				n.log.Info("graphite: sending again", "addr", n.cfg.Graphite)
			}
			lastErr = msg
		}
	}
	return send, g.Close
}

// hooks is the hooks' configuration from the node's.
func (c *Config) hooks() hooks.Config {
	hc := hooks.Config{Node: c.ID, Exec: c.HookExec, Timeout: c.HookTimeout, Retries: c.HookRetries,
		HAProxyConfig: c.HAProxyConfig, HAProxyReload: c.HAProxyReload, Log: c.Logger}
	if c.RedisTLS {
		hc.RedisCA = filepath.Join(c.DataDir, "tls", pki.CAFile)
	}
	return hc
}

// hooks is this node's hooks configuration; a hook that fails for good is
// recorded as a cluster event through the node's own API, which forwards it
// to the leader.
func (n *Node) hooks() hooks.Config {
	hc := n.cfg.hooks()
	self := n.selfClient()
	hc.Log, hc.Event = n.log, self.RecordEvent
	return hc
}

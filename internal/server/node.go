// Package server assembles one Marina node: Raft member, FSM, controller,
// agent, heartbeats and the HTTP API.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/netutil"

	"github.com/marina-redis/marina/internal/agent"
	"github.com/marina-redis/marina/internal/api"
	"github.com/marina-redis/marina/internal/cluster"
	"github.com/marina-redis/marina/internal/console"
	"github.com/marina-redis/marina/internal/controller"
	"github.com/marina-redis/marina/internal/hooks"
	"github.com/marina-redis/marina/internal/metrics"
	"github.com/marina-redis/marina/internal/pki"
	"github.com/marina-redis/marina/internal/proxy"
	"github.com/marina-redis/marina/internal/redisconf"
	"github.com/marina-redis/marina/internal/sentinel"
	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/stats"
	"github.com/marina-redis/marina/internal/topology"
)

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
	// closeGraphite drops the Graphite connection when the stats stop.
	closeGraphite func()
}

// httpWriteTimeout bounds writing one API answer.
const httpWriteTimeout = 5 * time.Minute

// Start starts a node and returns once it is a member of a cluster.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.Prepare(); err != nil {
		return nil, err
	}
	n, err := assemble(cfg)
	if err != nil {
		return nil, err
	}
	if err := n.enter(ctx); err != nil {
		n.closeBase()
		return nil, err
	}
	n.run()
	n.log.Info("node started", "http", n.ln.Addr().String(), "raft", topology.HostPort(cfg.Bind, cfg.RaftPort))
	return n, nil
}

// assemble builds a node's parts from a prepared configuration and opens
// its ports (API, Raft, Sentinel): nothing runs yet but the API.
func assemble(cfg Config) (*Node, error) {
	log := cfg.Logger.With("node", cfg.ID)
	n := &Node{cfg: cfg, FSM: state.NewFSM(), log: log, id: &pki.Identity{}, closeGraphite: func() {}}
	if cfg.apiCert != nil {
		n.id.SetOperator(cfg.apiCert)
	}
	// The certificate, when this node has one; a new node gets it from
	// the cluster (join) or creates the CA (bootstrap) in enter.
	if err := n.id.Load(cfg.DataDir); err != nil && !errors.Is(err, pki.ErrNoCertificate) {
		return nil, fmt.Errorf("TLS material in %s: %w", n.tlsDir(), err)
	}
	ln, err := net.Listen("tcp", topology.HostPort(cfg.Bind, cfg.HTTPPort))
	if err != nil {
		return nil, fmt.Errorf("HTTP listener: %w", err)
	}
	n.ln = ln
	n.Raft, err = cluster.Open(cluster.Config{ID: cfg.ID, DataDir: cfg.DataDir, RaftAddr: topology.HostPort(cfg.Bind, cfg.RaftPort),
		ElectionTimeout: cfg.ElectionTimeout, LogOutput: cfg.RaftLog, Logger: log, Identity: n.id}, n.FSM)
	if err != nil {
		ln.Close()
		return nil, err
	}
	n.Ctl = controller.New(n.Raft, n.FSM, cfg.NodeDownAfter, log)
	n.Ctl.SetCertLifetime(cfg.CertLifetime)
	dialer, local, tlsFiles := n.redisTLS()
	n.Ctl.SetRedisDialer(dialer)
	// The leader waits longer than an agent's lease before it promotes a
	// replica of a silent node: by then that agent has fenced its masters.
	n.Ctl.SetTiming(cfg.timing())
	n.Agent = agent.New(agent.Config{Redis: local, TLSFiles: tlsFiles, NodeID: cfg.ID, Dir: filepath.Join(cfg.DataDir, "instances"), RedisServer: cfg.RedisServer,
		StopOnExit: cfg.StopInstancesOnExit, Lease: cfg.Lease, Logger: log}, n.FSM)
	n.Proxies = &proxy.Manager{Node: cfg.ID, Src: n.FSM, Log: log,
		Limits: proxy.Limits{MaxClients: cfg.ProxyMaxClients, MaxRequest: cfg.ProxyMaxRequest, Idle: cfg.ProxyIdle, TLS: cfg.proxyTLS,
			Fenced: n.Agent.Fenced, Input: &proxy.Budget{Max: cfg.ProxyInputBudget}, Redis: dialer}}
	n.Stats = &stats.Collector{Redis: local, Node: cfg.ID, Src: n.FSM, Interval: cfg.StatsInterval, Log: log}
	if cfg.Graphite != "" {
		n.Stats.OnSample, n.closeGraphite = n.graphiteSink()
	}
	n.serveAPI()
	if cfg.SentinelPort != 0 {
		n.Sentinel, err = sentinel.Listen(sentinel.Config{Addr: topology.HostPort(cfg.Bind, cfg.SentinelPort), NodeID: cfg.ID, Src: n.FSM,
			HashToken: api.HashToken, DownAfter: cfg.DownAfter, Log: log, TLS: n.sentinelTLS()})
		if err != nil {
			n.closeBase()
			return nil, fmt.Errorf("--sentinel-port: %w", err)
		}
	}
	return n, nil
}

// redisTLS is how this node's parts reach redis-servers: dialer for any
// node's (controller, proxies, stats), local for the agent's own, and the
// files its redis-servers serve. All nil without --redis-tls.
func (n *Node) redisTLS() (dialer, local *redisconf.Dialer, files *redisconf.TLSFiles) {
	if !n.cfg.RedisTLS {
		return nil, &redisconf.Dialer{Socket: n.socketOf}, nil
	}
	// A redis-server's certificate is its node's: checked by address.
	dialer = &redisconf.Dialer{TLS: func(addr string) *tls.Config { return n.id.DialerTLS(addr) }}
	// The agent's own servers may still present an expired certificate
	// when it adopts them; it is what makes them reload it.
	local = &redisconf.Dialer{TLS: func(addr string) *tls.Config {
		if host, _, _ := net.SplitHostPort(addr); host == n.cfg.Bind {
			return n.id.LocalTLS(addr)
		}
		return n.id.DialerTLS(addr)
	}, Socket: n.socketOf}
	files = &redisconf.TLSFiles{Cert: filepath.Join(n.tlsDir(), pki.CertFile), Key: filepath.Join(n.tlsDir(), pki.KeyFile),
		CA: filepath.Join(n.tlsDir(), pki.CAFile)}
	return dialer, local, files
}

// socketOf is the Unix socket of this node's redis-server at addr, ""
// when addr is not one of this node's (redisconf.Dialer.Socket).
func (n *Node) socketOf(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != n.cfg.Bind {
		return ""
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return ""
	}
	for _, pi := range n.FSM.State().InstancesOn(n.cfg.ID) {
		if pi.Port == p {
			return redisconf.SocketPath(filepath.Join(n.cfg.DataDir, "instances", pi.ID))
		}
	}
	return ""
}

// serveAPI serves the HTTP API, the console and /metrics on the node's
// listener.
func (n *Node) serveAPI() {
	cfg, log := n.cfg, n.log
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
	tln := tls.NewListener(netutil.LimitListener(n.ln, cfg.HTTPMaxConns), n.id.ServerTLS(false, nil))
	go func() {
		if err := n.http.Serve(tln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "err", err)
		}
	}()
}

// run starts the node's loops once it is a member; Stop ends them.
func (n *Node) run() {
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
		n.closeGraphite()
	})
	if hc := n.hooks(); hc.Enabled() {
		// The first announcement is a "sync" of every database.
		afterCatchUp(func() { hooks.Run(runCtx, hc, n.FSM) })
	}
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
	self := state.Node{ID: c.ID, Addr: c.Bind, RaftAddr: topology.HostPort(c.Bind, c.RaftPort), HTTPAddr: topology.HostPort(c.Bind, c.HTTPPort),
		Memory: c.Memory, Zone: c.Zone, PortMin: c.PortMin, PortMax: c.PortMax, ProxyMin: c.ProxyMin, ProxyMax: c.ProxyMax}
	if c.SentinelPort != 0 {
		self.SentinelAddr = topology.HostPort(c.Bind, c.SentinelPort)
	}
	return self
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

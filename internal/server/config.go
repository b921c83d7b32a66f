package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/marina-redis/marina/internal/state"
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
	apiCert    *tls.Certificate // loaded by Prepare
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
	proxyTLS     *tls.Config // loaded by Prepare
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

// Validate checks a configuration and fills the defaults that need no I/O;
// errors say what to fix. It reads no file and runs nothing: Prepare does
// that part.
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
	if err := c.validatePorts(); err != nil {
		return err
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
	if (c.APITLSCert == "") != (c.APITLSKey == "") {
		return errors.New("--api-tls-cert and --api-tls-key go together")
	}
	if c.CertLifetime != 0 && c.CertLifetime < 10*time.Second {
		return fmt.Errorf("--cert-lifetime %v: must be at least 10s", c.CertLifetime)
	}
	if c.ProxyInputBudget != 0 && c.ProxyInputBudget < 1<<20 {
		return fmt.Errorf("--proxy-input-budget %d: at least 1MiB", c.ProxyInputBudget)
	}
	// 0 is "60% of the host's RAM", read by Prepare.
	if c.Memory != 0 && c.Memory < state.MinMemory {
		return fmt.Errorf("--memory %d: must be at least 1MiB", c.Memory)
	}
	if err := c.fillTiming(); err != nil {
		return err
	}
	c.defaults()
	return nil
}

// defaults fills what was left zero (Memory, which needs the host's RAM, is
// Prepare's).
func (c *Config) defaults() {
	if c.ProxyMaxClients == 0 {
		c.ProxyMaxClients = 10000
	}
	if c.ProxyMaxRequest == 0 {
		c.ProxyMaxRequest = 512 << 20
	}
	if c.ProxyInputBudget == 0 {
		c.ProxyInputBudget = 256 << 20
	}
	if c.RedisServer == "" {
		c.RedisServer = "redis-server"
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
}

// validatePorts checks the HTTP, Raft, redis-server, endpoint and Sentinel
// ports against their ranges and each other.
func (c *Config) validatePorts() error {
	for _, p := range []struct {
		name string
		port int
	}{{"--http-port", c.HTTPPort}, {"--raft-port", c.RaftPort}} {
		if p.port < 1 || p.port > 65535 {
			return fmt.Errorf("%s %d: must be 1..65535", p.name, p.port)
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
	return c.validateSentinelPort()
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

// ParsePortRange reads "7000-7999".
func ParsePortRange(s string) (int, int, error) {
	var lo, hi int
	if _, err := fmt.Sscanf(s, "%d-%d", &lo, &hi); err != nil || strconv.Itoa(lo)+"-"+strconv.Itoa(hi) != s {
		return 0, 0, fmt.Errorf("invalid port range %q: use FROM-TO, e.g. 7000-7999", s)
	}
	return lo, hi, nil
}

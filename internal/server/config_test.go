package server

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marina-redis/marina/internal/client"
	"github.com/marina-redis/marina/internal/testutil"
	"github.com/marina-redis/marina/internal/timing"
)

func validConfig() Config {
	return Config{ID: "n1", DataDir: "/tmp/x", Bind: "127.0.0.1", HTTPPort: 7070, RaftPort: 7071, PortMin: 7100, PortMax: 7999}
}

// Validate reads no file and runs nothing: every case here is refused or
// accepted from the values alone.
func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"ok", func(c *Config) {}, ""},
		{"ok with everything", func(c *Config) {
			c.ProxyMin, c.ProxyMax, c.SentinelPort = 6400, 6999, 26379
			c.Graphite, c.StatsInterval, c.CertLifetime = "carbon:2003", time.Second, time.Hour
			c.ProxyTLSCert, c.ProxyTLSKey, c.APITLSCert, c.APITLSKey = "/no/cert", "/no/key", "/no/cert", "/no/key"
			c.Memory, c.ProxyInputBudget, c.Lease = 1<<20, 1<<20, 400*time.Millisecond
			c.RedisServer = "/nonexistent/redis-server" // looked for by Prepare
		}, ""},
		{"bad id", func(c *Config) { c.ID = "a b" }, "invalid node id"},
		{"no data", func(c *Config) { c.DataDir = "" }, "--data is required"},
		{"no bind", func(c *Config) { c.Bind = "" }, "--bind"},
		{"wildcard bind", func(c *Config) { c.Bind = "0.0.0.0" }, "not 0.0.0.0"},
		{"http port", func(c *Config) { c.HTTPPort = 0 }, "--http-port 0: must be 1..65535"},
		{"raft port", func(c *Config) { c.RaftPort = 70000 }, "--raft-port 70000: must be 1..65535"},
		{"same ports", func(c *Config) { c.RaftPort = 7070 }, "must differ"},
		{"redis ports low", func(c *Config) { c.PortMin = 80 }, "--redis-ports 80-7999: must be a range"},
		{"redis ports reversed", func(c *Config) { c.PortMin, c.PortMax = 8000, 7999 }, "must be a range"},
		{"overlap", func(c *Config) { c.PortMin = 7000 }, "overlaps"},
		{"proxy ports range", func(c *Config) { c.ProxyMin, c.ProxyMax = 6400, 70000 }, "--proxy-ports 6400-70000: must be a range"},
		{"proxy over redis", func(c *Config) { c.ProxyMin, c.ProxyMax = 7900, 8100 }, "overlaps --redis-ports"},
		{"proxy over http", func(c *Config) { c.ProxyMin, c.ProxyMax = 7000, 7099 }, "overlaps the HTTP or Raft port 7070"},
		{"sentinel range", func(c *Config) { c.SentinelPort = -1 }, "--sentinel-port -1: must be 1..65535"},
		{"sentinel on http", func(c *Config) { c.SentinelPort = 7070 }, "must differ from the HTTP and Raft ports"},
		{"sentinel in redis", func(c *Config) { c.SentinelPort = 7500 }, "inside --redis-ports"},
		{"sentinel in proxy", func(c *Config) { c.ProxyMin, c.ProxyMax, c.SentinelPort = 6400, 6999, 6500 }, "inside --proxy-ports"},
		{"stats interval", func(c *Config) { c.StatsInterval = time.Millisecond }, "--stats-interval"},
		{"graphite", func(c *Config) { c.Graphite = "carbon" }, "--graphite"},
		{"proxy tls half", func(c *Config) { c.ProxyTLSCert = "/c" }, "--proxy-tls-cert and --proxy-tls-key go together"},
		{"api tls half", func(c *Config) { c.APITLSKey = "/k" }, "--api-tls-cert and --api-tls-key go together"},
		{"cert lifetime", func(c *Config) { c.CertLifetime = time.Second }, "--cert-lifetime"},
		{"input budget", func(c *Config) { c.ProxyInputBudget = 1000 }, "--proxy-input-budget"},
		{"tiny memory", func(c *Config) { c.Memory = 10 }, "at least 1MiB"},
		{"negative memory", func(c *Config) { c.Memory = -1 }, "at least 1MiB"},
		{"tiny down-after", func(c *Config) { c.NodeDownAfter = time.Nanosecond }, "at least 100ms"},
		{"lease shorter than the heartbeat", func(c *Config) { c.Lease, c.Heartbeat = 200*time.Millisecond, 250*time.Millisecond }, "--lease 200ms: must be longer than the heartbeat"},
		{"flap delay beyond its cap", func(c *Config) { c.FlapDelay, c.FlapDelayMax = time.Minute, time.Second }, "--flap-delay-max"},
		{"tiny raft timeout", func(c *Config) { c.ElectionTimeout = time.Millisecond }, "--raft-timeout"},
		{"tiny lease", func(c *Config) { c.Lease = time.Millisecond }, "--lease"},
		{"tiny max-link-down", func(c *Config) { c.MaxLinkDown = time.Millisecond }, "--max-link-down"},
	}
	for _, c := range cases {
		cfg := validConfig()
		c.mod(&cfg)
		err := cfg.Validate()
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: err %v, want %q", c.name, err, c.want)
		}
	}
}

func TestConfigValidateFillsDefaults(t *testing.T) {
	cfg := validConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Lease != timing.Defaults().Lease || cfg.Heartbeat != timing.Defaults().Heartbeat || cfg.ProxyMaxClients != 10000 ||
		cfg.ProxyMaxRequest != 512<<20 || cfg.ProxyInputBudget != 256<<20 || cfg.RedisServer != "redis-server" ||
		cfg.HTTPReadTimeout != 10*time.Second || cfg.HTTPIdleTimeout != time.Minute || cfg.HTTPMaxConns != 1024 ||
		cfg.Logger == nil || cfg.Out == nil {
		t.Errorf("defaults not filled: %+v", cfg)
	}
	if cfg.Memory != 0 {
		t.Errorf("Memory %d: the host's RAM is Prepare's to read", cfg.Memory)
	}
	// What was given stays.
	cfg = validConfig()
	cfg.Lease, cfg.Heartbeat = 2*time.Second, time.Second
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Lease != 2*time.Second || cfg.Heartbeat != time.Second {
		t.Errorf("given values replaced: lease %v heartbeat %v", cfg.Lease, cfg.Heartbeat)
	}
}

// Prepare does the I/O: files, binaries, the data directory.
func TestConfigPrepare(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"ok", func(c *Config) {}, ""},
		{"no redis", func(c *Config) { c.RedisServer = "/nonexistent/redis-server" }, "not found"},
		{"not redis", func(c *Config) { c.RedisServer = "/bin/false" }, "--version"},
		{"proxy tls files", func(c *Config) { c.ProxyTLSCert, c.ProxyTLSKey = "/nonexistent/c", "/nonexistent/k" }, "--proxy-tls-cert/--proxy-tls-key"},
		{"api tls files", func(c *Config) { c.APITLSCert, c.APITLSKey = "/nonexistent/c", "/nonexistent/k" }, "--api-tls-cert/--api-tls-key"},
		{"haproxy dir", func(c *Config) { c.HAProxyConfig = "/nonexistent/haproxy.cfg" }, "does not exist"},
		{"data dir", func(c *Config) { c.DataDir = "/proc/marina" }, "--data /proc/marina"},
	}
	for i, c := range cases {
		cfg := validConfig()
		cfg.DataDir = filepath.Join(dir, c.name)
		c.mod(&cfg)
		if err := cfg.Validate(); err != nil {
			t.Fatalf("%s: Validate: %v", c.name, err)
		}
		err := cfg.Prepare()
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: err %v, want %q", c.name, err, c.want)
		}
		if i == 0 && err == nil {
			if fi, err := os.Stat(cfg.DataDir); err != nil || !fi.IsDir() {
				t.Errorf("data dir not created: %v", err)
			}
			if cfg.Memory < 1<<20 || !filepath.IsAbs(cfg.RedisServer) {
				t.Errorf("memory %d, redis-server %q: not filled", cfg.Memory, cfg.RedisServer)
			}
		}
	}
}

// A join step is retried until it succeeds, and given up at once when the
// cluster refuses it or its certificate is not from --cacert.
func TestRetryJoin(t *testing.T) {
	n := &Node{cfg: Config{Join: "127.0.0.1:7070", CACert: "ca.pem"}, log: testutil.Logger()}
	ctx := testutil.Ctx(t, 10*time.Second)
	tries := 0
	if err := n.retryJoin(ctx, "join", func() error {
		if tries++; tries < 3 {
			return errors.New("connection refused")
		}
		return nil
	}); err != nil || tries != 3 {
		t.Fatalf("transient: err %v after %d tries", err, tries)
	}
	for _, c := range []struct {
		err  error
		want string
	}{
		{&client.Error{Code: http.StatusUnauthorized, Msg: "bad token"}, "join: "},
		{&client.Error{Code: http.StatusConflict, Msg: "id taken"}, "id taken"},
		{x509.UnknownAuthorityError{}, "not from --cacert ca.pem"},
	} {
		tries = 0
		err := n.retryJoin(ctx, "join", func() error { tries++; return c.err })
		if err == nil || tries != 1 || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err %v after %d tries, want %q at once", c.err, err, tries, c.want)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	err := n.retryJoin(cctx, "certificate", func() error { return errors.New("no route") })
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no route") {
		t.Errorf("cancelled: err %v", err)
	}
}

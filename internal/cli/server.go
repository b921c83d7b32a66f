package cli

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/marina-redis/marina/internal/api"
	"github.com/marina-redis/marina/internal/server"
	"github.com/marina-redis/marina/internal/timing"
)

func (a *app) serverCmd() *cobra.Command {
	var cfg server.Config
	var memory, ports, proxyPorts, join, logLevel, maxRequest, inputBudget string
	host, _ := os.Hostname()
	cmd := &cobra.Command{
		Use:   "server --id ID --data DIR --bind HOST [--join ADDR]",
		Short: "Run a Marina node (one per host)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: use debug, info, warn or error", logLevel)
			}
			cfg.Logger = slog.New(slog.NewTextHandler(a.errOut, &slog.HandlerOptions{Level: lvl}))
			if memory != "" {
				m, err := api.ParseSize(memory)
				if err != nil {
					return fmt.Errorf("--memory: %v", err)
				}
				cfg.Memory = m
			}
			var err error
			if cfg.PortMin, cfg.PortMax, err = server.ParsePortRange(ports); err != nil {
				return fmt.Errorf("--redis-ports: %v", err)
			}
			if cfg.ProxyMin, cfg.ProxyMax, err = server.ParsePortRange(proxyPorts); err != nil {
				return fmt.Errorf("--proxy-ports: %v", err)
			}
			mr, err := api.ParseSize(maxRequest)
			if err != nil || mr < 1024 {
				return fmt.Errorf("--proxy-max-request %q: a size of at least 1KiB", maxRequest)
			}
			cfg.ProxyMaxRequest = int(mr)
			if cfg.ProxyInputBudget, err = api.ParseSize(inputBudget); err != nil {
				return fmt.Errorf("--proxy-input-budget %q: %v", inputBudget, err)
			}
			cfg.Join, cfg.Token, cfg.CACert, cfg.Out = join, a.token, a.cacert, a.out
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			node, err := server.Start(ctx, cfg)
			if err != nil {
				return err
			}
			<-ctx.Done()
			cfg.Logger.Info("signal received, stopping")
			node.Stop()
			return nil
		},
	}
	f := cmd.Flags()
	f.String("config", "", "YAML file with any of these flags as keys")
	f.StringVar(&cfg.ID, "id", host, "node id (unique in the cluster)")
	f.StringVar(&cfg.DataDir, "data", "", "data directory (Raft log, snapshots, instances)")
	f.StringVar(&cfg.Bind, "bind", "127.0.0.1", "this node's IP: API, Raft and redis-servers bind to it")
	f.IntVar(&cfg.HTTPPort, "http-port", 7070, "HTTP API port")
	f.IntVar(&cfg.RaftPort, "raft-port", 7071, "Raft port")
	f.StringVar(&join, "join", "", "API address of any member to join (with --token and --cacert); empty bootstraps a new cluster")
	f.StringVar(&memory, "memory", "", "memory for redis-servers on this node (default 60% of RAM)")
	f.StringVar(&cfg.Zone, "zone", "", "zone label, replicas are spread over zones")
	f.StringVar(&cfg.RedisServer, "redis-server", "redis-server", "redis-server binary")
	f.StringVar(&ports, "redis-ports", "7100-7999", "port range for this node's redis-servers")
	f.StringVar(&proxyPorts, "proxy-ports", "6400-6999", "port range for database endpoints (a database's port is the same on every node)")
	f.IntVar(&cfg.ProxyMaxClients, "proxy-max-clients", 10000, "client connections per database endpoint on this node")
	f.DurationVar(&cfg.ProxyIdle, "proxy-idle-timeout", 0, "close endpoint clients idle this long (0: never)")
	f.StringVar(&maxRequest, "proxy-max-request", "512MiB", "largest request a client may send to an endpoint")
	f.StringVar(&inputBudget, "proxy-input-budget", "256MiB", "incomplete client requests all endpoints of this node may hold together; a client beyond it is refused")
	f.DurationVar(&cfg.CertLifetime, "cert-lifetime", 0, "lifetime of the node certificates this node signs as leader; nodes renew with a third left (default 720h)")
	f.StringVar(&cfg.APITLSCert, "api-tls-cert", "", "PEM certificate the API and console serve to browsers and the CLI instead of the node's own (with --api-tls-key)")
	f.StringVar(&cfg.APITLSKey, "api-tls-key", "", "PEM private key of --api-tls-cert")
	f.IntVar(&cfg.HTTPMaxConns, "http-max-conns", 1024, "open connections the API takes at once; more wait to be accepted")
	f.BoolVar(&cfg.RedisTLS, "redis-tls", true, "redis-servers speak TLS only, replication included, with the node's certificate (every node must agree; docs/security.md)")
	f.StringVar(&cfg.ProxyTLSCert, "proxy-tls-cert", "", "PEM certificate: endpoints speak TLS to clients (with --proxy-tls-key)")
	f.StringVar(&cfg.ProxyTLSKey, "proxy-tls-key", "", "PEM private key of --proxy-tls-cert")
	f.IntVar(&cfg.SentinelPort, "sentinel-port", 26379, "Redis Sentinel protocol port for sentinel-aware clients (needs a database password or the API token; 0: off)")
	f.BoolVar(&cfg.StopInstancesOnExit, "stop-instances-on-exit", false, "stop this node's redis-servers when the server stops (default: they keep serving)")
	// Timing flags default to 0: the server fills them from internal/timing.
	td := timing.Defaults()
	f.DurationVar(&cfg.NodeDownAfter, "node-down-after", 0, fmt.Sprintf("mark a node down after missing heartbeats this long (default %v)", td.NodeDownAfter))
	f.DurationVar(&cfg.ElectionTimeout, "raft-timeout", 0, fmt.Sprintf("Raft heartbeat and election timeout (default %v)", td.ElectionTimeout))
	f.DurationVar(&cfg.DownAfter, "down-after", 0, fmt.Sprintf("a master failing this long, seen by its node and another, fails over (default %v)", td.DownAfter))
	f.DurationVar(&cfg.Lease, "lease", 0, fmt.Sprintf("an agent without a confirmed leader's word this long fences its masters; longer than the %v heartbeat (default %v; the leader waits it out plus %v before promoting)",
		td.Heartbeat, td.Lease, timing.FenceMargin))
	f.DurationVar(&cfg.MaxLinkDown, "max-link-down", 0, fmt.Sprintf("replicas whose link went down longer than this before their master failed are not promoted (default %v)", td.MaxLinkDown))
	f.IntVar(&cfg.FlapMax, "flap-max", 0, fmt.Sprintf("flap damping: this many failovers of one shard within --flap-window start at once, further ones are spaced by --flap-delay (default %d)", td.FlapMax))
	f.DurationVar(&cfg.FlapWindow, "flap-window", 0, fmt.Sprintf("flap damping: the failovers of a shard older than this no longer count (default %v)", td.FlapWindow))
	f.DurationVar(&cfg.FlapDelay, "flap-delay", 0, fmt.Sprintf("flap damping: a failover beyond --flap-max within the window starts no earlier than this after the shard's previous one, doubling with each further one (default %v)", td.FlapDelay))
	f.DurationVar(&cfg.FlapDelayMax, "flap-delay-max", 0, fmt.Sprintf("flap damping: the most --flap-delay doubles to, the longest a shard whose master is gone waits for its failover (default %v)", td.FlapDelayMax))
	f.DurationVar(&cfg.HealAfter, "heal-after", 0, fmt.Sprintf("rebuild the replicas of a node down this long on other nodes (default %v)", td.HealAfter))
	f.DurationVar(&cfg.StatsInterval, "stats-interval", 0, "read INFO from this node's redis-servers this often for stats and graphs (default 5s)")
	f.StringVar(&cfg.Graphite, "graphite", "", "host:port of a Graphite (carbon plaintext) server to send each stats round to")
	f.StringVar(&cfg.GraphitePrefix, "graphite-prefix", "marina", "prefix of the Graphite metric paths")
	f.StringVar(&cfg.HookExec, "hook-exec", "", "shell command run on every topology change, the database's JSON document on stdin (docs/hooks.md)")
	f.DurationVar(&cfg.HookTimeout, "hook-timeout", 10*time.Second, "time limit of one run of a hook or of --haproxy-reload")
	f.IntVar(&cfg.HookRetries, "hook-retries", 3, "retries of a failing hook, with backoff, before it is a cluster event")
	f.StringVar(&cfg.HAProxyConfig, "haproxy-config", "", "file to write HAProxy write/read backends of every database to (docs/hooks.md)")
	f.StringVar(&cfg.HAProxyReload, "haproxy-reload", "", "shell command run after --haproxy-config changed, e.g. 'systemctl reload haproxy'")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

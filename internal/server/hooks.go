package server

import (
	"path/filepath"

	"github.com/marina-redis/marina/internal/hooks"
	"github.com/marina-redis/marina/internal/pki"
)

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

package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/redisconf"
	"github.com/marina-redis/marina/internal/redisctl"
	"github.com/marina-redis/marina/internal/resp"
	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/topology"
)

func asRedisError(err error, target *redis.Error) bool { return errors.As(err, target) }

func splitAny(s string) []any {
	var out []any
	for _, f := range strings.Fields(s) {
		out = append(out, f)
	}
	return out
}

var errRestart = errors.New("config change needs a restart")

// converge makes the running server's live settings (all but the fence),
// its client ACLs and its role match w, and reports what it found. The
// role goes through redisctl (Promote, Follow); the agent is its only
// writer, and the order with the fence needs none: a replica is always
// fenced, a promoted master stays fenced until its fencer lifts it, and a
// demoted one is read-only as soon as it follows its new master.
//
// users: also (re)write the ACL users, once per process: its rendered
// config has them from the start, but servers started before these rules
// get them here.
func (wk *worker) converge(ctx context.Context, c *redis.Client, w want, users bool) error {
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	// The fence is not among the live settings: it is the fencer's alone
	// (fence.go, through redisctl), so converging a stale view never lifts it.
	live := w.conf.Live()
	keys := make([]any, 0, len(live)+3)
	keys = append(keys, "CONFIG", "GET", "hz")
	for k := range live {
		keys = append(keys, k)
	}
	res, err := c.Do(cctx, keys...).Result()
	if err != nil {
		if strings.HasPrefix(err.Error(), "LOADING") {
			wk.setStatus(func(s *Status) { s.State = StateLoading })
			return nil
		}
		wk.setStatus(func(s *Status) { s.State = StateStarting })
		return fmt.Errorf("config get: %w", err)
	}
	got := map[string]string{}
	for k, v := range resp.Pairs(res) {
		got[k] = fmt.Sprint(v)
	}
	for k, v := range live {
		if got[k] == v {
			continue
		}
		if err := c.ConfigSet(cctx, k, v).Err(); err != nil {
			var rerr redis.Error
			if errors.As(err, &rerr) && strings.HasPrefix(err.Error(), "ERR ") {
				// Redis refuses this change on a live server: the rendered
				// config already has it, so a restart applies it.
				return fmt.Errorf("%w: CONFIG SET %s: %v", errRestart, k, err)
			}
			return fmt.Errorf("config set %s: %w", k, err) // timeout, BUSY...: retry next pass
		}
		wk.a.log.Info("applied config", "instance", w.id, "key", k)
	}
	if users {
		// Clients (default user) and the proxy run data commands only.
		restrict := append([]any{"ACL", "SETUSER", "default"}, splitAny(redisconf.ClientRules)...)
		if err := c.Do(cctx, restrict...).Err(); err != nil {
			return fmt.Errorf("acl setuser default: %w", err)
		}
		// resetpass: servers from before the proxy had a password of its
		// own also accepted the internal secret for it.
		proxyUser := append([]any{"ACL", "SETUSER", redisconf.ProxyUser, "on", "resetpass", ">" + redisconf.ProxySecret(w.conf.Secret), "~*", "&*", "+@all"},
			splitAny(redisconf.ClientRules)...)
		if err := c.Do(cctx, append(proxyUser, "-reset")...).Err(); err != nil {
			return fmt.Errorf("acl setuser proxy: %w", err)
		}
		// Replicas log in as the replication user (the fencer's), not as
		// the internal one; servers from before it let the internal one sync.
		internal := append([]any{"ACL", "SETUSER", redisconf.InternalUser}, splitAny(redisconf.InternalRules)...)
		if err := c.Do(cctx, internal...).Err(); err != nil {
			return fmt.Errorf("acl setuser internal: %w", err)
		}
	}
	info, err := c.Info(cctx, "replication", "memory", "clients", "keyspace").Result()
	if err != nil {
		return fmt.Errorf("info: %w", err)
	}
	f := resp.ParseInfo(info)
	// The cron's frequency follows the keyspace (redisconf.Hz).
	if hz := strconv.Itoa(redisconf.Hz(resp.Expires(f))); got["hz"] != hz {
		if err := c.ConfigSet(cctx, "hz", hz).Err(); err != nil {
			return fmt.Errorf("config set hz: %w", err)
		}
		wk.a.log.Debug("applied config", "instance", w.id, "key", "hz", "value", hz)
	}
	switch {
	case w.role == state.RoleMaster && f["role"] == "slave":
		// Promoted: it stays fenced until the fencer lifts the fence.
		if err := redisctl.Promote(cctx, c); err != nil {
			return err
		}
		f["role"] = "master" // what it is now, not what INFO said before
		wk.a.log.Info("promoted to master", "instance", w.id)
	case w.role == state.RoleReplica && w.conf.ReplicaOf != "":
		host, port, _ := net.SplitHostPort(w.conf.ReplicaOf)
		if f["role"] != "slave" || f["master_host"] != host || f["master_port"] != port {
			if err := redisctl.Follow(cctx, c, w.conf.ReplicaOf); err != nil {
				return err
			}
			f["role"], f["master_link_status"] = "slave", "down"
			wk.a.log.Info("replicating", "instance", w.id, "master", w.conf.ReplicaOf)
		}
	}
	wk.setStatus(func(s *Status) {
		s.State, s.Error = StateRunning, ""
		s.Crashed = false
		s.WantRole = w.role
		s.Role = f["role"]
		if s.Role == "slave" {
			s.Role = state.RoleReplica
			link := topology.LinkFrom(f)
			s.LinkUp, s.SyncInProgress, s.Offset = link.Up, link.Syncing, link.Offset
		} else {
			s.LinkUp = true
			s.SyncInProgress = false
			s.Offset, _ = strconv.ParseInt(f["master_repl_offset"], 10, 64)
		}
		s.UsedMemory, _ = strconv.ParseInt(f["used_memory"], 10, 64)
		s.Clients, _ = strconv.Atoi(f["connected_clients"])
	})
	return nil
}

// writeConf writes redis.conf atomically when its content changed.
func writeConf(dir, path, txt string) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, []byte(txt)) {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(txt), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

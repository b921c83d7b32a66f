package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/redisconf"
	"github.com/marina-redis/marina/internal/resp"
	"github.com/marina-redis/marina/internal/state"
)

// killSig ends an instance that is being deleted: its data goes too, so a
// final save would be wasted work.
const killSig = syscall.SIGKILL

// saveGrace is how long a SIGTERMed redis-server may take to save its data
// (RDB) or fsync (AOF) before it is killed.
const saveGrace = time.Minute

// Instance states reported in Status.
const (
	StateStarting = "starting"
	StateLoading  = "loading"
	StateRunning  = "running"
	StateDown     = "down"
)

// Status is what the agent observes of one instance.
type Status struct {
	ID             string    `json:"id"`
	DB             string    `json:"db"`
	Shard          int       `json:"shard"`
	Port           int       `json:"port"`
	PID            int       `json:"pid,omitempty"`
	State          string    `json:"state"`
	Role           string    `json:"role,omitempty"` // as reported by redis-server
	WantRole       string    `json:"want_role"`
	LinkUp         bool      `json:"link_up"`
	SyncInProgress bool      `json:"sync_in_progress,omitempty"`
	Offset         int64     `json:"offset"`
	UsedMemory     int64     `json:"used_memory"`
	Clients        int       `json:"clients"`
	Restarts       int       `json:"restarts"`
	Error          string    `json:"error,omitempty"`
	Updated        time.Time `json:"updated"`
	// Healthy: the agent's last probe got an answer; FailingSince is when
	// the current run of failed probes began.
	Healthy      bool      `json:"healthy"`
	FailingSince time.Time `json:"failing_since,omitempty"`
	// Crashed: the process exited and the agent holds the restart (a master
	// waiting for the leader's decision, or a replica with no master yet).
	Crashed bool `json:"crashed,omitempty"`
	// Epoch of the shard as last applied by the fencer, and whether the
	// instance can take no writes in it (dead, or fenced: replicas are
	// fenced too): the leader's proof that a demoted master is out of the
	// way. Only the fencer (fence.go) and a dead process set them.
	Epoch  uint64 `json:"epoch"`
	Fenced bool   `json:"fenced"`
}

type worker struct {
	a        *Agent
	id       string
	nudge    chan struct{}
	fenceCh  chan struct{} // wakes the fencer
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{}
	mu       sync.Mutex
	w        want
	st       Status
	removing bool
}

func newWorker(a *Agent, w want) *worker {
	ctx, cancel := context.WithCancel(context.Background())
	return &worker{a: a, id: w.id, w: w, nudge: make(chan struct{}, 1), fenceCh: make(chan struct{}, 1), ctx: ctx, cancel: cancel, done: make(chan struct{}),
		st: Status{ID: w.id, DB: w.db, Shard: w.shard, Port: w.conf.Port, State: StateStarting, WantRole: w.role}}
}

func (wk *worker) update(w want) {
	wk.mu.Lock()
	changed := wk.w.confTxt != w.confTxt || wk.w.role != w.role
	fence := changed || wk.w.epoch != w.epoch
	wk.w = w
	wk.mu.Unlock()
	if changed {
		select {
		case wk.nudge <- struct{}{}:
		default:
		}
	}
	if fence {
		wk.pokeFence()
	}
}

// get returns the desired configuration with the fence as the lease is
// now: the config written before a (re)start always carries it.
func (wk *worker) get() want {
	wk.mu.Lock()
	w := wk.w
	wk.mu.Unlock()
	if f := mustFence(w.role, wk.a.LeaseOK()); f != w.conf.Fenced {
		w.conf.Fenced = f
		w.confTxt = w.conf.Render()
	}
	return w
}

// poke has the worker look again now: its config and its fence.
func (wk *worker) poke() {
	select {
	case wk.nudge <- struct{}{}:
	default:
	}
	wk.pokeFence()
}

func (wk *worker) pokeFence() {
	select {
	case wk.fenceCh <- struct{}{}:
	default:
	}
}

func (wk *worker) status() Status {
	wk.mu.Lock()
	defer wk.mu.Unlock()
	return wk.st
}

func (wk *worker) setStatus(f func(*Status)) {
	wk.mu.Lock()
	before := wk.st
	f(&wk.st)
	wk.st.Updated = time.Now()
	after := wk.st
	wk.mu.Unlock()
	switch {
	case before.Fenced != after.Fenced || before.Epoch != after.Epoch:
		// The leader may be waiting for this to promote: no coalescing.
		wk.a.signalUrgent()
	case before.State != after.State || before.Role != after.Role || before.LinkUp != after.LinkUp || before.PID != after.PID ||
		before.Healthy != after.Healthy || before.Crashed != after.Crashed || before.SyncInProgress != after.SyncInProgress:
		wk.a.signal()
	}
}

// remove stops the worker, the instance and deletes its data; it returns
// when all of that is done.
func (wk *worker) remove() {
	wk.mu.Lock()
	wk.removing = true
	wk.mu.Unlock()
	wk.cancel()
	<-wk.done
}

func backoff(failures int) time.Duration {
	d := 100 * time.Millisecond
	for i := 1; i < failures && d < 30*time.Second; i++ {
		d *= 2
	}
	return min(d, 30*time.Second)
}

func (wk *worker) run(parent context.Context) {
	defer close(wk.done)
	stop := context.AfterFunc(parent, wk.cancel)
	defer stop()
	ctx := wk.ctx
	log := wk.a.log.With("instance", wk.id)
	w := wk.get()
	dir := w.conf.Dir
	confPath := filepath.Join(dir, "redis.conf")
	addr := net.JoinHostPort(w.conf.Bind, strconv.Itoa(w.conf.Port))
	opts := wk.a.cfg.Redis.Internal(addr, w.conf.Secret, time.Second, 2)
	opts.DialTimeout = 500 * time.Millisecond
	client := redis.NewClient(opts)
	defer client.Close()

	var p *process
	var failures int
	var nextStart, crashedAt time.Time
	var probe *healthProbe
	defer func() {
		if probe != nil {
			probe.stop()
		}
		wk.mu.Lock()
		removing := wk.removing
		wk.mu.Unlock()
		switch {
		case removing:
			if p == nil {
				// Not ours yet: it may still run from an earlier agent.
				p, _ = adoptProcess(context.Background(), dir, addr)
			}
			if p != nil {
				p.stop(context.Background(), killSig, 5*time.Second)
			}
			if err := os.RemoveAll(dir); err != nil {
				log.Error("remove instance dir", "err", err)
			}
			log.Info("instance removed")
		case wk.a.stopAll.Load() && p != nil:
			// SIGTERM makes redis-server save (rdb) or fsync (aof) before exiting.
			p.stop(context.Background(), syscall.SIGTERM, saveGrace)
		}
	}()
	attach := func(np *process) {
		p = np
		if probe != nil {
			probe.stop()
		}
		probe = startHealthProbe(wk, addr, w.conf.Secret)
		crashedAt = time.Time{}
		pid := p.pid
		// A new process starts with a clean slate: the last one's failures
		// and role must not get it killed. Its fence is unknown until the
		// fencer has looked.
		wk.setStatus(func(s *Status) {
			s.PID, s.State, s.Error, s.Crashed = pid, StateStarting, "", false
			s.Healthy, s.FailingSince, s.Role = true, time.Time{}, ""
			s.Fenced = false
		})
		wk.pokeFence()
	}

	fenceDone := make(chan struct{})
	secret := w.conf.Secret
	go func() {
		defer close(fenceDone)
		wk.fenceLoop(ctx, addr, secret)
	}()
	defer func() { <-fenceDone }()

	t := time.NewTicker(wk.a.cfg.Interval)
	defer t.Stop()
	for {
		w = wk.get()
		confErr := writeConf(dir, confPath, w.confTxt)
		if confErr != nil {
			wk.setStatus(func(s *Status) { s.Error = confErr.Error() })
			log.Error("write config", "err", confErr)
		}
		if p != nil && !p.running() {
			if time.Since(p.started) > 30*time.Second {
				failures = 0
			}
			failures++
			crashedAt = time.Now()
			nextStart = crashedAt.Add(backoff(failures))
			log.Warn("redis-server exited", "pid", p.pid, "err", p.err, "role", w.role)
			wk.setStatus(func(s *Status) {
				// Dead takes no writes: fenced in the epoch it died in.
				s.State, s.PID, s.Restarts, s.LinkUp, s.Healthy = StateDown, 0, s.Restarts+1, false, false
				s.Fenced, s.Epoch = true, w.epoch
				if s.FailingSince.IsZero() {
					s.FailingSince = crashedAt
				}
				s.Error = fmt.Sprintf("exited: %v", p.err)
			})
			if probe != nil {
				probe.stop()
				probe = nil
			}
			p = nil
		}
		if p == nil {
			ap, aerr := adoptProcess(ctx, dir, addr)
			if aerr != nil && !errors.Is(aerr, os.ErrNotExist) {
				log.Debug("not adopting", "reason", aerr)
			}
			hold, why := wk.holdRestart(w, crashedAt)
			switch {
			case aerr == nil:
				attach(ap)
				log.Info("adopted running redis-server", "pid", p.pid)
				if t := wk.a.cfg.TLSFiles; t != nil {
					// It may hold certificate files older than the node's
					// (renewed or rotated while the agent was away).
					rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
					if err := client.Do(rctx, t.Reload()...).Err(); err != nil {
						log.Warn("adopted redis-server did not reload the TLS files", "err", err)
					}
					cancel()
				}
			case hold:
				// Dead is fenced: it takes no writes in this epoch.
				wk.setStatus(func(s *Status) { s.Crashed, s.Fenced, s.Epoch, s.State, s.Error = true, true, w.epoch, StateDown, why })
			case confErr != nil:
				// A full disk: the config on disk may be an older one (say,
				// not fenced); starting from it could take writes it must not.
				wk.setStatus(func(s *Status) { s.Fenced, s.Epoch, s.State = true, w.epoch, StateDown })
			case !time.Now().Before(nextStart):
				if w.conf.ReplicaOf != "" {
					// Redis retries a failed master connection only once a
					// second: starting after the master serves saves that second.
					waitMaster(ctx, wk.a.cfg.Redis, w.conf.ReplicaOf, w.conf.Secret, 2*time.Second)
				}
				np, err := startProcess(wk.a.cfg.RedisServer, confPath)
				if err != nil {
					log.Error("start redis-server", "err", err)
					failures++
					nextStart = time.Now().Add(backoff(failures))
					wk.setStatus(func(s *Status) { s.Error = err.Error() })
				} else {
					attach(np)
					log.Info("started redis-server", "pid", p.pid, "port", w.conf.Port, "role", w.role)
					waitReady(ctx, client, p)
				}
			}
		}
		if p != nil && p.running() {
			if wk.mustKill(w) {
				// A hung server that must not take writes (demoted, or its
				// agent lost the leader) is killed: once resumed it would
				// serve the writes queued in its sockets.
				log.Warn("killing unresponsive redis-server that must not take writes", "pid", p.pid, "role", w.role)
				wk.a.recordFence(Fence{At: time.Now().UTC(), DB: w.db, Shard: w.shard, Instance: w.id,
					Reason: "killed the unresponsive server: it must take no writes (demoted or no leader) and would serve queued ones once it resumed"})
				p.stop(ctx, syscall.SIGKILL, time.Second)
				continue
			}
			if st := wk.status(); !st.Healthy && !st.FailingSince.IsZero() {
				// Unresponsive: converging would only block on timeouts.
			} else if err := wk.converge(ctx, client, w); err != nil && ctx.Err() == nil {
				if errors.Is(err, errRestart) {
					log.Info("restarting redis-server to apply config", "reason", err)
					p.stop(ctx, syscall.SIGTERM, saveGrace)
					failures = 0
					continue
				}
				wk.setStatus(func(s *Status) { s.Error = err.Error() })
			}
		}
		var exited <-chan struct{}
		if p != nil {
			exited = p.exited
		}
		var probed <-chan struct{}
		if probe != nil {
			probed = probe.changed
		}
		hold := time.NewTimer(wk.a.cfg.Interval)
		if !crashedAt.IsZero() {
			hold.Reset(50 * time.Millisecond) // re-check the hold often
		}
		select {
		case <-ctx.Done():
			hold.Stop()
			return
		case <-wk.nudge:
		case <-t.C:
		case <-exited:
		case <-probed:
		case <-hold.C:
		}
		hold.Stop()
	}
}

// holdRestart says whether a dead instance must stay down for now.
func (wk *worker) holdRestart(w want, crashedAt time.Time) (bool, string) {
	switch {
	case w.role == state.RoleReplica && w.conf.ReplicaOf == "" && w.demoted &&
		w.conf.Persistence == state.PersistNone && time.Since(w.pendingSince) < 2*wk.a.cfg.CrashHold:
		// Without persistence it would come back empty, and its replicas,
		// still pointing at it, would resync from it and lose their data:
		// only once the leader has clearly found no replica to promote.
		return true, "demoted master without persistence: waiting for a replica to be promoted"
	case w.role == state.RoleReplica && w.conf.ReplicaOf == "" && !w.demoted:
		return true, "waiting for a new master (failover in progress)"
	case w.role == state.RoleMaster && w.hasReplicas && !crashedAt.IsZero() && !wk.a.LeaseOK():
		return true, "crashed master: no contact with the leader, not restarting a master that may have been replaced"
	case w.role == state.RoleMaster && w.hasReplicas && !crashedAt.IsZero() && time.Since(crashedAt) < wk.a.cfg.CrashHold:
		return true, "crashed master: waiting for the leader to promote a replica"
	}
	return false, ""
}

// mustKill: the instance runs as a master (as last seen), must not take
// writes now, and does not answer.
func (wk *worker) mustKill(w want) bool {
	st := wk.status()
	// An unknown role (no converge since this agent started) may be a master.
	maybeMaster := st.Role == state.RoleMaster || st.Role == ""
	return maybeMaster && (w.role == state.RoleMaster || w.demoted || w.conf.ReplicaOf == "") && w.conf.Fenced &&
		!st.Healthy && !st.FailingSince.IsZero() && time.Since(st.FailingSince) >= wk.a.cfg.ProbeTimeout
}

// healthProbe pings the local instance every ProbeInterval.
type healthProbe struct {
	cancel  context.CancelFunc
	done    chan struct{}
	changed chan struct{}
}

func startHealthProbe(wk *worker, addr, secret string) *healthProbe {
	ctx, cancel := context.WithCancel(context.Background())
	hp := &healthProbe{cancel: cancel, done: make(chan struct{}), changed: make(chan struct{}, 1)}
	cfg := wk.a.cfg
	go func() {
		defer close(hp.done)
		c := redis.NewClient(cfg.Redis.Internal(addr, secret, cfg.ProbeTimeout, 1))
		defer c.Close()
		t := time.NewTicker(cfg.ProbeInterval)
		defer t.Stop()
		for {
			start := time.Now()
			ok := alivePing(ctx, c, cfg.ProbeTimeout)
			if ctx.Err() != nil {
				return
			}
			changed := false
			wk.setStatus(func(s *Status) {
				changed = s.Healthy != ok
				s.Healthy = ok
				if ok {
					s.FailingSince = time.Time{}
				} else if s.FailingSince.IsZero() {
					s.FailingSince = start
				}
			})
			if changed {
				select {
				case hp.changed <- struct{}{}:
				default:
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return hp
}

func (hp *healthProbe) stop() {
	hp.cancel()
	<-hp.done
}

func asRedisError(err error, target *redis.Error) bool { return errors.As(err, target) }

func splitAny(s string) []any {
	var out []any
	for _, f := range strings.Fields(s) {
		out = append(out, f)
	}
	return out
}

// waitReady polls PING until the server answers (or is loading its data).
func waitReady(ctx context.Context, c *redis.Client, p *process) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && p.running() && ctx.Err() == nil {
		err := c.Ping(ctx).Err()
		if err == nil || strings.HasPrefix(err.Error(), "LOADING") {
			return
		}
		select {
		case <-time.After(5 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

// waitMaster returns once the master at addr accepts this database's
// internal user, or after max. Checking the secret, not just the port, skips
// a just-deleted database's server still holding a reused port.
func waitMaster(ctx context.Context, d *redisconf.Dialer, addr, secret string, max time.Duration) {
	c := redis.NewClient(d.Internal(addr, secret, 200*time.Millisecond, 1))
	defer c.Close()
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if c.Ping(ctx).Err() == nil {
			return
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

var errRestart = errors.New("config change needs a restart")

// converge makes the running server's live settings and role match w.
func (wk *worker) converge(ctx context.Context, c *redis.Client, w want) error {
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	live := w.conf.Live()
	// The fence is the fencer's alone (fence.go): converging a stale view
	// must never lift it.
	delete(live, redisconf.FenceKey)
	keys := make([]any, 0, len(live)+2)
	keys = append(keys, "CONFIG", "GET")
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
	if m, ok := res.(map[any]any); ok {
		for k, v := range m {
			got[fmt.Sprint(k)] = fmt.Sprint(v)
		}
	} else if l, ok := res.([]any); ok {
		for i := 0; i+1 < len(l); i += 2 {
			got[fmt.Sprint(l[i])] = fmt.Sprint(l[i+1])
		}
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
	// Clients (default user) and the proxy run data commands only. Applied
	// here too so servers started before these rules get them.
	restrict := append([]any{"ACL", "SETUSER", "default"}, splitAny(redisconf.ClientRules)...)
	if err := c.Do(cctx, restrict...).Err(); err != nil {
		return fmt.Errorf("acl setuser default: %w", err)
	}
	// resetpass: servers from before the proxy had a password of its own
	// also accepted the internal secret for it.
	proxyUser := append([]any{"ACL", "SETUSER", redisconf.ProxyUser, "on", "resetpass", ">" + redisconf.ProxySecret(w.conf.Secret), "~*", "&*", "+@all"},
		splitAny(redisconf.ClientRules)...)
	if err := c.Do(cctx, append(proxyUser, "-reset")...).Err(); err != nil {
		return fmt.Errorf("acl setuser proxy: %w", err)
	}
	info, err := c.Info(cctx, "replication", "memory", "clients").Result()
	if err != nil {
		return fmt.Errorf("info: %w", err)
	}
	f := resp.ParseInfo(info)
	switch {
	case w.role == state.RoleMaster && f["role"] == "slave":
		if err := c.Do(cctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
			return fmt.Errorf("replicaof no one: %w", err)
		}
		f["role"] = "master" // what it is now, not what INFO said before
		wk.a.log.Info("promoted to master", "instance", w.id)
	case w.role == state.RoleReplica && w.conf.ReplicaOf != "":
		host, port, _ := net.SplitHostPort(w.conf.ReplicaOf)
		if f["role"] != "slave" || f["master_host"] != host || f["master_port"] != port {
			if err := c.Do(cctx, "REPLICAOF", host, port).Err(); err != nil {
				return fmt.Errorf("replicaof %s: %w", w.conf.ReplicaOf, err)
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
			s.LinkUp = f["master_link_status"] == "up"
			s.SyncInProgress = f["master_sync_in_progress"] == "1"
			s.Offset, _ = strconv.ParseInt(f["slave_repl_offset"], 10, 64)
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

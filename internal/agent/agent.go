// Package agent runs on every node and makes the local redis-servers match
// the desired state in the local copy of the FSM. It is level-triggered: each
// instance has a worker that compares what should be with what is, on every
// state change and on a timer, so a missed event can never leave it wrong.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/marina-redis/marina/internal/redisconf"
	"github.com/marina-redis/marina/internal/redisctl"
	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/timing"
	"github.com/marina-redis/marina/internal/topology"
)

// Source is the local desired state.
type Source interface {
	state.Source
	Applied() <-chan struct{} // a log entry was applied (the index moved)
	Index() uint64            // the last log index applied
}

// Config configures an agent.
type Config struct {
	// Redis dials this node's redis-servers (nil: plaintext); TLSFiles,
	// when set, make them speak TLS only, with the node's certificate.
	Redis       *redisconf.Dialer
	TLSFiles    *redisconf.TLSFiles
	NodeID      string
	Dir         string // instances live in Dir/<instance id>
	RedisServer string // path of the redis-server binary
	// StopOnExit stops the instances when the agent stops; by default they keep
	// serving (control plane down is not data plane down) and are adopted later.
	StopOnExit bool
	Interval   time.Duration // resync period, default 1s
	// Lease: without a heartbeat acknowledged by a confirmed leader for
	// this long, the agent fences its masters (the leader waits longer
	// before it promotes another: timing.LeaseWait). Default: timing's. See lease.go.
	Lease time.Duration
	// CrashHold: a crashed master with replicas is not restarted for this
	// long, so the leader can promote a replica instead of the agent
	// bringing back an older or empty master. Default: timing's (5s).
	CrashHold time.Duration
	// ProbeInterval and ProbeTimeout pace the health probes (timing's defaults: 100ms, 300ms).
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	Logger        *slog.Logger
}

// Agent supervises the instances of one node.
type Agent struct {
	cfg     Config
	src     Source
	log     *slog.Logger
	mu      sync.Mutex
	workers map[string]*worker
	wg      sync.WaitGroup
	stopAll atomic.Bool
	notify  chan struct{}
	urgent  chan struct{}
	// The lease (lease.go): until is its end (unix ns), pending the grants
	// waiting for the local state to catch up, fenced its absence.
	leaseMu sync.Mutex
	until   atomic.Int64
	pending []grant
	granted chan struct{}
	fenced  atomic.Bool
	probes  *prober
	started time.Time

	fenceMu  sync.Mutex
	fences   []Fence
	fenceSeq int

	// How many instances this node holds and remote masters it probes:
	// the per-instance loops pace themselves by them (timing.Pace).
	local, remote atomic.Int64
}

// probePace is how often each health probe, local or remote, runs.
func (a *Agent) probePace() time.Duration {
	return timing.Pace(a.cfg.ProbeInterval, int(a.local.Load()+a.remote.Load()), timing.ProbeBudget)
}

// resyncPace is how often each worker and fencer looks again without a
// change (two loops per instance).
func (a *Agent) resyncPace() time.Duration {
	return timing.Pace(a.cfg.Interval, 2*int(a.local.Load()), timing.ResyncBudget)
}

func (a *Agent) signal() {
	select {
	case a.notify <- struct{}{}:
	default:
	}
}

// Notify is signalled when an instance's state, role or link changes, so
// the node can report at once instead of at its next heartbeat.
func (a *Agent) Notify() <-chan struct{} { return a.notify }

func (a *Agent) signalUrgent() {
	select {
	case a.urgent <- struct{}{}:
	default:
	}
}

// Urgent is signalled when an instance's fence or epoch changes: the
// leader may be waiting for exactly that to promote a replica.
func (a *Agent) Urgent() <-chan struct{} { return a.urgent }

// SetStopOnExit changes whether Run's end stops the instances too.
func (a *Agent) SetStopOnExit(b bool) { a.stopAll.Store(b) }

// New returns an agent; Run starts it.
func New(cfg Config, src Source) *Agent {
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	t := timing.Timing{Lease: cfg.Lease, CrashHold: cfg.CrashHold, ProbeInterval: cfg.ProbeInterval, ProbeTimeout: cfg.ProbeTimeout}.WithDefaults()
	cfg.Lease, cfg.CrashHold, cfg.ProbeInterval, cfg.ProbeTimeout = t.Lease, t.CrashHold, t.ProbeInterval, t.ProbeTimeout
	a := &Agent{cfg: cfg, src: src, log: cfg.Logger.With("component", "agent"), workers: map[string]*worker{}, notify: make(chan struct{}, 1),
		urgent:  make(chan struct{}, 1),
		granted: make(chan struct{}, 1)}
	a.stopAll.Store(cfg.StopOnExit)
	a.probes = newProber(a)
	a.started = time.Now()
	// No lease until a confirmed leader grants one: a restarted agent may
	// have been cut off, and its state may name masters replaced since.
	a.fenced.Store(true)
	return a
}

// Run reconciles until ctx is done, then stops every worker (and with
// StopOnExit, every instance).
func (a *Agent) Run(ctx context.Context) error {
	if err := os.MkdirAll(a.cfg.Dir, 0o700); err != nil {
		return err
	}
	t := time.NewTicker(a.cfg.Interval)
	defer t.Stop()
	defer a.probes.stop()
	leaseDone := make(chan struct{})
	leaseCtx, stopLease := context.WithCancel(ctx)
	go func() { defer close(leaseDone); a.watchLease(leaseCtx) }()
	defer func() { stopLease(); <-leaseDone }()
	for {
		changed := a.src.Changed()
		a.reconcile(ctx)
		select {
		case <-ctx.Done():
			a.shutdown()
			return nil
		case <-changed:
		case <-t.C:
		}
	}
}

// want is the desired configuration of one instance.
type want struct {
	id    string
	db    string
	shard int
	role  string
	epoch uint64
	// hasReplicas: a crashed master then waits for the leader's decision.
	hasReplicas bool
	// demoted: the master of a failover in progress, since pendingSince.
	// It may run again (fenced) so the leader can promote it back when no
	// replica qualifies, but only when that cannot hurt: see holdRestart.
	demoted      bool
	pendingSince time.Time
	conf         redisconf.Config
	confTxt      string
}

func (a *Agent) desired(st *state.State) map[string]want {
	out := map[string]want{}
	self, ok := st.Nodes[a.cfg.NodeID]
	if !ok {
		return out
	}
	for _, pi := range st.InstancesOn(a.cfg.NodeID) {
		c := redisconf.Config{
			Port: pi.Port, Bind: self.Addr, Dir: filepath.Join(a.cfg.Dir, pi.ID),
			MaxMemory: pi.DB.Memory, Policy: pi.DB.Eviction, Persistence: pi.DB.Persistence,
			Password: pi.DB.Password, Secret: pi.DB.Secret, TLS: a.cfg.TLSFiles,
		}
		c.Socket = redisconf.SocketPath(c.Dir)
		sh := pi.DB.Shards[pi.Shard]
		if pi.Role == state.RoleReplica {
			if m, ok := sh.Master(); ok {
				c.ReplicaOf = topology.Addr(st, m)
			}
		}
		c.Fenced, c.Epoch = mustFence(pi.Role, a.LeaseOK()), sh.Epoch
		out[pi.ID] = want{id: pi.ID, db: pi.DB.Name, shard: pi.Shard, role: pi.Role, epoch: sh.Epoch,
			hasReplicas: len(sh.Replicas()) > 0, demoted: sh.Pending != nil && sh.Pending.Old == pi.ID, conf: c, confTxt: c.Render()}
		if sh.Pending != nil {
			w := out[pi.ID]
			w.pendingSince = sh.Pending.Since
			out[pi.ID] = w
		}
	}
	return out
}

func (a *Agent) reconcile(ctx context.Context) {
	st := a.src.State()
	if _, ok := st.Nodes[a.cfg.NodeID]; !ok {
		// Not (yet) in the state: nothing here can be judged unwanted.
		return
	}
	want := a.desired(st)
	targets := a.probeTargets(st)
	a.local.Store(int64(len(want)))
	a.remote.Store(int64(len(targets)))
	a.probes.update(targets)
	var gone []*worker
	a.mu.Lock()
	for id, w := range want {
		if wk, ok := a.workers[id]; ok {
			wk.update(w)
			continue
		}
		wk := newWorker(a, w)
		a.workers[id] = wk
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			wk.run(ctx)
		}()
	}
	for id, wk := range a.workers {
		if _, ok := want[id]; !ok {
			gone = append(gone, wk)
			delete(a.workers, id)
		}
	}
	a.mu.Unlock()
	// Removals wait for processes to exit: outside the lock, so status
	// reports and heartbeats go on meanwhile.
	var wg sync.WaitGroup
	for _, wk := range gone {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wk.remove()
		}()
	}
	wg.Wait()
	// Instance directories nobody wants: deleted while this agent was down.
	entries, err := os.ReadDir(a.cfg.Dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if _, ok := want[e.Name()]; ok || !e.IsDir() {
			continue
		}
		a.removeOrphan(ctx, e.Name())
	}
}

// removeOrphan stops a leftover instance (if it still runs) and moves its
// directory to DATA/trash rather than deleting it: this path runs on
// evidence the agent did not see happen, so the data stays recoverable.
func (a *Agent) removeOrphan(ctx context.Context, id string) {
	dir := filepath.Join(a.cfg.Dir, id)
	if addr, err := confAddr(filepath.Join(dir, "redis.conf")); err == nil {
		sctx, cancel := context.WithCancel(ctx)
		if p, err := adoptProcess(sctx, dir, addr); err == nil {
			p.stop(ctx, syscall.SIGTERM, time.Minute)
		}
		cancel()
	}
	trash := filepath.Join(filepath.Dir(a.cfg.Dir), "trash")
	if err := os.MkdirAll(trash, 0o700); err != nil {
		a.log.Error("trash dir", "err", err)
		return
	}
	to := filepath.Join(trash, fmt.Sprintf("%s.%d", id, time.Now().Unix()))
	if err := os.Rename(dir, to); err != nil {
		a.log.Error("move orphan instance to trash", "instance", id, "err", err)
		return
	}
	a.log.Warn("instance not in the desired state: stopped and moved to trash", "instance", id, "to", to)
}

func (a *Agent) shutdown() {
	a.mu.Lock()
	for _, wk := range a.workers {
		wk.cancel()
	}
	a.mu.Unlock()
	a.wg.Wait()
}

// Statuses reports what the agent observes of its instances.
func (a *Agent) Statuses() []Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Status, 0, len(a.workers))
	for _, wk := range a.workers {
		out = append(out, wk.status())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// confAddr reads "bind" and "port" from a rendered redis.conf.
func confAddr(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var host string
	var port int
	for _, line := range strings.Split(string(b), "\n") {
		if h, ok := strings.CutPrefix(line, "bind "); ok {
			host = strings.TrimSpace(h)
		}
		if p, ok := strings.CutPrefix(line, "port "); ok {
			port, _ = strconv.Atoi(strings.TrimSpace(p))
		}
	}
	if host == "" || port == 0 {
		return "", errors.New("no bind/port in " + path)
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// ReloadTLS has every running redis-server read the node's certificate,
// key and CA bundle again (after a renewal or a CA rotation).
func (a *Agent) ReloadTLS(ctx context.Context) error {
	t := a.cfg.TLSFiles
	if t == nil {
		return nil
	}
	var errs []error
	for _, s := range a.Statuses() {
		if s.State != StateRunning {
			continue
		}
		a.mu.Lock()
		wk := a.workers[s.ID]
		a.mu.Unlock()
		if wk == nil {
			continue
		}
		w := wk.get()
		addr := net.JoinHostPort(w.conf.Bind, strconv.Itoa(w.conf.Port))
		c := redisctl.Client(a.cfg.Redis, addr, w.conf.Secret, 2*time.Second, 1)
		err := c.Do(ctx, t.Reload()...).Err()
		c.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.ID, err))
		}
	}
	return errors.Join(errs...)
}

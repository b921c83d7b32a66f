package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/redisctl"
	"github.com/marina-redis/marina/internal/state"
)

// killSig ends an instance that is being deleted: its data goes too, so a
// final save would be wasted work.
const killSig = syscall.SIGKILL

// saveGrace is how long a SIGTERMed redis-server may take to save its data
// (RDB) or fsync (AOF) before it is killed.
const saveGrace = time.Minute

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

// The run loop of a worker is a small state machine over its instance's
// process (runState): each wake-up writes the config, then steps through
// the states until one has to wait for an event (a desired-state change,
// the timer, the process exiting, a probe changing its mind).
type runState int

const (
	// stateExited: the process has gone; record the crash and back off.
	stateExited runState = iota
	// stateAbsent: no process; adopt one left running, hold the restart,
	// or start one.
	stateAbsent
	// stateRunning: a process runs; kill it if it must take no writes and
	// is hung (hang.go), otherwise converge its settings.
	stateRunning
	// stateWait: nothing more to do until the next event.
	stateWait
	// stateAgain: something changed (a kill, a restart): look again now.
	stateAgain
)

func (s runState) String() string {
	return [...]string{"exited", "absent", "running", "wait", "again"}[s]
}

// life is what the run loop keeps between wake-ups: the process it
// supervises and what it knows of its past.
type life struct {
	log                 *slog.Logger
	dir, confPath, addr string
	secret              string
	client              *redis.Client
	p                   *process
	probe               *healthProbe
	failures            int
	nextStart           time.Time
	crashedAt           time.Time
	// hang follows a server that must take no writes and does not answer,
	// until it answers, is fenced or is killed (hang.go).
	hang *hangWatch
	// Converging is paced: at once when the desired configuration changed
	// (dirty) or a process was (re)started or adopted, else once per
	// resyncPace; the other wake-ups (hang checks every 50ms, probes,
	// timers) must not each cost the server a round of commands.
	dirty     bool
	converged time.Time
	aclPID    int // the process whose ACL users converge last set
}

// state is where the process is now.
func (l *life) state() runState {
	switch {
	case l.p == nil:
		return stateAbsent
	case !l.p.running():
		return stateExited
	default:
		return stateRunning
	}
}

func (wk *worker) run(parent context.Context) {
	defer close(wk.done)
	stop := context.AfterFunc(parent, wk.cancel)
	defer stop()
	ctx := wk.ctx
	w := wk.get()
	l := &life{log: wk.a.log.With("instance", wk.id), dir: w.conf.Dir, secret: w.conf.Secret,
		addr: net.JoinHostPort(w.conf.Bind, strconv.Itoa(w.conf.Port))}
	l.confPath = filepath.Join(l.dir, "redis.conf")
	l.client = redisctl.Client(wk.a.cfg.Redis, l.addr, l.secret, time.Second, 2, redisctl.DialTimeout(500*time.Millisecond))
	defer l.client.Close()
	defer wk.finish(l)

	fenceDone := make(chan struct{})
	go func() {
		defer close(fenceDone)
		wk.fenceLoop(ctx, l.addr, l.secret)
	}()
	defer func() { <-fenceDone }()

	t := time.NewTimer(wk.a.resyncPace())
	defer t.Stop()
	for {
		w = wk.get()
		confErr := writeConf(l.dir, l.confPath, w.confTxt)
		if confErr != nil {
			wk.setStatus(func(s *Status) { s.Error = confErr.Error() })
			l.log.Error("write config", "err", confErr)
		}
		next := l.state()
		for next != stateWait && next != stateAgain {
			switch next {
			case stateExited:
				next = wk.exited(l, w)
			case stateAbsent:
				next = wk.absent(ctx, l, w, confErr)
			case stateRunning:
				next = wk.running(ctx, l, w)
			}
		}
		if next == stateAgain {
			continue
		}
		t.Reset(wk.a.resyncPace())
		if !wk.wait(ctx, l, t.C) {
			return
		}
	}
}

// wait returns at the next event, false when the worker must stop.
func (wk *worker) wait(ctx context.Context, l *life, tick <-chan time.Time) bool {
	var exited <-chan struct{}
	if l.p != nil {
		exited = l.p.exited
	}
	var probed <-chan struct{}
	if l.probe != nil {
		probed = l.probe.changed
	}
	d := wk.a.resyncPace()
	if !l.crashedAt.IsZero() || l.hang != nil {
		d = holdRecheck // a held restart or a hang being judged: look often
	}
	hold := time.NewTimer(d)
	defer hold.Stop()
	set := time.Now()
	select {
	case <-ctx.Done():
		return false
	case <-wk.nudge:
		l.dirty = true
	case <-tick:
	case <-exited:
	case <-probed:
	case <-hold.C:
		if l.hang != nil {
			// How late this worker's own timer fired: a late agent is
			// a starved host, and must act that much earlier.
			l.hang.agentLate(time.Since(set) - d)
		}
	}
	return true
}

// holdRecheck is how often a held restart or a hang being judged is
// looked at again.
const holdRecheck = 50 * time.Millisecond

// exited records the end of the process and backs off its restart.
func (wk *worker) exited(l *life, w want) runState {
	p := l.p
	if time.Since(p.started) > 30*time.Second {
		l.failures = 0
	}
	l.failures++
	l.crashedAt = time.Now()
	l.nextStart = l.crashedAt.Add(backoff(l.failures))
	l.log.Warn("redis-server exited", "pid", p.pid, "err", p.err, "role", w.role)
	crashedAt := l.crashedAt
	wk.setStatus(func(s *Status) {
		// Dead takes no writes: fenced in the epoch it died in.
		s.State, s.PID, s.Restarts, s.LinkUp, s.Healthy = StateDown, 0, s.Restarts+1, false, false
		s.Fenced, s.Epoch = true, w.epoch
		if s.FailingSince.IsZero() {
			s.FailingSince = crashedAt
		}
		s.Error = fmt.Sprintf("exited: %v", p.err)
	})
	if l.probe != nil {
		l.probe.stop()
		l.probe = nil
	}
	l.p, l.hang = nil, nil
	return stateAbsent
}

// absent adopts a process left running, or starts one unless the restart
// is held.
func (wk *worker) absent(ctx context.Context, l *life, w want, confErr error) runState {
	ap, aerr := adoptProcess(ctx, l.dir, l.addr)
	if aerr != nil && !errors.Is(aerr, os.ErrNotExist) {
		l.log.Debug("not adopting", "reason", aerr)
	}
	hold, why := wk.holdRestart(w, l.crashedAt)
	switch {
	case aerr == nil:
		wk.attach(l, ap)
		l.log.Info("adopted running redis-server", "pid", ap.pid)
		if t := wk.a.cfg.TLSFiles; t != nil {
			// It may hold certificate files older than the node's
			// (renewed or rotated while the agent was away).
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			if err := l.client.Do(rctx, t.Reload()...).Err(); err != nil {
				l.log.Warn("adopted redis-server did not reload the TLS files", "err", err)
			}
			cancel()
		}
		return stateRunning
	case hold:
		// Dead is fenced: it takes no writes in this epoch.
		wk.setStatus(func(s *Status) { s.Crashed, s.Fenced, s.Epoch, s.State, s.Error = true, true, w.epoch, StateDown, why })
	case confErr != nil:
		// A full disk: the config on disk may be an older one (say, not
		// fenced); starting from it could take writes it must not.
		wk.setStatus(func(s *Status) { s.Fenced, s.Epoch, s.State = true, w.epoch, StateDown })
	case !time.Now().Before(l.nextStart):
		if w.conf.ReplicaOf != "" {
			// Redis retries a failed master connection only once a
			// second: starting after the master serves saves that second.
			waitMaster(ctx, wk.a.cfg.Redis, w.conf.ReplicaOf, w.conf.Secret, 2*time.Second)
		}
		np, err := startProcess(wk.a.cfg.RedisServer, l.confPath)
		if err != nil {
			l.log.Error("start redis-server", "err", err)
			l.failures++
			l.nextStart = time.Now().Add(backoff(l.failures))
			wk.setStatus(func(s *Status) { s.Error = err.Error() })
			return stateWait
		}
		wk.attach(l, np)
		l.log.Info("started redis-server", "pid", np.pid, "port", w.conf.Port, "role", w.role)
		waitReady(ctx, l.client, np)
		return stateRunning
	}
	return stateWait
}

// attach makes np the supervised process.
func (wk *worker) attach(l *life, np *process) {
	l.p = np
	if l.probe != nil {
		l.probe.stop()
	}
	l.probe = startHealthProbe(wk, l.addr, l.secret)
	l.crashedAt, l.hang = time.Time{}, nil
	pid := np.pid
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

// running kills a hung server that must take no writes, or converges a
// healthy one.
func (wk *worker) running(ctx context.Context, l *life, w want) runState {
	if v := wk.judgeHang(l, w); v.Kill {
		// Once resumed it would serve the writes queued in its sockets.
		l.log.Warn("killing unresponsive redis-server that must not take writes", "pid", l.p.pid, "role", w.role, "why", v.Reason)
		wk.a.recordFence(Fence{At: time.Now().UTC(), DB: w.db, Shard: w.shard, Instance: w.id,
			Reason: "killed the unresponsive server: it must take no writes (demoted or no leader): " + v.Reason})
		l.p.stop(ctx, syscall.SIGKILL, time.Second)
		return stateAgain
	}
	if st := wk.status(); !st.Healthy && !st.FailingSince.IsZero() {
		return stateWait // unresponsive: converging would only block on timeouts
	}
	fresh := l.aclPID != l.p.pid
	if !l.dirty && !fresh && time.Since(l.converged) < wk.a.resyncPace() {
		return stateWait
	}
	if err := wk.converge(ctx, l.client, w, fresh); err != nil && ctx.Err() == nil {
		if errors.Is(err, errRestart) {
			l.log.Info("restarting redis-server to apply config", "reason", err)
			l.p.stop(ctx, syscall.SIGTERM, saveGrace)
			l.failures = 0
			return stateAgain
		}
		wk.setStatus(func(s *Status) { s.Error = err.Error() })
		return stateWait
	}
	l.dirty, l.converged, l.aclPID = false, time.Now(), l.p.pid
	return stateWait
}

// finish ends the worker's life: with a removal it stops the process and
// deletes its data; with StopOnExit it stops the process (SIGTERM saves).
func (wk *worker) finish(l *life) {
	if l.probe != nil {
		l.probe.stop()
	}
	wk.mu.Lock()
	removing := wk.removing
	wk.mu.Unlock()
	switch {
	case removing:
		if l.p == nil {
			// Not ours yet: it may still run from an earlier agent.
			l.p, _ = adoptProcess(context.Background(), l.dir, l.addr)
		}
		if l.p != nil {
			l.p.stop(context.Background(), killSig, 5*time.Second)
		}
		if err := os.RemoveAll(l.dir); err != nil {
			l.log.Error("remove instance dir", "err", err)
		}
		l.log.Info("instance removed")
	case wk.a.stopAll.Load() && l.p != nil:
		// SIGTERM makes redis-server save (rdb) or fsync (aof) before exiting.
		l.p.stop(context.Background(), syscall.SIGTERM, saveGrace)
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

package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/redisctl"
	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/topology"
)

// Probe is this node's direct view of a master on another node: the
// second observer the leader needs before it declares a master failed.
type Probe struct {
	Instance     string    `json:"instance"`
	OK           bool      `json:"ok"`
	FailingSince time.Time `json:"failing_since,omitempty"`
}

type probeTarget struct {
	id, addr, secret string
}

// probeTargets lists the masters of shards this node holds a replica of,
// when the master runs on another node.
func (a *Agent) probeTargets(st *state.State) map[string]probeTarget {
	out := map[string]probeTarget{}
	for _, pi := range st.InstancesOn(a.cfg.NodeID) {
		if pi.Role != state.RoleReplica {
			continue
		}
		m, ok := pi.DB.Shards[pi.Shard].Master()
		if !ok || m.Node == a.cfg.NodeID {
			continue
		}
		addr := topology.Addr(st, m)
		if addr == "" {
			continue
		}
		out[m.ID] = probeTarget{id: m.ID, addr: addr, secret: pi.DB.Secret}
	}
	return out
}

// prober runs one probe loop per remote master.
type prober struct {
	a     *Agent
	mu    sync.Mutex
	loops map[string]*probeLoop
}

type probeLoop struct {
	target probeTarget
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	res    Probe
}

func newProber(a *Agent) *prober { return &prober{a: a, loops: map[string]*probeLoop{}} }

func (p *prober) update(targets map[string]probeTarget) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, l := range p.loops {
		if t, ok := targets[id]; !ok || t != l.target {
			l.cancel()
			delete(p.loops, id)
		}
	}
	for id, t := range targets {
		if _, ok := p.loops[id]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		l := &probeLoop{target: t, cancel: cancel, done: make(chan struct{}), res: Probe{Instance: id, OK: true}}
		p.loops[id] = l
		go l.run(ctx, p.a)
	}
}

func (p *prober) stop() {
	p.mu.Lock()
	loops := p.loops
	p.loops = map[string]*probeLoop{}
	p.mu.Unlock()
	for _, l := range loops {
		l.cancel()
		<-l.done
	}
}

// results returns the current probe results.
func (p *prober) results() []Probe {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Probe, 0, len(p.loops))
	for _, l := range p.loops {
		l.mu.Lock()
		out = append(out, l.res)
		l.mu.Unlock()
	}
	return out
}

func (l *probeLoop) run(ctx context.Context, a *Agent) {
	defer close(l.done)
	c := redisctl.Client(a.cfg.Redis, l.target.addr, l.target.secret, a.cfg.ProbeTimeout, 1)
	defer c.Close()
	t := time.NewTimer(a.probePace())
	defer t.Stop()
	for {
		start := time.Now()
		ok := alivePing(ctx, c, a.cfg.ProbeTimeout)
		if ctx.Err() != nil {
			return
		}
		l.mu.Lock()
		changed := l.res.OK != ok
		if ok {
			l.res.OK, l.res.FailingSince = true, time.Time{}
		} else if l.res.OK {
			l.res.OK, l.res.FailingSince = false, start
		}
		l.mu.Unlock()
		if changed {
			a.signal()
		}
		t.Reset(a.probePace())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// alivePing says whether a server answers at all: any reply, even an error
// such as LOADING, means it is alive; a timeout or refused connection not.
func alivePing(ctx context.Context, c *redis.Client, timeout time.Duration) bool {
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := c.Ping(pctx).Err()
	if err == nil {
		return true
	}
	var rerr redis.Error
	return asRedisError(err, &rerr)
}

// Probes returns this node's probes of remote masters.
func (a *Agent) Probes() []Probe { return a.probes.results() }

// Fence is a fencing action an agent took on its own: it goes into the
// next heartbeats until the leader has written it as an event.
type Fence struct {
	ID       string    `json:"id"`
	At       time.Time `json:"at"`
	DB       string    `json:"db,omitempty"`
	Shard    int       `json:"shard"`
	Instance string    `json:"instance,omitempty"`
	Reason   string    `json:"reason"`
}

func (a *Agent) recordFence(f Fence) {
	a.fenceMu.Lock()
	defer a.fenceMu.Unlock()
	a.fenceSeq++
	f.ID = fmt.Sprintf("%s-%d-%d", a.cfg.NodeID, a.started.UnixNano(), a.fenceSeq)
	a.fences = append(a.fences, f)
	if len(a.fences) > 100 {
		a.fences = a.fences[len(a.fences)-100:]
	}
	a.signal()
}

// Fences returns the fencing actions not yet acknowledged.
func (a *Agent) Fences() []Fence {
	a.fenceMu.Lock()
	defer a.fenceMu.Unlock()
	return append([]Fence(nil), a.fences...)
}

// AckFences drops fencing actions the leader has recorded.
func (a *Agent) AckFences(sent []Fence) {
	a.fenceMu.Lock()
	defer a.fenceMu.Unlock()
	done := map[string]bool{}
	for _, f := range sent {
		done[f.ID] = true
	}
	out := a.fences[:0]
	for _, f := range a.fences {
		if !done[f.ID] {
			out = append(out, f)
		}
	}
	a.fences = out
}

// fenceMasters records a lease fence of every local master.
func (a *Agent) fenceMasters(reason string) {
	a.mu.Lock()
	var ws []want
	for _, wk := range a.workers {
		if w := wk.get(); w.role == state.RoleMaster {
			ws = append(ws, w)
		}
	}
	a.mu.Unlock()
	for _, w := range ws {
		a.recordFence(Fence{At: time.Now().UTC(), DB: w.db, Shard: w.shard, Instance: w.id, Reason: reason})
	}
}

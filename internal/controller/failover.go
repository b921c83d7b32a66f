package controller

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/agent"
	"github.com/marina-redis/marina/internal/failover"
	"github.com/marina-redis/marina/internal/redisctl"
	"github.com/marina-redis/marina/internal/resp"
	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/topology"
)

// failoverState is the leader's memory between passes.
type failoverState struct {
	mu      sync.Mutex
	noted   map[string]bool // events already written, so a blocked failover logs once
	clients map[string]*redis.Client
	retryAt map[string]time.Time // planned switchovers that failed wait before the next try
	// silent holds demoted masters on silent nodes, fenced directly by the
	// leader while it can reach them (their agent may be dead).
	silent    map[string]fenceTarget
	lastFence time.Time
}

type fenceTarget struct {
	addr, secret, node string
	epoch              uint64 // of the demotion: the fence's order (redisctl.Order)
}

func (c *Controller) note(key string) bool {
	c.fo.mu.Lock()
	defer c.fo.mu.Unlock()
	if c.fo.noted[key] {
		return false
	}
	c.fo.noted[key] = true
	return true
}

func (c *Controller) noted(key string) bool {
	c.fo.mu.Lock()
	defer c.fo.mu.Unlock()
	return c.fo.noted[key]
}

func (c *Controller) event(ctx context.Context, e state.Event) {
	e.Time = time.Now().UTC()
	if _, err := c.apply(ctx, &state.AddEvent{Event: &e}); err != nil {
		c.log.Warn("event", "type", e.Type, "err", err)
	}
}

// redisClient returns a pooled client for direct questions to an instance.
func (c *Controller) redisClient(addr, secret string) *redis.Client {
	c.fo.mu.Lock()
	defer c.fo.mu.Unlock()
	key := addr + "|" + secret
	if cl, ok := c.fo.clients[key]; ok {
		return cl
	}
	cl := redisctl.Client(c.redisDialer, addr, secret, 300*time.Millisecond, 2)
	c.fo.clients[key] = cl
	return cl
}

func (c *Controller) closeClients() {
	c.fo.mu.Lock()
	defer c.fo.mu.Unlock()
	for k, cl := range c.fo.clients {
		cl.Close()
		delete(c.fo.clients, k)
	}
}

// lastSeen returns when the leader last heard from a node: its last report,
// or the start of this leadership if there is none newer.
func (c *Controller) lastSeen(reports map[string]Report, node string) time.Time {
	c.mu.Lock()
	since := c.leaderAt
	c.mu.Unlock()
	if r, ok := reports[node]; ok && r.Received.After(since) {
		return r.Received
	}
	return since
}

func (c *Controller) fresh(reports map[string]Report, node string, now time.Time) (Report, bool) {
	r, ok := reports[node]
	return r, ok && now.Sub(r.Received) <= c.foCfg.ReportStale()
}

func statusOf(r Report, id string) (agent.Status, bool) {
	for _, s := range r.Instances {
		if s.ID == id {
			return s, true
		}
	}
	return agent.Status{}, false
}

// observe gathers what the cluster sees of master m.
func (c *Controller) observe(st *state.State, m state.Instance, reports map[string]Report, now time.Time) failover.Observation {
	var o failover.Observation
	if r, ok := c.fresh(reports, m.Node, now); ok {
		if s, ok := statusOf(r, m.ID); ok {
			o.Crashed = s.Crashed
			if !s.Healthy && !s.FailingSince.IsZero() {
				o.LocalFailingSince = s.FailingSince
			}
		}
	} else {
		o.NodeSilentSince = c.lastSeen(reports, m.Node)
	}
	for node := range st.Nodes {
		if node == m.Node {
			continue
		}
		r, ok := c.fresh(reports, node, now)
		if !ok {
			continue
		}
		for _, p := range r.Probes {
			if p.Instance == m.ID && !p.OK {
				o.RemoteFailingSince = append(o.RemoteFailingSince, p.FailingSince)
			}
		}
	}
	return o
}

// failoverPass looks at every shard once: starts failovers of failed
// masters and finishes those in progress.
func (c *Controller) failoverPass(ctx context.Context) {
	st := c.fsm.State()
	reports := c.Reports()
	now := time.Now()
	c.fenceSilent(ctx, reports, now, false)
	for _, name := range st.DBNames() {
		db := st.DBs[name]
		for _, sh := range db.Shards {
			if sh.Pending != nil {
				if !switchOwned(sh.Pending, now) {
					c.tryPromote(ctx, st, db, sh, reports, now)
				}
				continue
			}
			if len(sh.Instances) < 2 {
				continue // no replica to promote
			}
			m, ok := sh.Master()
			if !ok {
				continue
			}
			obs := c.observe(st, m, reports, now)
			failed, reason := failover.Failed(obs, now, c.foCfg.DownAfter)
			if !failed {
				continue
			}
			if wait, nth := c.foCfg.Damping().Hold(sh.Failovers, now); wait > 0 {
				// Held, not refused: the failover starts once the spacing
				// since the shard's last one has passed (at most FlapDelayMax).
				if c.note(fmt.Sprintf("damped/%s/%d/%d", name, sh.Index, sh.Epoch)) {
					held := failover.Held(wait, nth, c.foCfg.FlapWindow)
					c.log.Warn("failover of "+m.ID+" "+held, "db", name, "shard", sh.Index, "master", m.ID, "reason", reason)
					c.event(ctx, state.Event{Type: "failover-damped", DB: name, Shard: sh.Index, Instance: m.ID, Node: m.Node,
						Reason: fmt.Sprintf("failover of %s %s: %s", m.ID, held, reason)})
				}
				continue
			}
			c.log.Warn("master failed: demoting", "db", name, "shard", sh.Index, "master", m.ID, "reason", reason)
			if _, err := c.apply(ctx, &state.Demote{ShardRef: state.ShardRef{Name: name, Shard: sh.Index, Epoch: sh.Epoch}, From: m.ID, Time: now.UTC(),
				FailedSince: obs.Since(now).UTC(), Reason: reason}); err != nil {
				c.log.Warn("demote", "db", name, "shard", sh.Index, "err", err)
				continue
			}
			c.kickNow()
		}
	}
}

// fenceSilent fences demoted masters on silent nodes directly (best
// effort, at most once a second unless now), and forgets those whose node
// reports again (its agent takes over). The fence carries the demotion's
// epoch: on a server that a later epoch has reached (promoted back, say)
// it changes nothing (redisctl.Order).
func (c *Controller) fenceSilent(ctx context.Context, reports map[string]Report, now time.Time, force bool) {
	c.fo.mu.Lock()
	if !force && now.Sub(c.fo.lastFence) < time.Second {
		c.fo.mu.Unlock()
		return
	}
	c.fo.lastFence = now
	targets := map[string]fenceTarget{}
	for id, t := range c.fo.silent {
		targets[id] = t
	}
	c.fo.mu.Unlock()
	for id, t := range targets {
		if _, fresh := c.fresh(reports, t.node, now); fresh {
			c.fo.mu.Lock()
			delete(c.fo.silent, id)
			c.fo.mu.Unlock()
			continue
		}
		fctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, _ = redisctl.ApplyFence(fctx, c.redisClient(t.addr, t.secret), redisctl.Fence{Fenced: true, Epoch: t.epoch})
		cancel()
	}
}

// fencedOut says whether the demoted master can take no more writes: its
// agent confirmed it for this epoch, or its node has been silent longer
// than the agents' lease (so its agent fenced it, or is gone).
func (c *Controller) fencedOut(old state.Instance, epoch uint64, reports map[string]Report, now time.Time) (bool, string) {
	if r, ok := c.fresh(reports, old.Node, now); ok {
		if s, ok := statusOf(r, old.ID); ok && s.Fenced && s.Epoch >= epoch {
			return true, "fenced by its agent"
		}
		return false, "waiting for its agent to fence it"
	}
	silent := now.Sub(c.lastSeen(reports, old.Node))
	if silent >= c.foCfg.LeaseWait() {
		return true, fmt.Sprintf("its node silent for %s, past the lease", silent.Round(time.Millisecond))
	}
	return false, "waiting out the lease of its silent node"
}

func (c *Controller) tryPromote(ctx context.Context, st *state.State, db *state.Database, sh state.Shard, reports map[string]Report, now time.Time) {
	var old state.Instance
	for _, in := range sh.Instances {
		if in.ID == sh.Pending.Old {
			old = in
		}
	}
	ok, why := c.fencedOut(old, sh.Epoch, reports, now)
	if !ok {
		return
	}
	oldAddr := topology.Addr(st, old)
	if _, fresh := c.fresh(reports, old.Node, now); !fresh {
		// Silent node: its agent fenced the master if it lives. If it does
		// not, fence the server directly whenever it can be reached.
		c.fo.mu.Lock()
		c.fo.silent[old.ID] = fenceTarget{addr: oldAddr, secret: db.Secret, node: old.Node, epoch: sh.Epoch}
		c.fo.mu.Unlock()
		c.fenceSilent(ctx, reports, now, true)
		c.log.Info("promoting after the lease", "db", db.Name, "shard", sh.Index, "old", old.ID, "why", why)
	}
	var cands []failover.Candidate
	for _, in := range sh.Instances {
		if in.ID == old.ID || in.Role != state.RoleReplica {
			continue
		}
		cand := c.candidate(ctx, st, db, in, oldAddr, reports, now)
		cands = append(cands, cand)
	}
	failedSince := sh.Pending.FailedSince
	if failedSince.IsZero() {
		failedSince = sh.Pending.Since
	}
	maxLinkDown := failover.LinkDownAllowed(c.foCfg.MaxLinkDown, failedSince, now)
	best, err := failover.Choose(cands, maxLinkDown, false)
	if err != nil {
		// No replica has the data (e.g. none ever synced): if the demoted
		// master is back and fenced, it is the best copy there is.
		if oc, ok := c.oldMasterCandidate(ctx, st, db, old, maxLinkDown); ok {
			best, err = oc, nil
		}
	}
	if err != nil {
		if c.note(fmt.Sprintf("blocked/%s/%d/%d", db.Name, sh.Index, sh.Epoch)) {
			c.log.Warn("failover blocked", "db", db.Name, "shard", sh.Index, "err", err)
			c.event(ctx, state.Event{Type: "failover-blocked", DB: db.Name, Shard: sh.Index, Epoch: sh.Epoch, Reason: err.Error()})
		}
		return
	}
	if _, err := c.apply(ctx, &state.Promote{ShardRef: state.ShardRef{Name: db.Name, Shard: sh.Index, Epoch: sh.Epoch}, To: best.ID, Time: time.Now().UTC(), Kind: "failover"}); err != nil {
		c.log.Warn("promote", "db", db.Name, "shard", sh.Index, "err", err)
		return
	}
	c.log.Warn("promoted replica", "db", db.Name, "shard", sh.Index, "new_master", best.ID, "offset", best.Offset,
		"after", time.Since(sh.Pending.Since).Round(time.Millisecond))
}

// oldMasterCandidate asks a demoted master, restarted fenced by its agent,
// whether it serves as a master; it counts as fully in sync with itself.
func (c *Controller) oldMasterCandidate(ctx context.Context, st *state.State, db *state.Database, old state.Instance, maxLinkDown time.Duration) (failover.Candidate, bool) {
	addr := topology.Addr(st, old)
	if addr == "" {
		return failover.Candidate{}, false
	}
	qctx, cancel := context.WithTimeout(ctx, 400*time.Millisecond)
	defer cancel()
	info, err := c.redisClient(addr, db.Secret).Info(qctx, "replication").Result()
	if err != nil || resp.ParseInfo(info)["role"] != "master" {
		return failover.Candidate{}, false
	}
	off, _ := strconv.ParseInt(resp.ParseInfo(info)["master_repl_offset"], 10, 64)
	cand := failover.Candidate{ID: old.ID, Reachable: true, Following: true, Offset: off, Priority: st.Priority(old.Node)}
	got, err := failover.Choose([]failover.Candidate{cand}, maxLinkDown, false)
	return got, err == nil
}

// candidate asks a replica directly how it stands.
func (c *Controller) candidate(ctx context.Context, st *state.State, db *state.Database, in state.Instance, oldAddr string, reports map[string]Report, now time.Time) failover.Candidate {
	cand := failover.Candidate{ID: in.ID, Priority: st.Priority(in.Node)}
	addr := topology.Addr(st, in)
	if addr == "" {
		return cand
	}
	qctx, cancel := context.WithTimeout(ctx, 400*time.Millisecond)
	defer cancel()
	info, err := c.redisClient(addr, db.Secret).Info(qctx, "replication").Result()
	if err != nil {
		return cand
	}
	link := topology.ParseLink(info)
	cand.Reachable = true
	cand.Following, cand.Syncing, cand.Offset, cand.LinkDownFor = link.Follows(oldAddr), link.Syncing, link.Offset, link.DownFor
	// The agent's last report may have seen a full sync the master's death cut short.
	if r, ok := c.fresh(reports, in.Node, now); ok {
		if s, ok := statusOf(r, in.ID); ok && s.SyncInProgress {
			cand.Syncing = true
		}
	}
	return cand
}

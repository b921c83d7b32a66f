package controller

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/marina-redis/marina/internal/failover"
	"github.com/marina-redis/marina/internal/redisctl"
	"github.com/marina-redis/marina/internal/resp"
	"github.com/marina-redis/marina/internal/scheduler"
	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/topology"
)

// SwitchoverResult reports one planned switchover.
type SwitchoverResult struct {
	Shard int           `json:"shard"`
	From  string        `json:"from"`
	To    string        `json:"to"`
	Pause time.Duration `json:"pause_ns"`
	Error string        `json:"error,omitempty"`
}

// maxPause bounds the write pause of a switchover: if the leader dies
// mid-way, the old master resumes by itself after it.
const maxPause = 2 * time.Second

// Switchover moves the master role of one shard (or all with shard < 0)
// to its best replica without losing a write, in two steps through the log
// like a failover, so the old master's fence has one owner, its agent:
// pause writes on the master, demote it (its agent fences it and says so),
// wait until the replica has the master's offset, promote the replica,
// let the agents apply it, then unpause (queued writes get an error and
// were never acknowledged).
//
// With force, a shard whose automatic failover is blocked (no replica
// passed the checks) gets its best reachable replica promoted even if its
// link has been down longer than the bound: the operator accepts its data.
func (c *Controller) Switchover(ctx context.Context, name string, shard int, force bool) ([]SwitchoverResult, error) {
	st := c.fsm.State()
	db, ok := st.DBs[name]
	if !ok {
		return nil, errf(NotFound, "database %s not found", name)
	}
	if shard >= len(db.Shards) {
		return nil, errf(Invalid, "database %s has %d shards (0..%d)", name, len(db.Shards), len(db.Shards)-1)
	}
	var out []SwitchoverResult
	for _, sh := range db.Shards {
		if shard >= 0 && sh.Index != shard {
			continue
		}
		if sh.Pending != nil {
			if !force {
				return out, errf(Conflict, "shard %d: a failover is in progress (%s); `--force` promotes the best reachable replica", sh.Index, sh.Pending.Reason)
			}
			r, err := c.forcePromote(ctx, name, sh.Index)
			if err != nil {
				return out, err
			}
			out = append(out, r)
			continue
		}
		r, err := c.switchShard(ctx, name, sh.Index, "")
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

func (c *Controller) addrOf(st *state.State, in state.Instance) string { return topology.Addr(st, in) }

// switchOwned says whether a pending shard is a planned switchover that
// its leader is still driving: the failover loop leaves it alone until the
// pause it set has run out, then finishes it like any failover.
func switchOwned(p *state.Pending, now time.Time) bool {
	return p != nil && p.Kind == state.KindSwitchover && now.Sub(p.Since) < maxPause+500*time.Millisecond
}

// minCommand is the shortest command a master's replication stream can
// carry ("*1\r\n$4\r\nPING\r\n"; writes are longer).
const minCommand = 14

// caughtUp says whether a replica holds every write of a fenced master at
// offset master. The master feeds its stream whole commands at a time, so
// a suffix shorter than the shortest command holds no write: under load a
// fenced, paused master was seen one byte ahead of its replica for seconds
// (read and applied alike), which must not block a switchover.
func caughtUp(master, applied int64) bool {
	return master-applied < minCommand
}

// switchShard switches one shard; avoid names a node the new master must
// not be on (the node being drained).
func (c *Controller) switchShard(ctx context.Context, name string, shard int, avoid string) (SwitchoverResult, error) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	st := c.fsm.State()
	db, ok := st.DBs[name]
	if !ok {
		return SwitchoverResult{}, errf(NotFound, "database %s not found", name)
	}
	sh := db.Shards[shard]
	res := SwitchoverResult{Shard: shard}
	if sh.Pending != nil {
		return res, errf(Conflict, "shard %d: a failover is in progress", shard)
	}
	m, _ := sh.Master()
	res.From = m.ID
	mAddr := c.addrOf(st, m)
	var cands []failover.Candidate
	for _, in := range sh.Replicas() {
		if in.Node == avoid {
			continue
		}
		cands = append(cands, c.candidate(ctx, st, db, in, mAddr, c.Reports(), time.Now()))
	}
	best, err := failover.Choose(cands, c.foCfg.MaxLinkDown, false)
	if err != nil {
		return res, errf(Conflict, "shard %d: %v", shard, err)
	}
	res.To = best.ID
	var target state.Instance
	for _, in := range sh.Instances {
		if in.ID == best.ID {
			target = in
		}
	}
	mc := c.redisClient(mAddr, db.Secret)
	tc := c.redisClient(c.addrOf(st, target), db.Secret)
	start := time.Now()
	// Clients wait instead of failing while the roles change; the pause
	// ends by itself if this leader dies mid-way.
	if err := mc.Do(ctx, "CLIENT", "PAUSE", maxPause.Milliseconds(), "WRITE").Err(); err != nil {
		return res, errf(Unavailable, "shard %d: pause writes on %s: %v", shard, m.ID, err)
	}
	unpause := func() { _ = mc.Do(context.Background(), "CLIENT", "UNPAUSE").Err() }
	defer unpause()
	if _, err := c.apply(ctx, &state.Demote{ShardRef: state.ShardRef{Name: name, Shard: shard, Epoch: sh.Epoch}, From: m.ID, To: best.ID, Kind: state.KindSwitchover, Time: start.UTC(), Reason: "planned switchover to " + best.ID}); err != nil {
		return res, err
	}
	epoch := sh.Epoch + 1
	demoted := time.Since(start)
	// The old master's agent fences it and reports so for the new epoch:
	// from then on it takes no write, whatever happens to this leader.
	fenced := false
	for time.Since(start) < maxPause/2 && ctx.Err() == nil {
		if r, ok := c.Reports()[m.Node]; ok {
			if s, ok := statusOf(r, m.ID); ok && s.Fenced && s.Epoch >= epoch {
				fenced = true
				break
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	if !fenced {
		return res, errf(Unavailable, "shard %d: the agent of %s did not confirm its fence within %s; the shard's failover finishes the switch", shard, m.ID, maxPause/2)
	}
	fencedAt := time.Since(start)
	// The replica must have everything the master acknowledged: the
	// master's offset no longer moves.
	caught := false
	var mo, to, read int64
	for time.Since(start) < maxPause*3/4 && ctx.Err() == nil {
		mi, err1 := mc.Info(ctx, "replication").Result()
		ti, err2 := tc.Info(ctx, "replication").Result()
		if err1 == nil && err2 == nil {
			tf := resp.ParseInfo(ti)
			mo, _ = strconv.ParseInt(resp.ParseInfo(mi)["master_repl_offset"], 10, 64)
			to, _ = strconv.ParseInt(tf["slave_repl_offset"], 10, 64)
			read, _ = strconv.ParseInt(tf["slave_read_repl_offset"], 10, 64)
			if caughtUp(mo, to) {
				caught = true
				break
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	if !caught {
		// Give the role back: the old master is fenced and has every write.
		why := fmt.Sprintf("replica %s did not catch up with the master within %s (applied %d, read %d, master %d)", best.ID, maxPause*3/4, to, read, mo)
		if _, err := c.apply(context.Background(), &state.Promote{ShardRef: state.ShardRef{Name: name, Shard: shard, Epoch: epoch}, To: m.ID, Kind: state.KindAborted, Time: time.Now().UTC(), Reason: why}); err != nil {
			return res, errf(Unavailable, "shard %d: %s, and giving the role back to %s failed (%v); the shard's failover finishes it", shard, why, m.ID, err)
		}
		return res, errf(Conflict, "shard %d: %s; %s stays master", shard, why, m.ID)
	}
	if _, err := c.apply(ctx, &state.Promote{ShardRef: state.ShardRef{Name: name, Shard: shard, Epoch: epoch}, To: best.ID, Kind: state.KindSwitchover, Time: time.Now().UTC(), Reason: "planned switchover"}); err != nil {
		return res, err
	}
	promoted := time.Since(start)
	// Wait for the new master's agent: it takes writes once it is master
	// and its fence is lifted (seen on the server itself: no report lag).
	for time.Since(start) < maxPause && ctx.Err() == nil {
		if ok, err := redisctl.Writable(ctx, tc); err == nil && ok {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	res.Pause = time.Since(start)
	c.log.Info("switchover", "db", name, "shard", shard, "from", m.ID, "to", best.ID, "pause", res.Pause,
		"demoted", demoted, "fenced", fencedAt, "promoted", promoted)
	return res, nil
}

// forcePromote ends a blocked failover with the best reachable replica,
// ignoring the link-down bound; the demoted master must still be fenced.
func (c *Controller) forcePromote(ctx context.Context, name string, shard int) (SwitchoverResult, error) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	st := c.fsm.State()
	db := st.DBs[name]
	sh := db.Shards[shard]
	res := SwitchoverResult{Shard: shard}
	if sh.Pending == nil {
		return res, errf(Conflict, "shard %d: no failover in progress", shard)
	}
	res.From = sh.Pending.Old
	var old state.Instance
	for _, in := range sh.Instances {
		if in.ID == sh.Pending.Old {
			old = in
		}
	}
	reports := c.Reports()
	now := time.Now()
	if ok, why := c.fencedOut(old, sh.Epoch, reports, now); !ok {
		return res, errf(Conflict, "shard %d: the old master %s is not fenced yet (%s); not even forced promotion may run two masters", shard, old.ID, why)
	}
	var cands []failover.Candidate
	for _, in := range sh.Instances {
		if in.ID != old.ID && in.Role == state.RoleReplica {
			cands = append(cands, c.candidate(ctx, st, db, in, c.addrOf(st, old), reports, now))
		}
	}
	best, err := failover.Choose(cands, c.foCfg.MaxLinkDown, true)
	if err != nil {
		return res, errf(Conflict, "shard %d: %v", shard, err)
	}
	if _, err := c.apply(ctx, &state.Promote{ShardRef: state.ShardRef{Name: name, Shard: shard, Epoch: sh.Epoch}, To: best.ID, Time: now.UTC(), Kind: "forced"}); err != nil {
		return res, err
	}
	res.To = best.ID
	return res, nil
}

// SetDraining marks a node draining (its masters and replicas move away)
// or back to normal.
func (c *Controller) SetDraining(ctx context.Context, id string, draining bool) error {
	if _, ok := c.fsm.State().Nodes[id]; !ok {
		return errf(NotFound, "node %s not found", id)
	}
	reason := "operator"
	_, err := c.apply(ctx, &state.SetDraining{NodeID: id, Draining: draining, Time: time.Now().UTC(), Reason: reason})
	c.kickNow()
	return err
}

// SetZonePriority sets the replica priority of a zone (0: never promoted).
func (c *Controller) SetZonePriority(ctx context.Context, zone string, prio int) error {
	if zone == "" || prio < 0 || prio > 1000 {
		return errf(Invalid, "zone priority needs a zone name and a priority 0..1000")
	}
	_, err := c.apply(ctx, &state.SetZonePriority{Zone: zone, Priority: prio})
	return err
}

// moveReplica replaces a replica by a new one placed elsewhere.
func (c *Controller) moveReplica(ctx context.Context, st *state.State, db *state.Database, sh state.Shard, in state.Instance, kind, reason string) error {
	view := scheduler.View(st)
	nin, err := scheduler.PlaceReplica(view, sh, db.Memory, instanceID(db.Name, sh.Index))
	if err != nil {
		return err
	}
	_, err = c.apply(ctx, &state.ReplaceInstance{ShardRef: state.ShardRef{Name: db.Name, Shard: sh.Index, Epoch: sh.Epoch}, From: in.ID, Add: &nin, Kind: kind, Reason: reason, Time: time.Now().UTC()})
	return err
}

// maintenancePass drains draining nodes and heals nodes down too long.
func (c *Controller) maintenancePass(ctx context.Context, healAfter time.Duration) {
	st := c.fsm.State()
	now := time.Now()
	for _, id := range st.NodeIDs() {
		n := st.Nodes[id]
		healing := n.Status == state.NodeDown && !n.DownSince.IsZero() && now.Sub(n.DownSince) >= healAfter
		if !n.Draining && !healing {
			continue
		}
		kind, reason := "move", "node "+id+" draining"
		if healing {
			kind, reason = "heal", fmt.Sprintf("node %s down for %s", id, now.Sub(n.DownSince).Round(time.Second))
		}
		for _, pi := range st.InstancesOn(id) {
			sh := pi.DB.Shards[pi.Shard]
			if sh.Pending != nil {
				continue // the failover finishes first
			}
			if pi.Role == state.RoleMaster {
				if healing {
					continue // a down node's masters are the failover's
				}
				key := fmt.Sprintf("%s/%d", pi.DB.Name, pi.Shard)
				c.fo.mu.Lock()
				wait := now.Before(c.fo.retryAt[key])
				c.fo.mu.Unlock()
				if wait {
					continue // each try pauses writes: back off after a failure
				}
				if _, err := c.switchShard(ctx, pi.DB.Name, pi.Shard, id); err != nil {
					c.fo.mu.Lock()
					c.fo.retryAt[key] = time.Now().Add(5 * time.Second)
					c.fo.mu.Unlock()
					if c.note(fmt.Sprintf("drain-blocked/%s/%s/%d", id, pi.ID, sh.Epoch)) {
						c.event(ctx, state.Event{Type: "drain-blocked", DB: pi.DB.Name, Shard: pi.Shard, Node: id, Instance: pi.ID, Reason: err.Error()})
					}
				}
				return // one change per pass: the state has moved on
			}
			if err := c.moveReplica(ctx, st, pi.DB, sh, pi.Instance, kind, reason); err != nil {
				if c.note(fmt.Sprintf("%s-blocked/%s/%s/%d", kind, id, pi.ID, sh.Epoch)) {
					c.log.Warn(kind+" blocked", "node", id, "instance", pi.ID, "err", err)
					c.event(ctx, state.Event{Type: kind + "-blocked", DB: pi.DB.Name, Shard: pi.Shard, Node: id, Instance: pi.ID, Reason: err.Error()})
				}
				continue
			}
			c.log.Info(kind, "node", id, "instance", pi.ID)
			return
		}
	}
}

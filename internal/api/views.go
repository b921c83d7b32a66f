package api

import (
	"time"

	"github.com/marina-redis/marina/internal/agent"
	"github.com/marina-redis/marina/internal/cluster"
	"github.com/marina-redis/marina/internal/controller"
	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/topology"
)

// provisionGrace is how long a new or changed database counts as
// provisioning rather than degraded while its instances come up.
const provisionGrace = 30 * time.Second

func statusIndex(obs map[string]controller.Report) map[string]agent.Status {
	out := map[string]agent.Status{}
	for _, r := range obs {
		for _, in := range r.Instances {
			out[in.ID] = in
		}
	}
	return out
}

// StatePending is shown for an instance no agent has reported yet.
const StatePending = "pending"

func instanceView(st *state.State, db *state.Database, in state.Instance, seen map[string]agent.Status, haveObs bool) Instance {
	v := Instance{ID: in.ID, Node: in.Node, Role: in.Role, State: DBUnknown}
	v.Addr = topology.Addr(st, in)
	if !haveObs {
		return v
	}
	v.State = agent.StateDown
	if time.Since(db.UpdatedAt) < provisionGrace {
		v.State = StatePending
	}
	if n, ok := st.Nodes[in.Node]; ok && n.Status == state.NodeDown {
		// The leader keeps a silent node's last report: it says nothing of
		// now. An instance on a node marked down is not counted as serving.
		return v
	}
	if s, ok := seen[in.ID]; ok {
		v.State, v.ObservedRole, v.LinkUp, v.Offset, v.UsedMemory = s.State, s.Role, s.LinkUp, s.Offset, s.UsedMemory
		if s.State == agent.StateRunning && !s.FailingSince.IsZero() {
			t := s.FailingSince.UTC()
			v.FailingSince = &t
		}
	}
	return v
}

// healthy says whether an instance serves in its desired role (replicas in sync).
func healthy(v Instance) bool {
	return v.State == agent.StateRunning && v.ObservedRole == v.Role && v.LinkUp
}

func dbView(st *state.State, db *state.Database, obs map[string]controller.Report) DB {
	seen := statusIndex(obs)
	haveObs := obs != nil
	v := DB{Name: db.Name, Memory: db.Memory, ShardCount: db.Spec.Shards, Replicas: db.Spec.Replicas,
		Persistence: db.Persistence, Eviction: db.Eviction, Durability: db.Durability, ReadFrom: db.ReadFrom, Password: db.Password, Owner: db.Owner, Labels: db.Labels,
		CreatedAt: db.CreatedAt, UpdatedAt: db.UpdatedAt, Shards: []Shard{}, Endpoints: []string{}}
	v.Endpoints = topology.Endpoints(st, db)
	ok := true
	for _, sh := range db.Shards {
		sv := Shard{Index: sh.Index, SlotStart: sh.SlotStart, SlotEnd: sh.SlotEnd, Replicas: []Instance{}}
		for _, in := range sh.Instances {
			iv := instanceView(st, db, in, seen, haveObs)
			ok = ok && healthy(iv)
			if in.Role == state.RoleMaster {
				sv.Master = iv
			} else {
				sv.Replicas = append(sv.Replicas, iv)
			}
		}
		v.Shards = append(v.Shards, sv)
	}
	switch {
	case !haveObs:
		v.Status = DBUnknown
	case ok:
		v.Status = DBReady
	case time.Since(db.UpdatedAt) < provisionGrace:
		v.Status = DBProvisioning
	default:
		v.Status = DBDegraded
	}
	return v
}

func nodeViews(st *state.State, obs map[string]controller.Report, members []cluster.Member, leader string) []Node {
	voter := map[string]bool{}
	for _, m := range members {
		voter[m.ID] = m.Voter
	}
	alloc := st.Allocated()
	out := []Node{}
	for _, id := range st.NodeIDs() {
		n := st.Nodes[id]
		v := Node{ID: id, Addr: n.Addr, HTTPAddr: n.HTTPAddr, RaftAddr: n.RaftAddr, Zone: n.Zone, Status: n.Status, Draining: n.Draining,
			Memory: n.Memory, Allocated: alloc[id], Voter: voter[id], Leader: id == leader}
		v.SentinelAddr = n.SentinelAddr
		for _, pi := range st.InstancesOn(id) {
			v.Instances++
			if pi.Role == state.RoleMaster {
				v.Masters++
			}
		}
		if r, ok := obs[id]; ok {
			t := r.Received.UTC()
			v.LastSeen = &t
			for _, s := range r.Instances {
				v.Used += s.UsedMemory
				if s.State == agent.StateRunning {
					v.Running++
				}
			}
		}
		out = append(out, v)
	}
	return out
}

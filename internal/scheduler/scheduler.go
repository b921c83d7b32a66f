// Package scheduler decides where redis-server instances go. It is pure:
// it takes a view of the nodes and a spec, and returns a placement or an
// error that says what is missing. The leader applies the result via Raft.
package scheduler

import (
	"fmt"
	"sort"
	"strings"

	"github.com/dustin/go-humanize"

	"github.com/marina-redis/marina/internal/slots"
	"github.com/marina-redis/marina/internal/state"
)

// Node is the scheduler's view of one node.
type Node struct {
	ID        string
	Zone      string
	Capacity  int64
	Allocated int64
	Masters   int
	Eligible  bool // up and not draining
	PortMin   int
	PortMax   int
	UsedPorts map[int]bool
}

func (n *Node) free() int64 { return n.Capacity - n.Allocated }

func (n *Node) port() (int, bool) {
	for p := n.PortMin; p <= n.PortMax; p++ {
		if !n.UsedPorts[p] {
			return p, true
		}
	}
	return 0, false
}

// View builds the scheduler's view of the nodes from the desired state.
func View(st *state.State) []Node {
	alloc := st.Allocated()
	ports := st.UsedPorts()
	masters := map[string]int{}
	for _, db := range st.DBs {
		for _, sh := range db.Shards {
			if m, ok := sh.Master(); ok {
				masters[m.Node]++
			}
		}
	}
	var out []Node
	for _, id := range st.NodeIDs() {
		n := st.Nodes[id]
		used := map[int]bool{}
		for p := range ports[id] {
			used[p] = true
		}
		out = append(out, Node{
			ID: id, Zone: n.Zone, Capacity: n.Memory, Allocated: alloc[id], Masters: masters[id],
			Eligible: n.Status == state.NodeUp && !n.Draining, PortMin: n.PortMin, PortMax: n.PortMax, UsedPorts: used,
		})
	}
	return out
}

// IDFunc names a new instance of a shard.
type IDFunc func(shard int) string

// strategy orders candidate nodes by free memory after placement:
// best-fit packs tightly, worst-fit spreads; best-fit is tried first.
type strategy int

const (
	bestFit strategy = iota
	worstFit
)

// Place chooses nodes and ports for every instance of a new database.
func Place(nodes []Node, spec state.Spec, newID IDFunc) ([]state.Shard, error) {
	for _, s := range []strategy{bestFit, worstFit} {
		work := cloneNodes(nodes)
		shards, ok := placeAll(work, spec, newID, s)
		if ok {
			return shards, nil
		}
	}
	return nil, explain(nodes, spec)
}

func placeAll(nodes []Node, spec state.Spec, newID IDFunc, s strategy) ([]state.Shard, bool) {
	ranges := slots.Split(spec.Shards)
	shards := make([]state.Shard, spec.Shards)
	for i := range shards {
		sh := state.Shard{Index: i, SlotStart: ranges[i].Start, SlotEnd: ranges[i].End}
		m, ok := pick(nodes, sh, spec.Memory, true, s)
		if !ok {
			return nil, false
		}
		sh.Instances = append(sh.Instances, take(m, spec.Memory, newID(i), state.RoleMaster))
		for r := 0; r < spec.Replicas; r++ {
			n, ok := pick(nodes, sh, spec.Memory, false, s)
			if !ok {
				return nil, false
			}
			sh.Instances = append(sh.Instances, take(n, spec.Memory, newID(i), state.RoleReplica))
		}
		shards[i] = sh
	}
	return shards, true
}

func take(n *Node, mem int64, id, role string) state.Instance {
	p, _ := n.port()
	n.UsedPorts[p] = true
	n.Allocated += mem
	if role == state.RoleMaster {
		n.Masters++
	}
	return state.Instance{ID: id, Node: n.ID, Port: p, Role: role}
}

// pick returns the best node for the next instance of shard sh, or false.
// Masters go where there are fewest masters; replicas prefer a zone the
// shard does not use yet. Ties break on free memory, then on id.
func pick(nodes []Node, sh state.Shard, mem int64, master bool, s strategy) (*Node, bool) {
	used := map[string]bool{}
	zones := map[string]bool{}
	byID := map[string]*Node{}
	for i := range nodes {
		byID[nodes[i].ID] = &nodes[i]
	}
	for _, in := range sh.Instances {
		used[in.Node] = true
		if n, ok := byID[in.Node]; ok && n.Zone != "" {
			zones[n.Zone] = true
		}
	}
	var cands []*Node
	for i := range nodes {
		n := &nodes[i]
		if !n.Eligible || used[n.ID] || n.free() < mem {
			continue
		}
		if _, ok := n.port(); !ok {
			continue
		}
		cands = append(cands, n)
	}
	if len(cands) == 0 {
		return nil, false
	}
	sort.SliceStable(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if master && a.Masters != b.Masters {
			return a.Masters < b.Masters
		}
		if za, zb := a.Zone != "" && zones[a.Zone], b.Zone != "" && zones[b.Zone]; za != zb {
			return !za
		}
		if a.free() != b.free() {
			if s == bestFit {
				return a.free() < b.free()
			}
			return a.free() > b.free()
		}
		return a.ID < b.ID
	})
	return cands[0], true
}

// explain says why a database does not fit, in terms an operator can act on.
func explain(nodes []Node, spec state.Spec) error {
	per := 1 + spec.Replicas
	total := int64(spec.Shards*per) * spec.Memory
	var eligible, withRoom int
	var free int64
	var parts []string
	for _, n := range nodes {
		if !n.Eligible {
			parts = append(parts, fmt.Sprintf("%s not available", n.ID))
			continue
		}
		eligible++
		f := max(n.free(), 0)
		free += f
		if f >= spec.Memory {
			withRoom++
		}
		if _, ok := n.port(); !ok {
			parts = append(parts, fmt.Sprintf("%s no free port", n.ID))
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %s free", n.ID, humanize.IBytes(uint64(f))))
	}
	detail := strings.Join(parts, ", ")
	mem := humanize.IBytes(uint64(spec.Memory))
	switch {
	case eligible < per:
		return fmt.Errorf("database %s does not fit: each shard needs %d distinct nodes (1 master + %d replicas), only %d nodes are available (%s)",
			spec.Name, per, spec.Replicas, eligible, detail)
	case free < total:
		return fmt.Errorf("database %s does not fit: needs %s (%d instances of %s), only %s free (%s)",
			spec.Name, humanize.IBytes(uint64(total)), spec.Shards*per, mem, humanize.IBytes(uint64(free)), detail)
	case withRoom < per:
		return fmt.Errorf("database %s does not fit: each shard needs %d distinct nodes with %s free, only %d have it (%s)",
			spec.Name, per, mem, withRoom, detail)
	default:
		return fmt.Errorf("database %s does not fit: no arrangement of %d shards x %d instances of %s on distinct nodes (%s)",
			spec.Name, spec.Shards, per, mem, detail)
	}
}

// Update computes the placement of db after a spec change: memory changes
// must fit on the nodes already holding the instances, added replicas are
// placed like new ones, removed replicas are chosen to relieve the fullest
// nodes and keep zones spread. nodes must be the view including db.
func Update(nodes []Node, db *state.Database, spec state.Spec, newID IDFunc) ([]state.Shard, error) {
	if spec.Shards != len(db.Shards) {
		return nil, fmt.Errorf("changing the number of shards (%d to %d) is not supported: create a new database and migrate", len(db.Shards), spec.Shards)
	}
	work := cloneNodes(nodes)
	byID := map[string]*Node{}
	for i := range work {
		byID[work[i].ID] = &work[i]
	}
	shards := make([]state.Shard, len(db.Shards))
	for i, sh := range db.Shards {
		shards[i] = sh
		shards[i].Instances = append([]state.Instance(nil), sh.Instances...)
	}
	// Memory delta on the nodes already hosting instances.
	if delta := spec.Memory - db.Memory; delta != 0 {
		need := map[string]int64{}
		for _, sh := range shards {
			for _, in := range sh.Instances {
				need[in.Node] += delta
			}
		}
		ids := make([]string, 0, len(need))
		for id := range need {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			n, ok := byID[id]
			if !ok {
				continue
			}
			if delta > 0 && n.free() < need[id] {
				return nil, fmt.Errorf("memory %s does not fit: node %s needs %s more, has %s free",
					humanize.IBytes(uint64(spec.Memory)), id, humanize.IBytes(uint64(need[id])), humanize.IBytes(uint64(max(n.free(), 0))))
			}
			n.Allocated += need[id]
		}
	}
	for i := range shards {
		sh := &shards[i]
		have := len(sh.Replicas())
		for have > spec.Replicas {
			victim := chooseRemoval(*sh, byID)
			out := sh.Instances[:0]
			for _, in := range sh.Instances {
				if in.ID != victim.ID {
					out = append(out, in)
				}
			}
			sh.Instances = out
			if n, ok := byID[victim.Node]; ok {
				n.Allocated -= spec.Memory
				delete(n.UsedPorts, victim.Port)
			}
			have--
		}
		for ; have < spec.Replicas; have++ {
			var n *Node
			var ok bool
			for _, s := range []strategy{bestFit, worstFit} {
				if n, ok = pick(work, *sh, spec.Memory, false, s); ok {
					break
				}
			}
			if !ok {
				return nil, fmt.Errorf("%d replicas do not fit: shard %d needs another node with %s free and no instance of the shard (%s)",
					spec.Replicas, i, humanize.IBytes(uint64(spec.Memory)), summary(work))
			}
			sh.Instances = append(sh.Instances, take(n, spec.Memory, newID(i), state.RoleReplica))
		}
	}
	return shards, nil
}

// chooseRemoval picks the replica to drop: first one sharing a zone with
// another instance of the shard, then the one on the node with least free
// memory, then the highest id (newest) for determinism.
func chooseRemoval(sh state.Shard, byID map[string]*Node) state.Instance {
	zoneCount := map[string]int{}
	for _, in := range sh.Instances {
		if n, ok := byID[in.Node]; ok && n.Zone != "" {
			zoneCount[n.Zone]++
		}
	}
	reps := sh.Replicas()
	dup := func(in state.Instance) bool {
		n, ok := byID[in.Node]
		return ok && n.Zone != "" && zoneCount[n.Zone] > 1
	}
	free := func(in state.Instance) int64 {
		if n, ok := byID[in.Node]; ok {
			return n.free()
		}
		return -1 << 62 // unknown node: remove first
	}
	sort.SliceStable(reps, func(i, j int) bool {
		a, b := reps[i], reps[j]
		if dup(a) != dup(b) {
			return dup(a)
		}
		if free(a) != free(b) {
			return free(a) < free(b)
		}
		return a.ID > b.ID
	})
	return reps[0]
}

func summary(nodes []Node) string {
	var parts []string
	for _, n := range nodes {
		if !n.Eligible {
			parts = append(parts, n.ID+" not available")
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %s free", n.ID, humanize.IBytes(uint64(max(n.free(), 0)))))
	}
	return strings.Join(parts, ", ")
}

func cloneNodes(nodes []Node) []Node {
	out := make([]Node, len(nodes))
	for i, n := range nodes {
		out[i] = n
		out[i].UsedPorts = make(map[int]bool, len(n.UsedPorts))
		for p := range n.UsedPorts {
			out[i].UsedPorts[p] = true
		}
	}
	return out
}

// PlaceReplica chooses a node and port for one new replica of shard sh,
// away from the shard's other instances (and zones when it can).
func PlaceReplica(nodes []Node, sh state.Shard, mem int64, id string) (state.Instance, error) {
	for _, s := range []strategy{bestFit, worstFit} {
		work := cloneNodes(nodes)
		if n, ok := pick(work, sh, mem, false, s); ok {
			return take(n, mem, id, state.RoleReplica), nil
		}
	}
	return state.Instance{}, fmt.Errorf("no node with %s free and no instance of shard %d (%s)", humanize.IBytes(uint64(mem)), sh.Index, summary(nodes))
}

// ProxyPort picks the lowest port free for a database endpoint in every
// node's proxy range (the same port serves it on all nodes).
func ProxyPort(st *state.State) (int, error) {
	lo, hi := 0, 1<<16
	for _, n := range st.Nodes {
		if n.ProxyMin == 0 {
			continue
		}
		lo, hi = max(lo, n.ProxyMin), min(hi, n.ProxyMax)
	}
	if lo == 0 {
		return 0, nil // no node serves endpoints
	}
	used := map[int]bool{}
	for _, db := range st.DBs {
		used[db.ProxyPort] = true
	}
	for p := lo; p <= hi; p++ {
		if !used[p] {
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free proxy port in %d-%d (the ranges all nodes share)", lo, hi)
}

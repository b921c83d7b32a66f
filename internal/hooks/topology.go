// Package hooks tells the rest of the infrastructure about topology changes:
// on every change of a database's topology seen in the local state (create,
// failover, switchover, move, replicas, delete) it runs the configured exec
// hook with a JSON document of the topology, and rewrites an HAProxy
// configuration with a write and a read backend per database and shard.
//
// The pure parts (the diff between two states, the document, the HAProxy
// rendering) take values and return values; the runner, the writer and the
// watcher do the I/O, in goroutines of their own so that a slow or failing
// hook never delays the FSM, the agent or a failover.
package hooks

import (
	"slices"
	"sort"
	"time"

	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/topology"
)

// Change kinds, the "kind" of a document and MARINA_EVENT of an exec hook.
const (
	// KindSync announces every database once when a node's hooks start, so
	// a restarted node's consumers learn what changed while it was down.
	KindSync       = "sync"
	KindCreate     = "create"
	KindFailover   = "failover"
	KindSwitchover = "switchover"
	KindMove       = "move"      // a replica replaced elsewhere (drain, heal)
	KindReplicas   = "replicas"  // replicas added or removed (db update)
	KindEndpoints  = "endpoints" // a node's endpoint came or went (node up/down, join)
	KindUpdate     = "update"    // any other topology change
	KindDelete     = "delete"
)

// DocVersion is the version of the document format.
const DocVersion = 1

// Member is one redis-server of a shard.
type Member struct {
	ID   string `json:"id"`
	Node string `json:"node"`
	Addr string `json:"addr"` // host:port
}

// ShardTopology is one shard: its slots, epoch, master and replicas.
type ShardTopology struct {
	Index     int      `json:"index"`
	SlotStart int      `json:"slot_start"`
	SlotEnd   int      `json:"slot_end"`
	Epoch     uint64   `json:"epoch"`
	Master    Member   `json:"master"`
	Replicas  []Member `json:"replicas"`
}

// Topology is what a database looks like from outside: its endpoints and
// where each shard's master and replicas run.
type Topology struct {
	Name      string          `json:"-"` // the document carries it
	ProxyPort int             `json:"proxy_port,omitempty"`
	Endpoints []string        `json:"endpoints"` // proxy port on every node that is up
	Shards    []ShardTopology `json:"shards"`
	// Secret is the internal users' password, for the HAProxy health
	// checks; never in a document.
	Secret string `json:"-"`
	// Created tells a re-created database from the one deleted before it.
	Created time.Time `json:"-"`
}

// Document is what an exec hook reads on stdin. Delete documents carry no
// topology.
type Document struct {
	Version int       `json:"version"`
	Name    string    `json:"name"`
	Kind    string    `json:"kind"`
	Time    time.Time `json:"time"`
	Node    string    `json:"node"` // the node that ran the hook
	*Topology
}

// NewDocument returns the document of a change, observed at now on node.
func NewDocument(c Change, node string, now time.Time) Document {
	return Document{Version: DocVersion, Name: c.DB, Kind: c.Kind, Time: now.UTC(), Node: node, Topology: c.Topo}
}

// TopologyOf returns a database's topology, and false while one of its
// shards is between demotion and promotion (it has no master then).
func TopologyOf(st *state.State, db *state.Database) (Topology, bool) {
	t := Topology{Name: db.Name, ProxyPort: db.ProxyPort, Endpoints: []string{}, Shards: []ShardTopology{}, Secret: db.Secret, Created: db.CreatedAt}
	t.Endpoints = topology.Endpoints(st, db)
	member := func(in state.Instance) Member {
		m := Member{ID: in.ID, Node: in.Node, Addr: topology.Addr(st, in)}
		if m.Addr == "" {
			m.Addr = topology.HostPort("", in.Port)
		}
		return m
	}
	stable := topology.Stable(db)
	for _, sh := range db.Shards {
		s := ShardTopology{Index: sh.Index, SlotStart: sh.SlotStart, SlotEnd: sh.SlotEnd, Epoch: sh.Epoch, Replicas: []Member{}}
		if m, ok := sh.Master(); ok {
			s.Master = member(m)
		}
		for _, r := range sh.Replicas() {
			s.Replicas = append(s.Replicas, member(r))
		}
		// Order by id: the state's order of replicas carries no meaning.
		sort.Slice(s.Replicas, func(i, j int) bool { return s.Replicas[i].ID < s.Replicas[j].ID })
		t.Shards = append(t.Shards, s)
	}
	return t, stable
}

// Snapshot is what the hooks last announced: the stable topology of every
// database and the id of the last event seen. The zero Snapshot is a node
// whose hooks have not started: its first Diff announces a "sync" of every
// database.
type Snapshot struct {
	Topo  map[string]Topology
	Event uint64
	// Waiting: databases not announced yet because a shard was pending
	// when first seen, with the kind to announce them with (sync, create).
	Waiting map[string]string
}

// Change is one database's topology change.
type Change struct {
	DB   string
	Kind string
	Topo *Topology // nil for a delete
}

// Diff compares the state with what was last announced and returns the
// changes, sorted by database, with the snapshot to compare the next state
// with. A database with a shard between demotion and promotion keeps its
// last announced topology until the promotion is in: a document without a
// master would tell consumers to send writes nowhere.
func Diff(prev Snapshot, st *state.State, events []state.Event) (Snapshot, []Change) {
	first := prev.Topo == nil
	next := Snapshot{Topo: make(map[string]Topology, len(st.DBs)), Event: st.EventMark}
	// Event types per database since the last diff: they tell a failover
	// from a switchover and a move from a replica count change. Events
	// past the state's mark belong to a later state: the next diff's.
	recent := map[string]map[string]bool{}
	for _, e := range events {
		if e.ID > prev.Event && e.ID <= st.EventMark && e.DB != "" {
			if recent[e.DB] == nil {
				recent[e.DB] = map[string]bool{}
			}
			recent[e.DB][e.Type] = true
		}
	}
	var out []Change
	for _, name := range st.DBNames() {
		cur, stable := TopologyOf(st, st.DBs[name])
		old, had := prev.Topo[name]
		kind := KindCreate
		if w, ok := prev.Waiting[name]; ok {
			kind = w
		} else if first {
			kind = KindSync
		}
		if !stable {
			if had {
				next.Topo[name] = old
			} else {
				if next.Waiting == nil {
					next.Waiting = map[string]string{}
				}
				next.Waiting[name] = kind
			}
			continue
		}
		next.Topo[name] = cur
		if had {
			kind = kindOf(old, cur, recent[name])
		}
		if kind != "" {
			t := cur
			out = append(out, Change{DB: name, Kind: kind, Topo: &t})
		}
	}
	for name := range prev.Topo {
		if _, ok := st.DBs[name]; !ok {
			out = append(out, Change{DB: name, Kind: KindDelete})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].DB < out[j].DB })
	return next, out
}

// kindOf names the change from old to cur ("" when there is none). The most
// telling change wins: a failover over a move over an endpoint change.
func kindOf(old, cur Topology, events map[string]bool) string {
	if !old.Created.Equal(cur.Created) {
		return KindCreate // deleted and created again since the last look
	}
	if len(old.Shards) != len(cur.Shards) || old.ProxyPort != cur.ProxyPort {
		return KindUpdate
	}
	roles, replicas, slotsMoved := false, false, false
	for i := range cur.Shards {
		o, c := old.Shards[i], cur.Shards[i]
		if o.Master != c.Master || o.Epoch != c.Epoch {
			roles = true
		}
		if !slices.Equal(o.Replicas, c.Replicas) {
			replicas = true
		}
		if o.SlotStart != c.SlotStart || o.SlotEnd != c.SlotEnd {
			slotsMoved = true
		}
	}
	switch {
	case roles:
		// A promotion logs "failover", a planned switch "switchover-started"
		// then "switchover"; with the events trimmed away, a new epoch is
		// most likely a failover.
		if (events["switchover"] || events["switchover-started"]) && !events["failover"] {
			return KindSwitchover
		}
		return KindFailover
	case replicas:
		if events["move"] || events["heal"] {
			return KindMove
		}
		return KindReplicas
	case slotsMoved:
		return KindUpdate
	case !slices.Equal(old.Endpoints, cur.Endpoints):
		return KindEndpoints
	case old.Secret != cur.Secret:
		return KindUpdate // only the HAProxy checks see it
	}
	return ""
}

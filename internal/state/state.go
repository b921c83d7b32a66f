package state

import (
	"fmt"
	"maps"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

// State is the whole desired state of a cluster.
type State struct {
	TokenHash string               `json:"token_hash"`
	Nodes     map[string]*Node     `json:"nodes"`
	DBs       map[string]*Database `json:"dbs"`
	// ZonePriority is the replica priority of a zone's instances (default
	// 100); 0 means never promoted, for replicas kept in a secondary site.
	ZonePriority map[string]int `json:"zone_priority,omitempty"`
	// CA is the cluster's certificate authority (docs/security.md).
	CA *CA `json:"ca,omitempty"`
	// EventMark is the id of the newest event when this state was
	// published: the events of the changes it holds are those up to it,
	// so a reader pairs a state with its events without a race.
	EventMark uint64 `json:"-"`
	// placed indexes DBs (placement.go); built by the first Step that
	// needs it and carried over, copied on write, by the next ones.
	placed *placement
	// views holds what is derived from a published state, computed once
	// on first use (nil on states built by hand, which compute each time).
	views *views
}

// views are sorted listings of a published state: it never changes, so
// neither do they, and every reader shares them.
type views struct {
	nodeIDs func() []string
	dbNames func() []string
}

// publish readies a state that will not change again for sharing.
func (s *State) publish() {
	s.views = &views{nodeIDs: sync.OnceValue(s.sortedNodeIDs), dbNames: sync.OnceValue(s.sortedDBNames)}
}

// CA is the cluster's certificate authority: the active CA signs node
// certificates; retired ones are still trusted while a rotation runs. The
// key is in the log like the database secrets: the log only ever crosses
// the network inside mutual TLS, and lives in 0600 files.
type CA struct {
	CertPEM string   `json:"cert_pem"`
	KeyPEM  string   `json:"key_pem"`
	Retired []string `json:"retired,omitempty"` // certificate PEMs
	// CrossPEM, during a rotation: the active CA certified by the previous
	// one, sent along with node certificates so that a node that trusts
	// only the previous CA (it was down) can still verify them.
	CrossPEM string `json:"cross_pem,omitempty"`
}

// Bundle is every trusted CA certificate, the active one first.
func (c *CA) Bundle() []byte {
	if c == nil {
		return nil
	}
	b := []byte(c.CertPEM)
	for _, r := range c.Retired {
		b = append(b, r...)
	}
	return b
}

// DefaultPriority is the replica priority of instances in zones without one.
const DefaultPriority = 100

// Priority returns the replica priority of an instance on node.
func (s *State) Priority(node string) int {
	n, ok := s.Nodes[node]
	if !ok {
		return DefaultPriority
	}
	if p, ok := s.ZonePriority[n.Zone]; ok && n.Zone != "" {
		return p
	}
	return DefaultPriority
}

// New returns an empty state.
func New() *State {
	return &State{Nodes: map[string]*Node{}, DBs: map[string]*Database{}}
}

// placement returns the placement index, built on first use: a state
// made by the FSM carries it from the state before.
func (s *State) placement() *placement {
	if s.placed == nil {
		s.placed = buildPlacement(s.DBs)
	}
	return s.placed
}

// shallow returns a copy of the state's own fields: its maps and values
// are shared, and replaced, never written, by whoever changes the copy.
func (s *State) shallow() *State {
	c := *s
	c.views = nil
	return &c
}

// Clone returns a deep copy: for code that builds a changed state by hand
// (tests, fakes of the FSM); the FSM itself copies only what changes.
func (s *State) Clone() *State {
	c := &State{TokenHash: s.TokenHash, Nodes: make(map[string]*Node, len(s.Nodes)), DBs: make(map[string]*Database, len(s.DBs)), EventMark: s.EventMark}
	if s.ZonePriority != nil {
		c.ZonePriority = maps.Clone(s.ZonePriority)
	}
	if s.CA != nil {
		ca := *s.CA
		ca.Retired = append([]string(nil), s.CA.Retired...)
		c.CA = &ca
	}
	for k, n := range s.Nodes {
		nn := *n
		c.Nodes[k] = &nn
	}
	for k, d := range s.DBs {
		c.DBs[k] = d.Clone()
	}
	return c
}

// Clone deep-copies a database.
func (d *Database) Clone() *Database {
	c := *d
	if d.Labels != nil {
		c.Labels = make(map[string]string, len(d.Labels))
		for k, v := range d.Labels {
			c.Labels[k] = v
		}
	}
	c.Shards = make([]Shard, len(d.Shards))
	for i, sh := range d.Shards {
		c.Shards[i] = sh
		c.Shards[i].Instances = append([]Instance(nil), sh.Instances...)
		c.Shards[i].Failovers = append([]time.Time(nil), sh.Failovers...)
		if sh.Pending != nil {
			p := *sh.Pending
			c.Shards[i].Pending = &p
		}
	}
	return &c
}

// NodeIDs returns node ids sorted; the slice may be shared: read it only.
func (s *State) NodeIDs() []string {
	if s.views != nil {
		return s.views.nodeIDs()
	}
	return s.sortedNodeIDs()
}

func (s *State) sortedNodeIDs() []string {
	ids := make([]string, 0, len(s.Nodes))
	for id := range s.Nodes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// DBNames returns database names sorted; the slice may be shared: read it
// only.
func (s *State) DBNames() []string {
	if s.views != nil {
		return s.views.dbNames()
	}
	return s.sortedDBNames()
}

func (s *State) sortedDBNames() []string {
	names := make([]string, 0, len(s.DBs))
	for n := range s.DBs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// PlacedInstance is an instance together with its database and shard.
type PlacedInstance struct {
	DB    *Database
	Shard int
	Instance
}

// InstancesOn lists every instance placed on a node, in a stable order.
func (s *State) InstancesOn(node string) []PlacedInstance {
	var out []PlacedInstance
	for _, name := range s.DBNames() {
		db := s.DBs[name]
		for _, sh := range db.Shards {
			for _, in := range sh.Instances {
				if in.Node == node {
					out = append(out, PlacedInstance{DB: db, Shard: sh.Index, Instance: in})
				}
			}
		}
	}
	return out
}

// Allocated returns the memory reserved on each node by placed instances.
func (s *State) Allocated() map[string]int64 {
	out := map[string]int64{}
	for _, db := range s.DBs {
		for _, sh := range db.Shards {
			for _, in := range sh.Instances {
				out[in.Node] += db.Memory
			}
		}
	}
	return out
}

// UsedPorts returns the ports taken on each node.
func (s *State) UsedPorts() map[string]map[int]bool {
	out := map[string]map[int]bool{}
	for _, db := range s.DBs {
		for _, sh := range db.Shards {
			for _, in := range sh.Instances {
				if out[in.Node] == nil {
					out[in.Node] = map[int]bool{}
				}
				out[in.Node][in.Port] = true
			}
		}
	}
	return out
}

// checkPlacement verifies a database's placement against the rest of the
// state: nodes exist, ports are in range and free, ids unique, one master per
// shard, master and replicas of a shard on distinct nodes, and capacity.
// It walks the other databases once, keeping only what touches this
// database's nodes, so it stays cheap with thousands of databases.
func (s *State) checkPlacement(db *Database) error {
	if len(db.Shards) != db.Spec.Shards {
		return fmt.Errorf("database %s: %d shards placed, spec says %d", db.Name, len(db.Shards), db.Spec.Shards)
	}
	type nodePort struct {
		node string
		port int
	}
	mine := map[nodePort]bool{}
	alloc := map[string]int64{} // this database's nodes
	ids := map[string]bool{}
	for i, sh := range db.Shards {
		if sh.Index != i {
			return fmt.Errorf("database %s: shard %d has index %d", db.Name, i, sh.Index)
		}
		masters := 0
		nodes := map[string]bool{}
		for _, in := range sh.Instances {
			if err := ValidateInstanceID(in.ID); err != nil {
				return fmt.Errorf("database %s: %v", db.Name, err)
			}
			// An instance id is NAME-SHARD-HEX of its database: ids of two
			// databases can never be equal, and no scan is needed to know.
			if !strings.HasPrefix(in.ID, db.Name+"-") || !instanceSuffixRE.MatchString(in.ID[len(db.Name)+1:]) {
				return fmt.Errorf("database %s: instance id %s is not %s-SHARD-HEX", db.Name, in.ID, db.Name)
			}
			if in.Role != RoleMaster && in.Role != RoleReplica {
				return fmt.Errorf("database %s: instance %s has role %q", db.Name, in.ID, in.Role)
			}
			n, ok := s.Nodes[in.Node]
			if !ok {
				return fmt.Errorf("database %s: instance %s on unknown node %s", db.Name, in.ID, in.Node)
			}
			if in.Port < n.PortMin || in.Port > n.PortMax {
				return fmt.Errorf("database %s: port %d outside node %s range", db.Name, in.Port, in.Node)
			}
			np := nodePort{in.Node, in.Port}
			if mine[np] {
				return fmt.Errorf("database %s: port %d already used on node %s", db.Name, in.Port, in.Node)
			}
			mine[np] = true
			if ids[in.ID] {
				return fmt.Errorf("database %s: duplicate instance id %s", db.Name, in.ID)
			}
			ids[in.ID] = true
			if nodes[in.Node] {
				return fmt.Errorf("database %s: shard %d has two instances on node %s", db.Name, i, in.Node)
			}
			nodes[in.Node] = true
			if in.Role == RoleMaster {
				masters++
			}
			alloc[in.Node] += db.Memory
		}
		want := 1
		if sh.Pending != nil {
			want = 0 // between demotion and promotion
		}
		if masters != want {
			return fmt.Errorf("database %s: shard %d has %d masters", db.Name, i, masters)
		}
	}
	// What the other databases take, from the index: everything on these
	// nodes minus what this database had before the change.
	idx := s.placement()
	if db.ProxyPort != 0 {
		if owner := idx.proxyOwner(db.ProxyPort); owner != "" && owner != db.Name {
			return fmt.Errorf("database %s: proxy port %d already used by %s", db.Name, db.ProxyPort, owner)
		}
	}
	for np := range mine {
		u, ok := idx.nodes[np.node]
		if !ok {
			continue
		}
		if owner, used := u.ports[np.port]; used && owner != db.Name {
			return fmt.Errorf("database %s: port %d already used on node %s", db.Name, np.port, np.node)
		}
	}
	if old, ok := s.DBs[db.Name]; ok {
		for _, sh := range old.Shards {
			for _, in := range sh.Instances {
				if _, used := alloc[in.Node]; used {
					alloc[in.Node] -= old.Memory
				}
			}
		}
	}
	for id := range alloc {
		if u, ok := idx.nodes[id]; ok {
			alloc[id] += u.alloc
		}
	}
	for _, id := range sortedKeys(alloc) {
		if alloc[id] > s.Nodes[id].Memory {
			return fmt.Errorf("database %s: node %s would hold %d bytes, capacity %d", db.Name, id, alloc[id], s.Nodes[id].Memory)
		}
	}
	return nil
}

var instanceSuffixRE = regexp.MustCompile(`^[0-9]{1,3}-[0-9a-f]{6}$`)

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

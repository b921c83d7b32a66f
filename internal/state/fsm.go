package state

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/dustin/go-humanize"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Command operations.
const (
	OpSetToken      = "set-token"
	OpUpsertNode    = "upsert-node"
	OpSetNodeStatus = "set-node-status"
	OpCreateDB      = "create-db"
	OpUpdateDB      = "update-db"
	OpDeleteDB      = "delete-db"
	OpSetDraining   = "set-draining"
	OpSetZone       = "set-zone-priority"
	OpDemote        = "demote"
	OpPromote       = "promote"
	OpSwitchover    = "switchover"
	OpReplace       = "replace-instance"
	OpEvent         = "event"
	OpSetCA         = "set-ca"
)

// Command is one entry of the Raft log.
type Command struct {
	Op        string    `json:"op"`
	TokenHash string    `json:"token_hash,omitempty"`
	Node      *Node     `json:"node,omitempty"`
	NodeID    string    `json:"node_id,omitempty"`
	Status    string    `json:"status,omitempty"`
	DB        *Database `json:"db,omitempty"`
	Name      string    `json:"name,omitempty"`
	// Time is the leader's clock when it decided: applying a command never
	// reads the local clock, so every node computes the same state.
	Time     time.Time `json:"time,omitempty"`
	Draining bool      `json:"draining,omitempty"`
	Zone     string    `json:"zone,omitempty"`
	Priority int       `json:"priority,omitempty"`
	Shard    int       `json:"shard,omitempty"`
	Epoch    uint64    `json:"epoch,omitempty"`
	From     string    `json:"from,omitempty"` // instance ids
	To       string    `json:"to,omitempty"`
	Add      *Instance `json:"add,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	Kind     string    `json:"kind,omitempty"`
	Event    *Event    `json:"event,omitempty"`
	CA       *CA       `json:"ca,omitempty"`
}

// Encode serialises a command for raft.Apply.
func (c Command) Encode() []byte {
	b, err := json.Marshal(c)
	if err != nil {
		panic(err) // only plain data types: cannot fail
	}
	return b
}

// ApplyError is returned by Apply when a command is refused by the state
// machine; it is a user-facing conflict, not an internal failure.
type ApplyError struct{ Msg string }

func (e *ApplyError) Error() string { return e.Msg }

// FSM is the replicated state machine.
type FSM struct {
	mu      sync.RWMutex
	st      *State
	index   uint64
	changed chan struct{}
}

// NewFSM returns an FSM holding an empty state.
func NewFSM() *FSM {
	return &FSM{st: New(), changed: make(chan struct{})}
}

// State returns a deep copy of the current state.
func (f *FSM) State() *State {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.Clone()
}

// Index returns the last applied log index.
func (f *FSM) Index() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.index
}

// Changed returns a channel closed at the next change of state.
func (f *FSM) Changed() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.changed
}

// WaitIndex blocks until the log index idx has been applied locally.
func (f *FSM) WaitIndex(ctx context.Context, idx uint64) error {
	for {
		f.mu.RLock()
		cur, ch := f.index, f.changed
		f.mu.RUnlock()
		if cur >= idx {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (f *FSM) notify() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// Apply implements raft.FSM.
func (f *FSM) Apply(l *raft.Log) interface{} {
	var c Command
	if err := json.Unmarshal(l.Data, &c); err != nil {
		return &ApplyError{Msg: fmt.Sprintf("undecodable command: %v", err)}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.index = l.Index
	err := apply(f.st, c)
	f.notify()
	if err != nil {
		return &ApplyError{Msg: err.Error()}
	}
	return nil
}

// apply is the pure transition function: it checks a command against the
// state and changes the state only when the command is valid.
func apply(st *State, c Command) error {
	switch c.Op {
	case OpSetToken:
		if st.TokenHash != "" && st.TokenHash != c.TokenHash {
			return fmt.Errorf("token already set")
		}
		st.TokenHash = c.TokenHash
	case OpSetCA:
		// The leader checked the certificates; the state keeps what it is
		// given, and refuses only a CA without a key.
		if c.CA == nil || c.CA.CertPEM == "" || c.CA.KeyPEM == "" {
			return fmt.Errorf("set-ca without a CA certificate and key")
		}
		ca := *c.CA
		ca.Retired = append([]string(nil), c.CA.Retired...)
		st.CA = &ca
		st.addEvent(Event{Time: c.Time, Type: "ca", Reason: c.Reason})
	case OpUpsertNode:
		if c.Node == nil {
			return fmt.Errorf("upsert without node")
		}
		if err := c.Node.Validate(); err != nil {
			return err
		}
		n := *c.Node
		for _, pi := range st.InstancesOn(n.ID) {
			if pi.Port < n.PortMin || pi.Port > n.PortMax {
				return fmt.Errorf("node %s: port range %d-%d excludes port %d of instance %s", n.ID, n.PortMin, n.PortMax, pi.Port, pi.ID)
			}
		}
		if old, ok := st.Nodes[n.ID]; ok {
			// Keep what the cluster decided about the node.
			n.Status, n.JoinedAt, n.Draining, n.DownSince = old.Status, old.JoinedAt, old.Draining, old.DownSince
		}
		if n.Status == "" {
			n.Status = NodeUp
		}
		st.Nodes[n.ID] = &n
	case OpSetNodeStatus:
		n, ok := st.Nodes[c.NodeID]
		if !ok {
			return fmt.Errorf("node %s not found", c.NodeID)
		}
		switch c.Status {
		case NodeUp:
			n.DownSince = time.Time{}
		case NodeDown:
			if n.Status != NodeDown {
				n.DownSince = c.Time
			}
		default:
			return fmt.Errorf("invalid node status %q", c.Status)
		}
		n.Status = c.Status
	case OpSetDraining:
		n, ok := st.Nodes[c.NodeID]
		if !ok {
			return fmt.Errorf("node %s not found", c.NodeID)
		}
		n.Draining = c.Draining
		kind := "undrain"
		if c.Draining {
			kind = "drain"
		}
		st.addEvent(Event{Time: c.Time, Type: kind, Node: c.NodeID, Reason: c.Reason})
	case OpSetZone:
		if c.Zone == "" || c.Priority < 0 || c.Priority > 1000 {
			return fmt.Errorf("zone priority needs a zone and a priority 0..1000")
		}
		if st.ZonePriority == nil {
			st.ZonePriority = map[string]int{}
		}
		st.ZonePriority[c.Zone] = c.Priority
	case OpDemote, OpPromote, OpSwitchover, OpReplace:
		return applyShard(st, c)
	case OpEvent:
		if c.Event == nil {
			return fmt.Errorf("event command without event")
		}
		st.addEvent(*c.Event)
	case OpCreateDB:
		if c.DB == nil {
			return fmt.Errorf("create without database")
		}
		if _, ok := st.DBs[c.DB.Name]; ok {
			return fmt.Errorf("database %s already exists", c.DB.Name)
		}
		if err := c.DB.Spec.Validate(); err != nil {
			return err
		}
		if err := st.checkPlacement(c.DB); err != nil {
			return err
		}
		st.DBs[c.DB.Name] = c.DB.Clone()
		st.addEvent(Event{Time: c.DB.CreatedAt, Type: "db-created", DB: c.DB.Name,
			Reason: fmt.Sprintf("%d shard(s) x %d replica(s), %s per shard", c.DB.Spec.Shards, c.DB.Spec.Replicas, humanize.IBytes(uint64(c.DB.Memory)))})
	case OpUpdateDB:
		if c.DB == nil {
			return fmt.Errorf("update without database")
		}
		cur, ok := st.DBs[c.DB.Name]
		if !ok {
			return fmt.Errorf("database %s not found", c.DB.Name)
		}
		// The update was computed from a copy: refuse it if a failover or
		// switchover changed the shards since (it would undo them).
		if len(cur.Shards) != len(c.DB.Shards) {
			return fmt.Errorf("database %s changed during the update; retry", c.DB.Name)
		}
		for i := range cur.Shards {
			if cur.Shards[i].Epoch != c.DB.Shards[i].Epoch || cur.Shards[i].Pending != nil {
				return fmt.Errorf("database %s shard %d changed during the update (failover); retry", c.DB.Name, i)
			}
		}
		if err := c.DB.Spec.Validate(); err != nil {
			return err
		}
		if err := st.checkPlacement(c.DB); err != nil {
			return err
		}
		st.DBs[c.DB.Name] = c.DB.Clone()
		st.addEvent(Event{Time: c.DB.UpdatedAt, Type: "db-updated", DB: c.DB.Name, Reason: c.Reason})
	case OpDeleteDB:
		if _, ok := st.DBs[c.Name]; !ok {
			return fmt.Errorf("database %s not found", c.Name)
		}
		delete(st.DBs, c.Name)
		st.addEvent(Event{Time: c.Time, Type: "db-deleted", DB: c.Name, Reason: c.Reason})
	default:
		return fmt.Errorf("unknown command %q", c.Op)
	}
	return nil
}

// Snapshot implements raft.FSM.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	b, err := json.Marshal(snapshotData{Index: f.index, State: f.st})
	if err != nil {
		return nil, err
	}
	return snapshot(b), nil
}

// Restore implements raft.FSM.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	data := snapshotData{State: New()}
	if err := json.NewDecoder(rc).Decode(&data); err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	st := data.State
	if st.Nodes == nil {
		st.Nodes = map[string]*Node{}
	}
	if st.DBs == nil {
		st.DBs = map[string]*Database{}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st = st
	f.index = data.Index
	f.notify()
	return nil
}

// snapshotData is what a snapshot holds: the state and the index it is at.
type snapshotData struct {
	Index uint64 `json:"index"`
	State *State `json:"state"`
}

type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s snapshot) Release() {}

// applyShard applies a role change or replacement to one shard. Each
// carries the epoch it was decided in and is refused if the shard has moved
// on: two leaders, or one leader retrying, can never apply a change twice.
func applyShard(st *State, c Command) error {
	db, ok := st.DBs[c.Name]
	if !ok {
		return fmt.Errorf("database %s not found", c.Name)
	}
	if c.Shard < 0 || c.Shard >= len(db.Shards) {
		return fmt.Errorf("database %s has no shard %d", c.Name, c.Shard)
	}
	sh := &db.Shards[c.Shard]
	if c.Epoch != sh.Epoch {
		return fmt.Errorf("database %s shard %d: epoch %d, decision was for %d", c.Name, c.Shard, sh.Epoch, c.Epoch)
	}
	find := func(id string) (*Instance, error) {
		for i := range sh.Instances {
			if sh.Instances[i].ID == id {
				return &sh.Instances[i], nil
			}
		}
		return nil, fmt.Errorf("database %s shard %d has no instance %s", c.Name, c.Shard, id)
	}
	ev := Event{Time: c.Time, DB: c.Name, Shard: c.Shard, Reason: c.Reason}
	switch c.Op {
	case OpDemote:
		if sh.Pending != nil {
			return fmt.Errorf("database %s shard %d: failover already in progress", c.Name, c.Shard)
		}
		old, err := find(c.From)
		if err != nil {
			return err
		}
		if old.Role != RoleMaster {
			return fmt.Errorf("instance %s is not the master", c.From)
		}
		old.Role = RoleReplica
		sh.Epoch++
		sh.Pending = &Pending{Since: c.Time, Old: c.From, Reason: c.Reason}
		ev.Type, ev.Instance, ev.Node, ev.Epoch = "failover-started", old.ID, old.Node, sh.Epoch
		if c.Kind == KindSwitchover {
			// The first step of a planned switchover: the old master's
			// agent fences it before anything is promoted.
			sh.Pending.Kind, sh.Pending.To = KindSwitchover, c.To
			ev.Type = "switchover-started"
		}
	case OpPromote:
		if sh.Pending == nil {
			return fmt.Errorf("database %s shard %d: no failover in progress", c.Name, c.Shard)
		}
		nm, err := find(c.To)
		if err != nil {
			return err
		}
		nm.Role = RoleMaster
		ev.Type, ev.Instance, ev.Node, ev.Epoch = "failover", nm.ID, nm.Node, sh.Epoch
		ev.Reason = fmt.Sprintf("promoted %s (was master: %s) after %s: %s", nm.ID, sh.Pending.Old, c.Time.Sub(sh.Pending.Since).Round(time.Millisecond), sh.Pending.Reason)
		switch c.Kind {
		case KindSwitchover:
			ev.Type = "switchover" // planned: not counted for flap damping
		case KindAborted:
			ev.Type = "switchover-aborted"
			ev.Reason = fmt.Sprintf("%s stays master: %s", nm.ID, c.Reason)
		default:
			sh.Failovers = append(sh.Failovers, c.Time)
			if len(sh.Failovers) > 20 {
				sh.Failovers = sh.Failovers[len(sh.Failovers)-20:]
			}
		}
		sh.Pending = nil
	case OpSwitchover:
		if sh.Pending != nil {
			return fmt.Errorf("database %s shard %d: failover in progress", c.Name, c.Shard)
		}
		from, err := find(c.From)
		if err != nil {
			return err
		}
		to, err := find(c.To)
		if err != nil {
			return err
		}
		if from.Role != RoleMaster || to.Role != RoleReplica {
			return fmt.Errorf("switchover needs master %s and replica %s", c.From, c.To)
		}
		from.Role, to.Role = RoleReplica, RoleMaster
		sh.Epoch++
		ev.Type, ev.Instance, ev.Node, ev.Epoch = "switchover", to.ID, to.Node, sh.Epoch
	case OpReplace:
		if c.Add == nil {
			return fmt.Errorf("replace without a new instance")
		}
		old, err := find(c.From)
		if err != nil {
			return err
		}
		if old.Role != RoleReplica {
			return fmt.Errorf("only replicas are replaced; %s is %s", old.ID, old.Role)
		}
		add := *c.Add
		add.Role = RoleReplica
		next := *db.Clone()
		nsh := &next.Shards[c.Shard]
		out := nsh.Instances[:0]
		for _, in := range nsh.Instances {
			if in.ID != c.From {
				out = append(out, in)
			}
		}
		nsh.Instances = append(out, add)
		if err := st.checkPlacement(&next); err != nil {
			return err
		}
		st.DBs[c.Name] = &next
		ev.Type, ev.Instance, ev.Node = c.Kind, add.ID, add.Node
		if ev.Type == "" {
			ev.Type = "heal"
		}
		ev.Reason = fmt.Sprintf("replaced %s on %s by %s on %s: %s", old.ID, old.Node, add.ID, add.Node, c.Reason)
	}
	st.addEvent(ev)
	return nil
}

func (st *State) addEvent(e Event) {
	st.NextEvent++
	e.ID = st.NextEvent
	st.Events = append(st.Events, e)
	if len(st.Events) > MaxEvents {
		st.Events = append([]Event(nil), st.Events[len(st.Events)-MaxEvents:]...)
	}
}

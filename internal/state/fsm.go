package state

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"

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
			n.Status = old.Status
			n.JoinedAt = old.JoinedAt
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
		case NodeUp, NodeDown, NodeDraining:
		default:
			return fmt.Errorf("invalid node status %q", c.Status)
		}
		n.Status = c.Status
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
	case OpUpdateDB:
		if c.DB == nil {
			return fmt.Errorf("update without database")
		}
		if _, ok := st.DBs[c.DB.Name]; !ok {
			return fmt.Errorf("database %s not found", c.DB.Name)
		}
		if err := c.DB.Spec.Validate(); err != nil {
			return err
		}
		if err := st.checkPlacement(c.DB); err != nil {
			return err
		}
		st.DBs[c.DB.Name] = c.DB.Clone()
	case OpDeleteDB:
		if _, ok := st.DBs[c.Name]; !ok {
			return fmt.Errorf("database %s not found", c.Name)
		}
		delete(st.DBs, c.Name)
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

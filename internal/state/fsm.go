package state

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// ApplyError is returned by Apply when a command is refused by the state
// machine; it is a user-facing conflict, not an internal failure.
type ApplyError struct{ Msg string }

func (e *ApplyError) Error() string { return e.Msg }

// FSM is the replicated state machine. Every apply builds the next state,
// copying only what the command changes, and publishes it with an atomic
// pointer: State() is free, and what it returns never changes. Readers
// must not modify it.
type FSM struct {
	mu      sync.Mutex // serialises Apply and Restore
	st      atomic.Pointer[State]
	index   atomic.Uint64
	changed signal // the desired state changed
	applied signal // the applied index moved
	events  *EventLog
}

// NewFSM returns an FSM holding an empty state.
func NewFSM() *FSM {
	f := &FSM{changed: newSignal(), applied: newSignal(), events: newEventLog()}
	f.st.Store(New())
	return f
}

// State returns the current state: shared and immutable, read it only.
func (f *FSM) State() *State { return f.st.Load() }

// Events returns the event log.
func (f *FSM) Events() *EventLog { return f.events }

// Index returns the last applied log index.
func (f *FSM) Index() uint64 { return f.index.Load() }

// Changed returns a channel closed at the next change of the desired state
// (events and refused commands do not change it).
func (f *FSM) Changed() <-chan struct{} { return f.changed.wait() }

// Applied returns a channel closed when the next log entry is applied,
// whatever it did.
func (f *FSM) Applied() <-chan struct{} { return f.applied.wait() }

// WaitIndex blocks until the log index idx has been applied locally.
func (f *FSM) WaitIndex(ctx context.Context, idx uint64) error {
	for {
		ch := f.applied.wait()
		if f.index.Load() >= idx {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Apply implements raft.FSM.
func (f *FSM) Apply(l *raft.Log) interface{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := Decode(l.Data)
	var next *State
	var evs []Event
	if err == nil {
		next, evs, err = Step(f.st.Load(), c)
	}
	f.publish(l.Index, next, evs)
	if err != nil {
		return &ApplyError{Msg: err.Error()}
	}
	return nil
}

// publish makes a new state and its events visible, then wakes whoever
// waits: events first, so a reader of the new state finds its events; the
// state before the index, so WaitIndex returns to a state that has it.
func (f *FSM) publish(idx uint64, next *State, evs []Event) {
	mark := f.events.add(evs)
	changed := next != nil && next != f.st.Load()
	if changed {
		next.EventMark = mark // not yet published: still ours to write
		f.st.Store(next)
	}
	f.index.Store(idx)
	if changed {
		f.changed.fire()
	}
	f.applied.fire()
}

// Step is the pure transition function: it checks a command against the
// state and returns the next state (cur itself when the command changed
// nothing) and the events the command records. cur's data is never
// modified; only its derived placement index is built, once, if it has
// none yet (by the FSM's single writer, or a test's own state).
func Step(cur *State, c Command) (*State, []Event, error) {
	cur.placement() // before the copy, so the copy shares it
	t := &txn{cur: cur, next: cur.shallow()}
	if err := c.apply(t); err != nil {
		return cur, nil, err
	}
	if !t.dirty {
		return cur, t.events, nil
	}
	t.next.publish()
	return t.next, t.events, nil
}

// txn builds the next state: the first change to a map copies the map,
// the entries it replaces are new values, nothing published is written.
type txn struct {
	cur, next   *State
	dirty       bool
	nodesCopied bool
	dbsCopied   bool
	placed      *placementWriter
	events      []Event
}

// mut returns the next state for a change of its own fields.
func (t *txn) mut() *State {
	t.dirty = true
	return t.next
}

func (t *txn) putNode(n *Node) {
	if !t.nodesCopied {
		t.next.Nodes, t.nodesCopied = maps.Clone(t.next.Nodes), true
	}
	t.next.Nodes[n.ID] = n
	t.dirty = true
}

func (t *txn) putDB(db *Database) {
	t.unplace(db.Name)
	t.next.DBs[db.Name] = db
	t.next.placed.add(db, t.placed)
}

func (t *txn) deleteDB(name string) {
	t.unplace(name)
	delete(t.next.DBs, name)
}

// unplace readies the databases and the placement index for a change of
// one database, and takes that database's old placement out of the index.
func (t *txn) unplace(name string) {
	if !t.dbsCopied {
		t.next.DBs, t.dbsCopied = maps.Clone(t.next.DBs), true
	}
	if t.placed == nil {
		p := *t.next.placed
		t.next.placed = &p
		t.placed = &placementWriter{nodes: map[string]bool{}, buckets: map[int]bool{}}
	}
	if old, ok := t.next.DBs[name]; ok {
		t.next.placed.remove(old, t.placed)
	}
	t.dirty = true
}

func (t *txn) event(e Event) { t.events = append(t.events, e) }

// shard applies a change to a copy of one shard, refused unless the
// database and shard exist and the shard is still at the decision's epoch.
func (t *txn) shard(ref ShardRef, change func(db *Database, sh *Shard, ev *Event) error) error {
	cur, ok := t.next.DBs[ref.Name]
	if !ok {
		return fmt.Errorf("database %s not found", ref.Name)
	}
	if ref.Shard < 0 || ref.Shard >= len(cur.Shards) {
		return fmt.Errorf("database %s has no shard %d", ref.Name, ref.Shard)
	}
	if e := cur.Shards[ref.Shard].Epoch; ref.Epoch != e {
		return fmt.Errorf("database %s shard %d: epoch %d, decision was for %d", ref.Name, ref.Shard, e, ref.Epoch)
	}
	db := cur.Clone()
	var ev Event
	if err := change(db, &db.Shards[ref.Shard], &ev); err != nil {
		return err
	}
	t.putDB(db)
	t.event(ev)
	return nil
}

// Snapshot implements raft.FSM: it captures the published state and
// events; Persist does the encoding, so Apply is never held up by it.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ev := f.events.cur.Load()
	return &snapshot{data: snapshotData{Index: f.index.Load(), State: f.st.Load(), Events: ev.list, LastEvent: ev.last}}, nil
}

// Restore implements raft.FSM.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var data struct {
		Index     uint64          `json:"index"`
		State     json.RawMessage `json:"state"`
		Events    []Event         `json:"events"`
		LastEvent uint64          `json:"last_event"`
	}
	if err := json.NewDecoder(rc).Decode(&data); err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	st := New()
	// Snapshots written before the event log held the events in the state.
	var legacy struct {
		Events    []Event `json:"events"`
		NextEvent uint64  `json:"next_event"`
	}
	if len(data.State) > 0 {
		if err := json.Unmarshal(data.State, st); err != nil {
			return fmt.Errorf("restore snapshot: %w", err)
		}
		if err := json.Unmarshal(data.State, &legacy); err != nil {
			return fmt.Errorf("restore snapshot: %w", err)
		}
	}
	if data.Events == nil && data.LastEvent == 0 {
		data.Events, data.LastEvent = legacy.Events, legacy.NextEvent
	}
	if st.Nodes == nil {
		st.Nodes = map[string]*Node{}
	}
	if st.DBs == nil {
		st.DBs = map[string]*Database{}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events.reset(data.Events, data.LastEvent)
	st.EventMark = f.events.Last()
	st.publish()
	f.st.Store(st)
	f.index.Store(data.Index)
	f.changed.fire()
	f.applied.fire()
	return nil
}

// snapshotData is what a snapshot holds: the state, the index it is at and
// the event log.
type snapshotData struct {
	Index     uint64  `json:"index"`
	State     *State  `json:"state"`
	Events    []Event `json:"events"`
	LastEvent uint64  `json:"last_event"`
}

type snapshot struct{ data snapshotData }

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	err := json.NewEncoder(sink).Encode(s.data)
	if err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *snapshot) Release() {}

package state

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/dustin/go-humanize"
)

// Command is one entry of the Raft log: one payload type per operation,
// applied by its own method. On the wire a command is a JSON object with
// "op" and the payload's fields; the field names are those of the single
// struct the log used before typed commands, so logs and snapshots written
// then decode into the same types now.
type Command interface {
	Op() string
	apply(t *txn) error
}

// Operation names, as written in the log.
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

// decoders maps an operation to a new, empty payload of its type.
var decoders = map[string]func() Command{
	OpSetToken:      func() Command { return &SetToken{} },
	OpUpsertNode:    func() Command { return &UpsertNode{} },
	OpSetNodeStatus: func() Command { return &SetNodeStatus{} },
	OpCreateDB:      func() Command { return &CreateDB{} },
	OpUpdateDB:      func() Command { return &UpdateDB{} },
	OpDeleteDB:      func() Command { return &DeleteDB{} },
	OpSetDraining:   func() Command { return &SetDraining{} },
	OpSetZone:       func() Command { return &SetZonePriority{} },
	OpDemote:        func() Command { return &Demote{} },
	OpPromote:       func() Command { return &Promote{} },
	OpSwitchover:    func() Command { return &Switchover{} },
	OpReplace:       func() Command { return &ReplaceInstance{} },
	OpEvent:         func() Command { return &AddEvent{} },
	OpSetCA:         func() Command { return &SetCA{} },
}

// Encode serialises a command for raft.Apply.
func Encode(c Command) []byte {
	body, err := json.Marshal(c)
	if err != nil {
		panic(err) // only plain data types: cannot fail
	}
	op, _ := json.Marshal(c.Op())
	out := make([]byte, 0, len(body)+len(op)+8)
	out = append(out, `{"op":`...)
	out = append(out, op...)
	if len(body) > 2 { // not "{}"
		out = append(out, ',')
	}
	return append(out, body[1:]...)
}

// Decode reads a command written by Encode, or by the untyped format.
func Decode(b []byte) (Command, error) {
	var head struct {
		Op string `json:"op"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("undecodable command: %v", err)
	}
	mk, ok := decoders[head.Op]
	if !ok {
		return nil, fmt.Errorf("unknown command %q", head.Op)
	}
	c := mk()
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("undecodable %s command: %v", head.Op, err)
	}
	return c, nil
}

// SetToken sets the API token's hash, once.
type SetToken struct {
	TokenHash string `json:"token_hash,omitempty"`
}

func (*SetToken) Op() string { return OpSetToken }

func (c *SetToken) apply(t *txn) error {
	if t.next.TokenHash != "" && t.next.TokenHash != c.TokenHash {
		return fmt.Errorf("token already set")
	}
	t.mut().TokenHash = c.TokenHash
	return nil
}

// SetCA replaces the cluster's certificate authority (docs/security.md).
type SetCA struct {
	CA     *CA       `json:"ca,omitempty"`
	Time   time.Time `json:"time,omitempty"`
	Reason string    `json:"reason,omitempty"`
}

func (*SetCA) Op() string { return OpSetCA }

func (c *SetCA) apply(t *txn) error {
	// The leader checked the certificates; the state keeps what it is
	// given, and refuses only a CA without a key.
	if c.CA == nil || c.CA.CertPEM == "" || c.CA.KeyPEM == "" {
		return fmt.Errorf("set-ca without a CA certificate and key")
	}
	ca := *c.CA
	ca.Retired = append([]string(nil), c.CA.Retired...)
	t.mut().CA = &ca
	t.event(Event{Time: c.Time, Type: "ca", Reason: c.Reason})
	return nil
}

// UpsertNode adds a node or updates what it reports about itself.
type UpsertNode struct {
	Node *Node `json:"node,omitempty"`
}

func (*UpsertNode) Op() string { return OpUpsertNode }

func (c *UpsertNode) apply(t *txn) error {
	if c.Node == nil {
		return fmt.Errorf("upsert without node")
	}
	if err := c.Node.Validate(); err != nil {
		return err
	}
	n := *c.Node
	for _, pi := range t.next.InstancesOn(n.ID) {
		if pi.Port < n.PortMin || pi.Port > n.PortMax {
			return fmt.Errorf("node %s: port range %d-%d excludes port %d of instance %s", n.ID, n.PortMin, n.PortMax, pi.Port, pi.ID)
		}
	}
	if old, ok := t.next.Nodes[n.ID]; ok {
		// Keep what the cluster decided about the node.
		n.Status, n.JoinedAt, n.Draining, n.DownSince = old.Status, old.JoinedAt, old.Draining, old.DownSince
	}
	if n.Status == "" {
		n.Status = NodeUp
	}
	t.putNode(&n)
	return nil
}

// SetNodeStatus marks a node up or down (the leader, from heartbeats).
type SetNodeStatus struct {
	NodeID string `json:"node_id,omitempty"`
	Status string `json:"status,omitempty"`
	// Time is the leader's clock when it decided: applying a command never
	// reads the local clock, so every node computes the same state.
	Time time.Time `json:"time,omitempty"`
}

func (*SetNodeStatus) Op() string { return OpSetNodeStatus }

func (c *SetNodeStatus) apply(t *txn) error {
	old, ok := t.next.Nodes[c.NodeID]
	if !ok {
		return fmt.Errorf("node %s not found", c.NodeID)
	}
	n := *old
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
	t.putNode(&n)
	return nil
}

// SetDraining sets or clears an operator's drain of a node.
type SetDraining struct {
	NodeID   string    `json:"node_id,omitempty"`
	Draining bool      `json:"draining,omitempty"`
	Time     time.Time `json:"time,omitempty"`
	Reason   string    `json:"reason,omitempty"`
}

func (*SetDraining) Op() string { return OpSetDraining }

func (c *SetDraining) apply(t *txn) error {
	old, ok := t.next.Nodes[c.NodeID]
	if !ok {
		return fmt.Errorf("node %s not found", c.NodeID)
	}
	n := *old
	n.Draining = c.Draining
	t.putNode(&n)
	kind := "undrain"
	if c.Draining {
		kind = "drain"
	}
	t.event(Event{Time: c.Time, Type: kind, Node: c.NodeID, Reason: c.Reason})
	return nil
}

// SetZonePriority sets the replica priority of a zone.
type SetZonePriority struct {
	Zone     string `json:"zone,omitempty"`
	Priority int    `json:"priority,omitempty"`
}

func (*SetZonePriority) Op() string { return OpSetZone }

func (c *SetZonePriority) apply(t *txn) error {
	if c.Zone == "" || c.Priority < 0 || c.Priority > 1000 {
		return fmt.Errorf("zone priority needs a zone and a priority 0..1000")
	}
	zp := make(map[string]int, len(t.next.ZonePriority)+1)
	for k, v := range t.next.ZonePriority {
		zp[k] = v
	}
	zp[c.Zone] = c.Priority
	t.mut().ZonePriority = zp
	return nil
}

// AddEvent records an event reported by an agent or the leader.
type AddEvent struct {
	Event *Event `json:"event,omitempty"`
}

func (*AddEvent) Op() string { return OpEvent }

func (c *AddEvent) apply(t *txn) error {
	if c.Event == nil {
		return fmt.Errorf("event command without event")
	}
	t.event(*c.Event)
	return nil
}

// CreateDB adds a database with the placement the leader chose.
type CreateDB struct {
	DB *Database `json:"db,omitempty"`
}

func (*CreateDB) Op() string { return OpCreateDB }

func (c *CreateDB) apply(t *txn) error {
	if c.DB == nil {
		return fmt.Errorf("create without database")
	}
	if _, ok := t.next.DBs[c.DB.Name]; ok {
		return fmt.Errorf("database %s already exists", c.DB.Name)
	}
	if err := c.DB.Spec.Validate(); err != nil {
		return err
	}
	if err := t.next.checkPlacement(c.DB); err != nil {
		return err
	}
	t.putDB(c.DB.Clone())
	t.event(Event{Time: c.DB.CreatedAt, Type: "db-created", DB: c.DB.Name,
		Reason: fmt.Sprintf("%d shard(s) x %d replica(s), %s per shard", c.DB.Spec.Shards, c.DB.Spec.Replicas, humanize.IBytes(uint64(c.DB.Memory)))})
	return nil
}

// UpdateDB replaces a database's spec and placement.
type UpdateDB struct {
	DB     *Database `json:"db,omitempty"`
	Reason string    `json:"reason,omitempty"`
}

func (*UpdateDB) Op() string { return OpUpdateDB }

func (c *UpdateDB) apply(t *txn) error {
	if c.DB == nil {
		return fmt.Errorf("update without database")
	}
	cur, ok := t.next.DBs[c.DB.Name]
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
	if err := t.next.checkPlacement(c.DB); err != nil {
		return err
	}
	t.putDB(c.DB.Clone())
	t.event(Event{Time: c.DB.UpdatedAt, Type: "db-updated", DB: c.DB.Name, Reason: c.Reason})
	return nil
}

// DeleteDB removes a database.
type DeleteDB struct {
	Name   string    `json:"name,omitempty"`
	Time   time.Time `json:"time,omitempty"`
	Reason string    `json:"reason,omitempty"`
}

func (*DeleteDB) Op() string { return OpDeleteDB }

func (c *DeleteDB) apply(t *txn) error {
	if _, ok := t.next.DBs[c.Name]; !ok {
		return fmt.Errorf("database %s not found", c.Name)
	}
	t.deleteDB(c.Name)
	t.event(Event{Time: c.Time, Type: "db-deleted", DB: c.Name, Reason: c.Reason})
	return nil
}

// ShardRef names the shard a role change is for and the epoch it was
// decided in: a change is refused once the shard has moved on, so two
// leaders, or one leader retrying, can never apply it twice.
type ShardRef struct {
	Name  string `json:"name,omitempty"`
	Shard int    `json:"shard,omitempty"`
	Epoch uint64 `json:"epoch,omitempty"`
}

// Demote takes the master role from an instance: the shard has no master
// until the Promote that ends the failover.
type Demote struct {
	ShardRef
	From string `json:"from,omitempty"`
	// Kind KindSwitchover: the first step of a planned switchover to To.
	Kind   string    `json:"kind,omitempty"`
	To     string    `json:"to,omitempty"`
	Reason string    `json:"reason,omitempty"`
	Time   time.Time `json:"time,omitempty"`
	// FailedSince: when the master began to fail (Pending.FailedSince).
	FailedSince time.Time `json:"failed_since,omitempty"`
}

func (*Demote) Op() string { return OpDemote }

func (c *Demote) apply(t *txn) error {
	return t.shard(c.ShardRef, func(db *Database, sh *Shard, ev *Event) error {
		if sh.Pending != nil {
			return fmt.Errorf("database %s shard %d: failover already in progress", c.Name, c.Shard)
		}
		old, err := sh.find(c.Name, c.From)
		if err != nil {
			return err
		}
		if old.Role != RoleMaster {
			return fmt.Errorf("instance %s is not the master", c.From)
		}
		old.Role = RoleReplica
		sh.Epoch++
		sh.Pending = &Pending{Since: c.Time, FailedSince: c.FailedSince, Old: c.From, Reason: c.Reason}
		*ev = Event{Time: c.Time, DB: c.Name, Shard: c.Shard, Reason: c.Reason,
			Type: "failover-started", Instance: old.ID, Node: old.Node, Epoch: sh.Epoch}
		if c.Kind == KindSwitchover {
			// The old master's agent fences it before anything is promoted.
			sh.Pending.Kind, sh.Pending.To = KindSwitchover, c.To
			ev.Type = "switchover-started"
		}
		return nil
	})
}

// Promote gives the master role to an instance and ends a failover (or a
// planned switchover; Kind says which, KindAborted one that gave the role
// back).
type Promote struct {
	ShardRef
	To     string    `json:"to,omitempty"`
	Kind   string    `json:"kind,omitempty"`
	Reason string    `json:"reason,omitempty"`
	Time   time.Time `json:"time,omitempty"`
}

func (*Promote) Op() string { return OpPromote }

// MaxFailoverHistory is how many failover times a shard keeps for flap
// damping.
const MaxFailoverHistory = 20

func (c *Promote) apply(t *txn) error {
	return t.shard(c.ShardRef, func(db *Database, sh *Shard, ev *Event) error {
		if sh.Pending == nil {
			return fmt.Errorf("database %s shard %d: no failover in progress", c.Name, c.Shard)
		}
		nm, err := sh.find(c.Name, c.To)
		if err != nil {
			return err
		}
		nm.Role = RoleMaster
		*ev = Event{Time: c.Time, DB: c.Name, Shard: c.Shard, Type: "failover", Instance: nm.ID, Node: nm.Node, Epoch: sh.Epoch,
			Reason: fmt.Sprintf("promoted %s (was master: %s) after %s: %s", nm.ID, sh.Pending.Old, c.Time.Sub(sh.Pending.Since).Round(time.Millisecond), sh.Pending.Reason)}
		switch c.Kind {
		case KindSwitchover:
			ev.Type = "switchover" // planned: not counted for flap damping
		case KindAborted:
			ev.Type = "switchover-aborted"
			ev.Reason = fmt.Sprintf("%s stays master: %s", nm.ID, c.Reason)
		default:
			sh.Failovers = append(sh.Failovers, c.Time)
			if len(sh.Failovers) > MaxFailoverHistory {
				sh.Failovers = sh.Failovers[len(sh.Failovers)-MaxFailoverHistory:]
			}
		}
		sh.Pending = nil
		return nil
	})
}

// Switchover swaps master and replica in one step.
type Switchover struct {
	ShardRef
	From   string    `json:"from,omitempty"`
	To     string    `json:"to,omitempty"`
	Reason string    `json:"reason,omitempty"`
	Time   time.Time `json:"time,omitempty"`
}

func (*Switchover) Op() string { return OpSwitchover }

func (c *Switchover) apply(t *txn) error {
	return t.shard(c.ShardRef, func(db *Database, sh *Shard, ev *Event) error {
		if sh.Pending != nil {
			return fmt.Errorf("database %s shard %d: failover in progress", c.Name, c.Shard)
		}
		from, err := sh.find(c.Name, c.From)
		if err != nil {
			return err
		}
		to, err := sh.find(c.Name, c.To)
		if err != nil {
			return err
		}
		if from.Role != RoleMaster || to.Role != RoleReplica {
			return fmt.Errorf("switchover needs master %s and replica %s", c.From, c.To)
		}
		from.Role, to.Role = RoleReplica, RoleMaster
		sh.Epoch++
		*ev = Event{Time: c.Time, DB: c.Name, Shard: c.Shard, Reason: c.Reason, Type: "switchover", Instance: to.ID, Node: to.Node, Epoch: sh.Epoch}
		return nil
	})
}

// ReplaceInstance replaces a replica by a new one (healing, draining).
type ReplaceInstance struct {
	ShardRef
	From   string    `json:"from,omitempty"`
	Add    *Instance `json:"add,omitempty"`
	Kind   string    `json:"kind,omitempty"` // the event's type: "heal" when empty
	Reason string    `json:"reason,omitempty"`
	Time   time.Time `json:"time,omitempty"`
}

func (*ReplaceInstance) Op() string { return OpReplace }

func (c *ReplaceInstance) apply(t *txn) error {
	return t.shard(c.ShardRef, func(db *Database, sh *Shard, ev *Event) error {
		if c.Add == nil {
			return fmt.Errorf("replace without a new instance")
		}
		old, err := sh.find(c.Name, c.From)
		if err != nil {
			return err
		}
		if old.Role != RoleReplica {
			return fmt.Errorf("only replicas are replaced; %s is %s", old.ID, old.Role)
		}
		gone := *old
		add := *c.Add
		add.Role = RoleReplica
		out := sh.Instances[:0]
		for _, in := range sh.Instances {
			if in.ID != c.From {
				out = append(out, in)
			}
		}
		sh.Instances = append(out, add)
		if err := t.next.checkPlacement(db); err != nil {
			return err
		}
		*ev = Event{Time: c.Time, DB: c.Name, Shard: c.Shard, Type: c.Kind, Instance: add.ID, Node: add.Node,
			Reason: fmt.Sprintf("replaced %s on %s by %s on %s: %s", gone.ID, gone.Node, add.ID, add.Node, c.Reason)}
		if ev.Type == "" {
			ev.Type = "heal"
		}
		return nil
	})
}

// find returns the shard's instance with this id.
func (sh *Shard) find(db, id string) (*Instance, error) {
	for i := range sh.Instances {
		if sh.Instances[i].ID == id {
			return &sh.Instances[i], nil
		}
	}
	return nil, fmt.Errorf("database %s shard %d has no instance %s", db, sh.Index, id)
}

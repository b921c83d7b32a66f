// Package state holds Marina's desired state: the types replicated through
// Raft and the finite state machine that applies commands to them.
package state

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
)

// Node statuses, set by the leader from heartbeats. Draining is a separate
// flag set by operators, so liveness changes never undo a drain.
const (
	NodeUp   = "up"
	NodeDown = "down"
)

// Instance roles.
const (
	RoleMaster  = "master"
	RoleReplica = "replica"
)

// Persistence modes.
const (
	PersistNone = "none"
	PersistRDB  = "rdb"
	PersistAOF  = "aof"
)

// Limits of a database spec.
const (
	MaxShards   = 256
	MaxReplicas = 5
	MinMemory   = 1 << 20 // 1 MiB: below this redis-server is not useful
	MaxMemory   = 1 << 40 // 1 TiB per shard: far above real instances, far from overflow
	NumSlots    = 16384
)

// EvictionPolicies lists every maxmemory-policy Redis accepts.
var EvictionPolicies = []string{
	"noeviction", "allkeys-lru", "allkeys-lfu", "allkeys-random",
	"volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl",
}

// Node is one host running `marina server`.
type Node struct {
	ID       string `json:"id"`
	Addr     string `json:"addr"` // host the node's redis-servers bind to
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
	Memory   int64  `json:"memory"` // bytes available for redis maxmemory
	Zone     string `json:"zone,omitempty"`
	Status   string `json:"status"`
	Draining bool   `json:"draining,omitempty"`
	// DownSince is when the node was marked down (zero while up).
	DownSince time.Time `json:"down_since,omitempty"`
	PortMin   int       `json:"port_min"`
	PortMax   int       `json:"port_max"`
	// ProxyMin..ProxyMax: ports for database endpoints. A database's proxy
	// port is the same on every node, so it is chosen free in all ranges.
	ProxyMin int       `json:"proxy_min,omitempty"`
	ProxyMax int       `json:"proxy_max,omitempty"`
	JoinedAt time.Time `json:"joined_at"`
	// SentinelAddr is the node's Redis Sentinel protocol endpoint
	// (host:port), empty when disabled.
	SentinelAddr string `json:"sentinel_addr,omitempty"`
}

// Spec is what a user asks for.
type Spec struct {
	Name        string            `json:"name"`
	Memory      int64             `json:"memory"` // maxmemory per shard, bytes
	Shards      int               `json:"shards"`
	Replicas    int               `json:"replicas"`
	Persistence string            `json:"persistence"`
	Eviction    string            `json:"eviction"`
	Password    string            `json:"password,omitempty"`
	Owner       string            `json:"owner,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	// Durability is "async" (default: a write is acknowledged by the
	// master) or "replicated" (the proxy acknowledges a write only once a
	// replica has it, so no acknowledged write is lost in a single fault).
	Durability string `json:"durability,omitempty"`
	// ReadFrom is where the proxy sends read-only commands: "master"
	// (default), "replica" (a replica in sync, else the master) or "any".
	ReadFrom string `json:"read_from,omitempty"`
}

// Durability modes.
const (
	DurabilityAsync      = "async"
	DurabilityReplicated = "replicated"
)

// Instance is one redis-server process.
type Instance struct {
	ID   string `json:"id"`
	Node string `json:"node"`
	Port int    `json:"port"`
	Role string `json:"role"`
}

// Shard owns a contiguous slot range and one master plus replicas.
type Shard struct {
	Index     int        `json:"index"`
	SlotStart int        `json:"slot_start"`
	SlotEnd   int        `json:"slot_end"` // inclusive
	Instances []Instance `json:"instances"`
	// Epoch counts role changes; every demotion starts a new one, so a
	// decision taken for an older epoch can never apply twice.
	Epoch uint64 `json:"epoch"`
	// Pending is set between a demotion and the promotion that ends it:
	// the shard has no master then.
	Pending *Pending `json:"pending,omitempty"`
	// Failovers holds the times of recent failovers, for flap damping.
	Failovers []time.Time `json:"failovers,omitempty"`
}

// Pending describes a failover in progress, or a planned switchover
// between its two steps (Kind "switchover", To the replica it promotes).
type Pending struct {
	Since time.Time `json:"since"`
	// FailedSince: when the master began to fail, before any flap
	// damping held the failover (zero: Since). A replica's link counts
	// as down too long only if it went down well before then.
	FailedSince time.Time `json:"failed_since,omitempty"`
	Old         string    `json:"old"` // the demoted master
	Reason      string    `json:"reason"`
	Kind        string    `json:"kind,omitempty"`
	To          string    `json:"to,omitempty"`
}

// KindSwitchover marks the steps of a planned switchover in commands and
// in Pending; KindAborted a switchover that gave the role back.
const (
	KindSwitchover = "switchover"
	KindAborted    = "switchover-aborted"
)

// Database is a spec plus the placement the leader chose for it.
type Database struct {
	Spec
	// Secret is the password of the internal "marina" ACL user that agents,
	// replication and proxies use, so a client password change never breaks them.
	Secret string `json:"secret"`
	// ProxyPort is the database's endpoint port on every node (0: none).
	ProxyPort int       `json:"proxy_port,omitempty"`
	Shards    []Shard   `json:"shard_list"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Master returns the shard's master instance, if any.
func (s Shard) Master() (Instance, bool) {
	for _, in := range s.Instances {
		if in.Role == RoleMaster {
			return in, true
		}
	}
	return Instance{}, false
}

// Replicas returns the shard's replicas.
func (s Shard) Replicas() []Instance {
	var out []Instance
	for _, in := range s.Instances {
		if in.Role == RoleReplica {
			out = append(out, in)
		}
	}
	return out
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// ValidateName checks a database name.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("invalid name %q: use 1-63 lowercase letters, digits and '-', starting with a letter", name)
	}
	return nil
}

// Defaults fills unset optional fields.
func (s *Spec) Defaults() {
	if s.Shards == 0 {
		s.Shards = 1
	}
	if s.Persistence == "" {
		s.Persistence = PersistNone
	}
	if s.Eviction == "" {
		s.Eviction = "noeviction"
	}
	if s.Durability == "" {
		s.Durability = DurabilityAsync
	}
	if s.ReadFrom == "" {
		s.ReadFrom = "master"
	}
}

// Validate reports the first problem with a spec, in words a user can act on.
func (s Spec) Validate() error {
	if err := ValidateName(s.Name); err != nil {
		return err
	}
	if s.Memory < MinMemory || s.Memory > MaxMemory {
		return fmt.Errorf("invalid memory %s: must be 1MiB..1TiB per shard", humanize.IBytes(uint64(max(s.Memory, 0))))
	}
	if s.Shards < 1 || s.Shards > MaxShards {
		return fmt.Errorf("invalid shards %d: must be 1..%d", s.Shards, MaxShards)
	}
	if s.Replicas < 0 || s.Replicas > MaxReplicas {
		return fmt.Errorf("invalid replicas %d: must be 0..%d", s.Replicas, MaxReplicas)
	}
	switch s.Persistence {
	case PersistNone, PersistRDB, PersistAOF:
	default:
		return fmt.Errorf("invalid persistence %q: must be none, rdb or aof", s.Persistence)
	}
	if !validEviction(s.Eviction) {
		return fmt.Errorf("invalid eviction %q: must be one of %s", s.Eviction, strings.Join(EvictionPolicies, ", "))
	}
	if err := ValidatePassword(s.Password); err != nil {
		return err
	}
	switch s.ReadFrom {
	case "", "master", "replica", "any":
	default:
		return fmt.Errorf("invalid read-from %q: must be master, replica or any", s.ReadFrom)
	}
	switch s.Durability {
	case "", DurabilityAsync:
	case DurabilityReplicated:
		if s.Replicas < 1 {
			return fmt.Errorf("invalid durability replicated: needs at least 1 replica per shard")
		}
	default:
		return fmt.Errorf("invalid durability %q: must be async or replicated", s.Durability)
	}
	if len(s.Owner) > 128 {
		return fmt.Errorf("invalid owner: at most 128 characters")
	}
	keys := make([]string, 0, len(s.Labels))
	for k := range s.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "" || len(k) > 63 || len(s.Labels[k]) > 256 {
			return fmt.Errorf("invalid label %q: keys 1-63 characters, values at most 256", k)
		}
	}
	return nil
}

// ValidatePassword checks a client password. Empty means "generate one".
func ValidatePassword(pw string) error {
	if pw == "" {
		return nil
	}
	if len(pw) < 8 || len(pw) > 256 {
		return fmt.Errorf("invalid password: must be 8-256 characters")
	}
	// redis.conf and ACL rules are whitespace separated; '>' and '<' begin ACL rules.
	if strings.ContainsAny(pw, " \t\r\n\"'\\") {
		return fmt.Errorf("invalid password: must not contain whitespace, quotes or backslashes")
	}
	return nil
}

func validEviction(p string) bool {
	for _, e := range EvictionPolicies {
		if e == p {
			return true
		}
	}
	return false
}

var nodeIDRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$`)

// ValidateNodeID checks a node id.
func ValidateNodeID(id string) error {
	if !nodeIDRE.MatchString(id) {
		return fmt.Errorf("invalid node id %q: use 1-63 letters, digits, '.', '_' or '-'", id)
	}
	return nil
}

var instanceIDRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}-[0-9]{1,3}-[0-9a-f]{6}$`)

// ValidateInstanceID checks an instance id: it names a directory on disk,
// so nothing but NAME-SHARD-HEX may pass.
func ValidateInstanceID(id string) error {
	if !instanceIDRE.MatchString(id) {
		return fmt.Errorf("invalid instance id %q", id)
	}
	return nil
}

// Validate checks a node record.
func (n Node) Validate() error {
	if err := ValidateNodeID(n.ID); err != nil {
		return err
	}
	if n.Addr == "" || n.RaftAddr == "" || n.HTTPAddr == "" {
		return fmt.Errorf("node %s: addresses missing", n.ID)
	}
	if n.Memory < MinMemory || n.Memory > 1<<50 {
		return fmt.Errorf("node %s: memory must be 1MiB..1PiB", n.ID)
	}
	if n.PortMin < 1024 || n.PortMax > 65535 || n.PortMin > n.PortMax {
		return fmt.Errorf("node %s: invalid port range %d-%d", n.ID, n.PortMin, n.PortMax)
	}
	return nil
}

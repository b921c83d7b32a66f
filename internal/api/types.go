package api

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
)

// Size is a byte count that reads as a number or a string with a unit.
type Size int64

// ParseSize reads sizes like "64MiB", "1gb", "512mb", "100000". As in
// redis.conf, "kb", "mb" and "gb" are powers of 1024; "k", "m", "g" and
// "MB"-style SI units with an uppercase B are as go-humanize reads them.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	if n, err := strconv.ParseInt(t, 10, 64); err == nil {
		return n, nil
	}
	lower := strings.ToLower(t)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"kb", 1 << 10}, {"mb", 1 << 20}, {"gb", 1 << 30}, {"tb", 1 << 40}} {
		if strings.HasSuffix(t, u.suffix) || (strings.HasSuffix(lower, u.suffix) && !strings.HasSuffix(t, "B")) {
			n, err := strconv.ParseFloat(strings.TrimSpace(t[:len(t)-2]), 64)
			if err != nil || n < 0 {
				return 0, fmt.Errorf("invalid size %q", s)
			}
			return int64(n * float64(u.mult)), nil
		}
	}
	n, err := humanize.ParseBytes(t)
	if err != nil || n > 1<<62 {
		return 0, fmt.Errorf("invalid size %q: use a number of bytes or a unit like 64MiB, 1GiB", s)
	}
	return int64(n), nil
}

// UnmarshalJSON accepts 67108864 or "64MiB".
func (s *Size) UnmarshalJSON(b []byte) error {
	var n int64
	if err := json.Unmarshal(b, &n); err == nil {
		*s = Size(n)
		return nil
	}
	var str string
	if err := json.Unmarshal(b, &str); err != nil {
		return fmt.Errorf("memory must be a number of bytes or a string like \"64MiB\"")
	}
	v, err := ParseSize(str)
	if err != nil {
		return err
	}
	*s = Size(v)
	return nil
}

// CreateDBRequest is the body of POST /v1/dbs.
type CreateDBRequest struct {
	Name        string            `json:"name"`
	Memory      Size              `json:"memory"`
	Shards      int               `json:"shards,omitempty"`
	Replicas    int               `json:"replicas"`
	Persistence string            `json:"persistence,omitempty"`
	Eviction    string            `json:"eviction,omitempty"`
	Password    string            `json:"password,omitempty"`
	Owner       string            `json:"owner,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Durability  string            `json:"durability,omitempty"`
	ReadFrom    string            `json:"read_from,omitempty"`
}

// UpdateDBRequest is the body of PATCH /v1/dbs/NAME; absent fields stay.
type UpdateDBRequest struct {
	Memory      *Size             `json:"memory,omitempty"`
	Shards      *int              `json:"shards,omitempty"`
	Replicas    *int              `json:"replicas,omitempty"`
	Persistence *string           `json:"persistence,omitempty"`
	Eviction    *string           `json:"eviction,omitempty"`
	Password    *string           `json:"password,omitempty"`
	Owner       *string           `json:"owner,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Durability  *string           `json:"durability,omitempty"`
	ReadFrom    *string           `json:"read_from,omitempty"`
}

// DB statuses.
const (
	DBReady        = "ready"
	DBProvisioning = "provisioning"
	DBDegraded     = "degraded"
	DBUnknown      = "unknown"
)

// Instance is one redis-server as the API shows it.
type Instance struct {
	ID           string `json:"id"`
	Node         string `json:"node"`
	Addr         string `json:"addr"`
	Role         string `json:"role"`
	State        string `json:"state"`
	ObservedRole string `json:"observed_role,omitempty"`
	LinkUp       bool   `json:"link_up"`
	Offset       int64  `json:"offset"`
	UsedMemory   int64  `json:"used_memory"`
	// FailingSince: the agent's probes have failed since then (running
	// but not answering, e.g. hung); absent while it answers.
	FailingSince *time.Time `json:"failing_since,omitempty"`
}

// Shard is one shard of a database.
type Shard struct {
	Index     int        `json:"index"`
	SlotStart int        `json:"slot_start"`
	SlotEnd   int        `json:"slot_end"`
	Master    Instance   `json:"master"`
	Replicas  []Instance `json:"replicas"`
}

// DB is a database as the API shows it.
type DB struct {
	Name        string            `json:"name"`
	Memory      int64             `json:"memory"`
	ShardCount  int               `json:"shard_count"`
	Replicas    int               `json:"replicas"`
	Persistence string            `json:"persistence"`
	Eviction    string            `json:"eviction"`
	Durability  string            `json:"durability"`
	ReadFrom    string            `json:"read_from"`
	Password    string            `json:"password"`
	Owner       string            `json:"owner,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Status      string            `json:"status"`
	// Endpoints: the database's proxy on every node, host:port.
	Endpoints []string  `json:"endpoints"`
	Shards    []Shard   `json:"shards"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Node is a cluster node as the API shows it.
type Node struct {
	ID        string     `json:"id"`
	Addr      string     `json:"addr"`
	HTTPAddr  string     `json:"http_addr"`
	RaftAddr  string     `json:"raft_addr"`
	Zone      string     `json:"zone,omitempty"`
	Status    string     `json:"status"`
	Draining  bool       `json:"draining"`
	Memory    int64      `json:"memory"`
	Allocated int64      `json:"allocated"`
	Used      int64      `json:"used"`
	Instances int        `json:"instances"`
	Masters   int        `json:"masters"`
	Running   int        `json:"running"`
	Voter     bool       `json:"voter"`
	Leader    bool       `json:"leader"`
	LastSeen  *time.Time `json:"last_seen,omitempty"`
	// SentinelAddr is the node's Redis Sentinel endpoint (empty: off).
	SentinelAddr string `json:"sentinel_addr,omitempty"`
}

// Status is the cluster overview.
type Status struct {
	Leader           string `json:"leader"`
	LeaderAddr       string `json:"leader_addr"`
	ServedBy         string `json:"served_by"`
	AppliedIndex     uint64 `json:"applied_index"`
	Nodes            []Node `json:"nodes"`
	NodesUp          int    `json:"nodes_up"`
	DBs              int    `json:"dbs"`
	DBsReady         int    `json:"dbs_ready"`
	Instances        int    `json:"instances"`
	InstancesRunning int    `json:"instances_running"`
	Memory           int64  `json:"memory"`
	Allocated        int64  `json:"allocated"`
}

// ErrorBody is every error response.
type ErrorBody struct {
	Error string `json:"error"`
}

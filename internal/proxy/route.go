package proxy

import (
	"crypto/tls"
	"sync/atomic"
	"time"

	"github.com/marina-redis/marina/internal/slots"
)

// ShardRoute is where one shard's commands go.
type ShardRoute struct {
	Index     int
	SlotStart int
	SlotEnd   int
	Master    string // host:port, "" while a failover is in progress
	Replicas  []string
	// Local: the master runs on this node, so the node's fence (Route.Fenced)
	// applies to writes sent to it.
	Local bool
}

// Route is everything the proxy needs to serve one database.
type Route struct {
	Name       string
	Addr       string // host:port the proxy listens on
	Password   string
	Secret     string // the marina-proxy user's password (redisconf.ProxySecret)
	Shards     []ShardRoute
	MaxClients int
	MaxRequest int // bytes
	Idle       time.Duration
	// ReadFrom: "master", "replica" or "any" for read-only commands.
	// Replicas listed in a ShardRoute are the ones in sync right now.
	ReadFrom string
	// Replicated: acknowledge writes only once WAIT says a replica has them.
	Replicated  bool
	WaitTimeout time.Duration
	// Loops is how many event loops serve the endpoint (default 1).
	Loops int
	// TLS, when set, makes the endpoint speak TLS to clients, with every
	// feature of a plaintext endpoint, on either engine.
	TLS *tls.Config `json:"-"`
	// Engine is "loop" (default on Linux: one epoll loop per database owns
	// its client and backend sockets) or "goroutine" (a goroutine per
	// client; the only one elsewhere). Both serve the same commands and
	// features; doc.go says how they differ.
	Engine string
	// Fenced, when set, says whether this node holds no lease: its masters
	// take no writes then, and the proxy refuses writes to them at once
	// with a clear error (reads go on). Node is this node's id, for it.
	Fenced func() bool `json:"-"`
	Node   string
	// Input is the node's budget for buffered client input (nil: none).
	Input *Budget `json:"-"`
	// BackendTLS, when set, is the TLS configuration to reach the
	// redis-server at addr: redis-servers then speak TLS only.
	BackendTLS func(addr string) *tls.Config `json:"-"`
}

// Budget bounds the bytes of incomplete requests that a node's endpoints
// hold, across databases: many clients each sending the start of a large
// request must not take the memory the node's redis-servers need.
type Budget struct {
	Max  int64
	used atomic.Int64
}

// take reserves n bytes; false (nothing reserved) when that exceeds Max.
func (b *Budget) take(n int64) bool {
	if b.used.Add(n) > b.Max {
		b.used.Add(-n)
		return false
	}
	return true
}

func (b *Budget) give(n int64) { b.used.Add(-n) }

// Used is the bytes held now.
func (b *Budget) Used() int64 { return b.used.Load() }

// topology is an immutable routing snapshot; swapped atomically on change.
type topology struct {
	route   Route
	slotMap [slots.Count]uint16
}

func newTopology(r Route) *topology {
	t := &topology{route: r}
	for i, sh := range r.Shards {
		for s := sh.SlotStart; s <= sh.SlotEnd && s < slots.Count; s++ {
			t.slotMap[s] = uint16(i)
		}
	}
	return t
}

// Where a session's command goes, from the routing snapshot. These answer
// the client themselves ("" returned) when it cannot go anywhere now.

// readAddr picks where a read of shard goes under the database's
// read-from setting; a client sticks to one replica.
func (c *session) readAddr(t *topology, shard int) string {
	sh := t.route.Shards[shard]
	switch t.route.ReadFrom {
	case "replica":
		if len(sh.Replicas) > 0 {
			return sh.Replicas[int(c.id%uint64(len(sh.Replicas)))]
		}
	case "any":
		n := uint64(len(sh.Replicas) + 1)
		if i := int(c.id % n); i > 0 {
			return sh.Replicas[i-1]
		}
	}
	return sh.Master
}

// master returns where shard's commands for its master go, or "" once the
// client has been told why not: the shard is failing over, or it is a write
// to a master on this node while the node is fenced.
func (c *session) master(t *topology, shard int) string { return c.masterFor(t, shard, c.writing) }

func (c *session) masterFor(t *topology, shard int, write bool) string {
	sh := &t.route.Shards[shard]
	if sh.Master == "" {
		c.errorf("TRYAGAIN shard %d is failing over; retry shortly", shard)
		return ""
	}
	if write && sh.Local && t.route.Fenced != nil && t.route.Fenced() {
		c.errorf("READONLY marina node %s has lost contact with the cluster leader: writes to its masters are refused until it is back (reads are served); use an endpoint on another node", t.route.Node)
		return ""
	}
	return sh.Master
}

func (c *session) toShard(t *topology, shard int, cmd []byte) {
	if c.reading && t.route.ReadFrom != "" && t.route.ReadFrom != "master" {
		if a := c.readAddr(t, shard); a != "" {
			c.pend = append(c.pend, pending{one: c.send(a, cmd)})
			return
		}
	}
	m := c.master(t, shard)
	if m == "" {
		return
	}
	c.pend = append(c.pend, pending{one: c.send(m, cmd)})
}

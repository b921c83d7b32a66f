// Package topology is the one view of what the desired state means for the
// data path: where an instance listens, which master serves a shard, where a
// database's endpoints are, and whether a replica is usable. Pure functions
// over the state and over what redis-servers report; proxy routes,
// Sentinel, hooks, API views, `marina check`, the agent and the controller
// all read these definitions instead of writing their own.
package topology

import (
	"net"
	"strconv"
	"time"

	"github.com/marina-redis/marina/internal/resp"
	"github.com/marina-redis/marina/internal/state"
)

// HostPort joins a host and a port.
func HostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

// Addr is where an instance listens (host:port), "" when its node is
// unknown.
func Addr(st *state.State, in state.Instance) string {
	n, ok := st.Nodes[in.Node]
	if !ok {
		return ""
	}
	return HostPort(n.Addr, in.Port)
}

// ServingMaster is the master that takes a shard's writes: none while a
// failover is pending (between the demotion and the promotion the shard has
// no master, and traffic must wait for the promotion).
func ServingMaster(sh state.Shard) (state.Instance, bool) {
	if sh.Pending != nil {
		return state.Instance{}, false
	}
	return sh.Master()
}

// Stable says whether no shard of a database is failing over.
func Stable(db *state.Database) bool {
	for _, sh := range db.Shards {
		if sh.Pending != nil {
			return false
		}
	}
	return true
}

// ServesEndpoints says whether a node serves database endpoints: it is up
// and has a proxy port range.
func ServesEndpoints(n *state.Node) bool {
	return n.Status == state.NodeUp && n.ProxyMin != 0
}

// Endpoints are a database's endpoints: its proxy port on every node that
// serves endpoints, in node order; none when it has no proxy port.
func Endpoints(st *state.State, db *state.Database) []string {
	out := []string{}
	if db.ProxyPort == 0 {
		return out
	}
	for _, id := range st.NodeIDs() {
		if n := st.Nodes[id]; ServesEndpoints(n) {
			out = append(out, HostPort(n.Addr, db.ProxyPort))
		}
	}
	return out
}

// NodeDown says whether a node is unknown or marked down.
func NodeDown(st *state.State, id string) bool {
	n, ok := st.Nodes[id]
	return !ok || n.Status == state.NodeDown
}

// MaxReadLag: a replica whose master was last heard from longer ago, or
// whose link is down or syncing, serves no reads.
const MaxReadLag = time.Second

// NeverSynced is the LinkDownFor of a replica that never completed a sync.
const NeverSynced = time.Duration(1 << 62)

// Link is a replica's replication link as its INFO replication reports it:
// the one reading of those fields (which replica to promote is
// failover.Choose's decision, from these).
type Link struct {
	Replica    bool // role:slave
	MasterAddr string
	Up         bool // master_link_status:up
	Syncing    bool // a full sync is in progress: its data is incomplete
	// LastIO: time since the master was last heard from (link up).
	LastIO time.Duration
	// DownFor: how long the link has been down (NeverSynced if it never
	// completed a sync); 0 while up.
	DownFor time.Duration
	Offset  int64 // slave_repl_offset
}

// ParseLink reads a replica's link from INFO replication.
func ParseLink(info string) Link { return LinkFrom(resp.ParseInfo(info)) }

// LinkFrom reads a replica's link from INFO fields already parsed.
func LinkFrom(f map[string]string) Link {
	l := Link{Replica: f["role"] == "slave", Up: f["master_link_status"] == "up", Syncing: f["master_sync_in_progress"] == "1"}
	if f["master_host"] != "" {
		l.MasterAddr = net.JoinHostPort(f["master_host"], f["master_port"])
	}
	l.Offset, _ = strconv.ParseInt(f["slave_repl_offset"], 10, 64)
	if io, err := strconv.Atoi(f["master_last_io_seconds_ago"]); err == nil && io >= 0 {
		l.LastIO = time.Duration(io) * time.Second
	} else {
		l.LastIO = NeverSynced
	}
	switch {
	case l.Up:
	case f["master_link_down_since_seconds"] == "" || f["master_link_down_since_seconds"] == "-1":
		l.DownFor = NeverSynced
	default:
		secs, _ := strconv.Atoi(f["master_link_down_since_seconds"])
		l.DownFor = time.Duration(secs) * time.Second
	}
	return l
}

// InSync: the replica follows a master over a live link and is not in a
// full sync. This is what "healthy" means for a replica in views and
// checks.
func (l Link) InSync() bool { return l.Replica && l.Up && !l.Syncing }

// ServesReads: in sync and heard from its master within MaxReadLag, so a
// read there is at most that stale.
func (l Link) ServesReads() bool { return l.InSync() && l.LastIO <= MaxReadLag }

// Follows says whether the replica replicates from addr.
func (l Link) Follows(addr string) bool { return l.Replica && l.MasterAddr == addr }

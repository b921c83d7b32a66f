package proxy

import (
	"context"
	"crypto/tls"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/marina-redis/marina/internal/redisconf"
	"github.com/marina-redis/marina/internal/state"
	topo "github.com/marina-redis/marina/internal/topology"
)

// Source is the local desired state.
type Source = state.Source

// Limits are the proxy's per-database defaults.
type Limits struct {
	MaxClients int
	MaxRequest int
	Idle       time.Duration
	TLS        *tls.Config // endpoints speak TLS when set
	// Fenced says whether this node holds no lease (agent.Fenced): writes
	// to its own masters are refused then.
	Fenced func() bool
	// Input bounds the client input buffered by all of this node's
	// endpoints together (nil: no bound).
	Input *Budget
	// Redis dials redis-servers for the lag checks (nil: plaintext), and
	// its TLS configuration is the endpoints' to reach them.
	Redis *redisconf.Dialer
}

// Routes computes the routes of every database for the proxies of node.
// Pure: a shard failing over has no master, and traffic to it is refused
// with TRYAGAIN until the promotion is in the log. inSync says whether a
// replica (host:port) may serve reads; nil means all.
func Routes(st *state.State, node string, lim Limits, inSync func(addr string) bool) []Route {
	self, ok := st.Nodes[node]
	if !ok {
		return nil
	}
	var out []Route
	for _, name := range st.DBNames() {
		db := st.DBs[name]
		if db.ProxyPort == 0 {
			continue
		}
		r := Route{Name: name, Addr: topo.HostPort(self.Addr, db.ProxyPort), Password: db.Password, Secret: redisconf.ProxySecret(db.Secret),
			MaxClients: lim.MaxClients, MaxRequest: lim.MaxRequest, Idle: lim.Idle, Replicated: db.Durability == state.DurabilityReplicated,
			ReadFrom: db.ReadFrom, TLS: lim.TLS, Fenced: lim.Fenced, Node: node, Input: lim.Input}
		if lim.Redis != nil {
			r.BackendTLS = lim.Redis.TLS
		}
		for _, sh := range db.Shards {
			sr := ShardRoute{Index: sh.Index, SlotStart: sh.SlotStart, SlotEnd: sh.SlotEnd}
			if m, ok := topo.ServingMaster(sh); ok {
				sr.Master, sr.Local = topo.Addr(st, m), m.Node == node
			}
			for _, rep := range sh.Replicas() {
				if a := topo.Addr(st, rep); a != "" && (inSync == nil || inSync(a)) {
					sr.Replicas = append(sr.Replicas, a)
				}
			}
			r.Shards = append(r.Shards, sr)
		}
		out = append(out, r)
	}
	return out
}

// Manager runs a node's database proxies from the local state.
type Manager struct {
	Node   string
	Src    Source
	Limits Limits
	Log    *slog.Logger
	mu     sync.Mutex
	dbs    map[string]*DB
	lag    *lagProber
}

// Run keeps the proxies in line with the state until ctx ends.
func (m *Manager) Run(ctx context.Context) {
	m.mu.Lock()
	m.dbs = map[string]*DB{} // under the lock: Snapshots may be called already
	m.mu.Unlock()
	m.lag = newLagProber(m.Limits.Redis)
	defer m.lag.close()
	defer m.closeAll()
	// Every 500ms too: retries failed listeners, and refreshes which
	// replicas may serve reads.
	state.Watch(ctx, m.Src, 500*time.Millisecond, func(st *state.State) {
		m.lag.probe(ctx, st)
		m.sync(Routes(st, m.Node, m.Limits, m.lag.inSync))
	})
}

func (m *Manager) sync(routes []Route) {
	m.mu.Lock()
	defer m.mu.Unlock()
	want := map[string]bool{}
	for _, r := range routes {
		want[r.Name] = true
		if d, ok := m.dbs[r.Name]; ok {
			if d.Addr() == r.Addr {
				d.Update(r)
				continue
			}
			d.Close()
			delete(m.dbs, r.Name)
		}
		d, err := Listen(r, m.Log)
		if err != nil {
			m.Log.Error("proxy listen", "db", r.Name, "addr", r.Addr, "err", err)
			continue
		}
		m.Log.Info("proxy serving", "db", r.Name, "addr", r.Addr)
		m.dbs[r.Name] = d
	}
	for name, d := range m.dbs {
		if !want[name] {
			d.Close()
			delete(m.dbs, name)
		}
	}
}

// DBs returns the running proxies by database name.
func (m *Manager) DBs() map[string]*DB {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]*DB, len(m.dbs))
	for k, v := range m.dbs {
		out[k] = v
	}
	return out
}

func (m *Manager) closeAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, d := range m.dbs {
		d.Close()
		delete(m.dbs, name)
	}
}

// Snapshots returns the counters of every proxy on this node.
func (m *Manager) Snapshots() []Snapshot {
	var out []Snapshot
	for _, d := range m.DBs() {
		out = append(out, d.Snapshot())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].DB < out[j].DB })
	return out
}

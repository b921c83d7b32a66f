package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marina-redis/marina/internal/redisconf"
)

// Stats are a database proxy's counters.
type Stats struct {
	Ops         atomic.Int64
	Errors      atomic.Int64
	Connections atomic.Int64
	Accepted    atomic.Int64
	Rejected    atomic.Int64
}

// DB is the proxy of one database.
type DB struct {
	log   *slog.Logger
	eng   engine
	topo  atomic.Pointer[topology]
	mu    sync.Mutex
	pools map[string]*pool
	cmds  atomic.Pointer[cmdTable]
	// fetching: a goroutine is learning the command table (event loops
	// never wait on a backend for it; their clients are parked meanwhile).
	fetching atomic.Bool
	nextID   atomic.Uint64
	Stats    Stats
	ctx      context.Context
	cancel   context.CancelFunc
	lat      latency
	started  time.Time
	// tableFailed: when fetching the command table last failed (unix ns);
	// for a second after, commands fail at once instead of retrying it.
	tableFailed atomic.Int64
}

// engine moves an endpoint's bytes: it accepts clients, reads their
// commands, dispatches each on the client's session and writes the
// answers back in order. The DB reaches it only for its lifecycle, never
// per command. Two exist: the event loop (loop_linux.go, the default on
// Linux) and a goroutine per connection (engine_conn.go); doc.go says
// what differs between them.
type engine interface {
	// addr is the address it listens on.
	addr() string
	// wake tells it the command table fetch is over: clients waiting for
	// it go on.
	wake()
	// close stops it once DB.ctx is cancelled: no more clients, every
	// client connection closed; it returns when its goroutines are done.
	close()
	// name is how Snapshot reports it.
	name() string
}

// Listen starts the proxy of one database.
func Listen(r Route, log *slog.Logger) (*DB, error) {
	ctx, cancel := context.WithCancel(context.Background())
	d := &DB{log: log.With("component", "proxy", "db", r.Name), pools: map[string]*pool{}, ctx: ctx, cancel: cancel, started: time.Now()}
	d.topo.Store(newTopology(r))
	var err error
	if r.Engine != "goroutine" && loopSupported {
		d.eng, err = startLoops(d, r)
	} else {
		d.eng, err = startConnEngine(d, r)
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("proxy for %s on %s: %w", r.Name, r.Addr, err)
	}
	return d, nil
}

// Addr is the listening address.
func (d *DB) Addr() string { return d.eng.addr() }

// Update swaps the routing live: new commands go to the new masters,
// client connections stay open.
func (d *DB) Update(r Route) {
	d.topo.Store(newTopology(r))
	// Drop pools of backends no longer in the route.
	keep := map[string]bool{}
	for _, sh := range r.Shards {
		keep[sh.Master] = true
		for _, rep := range sh.Replicas {
			keep[rep] = true
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for addr, p := range d.pools {
		if !keep[addr] {
			p.close()
			delete(d.pools, addr)
		}
	}
}

// Close stops the listener, closes client connections and backends.
func (d *DB) Close() {
	d.cancel()
	d.eng.close()
	d.mu.Lock()
	for _, p := range d.pools {
		p.close()
	}
	d.mu.Unlock()
}

// pool is the shared connections to the backend at addr (the goroutine
// engine's, and the command table's fetch for both engines).
func (d *DB) pool(addr string) *pool {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, ok := d.pools[addr]
	if !ok {
		t := d.topo.Load()
		var tc *tls.Config
		if t.route.BackendTLS != nil {
			tc = t.route.BackendTLS(addr)
		}
		p = newPool(addr, redisconf.ProxyUser, t.route.Secret, tc)
		d.pools[addr] = p
	}
	return p
}

// Package proxy serves every database's endpoint on every node: the Redis
// protocol, pipelined, sharded over the 16384 hash slots, with multi-key
// commands split and merged, many clients multiplexed over a few backend
// connections, per-database AUTH, and topology changes applied live.
package proxy

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marina-redis/marina/internal/redisconf"
	"github.com/marina-redis/marina/internal/resp"
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
	// TLS, when set, makes the endpoint speak TLS to clients (the event
	// loop serves them through a bridge, with every feature).
	TLS *tls.Config `json:"-"`
	// Engine is "loop" (default on Linux: one epoll loop per database owns
	// its client and backend sockets) or "goroutine" (a goroutine per client).
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
	ln    net.Listener
	topo  atomic.Pointer[topology]
	mu    sync.Mutex
	pools map[string]*pool
	cmds  atomic.Pointer[cmdTable]
	// fetching: a goroutine is learning the command table (event loops
	// never wait on a backend for it; their clients are parked meanwhile).
	fetching atomic.Bool
	clients  sync.WaitGroup
	nextID   atomic.Uint64
	Stats    Stats
	ctx      context.Context
	cancel   context.CancelFunc
	conns    sync.Map // net.Conn -> struct{}
	lp       *loop    // event loop engine: the first loop
	lps      []*loop  // all loops, one per core, sharing the port (SO_REUSEPORT)
	lat      latency
	started  time.Time
	// tableFailed: when fetching the command table last failed (unix ns);
	// for a second after, commands fail at once instead of retrying it.
	tableFailed atomic.Int64
}

// Listen starts the proxy of one database.
func Listen(r Route, log *slog.Logger) (*DB, error) {
	if r.Engine != "goroutine" && loopSupported {
		ctx, cancel := context.WithCancel(context.Background())
		d := &DB{log: log.With("component", "proxy", "db", r.Name), pools: map[string]*pool{}, ctx: ctx, cancel: cancel, started: time.Now()}
		d.topo.Store(newTopology(r))
		addr := r.Addr
		for i := 0; i < loopsPerDB(r); i++ {
			lp, err := newLoop(d, addr)
			if err != nil {
				cancel()
				for _, o := range d.lps {
					o.shutdown() // not running yet: only its sockets to close
				}
				return nil, fmt.Errorf("proxy for %s on %s: %w", r.Name, r.Addr, err)
			}
			if i == 0 {
				d.lp, addr = lp, lp.addr // port 0: the others take the port the first got
			}
			d.lps = append(d.lps, lp)
		}
		for _, lp := range d.lps {
			go lp.run()
		}
		return d, nil
	}
	if r.Replicated {
		// WAIT batching lives in the event loop; acknowledging writes
		// without it would break the promise silently.
		return nil, fmt.Errorf("proxy for %s: durability replicated needs the event loop engine (Linux)", r.Name)
	}
	ln, err := net.Listen("tcp", r.Addr)
	if err != nil {
		return nil, fmt.Errorf("proxy for %s on %s: %w", r.Name, r.Addr, err)
	}
	if r.TLS != nil {
		ln = tls.NewListener(ln, r.TLS)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &DB{log: log.With("component", "proxy", "db", r.Name), ln: ln, pools: map[string]*pool{}, ctx: ctx, cancel: cancel, started: time.Now()}
	d.topo.Store(newTopology(r))
	go d.accept()
	return d, nil
}

// Addr is the listening address.
func (d *DB) Addr() string {
	if d.lp != nil {
		return d.lp.addr
	}
	return d.ln.Addr().String()
}

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
	if d.lp != nil {
		for _, lp := range d.lps {
			<-lp.done
		}
		d.mu.Lock()
		for _, p := range d.pools {
			p.close()
		}
		d.mu.Unlock()
		return
	}
	d.ln.Close()
	d.conns.Range(func(k, _ any) bool {
		k.(net.Conn).Close()
		return true
	})
	d.clients.Wait()
	d.mu.Lock()
	for _, p := range d.pools {
		p.close()
	}
	d.mu.Unlock()
}

func (d *DB) accept() {
	for {
		conn, err := d.ln.Accept()
		if err != nil {
			if d.ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		t := d.topo.Load()
		if max := t.route.MaxClients; max > 0 && d.Stats.Connections.Load() >= int64(max) {
			d.Stats.Rejected.Add(1)
			_, _ = conn.Write([]byte("-ERR max number of clients reached\r\n"))
			conn.Close()
			continue
		}
		d.Stats.Connections.Add(1)
		d.Stats.Accepted.Add(1)
		d.clients.Add(1)
		d.conns.Store(conn, struct{}{})
		go func() {
			defer d.clients.Done()
			defer d.Stats.Connections.Add(-1)
			defer d.conns.Delete(conn)
			defer conn.Close()
			d.serve(conn)
		}()
	}
}

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

// ensureTable makes sure the command table is known or being learned in
// the background, and says whether a client should wait for it (false:
// it is known, or no backend answered a moment ago and the command gets
// that error at once).
func (d *DB) ensureTable() bool {
	if d.cmds.Load() != nil {
		return false
	}
	if last := d.tableFailed.Load(); last != 0 && time.Since(time.Unix(0, last)) < time.Second {
		return false
	}
	if d.fetching.CompareAndSwap(false, true) {
		go func() {
			_, err := d.table(d.ctx)
			if err != nil {
				d.log.Warn("command table", "err", err)
			}
			d.fetching.Store(false)
			for _, lp := range d.lps {
				lp.wake()
			}
		}()
	}
	return true
}

// needsTable says whether dispatching a command looks it up in the
// command table (the proxy answers the others itself; see dispatch).
func needsTable(name []byte) bool {
	switch strings.ToLower(string(name)) {
	case "auth", "hello", "quit", "ping", "echo", "select", "client":
		return false
	}
	return true
}

// table is the command table for c: the event loop engine never fetches
// it itself (ensureTable does, in the background).
func (c *client) table() (cmdTable, error) {
	if c.lp == nil {
		return c.d.table(c.d.ctx)
	}
	if t := c.d.cmds.Load(); t != nil {
		return *t, nil
	}
	return nil, errors.New("no backend answered COMMAND a moment ago; retry shortly")
}

// table returns the command table, learned from a backend on first use.
func (d *DB) table(ctx context.Context) (cmdTable, error) {
	if t := d.cmds.Load(); t != nil {
		return *t, nil
	}
	if last := d.tableFailed.Load(); last != 0 && time.Since(time.Unix(0, last)) < time.Second {
		return nil, errors.New("no backend answered COMMAND a moment ago; retry shortly")
	}
	topo := d.topo.Load()
	var lastErr error
	for _, sh := range topo.route.Shards {
		for _, addr := range append([]string{sh.Master}, sh.Replicas...) {
			if addr == "" {
				continue
			}
			raw, err := d.roundTrip(ctx, addr, 0, resp.AppendCommand(nil, []byte("COMMAND")))
			if err == nil {
				var t cmdTable
				if t, err = parseCommandTable(raw); err == nil {
					d.cmds.Store(&t)
					return t, nil
				}
			}
			lastErr = err
		}
	}
	d.tableFailed.Store(time.Now().UnixNano())
	return nil, fmt.Errorf("no backend answered COMMAND: %v", lastErr)
}

func (d *DB) roundTrip(ctx context.Context, addr string, id uint64, cmd []byte) ([]byte, error) {
	c, err := d.pool(addr).get(ctx, id)
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	r := &request{cmd: cmd, done: wg.Done}
	c.send([]*request{r})
	wg.Wait()
	return r.reply, r.err
}

// slot of a reply in the client's ordered output.
type pending struct {
	imm   []byte     // an answer the proxy gave itself
	one   *request   // the one backend request whose reply is the answer (no slice to allocate)
	reqs  []*request // backend requests whose replies make up the answer
	merge func(reqs []*request) []byte
	start time.Time // when the command arrived (loop engine: latency)
	name  string
}

// client is one client connection.
type client struct {
	d      *DB
	id     uint64
	conn   net.Conn
	r      *resp.Reader
	out    []byte
	pend   []pending
	wg     sync.WaitGroup
	authed bool
	name   string
	quit   bool
	conns  map[string]*backendConn // this client's backend connections, by address
	// batch holds the commands of the pipeline being read, per backend
	// connection, sent together at flush time.
	batch map[*backendConn][]*request

	// Event loop engine.
	lp         *loop
	fd         int
	in         []byte
	inOff      int
	closed     bool
	closeAfter bool
	lastActive time.Time
	scratch    [][]byte
	// raw: the command being dispatched as the client sent it (RESP), valid
	// during dispatch only; event loop engine.
	raw     []byte
	polling uint32 // current epoll mask
	dirty   bool   // listed for the loop's next write pass
	// pin is the command that asked for a pinned backend connection; once
	// the replies before it are out, the client's traffic is relayed raw to
	// and from a connection of its own (tunnel) for the rest of its life.
	pin    []byte
	tunnel *lbackend
	// txn queues a MULTI on a sharded database until EXEC.
	txn *txn
	// partial resumes checking an incomplete request; charged is what the
	// client's input buffer holds of the node's Budget.
	partial resp.CommandScanner
	charged int64
	// parked: waiting for the command table (event loop engine).
	parked bool
	// tls: the client's TLS session, driven by the loop (nil: plaintext).
	tls *loopTLS
	// writing: the command being dispatched may write (durability);
	// reading: it only reads (read/write split).
	writing bool
	reading bool
}

type txn struct {
	cmds    [][]byte
	slot    int // -1 until a keyed command sets it
	aborted bool
}

func nop() {}

// render is the answer of one pending slot.
func (p *pending) render() []byte {
	switch {
	case p.imm != nil:
		return p.imm
	case p.merge != nil:
		return p.merge(p.reqs)
	case p.one != nil:
		return replyOf(p.one)
	default:
		return replyOf(p.reqs[0])
	}
}

func (p *pending) complete() bool {
	if p.one != nil && !p.one.finished {
		return false
	}
	for _, r := range p.reqs {
		if !r.finished {
			return false
		}
	}
	return true
}

func (d *DB) serve(conn net.Conn) {
	t := d.topo.Load()
	c := &client{d: d, id: d.nextID.Add(1), conn: conn, r: resp.NewReader(conn, 16<<10)}
	c.r.MaxSize = t.route.MaxRequest
	c.authed = t.route.Password == ""
	for !c.quit {
		c.r.Unauth = !c.authed
		if idle := d.topo.Load().route.Idle; idle > 0 && c.r.Buffered() == 0 {
			_ = conn.SetReadDeadline(time.Now().Add(idle))
		}
		args, err := c.r.ReadCommand()
		if err != nil {
			var pe *resp.ProtocolError
			if errors.As(err, &pe) {
				c.flush()
				_, _ = conn.Write(resp.AppendError(nil, "ERR "+pe.Error()))
			} else if !errors.Is(err, io.EOF) {
				c.flush()
			}
			return
		}
		d.Stats.Ops.Add(1)
		c.dispatch(args)
		// Answer a whole pipeline at once: everything the client sent so far.
		if c.r.Buffered() == 0 || len(c.pend) >= 512 {
			if !c.flush() {
				return
			}
		}
	}
	c.flush()
}

// flush sends the pipeline's commands (one batch per backend), waits for
// the replies and writes every answer in order.
func (c *client) flush() bool {
	for bc, rs := range c.batch {
		bc.send(rs)
		delete(c.batch, bc)
	}
	c.wg.Wait()
	c.out = c.out[:0]
	for i := range c.pend {
		c.out = append(c.out, c.pend[i].render()...)
	}
	for i := range c.pend {
		c.pend[i] = pending{}
	}
	c.pend = c.pend[:0]
	if len(c.out) == 0 {
		return true
	}
	if _, err := c.conn.Write(c.out); err != nil {
		return false
	}
	if cap(c.out) > 1<<20 {
		c.out = nil // do not keep a huge buffer per idle client
	}
	return true
}

func replyOf(r *request) []byte {
	if r.err != nil {
		return resp.AppendError(nil, "ERR backend unavailable: "+r.err.Error())
	}
	return r.reply
}

func (c *client) answer(b []byte) { c.pend = append(c.pend, pending{imm: b}) }

func (c *client) errorf(format string, args ...any) {
	c.d.Stats.Errors.Add(1)
	c.answer(resp.AppendError(nil, fmt.Sprintf(format, args...)))
}

// send queues one command to a backend and returns its request.
func (c *client) send(addr string, cmd []byte) *request {
	if c.lp != nil {
		r := c.lp.newRequest()
		r.cmd, r.done, r.owner, r.write = cmd, nop, c, c.writing
		c.lp.enqueue(addr, r)
		return r
	}
	c.wg.Add(1)
	r := &request{cmd: cmd, done: c.wg.Done}
	bc := c.conns[addr]
	if bc == nil || !bc.usable() {
		var err error
		if bc, err = c.d.pool(addr).get(c.d.ctx, c.id); err != nil {
			r.err = err
			r.done()
			return r
		}
		if c.conns == nil {
			c.conns = map[string]*backendConn{}
		}
		c.conns[addr] = bc
	}
	if c.batch == nil {
		c.batch = map[*backendConn][]*request{}
	}
	c.batch[bc] = append(c.batch[bc], r)
	return r
}

func copyCmd(args [][]byte) []byte { return resp.AppendCommand(nil, args...) }

// forwardable is the command as it goes to a backend. The event loop copies
// it into the backend's output at once, so the client's own bytes (when they
// are RESP, not inline) go as they are, with no copy of their own.
func (c *client) forwardable(args [][]byte) []byte {
	if c.raw != nil {
		return c.raw
	}
	return copyCmd(args)
}

// names maps the common spellings of command names to lower case, so the
// hot path does not allocate to look a command up. Never written after init.
var names = func() map[string]string {
	m := map[string]string{}
	for _, n := range []string{"get", "set", "mget", "mset", "del", "incr", "decr", "exists", "expire", "ttl", "hget", "hset",
		"hgetall", "lpush", "rpush", "lpop", "rpop", "lrange", "sadd", "smembers", "zadd", "zrange", "ping", "echo", "auth",
		"select", "client", "quit", "hello", "unlink", "touch", "dbsize", "scan", "keys", "info", "setex", "incrby", "eval", "evalsha"} {
		m[n] = n
		m[strings.ToUpper(n)] = n
	}
	return m
}()

func cmdName(b []byte) string {
	if n, ok := names[string(b)]; ok {
		return n
	}
	return lower(b)
}

func eq(a []byte, s string) bool { return strings.EqualFold(string(a), s) }

func (c *client) dispatch(args [][]byte) {
	t := c.d.topo.Load()
	name := cmdName(args[0])
	switch name {
	case "auth":
		c.auth(t, args)
		return
	case "quit":
		c.answer(resp.OK)
		c.quit = true
		return
	case "hello":
		c.hello(t, args)
		return
	}
	if !c.authed {
		c.errorf("NOAUTH Authentication required.")
		return
	}
	if c.txn != nil {
		// Inside a queued transaction every command is queued, PING included.
		tab, err := c.table()
		if err != nil {
			c.errorf("ERR proxy: %v", err)
			return
		}
		ci, base := tab.lookupName(name, args)
		switch {
		case ci == nil:
			c.txn.aborted = true
			c.errorf("ERR unknown command '%s'", trunc(args[0]))
		case !ci.arityOK(len(args)):
			c.txn.aborted = true
			c.errorf("ERR wrong number of arguments for '%s' command", ci.name)
		case denied[base]:
			c.txn.aborted = true
			c.errorf("ERR command '%s' is not allowed through the Marina proxy", base)
		default:
			c.queueTxn(t, ci, base, args)
		}
		return
	}
	switch name {
	case "ping":
		switch len(args) {
		case 1:
			c.answer([]byte("+PONG\r\n"))
		case 2:
			c.answer(resp.AppendBulk(nil, args[1]))
		default:
			c.errorf("ERR wrong number of arguments for 'ping' command")
		}
		return
	case "echo":
		if len(args) != 2 {
			c.errorf("ERR wrong number of arguments for 'echo' command")
			return
		}
		c.answer(resp.AppendBulk(nil, args[1]))
		return
	case "select":
		if len(args) != 2 {
			c.errorf("ERR wrong number of arguments for 'select' command")
		} else if string(args[1]) != "0" {
			c.errorf("ERR DB index is out of range")
		} else {
			c.answer(resp.OK)
		}
		return
	case "client":
		c.clientCmd(args)
		return
	}
	tab, err := c.table()
	if err != nil {
		c.errorf("ERR proxy: %v", err)
		return
	}
	ci, base := tab.lookupName(name, args)
	c.writing = ci != nil && (ci.write || base == "eval" || base == "evalsha" || base == "fcall")
	c.reading = ci != nil && ci.readonly && !c.writing
	if ci == nil {
		c.errorf("ERR unknown command '%s', with args beginning with: %s", trunc(args[0]), argsPreview(args[1:]))
		return
	}
	if !ci.arityOK(len(args)) {
		c.errorf("ERR wrong number of arguments for '%s' command", ci.name)
		return
	}
	if denied[base] {
		c.errorf("ERR command '%s' is not allowed through the Marina proxy", base)
		return
	}
	if base == "copy" {
		for _, a := range args[3:] {
			if eq(a, "db") {
				c.errorf("ERR COPY to another database is not allowed: a Marina database has one keyspace")
				return
			}
		}
	}
	if len(t.route.Shards) > 1 && (c.txn != nil || base == "multi") {
		if c.queueTxn(t, ci, base, args) {
			return
		}
	}
	if ci.blocking || ci.pubsub || base == "multi" || base == "exec" || base == "discard" || base == "watch" || base == "unwatch" {
		// These hold a backend connection to themselves; the shared,
		// multiplexed ones cannot carry them. On a single-shard database the
		// client gets a pinned connection of its own.
		if t.route.Replicated {
			c.errorf("ERR '%s' is not available with durability replicated: its writes could not be confirmed by the proxy", base)
			return
		}
		if len(t.route.Shards) == 1 && c.lp != nil {
			if c.master(t, 0) == "" {
				return
			}
			c.pin = copyCmd(args)
			return
		}
		c.errorf("ERR '%s' needs a pinned connection, which the Marina proxy offers on single-shard databases only", base)
		return
	}
	shards := t.route.Shards
	switch base {
	case "mget":
		c.splitKeys(t, args, 1, "mget")
		return
	case "mset":
		c.splitKeys(t, args, 2, "mset")
		return
	case "del", "unlink", "exists", "touch":
		c.splitKeys(t, args, 1, base)
		return
	case "dbsize":
		c.fanout(t, args, sumInts)
		return
	case "flushdb", "flushall":
		c.fanout(t, args, allOK)
		return
	case "keys":
		if len(shards) > 1 {
			c.fanout(t, args, concatArrays)
			return
		}
	case "scan":
		if len(shards) > 1 {
			c.scan(t, args)
			return
		}
	case "randomkey":
		if len(shards) > 1 {
			c.fanout(t, args, firstNonNull)
			return
		}
	case "script":
		// Scripts must exist on every shard for EVALSHA to work on any key.
		if len(shards) > 1 && len(args) >= 2 {
			switch lower(args[1]) {
			case "load":
				c.fanout(t, args, sameReply)
				return
			case "flush":
				c.fanout(t, args, allOK)
				return
			case "exists":
				c.fanout(t, args, sameReply) // loaded everywhere or nowhere, through the proxy
				return
			}
		}
	}
	var keys []int
	var one [1]int
	if ci.first > 0 && ci.last == ci.first && !ci.movable {
		one[0] = ci.first // single-key commands: no allocation
		keys = one[:]
	} else {
		var err error
		if keys, err = ci.keyPositions(args); err != nil {
			c.errorf("ERR %v", err)
			return
		}
	}
	shard := 0
	if len(shards) > 1 {
		if len(keys) == 0 {
			switch base {
			case "info", "time", "command", "lolwut", "memory":
				// Server-wide answers: shard 0 speaks for the database.
				c.toShard(t, 0, c.forwardable(args))
			default:
				c.errorf("ERR '%s' has no key to route by on a sharded database", base)
			}
			return
		}
		s0 := slots.Of(args[keys[0]])
		for _, k := range keys[1:] {
			if slots.Of(args[k]) != s0 {
				c.errorf("CROSSSLOT Keys in request don't hash to the same slot")
				return
			}
		}
		shard = int(t.slotMap[s0])
	}
	c.toShard(t, shard, c.forwardable(args))
}

// queueTxn handles MULTI...EXEC on a sharded database: the proxy queues
// the commands (all keys in one slot) and sends MULTI, them and EXEC in one
// piece to that slot's shard. It returns false for commands it does not
// take (outside a transaction).
func (c *client) queueTxn(t *topology, ci *cmdInfo, base string, args [][]byte) bool {
	switch base {
	case "multi":
		if c.txn != nil {
			c.errorf("ERR MULTI calls can not be nested")
			return true
		}
		c.txn = &txn{slot: -1}
		c.answer(resp.OK)
		return true
	case "discard":
		c.txn = nil
		c.answer(resp.OK)
		return true
	case "watch":
		c.txn.aborted = true
		c.errorf("ERR WATCH inside MULTI is not allowed")
		return true
	case "exec":
		tx := c.txn
		c.txn = nil
		c.writing = true
		if tx.aborted {
			c.errorf("EXECABORT Transaction discarded because of previous errors.")
			return true
		}
		if len(tx.cmds) == 0 {
			c.answer(resp.AppendArrayHeader(nil, 0))
			return true
		}
		shard := 0
		if tx.slot >= 0 {
			shard = int(t.slotMap[tx.slot])
		}
		m := c.masterFor(t, shard, true) // a transaction may write: the node's fence applies
		if m == "" {
			return true
		}
		reqs := []*request{c.send(m, resp.AppendCommand(nil, []byte("MULTI")))}
		for _, cmd := range tx.cmds {
			reqs = append(reqs, c.send(m, cmd))
		}
		reqs = append(reqs, c.send(m, resp.AppendCommand(nil, []byte("EXEC"))))
		c.pend = append(c.pend, pending{reqs: reqs, merge: func(reqs []*request) []byte {
			for _, r := range reqs {
				if r.err != nil {
					return replyOf(r)
				}
			}
			return reqs[len(reqs)-1].reply // EXEC's answer; a queueing error makes it EXECABORT
		}})
		return true
	}
	switch base {
	case "client", "select", "hello", "auth", "reset", "quit", "wait", "waitaof", "unwatch":
		// They would act on the connection the proxy shares between clients.
		c.txn.aborted = true
		c.errorf("ERR '%s' is not allowed in a transaction through the Marina proxy", base)
		return true
	}
	if ci.blocking || ci.pubsub {
		c.txn.aborted = true
		c.errorf("ERR '%s' is not allowed in a transaction through the Marina proxy", base)
		return true
	}
	keys, err := ci.keyPositions(args)
	if err != nil {
		c.txn.aborted = true
		c.errorf("ERR %v", err)
		return true
	}
	for _, k := range keys {
		s := slots.Of(args[k])
		if c.txn.slot == -1 {
			c.txn.slot = s
		} else if s != c.txn.slot {
			c.txn.aborted = true
			c.errorf("CROSSSLOT Keys in request don't hash to the same slot")
			return true
		}
	}
	c.txn.cmds = append(c.txn.cmds, copyCmd(args))
	c.answer([]byte("+QUEUED\r\n"))
	return true
}

// readAddr picks where a read of shard goes under the database's
// read-from setting; a client sticks to one replica.
func (c *client) readAddr(t *topology, shard int) string {
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
func (c *client) master(t *topology, shard int) string { return c.masterFor(t, shard, c.writing) }

func (c *client) masterFor(t *topology, shard int, write bool) string {
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

func (c *client) toShard(t *topology, shard int, cmd []byte) {
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

func trunc(b []byte) string {
	if len(b) > 64 {
		b = b[:64]
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' {
			return ' '
		}
		return r
	}, string(b))
}

func argsPreview(args [][]byte) string {
	var parts []string
	for i, a := range args {
		if i == 3 {
			break
		}
		parts = append(parts, "'"+trunc(a)+"'")
	}
	return strings.Join(parts, " ")
}

func (c *client) auth(t *topology, args [][]byte) {
	var user, pw []byte
	switch len(args) {
	case 2:
		pw = args[1]
	case 3:
		user, pw = args[1], args[2]
	default:
		c.errorf("ERR wrong number of arguments for 'auth' command")
		return
	}
	if c.checkPassword(t, user, pw) {
		c.authed = true
		c.answer(resp.OK)
		return
	}
	// As in Redis, a failed AUTH leaves the connection's login as it was.
	c.errorf("WRONGPASS invalid username-password pair or user is disabled.")
}

func (c *client) checkPassword(t *topology, user, pw []byte) bool {
	if user != nil && !eq(user, "default") {
		return false
	}
	want := t.route.Password
	return want != "" && subtle.ConstantTimeCompare(pw, []byte(want)) == 1
}

func (c *client) hello(t *topology, args [][]byte) {
	proto := "2"
	if len(args) >= 2 {
		proto = string(args[1])
	}
	if proto != "2" && proto != "3" {
		c.errorf("NOPROTO unsupported protocol version")
		return
	}
	// Options are checked here, whatever happens next: AUTH must be right.
	authed := c.authed
	for i := 2; i < len(args); i++ {
		switch {
		case eq(args[i], "auth") && i+2 < len(args):
			if !c.checkPassword(t, args[i+1], args[i+2]) {
				c.errorf("WRONGPASS invalid username-password pair or user is disabled.")
				return
			}
			authed = true
			i += 2
		case eq(args[i], "setname") && i+1 < len(args):
			i++
		default:
			c.errorf("ERR Syntax error in HELLO option '%s'", trunc(args[i]))
			return
		}
	}
	if !authed {
		c.errorf("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
		return
	}
	c.authed = true
	for i := 2; i < len(args); i++ {
		if eq(args[i], "setname") {
			c.name = string(args[i+1])
		}
	}
	if proto == "3" {
		if len(t.route.Shards) != 1 || c.lp == nil || t.route.Shards[0].Master == "" || t.route.Replicated {
			c.errorf("NOPROTO RESP3 goes through the Marina proxy on single-shard databases without replicated durability only")
			return
		}
		// RESP3 passes through on a pinned connection (already logged in;
		// the forwarded HELLO carries no credentials).
		fwd := [][]byte{args[0], args[1]}
		c.pin = copyCmd(fwd)
		return
	}
	out := resp.AppendArrayHeader(nil, 14)
	kv := func(k, v string) {
		out = resp.AppendBulk(out, []byte(k))
		out = resp.AppendBulk(out, []byte(v))
	}
	kv("server", "redis")
	kv("version", "7.0.0")
	out = resp.AppendBulk(out, []byte("proto"))
	out = resp.AppendInt(out, 2)
	out = resp.AppendBulk(out, []byte("id"))
	out = resp.AppendInt(out, int64(c.id))
	kv("mode", "standalone")
	kv("role", "master")
	out = resp.AppendBulk(out, []byte("modules"))
	out = resp.AppendArrayHeader(out, 0)
	c.answer(out)
}

func (c *client) clientCmd(args [][]byte) {
	if len(args) < 2 {
		c.errorf("ERR wrong number of arguments for 'client' command")
		return
	}
	switch lower(args[1]) {
	case "setname":
		if len(args) != 3 || bytes.ContainsAny(args[2], " \n") {
			c.errorf("ERR Client names cannot contain spaces, newlines or special characters.")
			return
		}
		c.name = string(args[2])
		c.answer(resp.OK)
	case "getname":
		if c.name == "" {
			c.answer(resp.Null)
		} else {
			c.answer(resp.AppendBulk(nil, []byte(c.name)))
		}
	case "id":
		c.answer(resp.AppendInt(nil, int64(c.id)))
	case "setinfo":
		c.answer(resp.OK)
	default:
		c.errorf("ERR CLIENT %s is not supported by the Marina proxy", trunc(args[1]))
	}
}

// splitKeys sends a multi-key command per shard (keys grouped, order kept)
// and merges the answers. stride is 1 for keys, 2 for key/value pairs.
func (c *client) splitKeys(t *topology, args [][]byte, stride int, op string) {
	if (len(args)-1)%stride != 0 {
		c.errorf("ERR wrong number of arguments for '%s' command", op)
		return
	}
	shards := t.route.Shards
	if len(shards) == 1 {
		c.toShard(t, 0, copyCmd(args))
		return
	}
	n := (len(args) - 1) / stride
	// Slot of each key once; then, per shard in first-seen order, how many
	// keys and how many bytes its sub-command takes.
	keyShard := make([]uint16, n)
	var partOf [slotsMaxShards]int16
	for i := range partOf[:len(shards)] {
		partOf[i] = -1
	}
	type part struct {
		shard, keys, size int
		pos               []int32 // MGET: where each key's value goes
	}
	var parts []part
	for k := 0; k < n; k++ {
		sh := t.slotMap[slots.Of(args[1+k*stride])]
		keyShard[k] = sh
		p := partOf[sh]
		if p < 0 {
			p = int16(len(parts))
			partOf[sh] = p
			parts = append(parts, part{shard: int(sh), size: 16 + len(args[0]) + 16})
		}
		parts[p].keys++
		for a := 0; a < stride; a++ {
			parts[p].size += len(args[1+k*stride+a]) + 16
		}
	}
	for _, p := range parts {
		if c.master(t, p.shard) == "" {
			return
		}
	}
	cmds := make([][]byte, len(parts))
	for i := range parts {
		b := make([]byte, 0, parts[i].size)
		b = resp.AppendArrayHeader(b, 1+parts[i].keys*stride)
		cmds[i] = resp.AppendBulk(b, args[0])
		if op == "mget" {
			parts[i].pos = make([]int32, 0, parts[i].keys)
		}
	}
	for k := 0; k < n; k++ {
		p := partOf[keyShard[k]]
		for a := 0; a < stride; a++ {
			cmds[p] = resp.AppendBulk(cmds[p], args[1+k*stride+a])
		}
		if op == "mget" {
			parts[p].pos = append(parts[p].pos, int32(k))
		}
	}
	reqs := make([]*request, len(parts))
	for i, p := range parts {
		reqs[i] = c.send(shards[p.shard].Master, cmds[i])
	}
	c.pend = append(c.pend, pending{reqs: reqs, merge: func(reqs []*request) []byte {
		for _, r := range reqs {
			if r.err != nil || resp.IsError(r.reply) {
				return replyOf(r)
			}
		}
		switch op {
		case "mget":
			vals := make([][]byte, n)
			size := 16
			for i := range parts {
				els, err := resp.Elements(reqs[i].reply)
				if err != nil || len(els) != len(parts[i].pos) {
					return resp.AppendError(nil, "ERR proxy: bad MGET reply from shard")
				}
				for j, e := range els {
					vals[parts[i].pos[j]] = e
					size += len(e)
				}
			}
			out := resp.AppendArrayHeader(make([]byte, 0, size), n)
			for _, v := range vals {
				out = append(out, v...)
			}
			return out
		case "mset":
			return resp.OK
		default:
			return sumInts(reqs)
		}
	}})
}

// slotsMaxShards bounds the shard count (state.MaxShards).
const slotsMaxShards = 256

// fanout sends a command to every shard's master and merges.
func (c *client) fanout(t *topology, args [][]byte, merge func([]*request) []byte) {
	var reqs []*request
	for i, sh := range t.route.Shards {
		if c.master(t, i) == "" {
			return
		}
		reqs = append(reqs, c.send(sh.Master, copyCmd(args)))
	}
	c.pend = append(c.pend, pending{reqs: reqs, merge: merge})
}

func firstErr(reqs []*request) []byte {
	for _, r := range reqs {
		if r.err != nil || resp.IsError(r.reply) {
			return replyOf(r)
		}
	}
	return nil
}

func sumInts(reqs []*request) []byte {
	if e := firstErr(reqs); e != nil {
		return e
	}
	var sum int64
	for _, r := range reqs {
		n, ok := resp.Int(r.reply)
		if !ok {
			return resp.AppendError(nil, "ERR proxy: expected an integer reply")
		}
		sum += n
	}
	return resp.AppendInt(nil, sum)
}

func allOK(reqs []*request) []byte {
	if e := firstErr(reqs); e != nil {
		return e
	}
	return resp.OK
}

func concatArrays(reqs []*request) []byte {
	if e := firstErr(reqs); e != nil {
		return e
	}
	var all [][]byte
	for _, r := range reqs {
		els, err := resp.Elements(r.reply)
		if err != nil {
			return resp.AppendError(nil, "ERR proxy: expected an array reply")
		}
		all = append(all, els...)
	}
	out := resp.AppendArrayHeader(nil, len(all))
	for _, e := range all {
		out = append(out, e...)
	}
	return out
}

// sameReply returns the replies when they agree (SCRIPT LOAD's sha).
func sameReply(reqs []*request) []byte {
	if e := firstErr(reqs); e != nil {
		return e
	}
	for _, r := range reqs[1:] {
		if !bytes.Equal(r.reply, reqs[0].reply) {
			return resp.AppendError(nil, "ERR proxy: shards answered differently")
		}
	}
	return reqs[0].reply
}

func firstNonNull(reqs []*request) []byte {
	if e := firstErr(reqs); e != nil {
		return e
	}
	for _, r := range reqs {
		if !bytes.Equal(r.reply, resp.Null) {
			return r.reply
		}
	}
	return resp.Null
}

// scan walks the shards one after the other. The cursor the client sees is
// the shard's cursor shifted left by 8 bits plus the shard index (at most
// 256 shards).
func (c *client) scan(t *topology, args [][]byte) {
	cur, err := strconv.ParseUint(string(args[1]), 10, 64)
	if err != nil {
		c.errorf("ERR invalid cursor")
		return
	}
	shards := t.route.Shards
	idx := int(cur & 0xff)
	if idx >= len(shards) {
		c.errorf("ERR invalid cursor")
		return
	}
	sub := append([][]byte{args[0], []byte(strconv.FormatUint(cur>>8, 10))}, args[2:]...)
	if c.master(t, idx) == "" {
		return
	}
	r := c.send(shards[idx].Master, copyCmd(sub))
	n := len(shards)
	c.pend = append(c.pend, pending{reqs: []*request{r}, merge: func(reqs []*request) []byte {
		if e := firstErr(reqs); e != nil {
			return e
		}
		els, err := resp.Elements(reqs[0].reply)
		if err != nil || len(els) != 2 {
			return resp.AppendError(nil, "ERR proxy: bad SCAN reply")
		}
		cb, _ := resp.BulkBytes(els[0])
		next, _ := strconv.ParseUint(string(cb), 10, 64)
		var out uint64
		switch {
		case next != 0:
			out = next<<8 | uint64(idx)
		case idx+1 < n:
			out = uint64(idx + 1)
		default:
			out = 0
		}
		b := resp.AppendArrayHeader(nil, 2)
		b = resp.AppendBulk(b, []byte(strconv.FormatUint(out, 10)))
		return append(b, els[1]...)
	}})
}

package proxy

import (
	"fmt"
	"time"

	"github.com/marina-redis/marina/internal/resp"
)

// session is what one client connection means to the proxy, whichever
// engine moves its bytes: login, name, transaction, the pinning request
// and the answers it is owed, in order. Meaning code (dispatch, conncmds,
// txn, multikey) works on a session only; it never reads or writes a
// socket. What it sends to backends it queues (send); after each command
// the engine delivers the queue its own way and empties it (sent), so the
// hot path has no interface call and no engine branch.
type session struct {
	d      *DB
	id     uint64
	pend   []pending
	authed bool
	name   string
	quit   bool
	// txn queues a MULTI on a sharded database until EXEC.
	txn *txn
	// pin is the command that asked for a pinned backend connection; once
	// the replies before it are out, the engine relays the client's traffic
	// raw to and from a connection of its own for the rest of its life.
	pin []byte
	// raw: the command being dispatched as the client sent it (RESP), valid
	// during dispatch only; set by an engine that copies it into a backend's
	// output before the client's input buffer changes (the event loop).
	raw []byte
	// writing: the command being dispatched may write (durability);
	// reading: it only reads (read/write split).
	writing bool
	reading bool
	// queued: the backend requests of the command being dispatched, in
	// order, for the engine to send.
	queued []*request
	// reqs recycles requests for an engine that owns them end to end (the
	// event loop); nil allocates.
	reqs *requestPool
}

func newSession(d *DB) session {
	return session{d: d, id: d.nextID.Add(1), authed: d.topo.Load().route.Password == ""}
}

// slot of a reply in the client's ordered output.
type pending struct {
	imm   []byte     // an answer the proxy gave itself
	one   *request   // the one backend request whose reply is the answer (no slice to allocate)
	reqs  []*request // backend requests whose replies make up the answer
	merge func(reqs []*request) []byte
	start time.Time // when the command arrived (latency)
	name  string
}

// request is one command on its way to a backend. The reply (raw RESP) or
// the error is set before done is called.
type request struct {
	cmd   []byte
	addr  string // the backend it goes to
	reply []byte
	err   error
	done  func()
	// Event loop engine: the client waiting for it, and whether the reply
	// (or error) is in. Only the loop goroutine touches them.
	owner    *client
	finished bool
	// Durability: a write is answered only as a WAIT after it says
	// (held until then, loop engine); waits is on that WAIT, its writes.
	write bool
	held  bool
	waits []*request
	// login: the AUTH a new backend connection starts with (loop engine);
	// an error reply fails the connection.
	login bool
	sent  time.Time // loop engine: when it was queued, for the deadline
}

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

// stamp marks the answer the last command added (if any) with when it
// arrived, for the latency histogram and the slow log.
func (c *session) stamp(before int, at time.Time, cmd []byte) {
	if len(c.pend) > before {
		c.pend[len(c.pend)-1].start = at
		c.pend[len(c.pend)-1].name = cmdName(cmd) // interned for common commands: no allocation
	}
}

func replyOf(r *request) []byte {
	if r.err != nil {
		return resp.AppendError(nil, "ERR backend unavailable: "+r.err.Error())
	}
	return r.reply
}

func (c *session) answer(b []byte) { c.pend = append(c.pend, pending{imm: b}) }

func (c *session) errorf(format string, args ...any) {
	c.d.Stats.Errors.Add(1)
	c.answer(resp.AppendError(nil, fmt.Sprintf(format, args...)))
}

// send queues one command to a backend and returns its request; the
// engine sends it once the command is dispatched.
func (c *session) send(addr string, cmd []byte) *request {
	r := c.reqs.get()
	r.cmd, r.addr, r.write = cmd, addr, c.writing
	c.queued = append(c.queued, r)
	return r
}

// sent forgets what the last command queued, once the engine has taken
// it (no reference kept: a request may hold a large reply).
func (c *session) sent() {
	clear(c.queued)
	c.queued = c.queued[:0]
}

// needsTableFirst says whether args cannot be dispatched before the
// command table is known; the engine learns it first (waiting off the
// event loop, or in line on a client's own goroutine).
func (c *session) needsTableFirst(args [][]byte) bool {
	return c.authed && len(args) > 0 && c.d.cmds.Load() == nil && (c.txn != nil || needsTable(args[0]))
}

func copyCmd(args [][]byte) []byte { return resp.AppendCommand(nil, args...) }

// forwardable is the command as it goes to a backend: the client's own
// bytes when the engine offers them (they are RESP, not inline, and copied
// before they change), else a copy.
func (c *session) forwardable(args [][]byte) []byte {
	if c.raw != nil {
		return c.raw
	}
	return copyCmd(args)
}

// requestPool holds finished requests for reuse: the event loop's hot
// path allocates none. A nil pool allocates.
type requestPool struct{ free []*request }

func (p *requestPool) get() *request {
	if p == nil {
		return &request{}
	}
	if n := len(p.free); n > 0 {
		r := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		return r
	}
	return &request{}
}

func (p *requestPool) put(r *request) {
	if len(p.free) < 4096 {
		*r = request{}
		p.free = append(p.free, r)
	}
}

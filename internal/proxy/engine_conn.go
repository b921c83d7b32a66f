package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/marina-redis/marina/internal/redisconf"
	"github.com/marina-redis/marina/internal/resp"
)

// connEngine is the goroutine-per-connection engine: a net.Listener (TLS
// by crypto/tls when the route says so), one goroutine per client that
// reads a pipeline, dispatches it on the client's session, sends the
// backend requests in one batch per shared backend connection, waits for
// the replies and writes the answers. Simple and portable; the event loop
// (loop_linux.go) is faster and is the default on Linux.
type connEngine struct {
	d       *DB
	ln      net.Listener
	clients sync.WaitGroup // accept and every client's goroutine
	conns   sync.Map       // net.Conn -> struct{}
}

func startConnEngine(d *DB, r Route) (*connEngine, error) {
	ln, err := net.Listen("tcp", r.Addr)
	if err != nil {
		return nil, err
	}
	if r.TLS != nil {
		ln = tls.NewListener(ln, r.TLS)
	}
	e := &connEngine{d: d, ln: ln}
	e.clients.Add(1)
	go e.accept()
	return e, nil
}

func (e *connEngine) addr() string { return e.ln.Addr().String() }
func (e *connEngine) name() string { return "goroutine" }

// wake: nothing waits; its clients learn the command table in line.
func (e *connEngine) wake() {}

func (e *connEngine) close() {
	e.ln.Close()
	e.conns.Range(func(k, _ any) bool {
		k.(net.Conn).Close()
		return true
	})
	e.clients.Wait()
}

func (e *connEngine) accept() {
	defer e.clients.Done()
	d := e.d
	for {
		conn, err := e.ln.Accept()
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
			if t.route.TLS == nil {
				// Not over TLS: that would be a handshake on the accepting
				// goroutine, for a client refused anyway (as the loop does).
				_, _ = conn.Write([]byte("-ERR max number of clients reached\r\n"))
			}
			conn.Close()
			continue
		}
		d.Stats.Connections.Add(1)
		d.Stats.Accepted.Add(1)
		e.clients.Add(1)
		e.conns.Store(conn, struct{}{})
		go func() {
			defer e.clients.Done()
			defer d.Stats.Connections.Add(-1)
			defer e.conns.Delete(conn)
			defer conn.Close()
			c := &connClient{session: newSession(d), conn: conn, r: resp.NewReader(conn, 16<<10)}
			c.serve()
		}()
	}
}

// connClient is one client of the goroutine engine.
type connClient struct {
	session
	conn  net.Conn
	r     *resp.Reader
	out   []byte
	wg    sync.WaitGroup
	conns map[string]*backendConn // this client's backend connections, by address
	// batch holds the commands of the pipeline being read, per backend
	// connection, sent together at flush time.
	batch map[*backendConn][]*request
	// waits: the WAITs of this flush (durability replicated).
	waits []*request
}

func (c *connClient) serve() {
	d := c.d
	c.r.MaxSize = d.topo.Load().route.MaxRequest
	for !c.quit {
		c.r.Unauth = !c.authed
		if idle := d.topo.Load().route.Idle; idle > 0 && c.r.Buffered() == 0 {
			_ = c.conn.SetReadDeadline(time.Now().Add(idle))
		}
		args, err := c.r.ReadCommand()
		if err != nil {
			var pe *resp.ProtocolError
			if errors.As(err, &pe) {
				c.flush()
				_, _ = c.conn.Write(resp.AppendError(nil, "ERR "+pe.Error()))
			} else if !errors.Is(err, io.EOF) {
				c.flush()
			}
			return
		}
		if max := c.r.MaxSize; max > 0 && inlineSize(args) > max {
			// Only an inline command gets here this large (the reader bounds
			// RESP ones by MaxSize): refused, as the event loop refuses it.
			c.flush()
			_, _ = c.conn.Write(resp.AppendError(nil, "ERR Protocol error: too big inline request"))
			return
		}
		d.Stats.Ops.Add(1)
		if c.needsTableFirst(args) {
			_, _ = d.table(d.ctx) // dispatch says so when it failed
		}
		before := len(c.pend)
		c.dispatch(args)
		c.stamp(before, time.Now(), args[0])
		c.sendQueued()
		if c.pin != nil {
			// The replies before the pinning command go first.
			if c.flush() {
				c.tunnel()
			}
			return
		}
		// Answer a whole pipeline at once: everything the client sent so far.
		if c.r.Buffered() == 0 || len(c.pend) >= 512 {
			if !c.flush() {
				return
			}
		}
	}
	c.flush()
}

// inlineSize is the length of the inline line args came from, give or
// take quoting.
func inlineSize(args [][]byte) int {
	n := len(args) - 1
	for _, a := range args {
		n += len(a)
	}
	return n
}

// sendQueued batches what the last command queued per backend connection.
func (c *connClient) sendQueued() {
	defer c.sent()
	for _, r := range c.queued {
		c.wg.Add(1)
		r.done = c.wg.Done
		bc := c.conns[r.addr]
		if bc == nil || !bc.usable() {
			var err error
			if bc, err = c.d.pool(r.addr).get(c.d.ctx, c.id); err != nil {
				r.err, r.finished = err, true
				r.done()
				continue
			}
			if c.conns == nil {
				c.conns = map[string]*backendConn{}
			}
			c.conns[r.addr] = bc
		}
		if c.batch == nil {
			c.batch = map[*backendConn][]*request{}
		}
		c.batch[bc] = append(c.batch[bc], r)
	}
}

// flush sends the pipeline's commands (one batch per backend), waits for
// the replies and writes every answer in order.
func (c *connClient) flush() bool {
	route := &c.d.topo.Load().route
	for bc, rs := range c.batch {
		if route.Replicated {
			rs = c.confirm(route, rs)
		}
		bc.send(rs)
		delete(c.batch, bc)
	}
	c.wg.Wait()
	for i, w := range c.waits {
		c.d.Stats.Errors.Add(int64(settleWrites(w)))
		c.waits[i] = nil
	}
	c.waits = c.waits[:0]
	c.out = c.out[:0]
	for i := range c.pend {
		p := &c.pend[i]
		if !p.start.IsZero() {
			c.d.lat.observe(time.Since(p.start), p.name)
		}
		c.out = append(c.out, p.render()...)
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

// confirm appends one WAIT after a batch's writes (durability replicated):
// flush answers them only as that WAIT says.
func (c *connClient) confirm(route *Route, rs []*request) []*request {
	var writes []*request
	for _, r := range rs {
		if r.write {
			writes = append(writes, r)
		}
	}
	if len(writes) == 0 {
		return rs
	}
	c.wg.Add(1)
	w := &request{cmd: waitCommand(route), done: c.wg.Done, waits: writes}
	c.waits = append(c.waits, w)
	return append(rs, w)
}

// tunnel gives the client a backend connection of its own, logged in as
// the proxy's restricted user (as the shared ones), sends it the pinning
// command and what the client sent after it, and relays both ways until
// either side ends.
func (c *connClient) tunnel() {
	t := c.d.topo.Load()
	master := t.route.Shards[0].Master
	var tc *tls.Config
	if t.route.BackendTLS != nil {
		tc = t.route.BackendTLS(master)
	}
	bconn, _, err := dialLogin(c.d.ctx, master, redisconf.ProxyUser, t.route.Secret, tc)
	if err != nil {
		_, _ = c.conn.Write(resp.AppendError(nil, "ERR backend unavailable: "+err.Error()))
		return
	}
	_ = c.conn.SetReadDeadline(time.Time{}) // the idle timeout is for commands the proxy reads
	var once sync.Once
	stop := func() {
		once.Do(func() {
			bconn.Close()
			c.conn.Close()
		})
	}
	defer stop()
	go func() {
		_, _ = io.Copy(c.conn, bconn)
		stop()
	}()
	// The client's reader may hold commands sent after the pinning one:
	// they go first, re-encoded; then the bytes go as they come.
	out := c.pin
	for c.r.Buffered() > 0 {
		args, err := c.r.ReadCommand()
		if err != nil {
			return
		}
		out = resp.AppendCommand(out, args...)
	}
	if _, err := bconn.Write(out); err != nil {
		return
	}
	_, _ = io.Copy(bconn, c.conn)
}

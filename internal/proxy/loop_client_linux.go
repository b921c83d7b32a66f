package proxy

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/marina-redis/marina/internal/resp"
)

// The event loop's side of its clients: accepting them, reading their
// bytes, cutting commands out of them (resumably, for requests that
// arrive in pieces), dispatching each on the client's session and sending
// what it queued, and the node's input budget.

// client is one client connection of the event loop: its session (what
// its commands mean) and the loop's bookkeeping for its socket.
type client struct {
	session
	fd         int
	in         []byte
	inOff      int
	out        []byte
	closed     bool
	closeAfter bool
	lastActive time.Time
	scratch    [][]byte
	polling    uint32 // current epoll mask
	dirty      bool   // listed for the loop's next write pass
	// tunnel: the pinned backend connection the client's traffic is
	// relayed to raw, once its session asked for one (pin).
	tunnel *lbackend
	// partial resumes checking an incomplete request; charged is what the
	// client's input buffer holds of the node's Budget.
	partial resp.CommandScanner
	charged int64
	// parked: waiting for the command table.
	parked bool
	// tls: the client's TLS session, driven by the loop (nil: plaintext).
	tls *loopTLS
}

func (l *loop) accept() {
	for {
		fd, _, err := unix.Accept4(l.lnfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			return // EAGAIN: no more pending connections
		}
		t := l.d.topo.Load()
		if max := t.route.MaxClients; max > 0 && l.d.Stats.Connections.Load() >= int64(max) {
			l.d.Stats.Rejected.Add(1)
			if t.route.TLS == nil {
				_, _ = unix.Write(fd, []byte("-ERR max number of clients reached\r\n"))
			}
			unix.Close(fd)
			continue
		}
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		if t.route.TLS != nil {
			l.startTLS(fd, t.route.TLS) // the loop takes it over after the handshake
			continue
		}
		l.addClient(fd)
	}
}

// addClient starts serving a connected client socket.
func (l *loop) addClient(fd int) *client {
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}); err != nil {
		unix.Close(fd)
		return nil
	}
	c := &client{session: newSession(l.d), fd: fd, lastActive: time.Now(), polling: unix.EPOLLIN | unix.EPOLLRDHUP}
	c.reqs = &l.reqs
	l.clients[fd] = c
	l.d.Stats.Connections.Add(1)
	l.d.Stats.Accepted.Add(1)
	return c
}

func (l *loop) closeClient(c *client) {
	if c.closed {
		return
	}
	c.closed = true
	if c.tunnel != nil {
		t := c.tunnel
		c.tunnel, t.tunnelOf = nil, nil
		_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, t.fd, nil)
		unix.Close(t.fd)
		delete(l.byFD, t.fd)
		delete(l.tunnels, t)
		t.dead = true
	}
	_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	unix.Close(c.fd)
	delete(l.clients, c.fd)
	l.d.Stats.Connections.Add(-1)
	if b := l.d.topo.Load().route.Input; b != nil && c.charged > 0 {
		b.give(c.charged)
		c.charged = 0
	}
	c.in = nil // a large buffer goes back to the allocator now
}

// clientData serves bytes a client sent (decrypted, for a TLS client).
func (l *loop) clientData(c *client, data []byte) {
	c.lastActive = l.now
	if c.tunnel != nil {
		c.tunnel.out = append(c.tunnel.out, data...)
		l.markB(c.tunnel)
		return
	}
	c.in = append(c.in, data...)
	if !c.parked {
		l.parse(c)
	}
}

func (l *loop) clientEvent(c *client, events uint32) {
	if events&(unix.EPOLLIN|unix.EPOLLHUP|unix.EPOLLERR|unix.EPOLLRDHUP) != 0 {
		n, err := rawRead(c.fd, l.rbuf)
		if err == unix.EAGAIN {
			return
		}
		if n <= 0 || err != nil {
			l.closeClient(c)
			return
		}
		if c.tls != nil {
			c.tls.io.in = append(c.tls.io.in, l.rbuf[:n]...)
			l.tlsDrain(c)
		} else {
			l.clientData(c, l.rbuf[:n])
		}
	}
	if events&unix.EPOLLOUT != 0 {
		l.markC(c)
	}
}

// parse routes every complete command in the client's input.
func (l *loop) parse(c *client) {
	t := l.d.topo.Load()
	max := t.route.MaxRequest
	for !c.closeAfter && c.pin == nil && c.tunnel == nil {
		args, n, err := l.next(c, max)
		if err == resp.ErrIncomplete {
			if max > 0 && len(c.in)-c.inOff > max+(64<<10) {
				c.answer(resp.AppendError(nil, "ERR Protocol error: request larger than the limit"))
				c.closeAfter = true
			}
			break
		}
		if err != nil {
			c.answer(resp.AppendError(nil, "ERR "+err.Error()))
			c.closeAfter = true
			break
		}
		if c.needsTableFirst(args) && l.d.ensureTable() {
			// Not consumed: parsed again once the table is known.
			c.parked = true
			l.parked = append(l.parked, c)
			break
		}
		if c.in[c.inOff] == '*' {
			c.raw = c.in[c.inOff : c.inOff+n]
		}
		c.inOff += n
		c.scratch = args
		if len(args) == 0 {
			c.raw = nil
			continue
		}
		l.d.Stats.Ops.Add(1)
		before := len(c.pend)
		c.dispatch(args)
		for _, r := range c.queued {
			r.owner = c
			l.enqueue(r) // copies r.cmd: c.raw may point into c.in
		}
		c.sent()
		c.raw = nil
		c.stamp(before, l.now, args[0]) // latency counts from the pass in which the command arrived
		if c.quit {
			c.closeAfter = true
		}
	}
	// Keep the unparsed tail at the start of the buffer.
	if c.inOff > 0 {
		rest := copy(c.in, c.in[c.inOff:])
		c.in = c.in[:rest]
		c.inOff = 0
		if cap(c.in) > 1<<20 && rest < 4096 {
			c.in = append([]byte(nil), c.in...)
		}
	}
	l.charge(c)
	l.markC(c)
}

// next parses the client's next command. A complete one is parsed at
// once; an incomplete one is followed by the resumable scanner as bytes
// arrive and parsed once it is whole, so its cost stays linear in its
// size. A client that has not logged in gets Redis's small limits.
func (l *loop) next(c *client, max int) ([][]byte, int, error) {
	rest, unauth := c.in[c.inOff:], !c.authed
	if c.partial.Active() {
		n, err := c.partial.Scan(rest, max, unauth)
		if err != nil {
			return nil, 0, err
		}
		c.partial.Reset()
		rest = rest[:n]
	}
	args, n, err := resp.ParseCommandAs(rest, max, unauth, c.scratch[:0])
	if err == resp.ErrIncomplete {
		_, err = c.partial.Scan(rest, max, unauth)
	}
	return args, n, err
}

// freeInput is what a client may buffer without charging the node's budget.
const freeInput = 4 << 10

// charge keeps the node's input budget in step with what c holds; a
// client that would exceed it is refused and closed.
func (l *loop) charge(c *client) {
	b := l.d.topo.Load().route.Input
	if b == nil {
		return
	}
	want := int64(len(c.in))
	if want <= freeInput {
		want = 0
	}
	switch d := want - c.charged; {
	case d > 0:
		if !b.take(d) {
			c.answer(resp.AppendError(nil, "ERR marina: this node holds as much incomplete client input as it may (--proxy-input-budget): request refused"))
			c.closeAfter = true
			c.in, c.inOff = nil, 0
			c.partial.Reset()
			b.give(c.charged)
			c.charged = 0
			return
		}
		c.charged = want
	case d < 0:
		b.give(-d)
		c.charged = want
	}
}

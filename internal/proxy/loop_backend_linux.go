package proxy

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marina-redis/marina/internal/redisconf"
	"github.com/marina-redis/marina/internal/resp"
)

// The event loop's side of the backends: non-blocking connects, one
// shared connection per redis-server with the loop's requests pipelined
// on it, replies matched to requests in order, WAIT after writes
// (durability replicated), and failing what waits when a backend dies.

type dialFailure struct {
	at  time.Time
	err error
}

// lbackend is a backend connection owned by the loop.
type lbackend struct {
	addr    string
	fd      int
	out     []byte
	in      []byte
	pending []*request
	head    int
	polling uint32 // current epoll mask
	// tunnelOf is the client this connection is pinned to (raw relay);
	// tunnelLogin: its AUTH answer has not been taken off the stream yet.
	tunnelOf    *client
	tunnelLogin bool
	// unconfirmed: writes queued since the last WAIT (durability).
	unconfirmed []*request
	dirty       bool
	dead        bool
	scan        resp.Scanner // resumes a reply arriving in pieces
	// connecting: a non-blocking connect in progress since dialed.
	connecting bool
	dialed     time.Time
}

// backendDeadline: the oldest request on a backend connection unanswered
// this long fails the connection. Generous: a slow KEYS or a large SORT is
// legitimate; a failover moves routes away from a dead master much sooner.
const backendDeadline = 10 * time.Second

func sockaddr(addr string) (unix.Sockaddr, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return nil, 0, err
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, 0, fmt.Errorf("not an IP address: %q", host)
	}
	if ip4 := ip.To4(); ip4 != nil {
		sa := &unix.SockaddrInet4{Port: port}
		copy(sa.Addr[:], ip4)
		return sa, unix.AF_INET, nil
	}
	sa := &unix.SockaddrInet6{Port: port}
	copy(sa.Addr[:], ip.To16())
	return sa, unix.AF_INET6, nil
}

// connect starts a non-blocking connect to addr.
func (l *loop) connect(addr string) (int, error) {
	if tc := l.d.topo.Load().route.BackendTLS; tc != nil {
		// redis-servers that speak TLS only: the loop talks to the
		// plaintext side of a bridge that dials them.
		return dialTLSBridge(addr, tc(addr))
	}
	sa, family, err := sockaddr(addr)
	if err != nil {
		return -1, err
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
		unix.Close(fd)
		return -1, fmt.Errorf("connect %s: %w", addr, err)
	}
	return fd, nil
}

// enqueue queues a request for its backend (dialled when first needed).
func (l *loop) enqueue(r *request) {
	b, err := l.backend(r.addr)
	if err != nil {
		r.err, r.finished = err, true
		return
	}
	b.out = append(b.out, r.cmd...)
	r.cmd = nil // copied; it may point into the client's input buffer
	r.sent = l.now
	b.pending = append(b.pending, r)
	if r.write && l.d.topo.Load().route.Replicated {
		r.held = true
		b.unconfirmed = append(b.unconfirmed, r)
	}
	l.markB(b)
}

// confirm appends one WAIT after a backend's batch of writes: the writes
// are answered only when it says a replica has them all.
func (l *loop) confirm(b *lbackend) {
	if len(b.unconfirmed) == 0 {
		return
	}
	w := &request{cmd: waitCommand(&l.d.topo.Load().route), waits: b.unconfirmed}
	b.unconfirmed = nil
	b.out = append(b.out, w.cmd...)
	b.pending = append(b.pending, w)
}

// settle finishes the writes a WAIT held.
func (l *loop) settle(w *request) {
	if n := settleWrites(w); n > 0 {
		l.d.Stats.Errors.Add(int64(n))
	}
	for _, r := range w.waits {
		r.held, r.finished = false, true
		if r.owner != nil && !r.owner.closed {
			l.markC(r.owner)
		}
	}
}

func (l *loop) backend(addr string) (*lbackend, error) {
	if b, ok := l.backends[addr]; ok {
		return b, nil
	}
	if f, ok := l.dialFailed[addr]; ok && time.Since(f.at) < time.Second {
		return nil, f.err
	}
	// Non-blocking connect: the loop never waits on a host that does not
	// answer. AUTH is simply the first command of the connection's pipeline.
	fd, err := l.connect(addr)
	if err != nil {
		l.dialFailed[addr] = dialFailure{at: time.Now(), err: err}
		return nil, err
	}
	b := &lbackend{addr: addr, fd: fd, polling: unix.EPOLLIN | unix.EPOLLOUT, connecting: true, dialed: time.Now()}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: b.polling, Fd: int32(fd)}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	login := &request{cmd: resp.AppendCommand(nil, []byte("AUTH"), []byte(redisconf.ProxyUser), []byte(l.d.topo.Load().route.Secret)),
		login: true}
	b.out = append(b.out, login.cmd...)
	b.pending = append(b.pending, login)
	l.backends[addr] = b
	l.byFD[fd] = b
	return b, nil
}

func (l *loop) failBackend(b *lbackend, err error) {
	_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, b.fd, nil)
	unix.Close(b.fd)
	delete(l.byFD, b.fd)
	b.dead = true
	delete(l.tunnels, b)
	if c := b.tunnelOf; c != nil {
		// The pinned connection ended (QUIT, or the backend went away):
		// so does the client's, once what was relayed is written. One that
		// never got going says why.
		if b.connecting || b.tunnelLogin {
			c.out = resp.AppendError(c.out, "ERR backend unavailable: "+err.Error())
		}
		b.tunnelOf, c.tunnel = nil, nil
		c.closeAfter = true
		l.markC(c)
		return
	}
	delete(l.backends, b.addr)
	fail := func(r *request) {
		r.err, r.finished, r.held = fmt.Errorf("backend %s: %w", b.addr, err), true, false
		if r.owner != nil && !r.owner.closed {
			l.markC(r.owner)
		}
	}
	for _, r := range b.pending[b.head:] {
		fail(r)
		for _, h := range r.waits {
			fail(h) // a held write whose confirmation is lost is not acknowledged
		}
	}
	for _, r := range b.unconfirmed {
		fail(r)
	}
	b.pending, b.head, b.unconfirmed = nil, 0, nil
}

func (l *loop) backendEvent(b *lbackend, events uint32) {
	if b.connecting {
		if events&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
			return
		}
		if soerr, err := unix.GetsockoptInt(b.fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || soerr != 0 {
			if err == nil {
				err = unix.Errno(soerr)
			}
			err = fmt.Errorf("connect %s: %w", b.addr, err)
			l.dialFailed[b.addr] = dialFailure{at: time.Now(), err: err}
			l.failBackend(b, err)
			return
		}
		b.connecting = false
		l.markB(b) // AUTH and whatever queued behind it can go now
		return
	}
	if events&(unix.EPOLLIN|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		n, err := rawRead(b.fd, l.rbuf)
		if err == unix.EAGAIN {
			return
		}
		if n <= 0 || err != nil {
			if err == nil {
				err = errors.New("connection closed")
			}
			l.failBackend(b, err)
			return
		}
		if c := b.tunnelOf; c != nil {
			if b.tunnelLogin {
				b.in = append(b.in, l.rbuf[:n]...)
				l.tunnelLoggedIn(b)
				return
			}
			c.out = append(c.out, l.rbuf[:n]...)
			l.markC(c)
			return
		}
		b.in = append(b.in, l.rbuf[:n]...)
		off := 0
		for b.head < len(b.pending) {
			end, err := b.scan.Scan(b.in[off:])
			if err == resp.ErrIncomplete {
				break
			}
			if err != nil {
				l.failBackend(b, err)
				return
			}
			b.scan.Reset()
			reply := b.in[off : off+end]
			r := b.pending[b.head]
			b.pending[b.head] = nil
			b.head++
			off += len(reply)
			if r.login {
				if resp.IsError(reply) {
					err := fmt.Errorf("backend %s refused AUTH: %s", b.addr, trimCRLF(reply))
					l.dialFailed[b.addr] = dialFailure{at: time.Now(), err: err}
					l.failBackend(b, err)
					return
				}
				continue
			}
			if c := r.owner; c != nil && !c.closed && !r.held && r.waits == nil && len(c.pend) > 0 &&
				c.pend[0].one == r && c.pend[0].merge == nil {
				// The answer the client waits for next, as is: straight into its
				// output, no copy kept.
				if p := &c.pend[0]; !p.start.IsZero() {
					l.d.lat.observe(time.Since(p.start), p.name)
				}
				c.out = append(c.out, reply...)
				c.pend[0] = pending{}
				c.pend = c.pend[1:]
				l.markC(c)
				// Nothing refers to r any more (not held, no WAIT, out of
				// both queues): it is reused for the next command.
				l.reqs.put(r)
				continue
			}
			r.reply = append([]byte(nil), reply...)
			if r.waits != nil {
				r.finished = true
				l.settle(r)
				continue
			}
			if r.held {
				continue // answered when its WAIT comes back
			}
			r.finished = true
			if r.owner != nil && !r.owner.closed {
				l.markC(r.owner)
			}
		}
		rest := copy(b.in, b.in[off:])
		b.in = b.in[:rest]
		if cap(b.in) > 4<<20 && rest < 64<<10 {
			b.in = append([]byte(nil), b.in...) // give back a peak's memory
		}
		switch {
		case b.head == len(b.pending):
			b.pending, b.head = b.pending[:0], 0
		case b.head > len(b.pending)/2 && b.head > 1024:
			b.pending = b.pending[:copy(b.pending, b.pending[b.head:])]
			b.head = 0
		}
	}
	if events&unix.EPOLLOUT != 0 {
		l.markB(b)
	}
}

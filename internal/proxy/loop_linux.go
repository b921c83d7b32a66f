package proxy

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/marina-redis/marina/internal/resp"
)

const loopSupported = true

// loopsPerDB is how many event loops serve one endpoint (SO_REUSEPORT
// spreads connections over them): Route.Loops, default one. On the 2-core
// benchmark machine two loops were 15-20% slower at -P 1 (less batching,
// more switching against redis-benchmark and redis-server for the same
// cores); hosts with cores to spare can set more.
func loopsPerDB(r Route) int { return max(1, r.Loops) }

// rawRead and rawWrite skip the scheduler hooks of unix.Read/Write: on
// non-blocking sockets they never block, and this is most of the loop's time.
func rawRead(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

// epollPoll is epoll_wait with a zero timeout, as a raw syscall.
func epollPoll(epfd int, events []unix.EpollEvent) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func rawWrite(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

// loop is the event loop engine: one goroutine owns a database's listening
// socket, its client sockets and its backend connections, all in one epoll
// set, as twemproxy does. Each wake-up reads every ready socket once, routes
// every complete command, then writes each backend's and each client's
// output with one syscall: no goroutine hand-offs, no lock on the hot path.
type loop struct {
	d        *DB
	addr     string
	epfd     int
	lnfd     int
	clients  map[int]*client
	backends map[string]*lbackend
	byFD     map[int]*lbackend
	// Clients and backends with output to write at the end of the pass;
	// a flag on each keeps them listed once.
	dirtyC []*client
	dirtyB []*lbackend
	events []unix.EpollEvent
	rbuf   []byte
	done   chan struct{}
	swept  time.Time
	now    time.Time // start of the current pass: cheap timestamps
	// dialFailed remembers recent dial failures: for a second, commands
	// for that backend fail at once instead of each blocking the loop on a
	// dial to a host that does not answer.
	dialFailed map[string]dialFailure
	// reqs holds finished requests for reuse: the hot path allocates none.
	reqs requestPool
	// tunnels: the pinned connections, for the connect timeout.
	tunnels map[*lbackend]bool
	// wakefd (an eventfd) wakes the loop from other goroutines: the
	// command table has been learned. parked are the clients waiting for it.
	wakefd int
	parked []*client
	// ready: TLS clients whose handshake (on a goroutine) is over; pbuf
	// holds plaintext decrypted from a TLS client.
	readyMu sync.Mutex
	ready   []tlsReady
	pbuf    []byte
}

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

// loops is the event loop engine of one endpoint: one loop, or several
// sharing the port (SO_REUSEPORT).
type loops []*loop

func startLoops(d *DB, r Route) (loops, error) {
	var ls loops
	addr := r.Addr
	for i := 0; i < loopsPerDB(r); i++ {
		lp, err := newLoop(d, addr)
		if err != nil {
			for _, o := range ls {
				o.shutdown() // not running yet: only its sockets to close
			}
			return nil, err
		}
		if i == 0 {
			addr = lp.addr // port 0: the others take the port the first got
		}
		ls = append(ls, lp)
	}
	for _, lp := range ls {
		go lp.run()
	}
	return ls, nil
}

func (ls loops) addr() string { return ls[0].addr }
func (ls loops) name() string { return "loop" }

func (ls loops) wake() {
	for _, lp := range ls {
		lp.wake()
	}
}

// close waits for the loops, which close everything of theirs once the
// DB's context is cancelled.
func (ls loops) close() {
	for _, lp := range ls {
		<-lp.done
	}
}

// wake makes the loop look at its parked clients now.
func (l *loop) wake() {
	var one [8]byte
	one[0] = 1
	_, _ = unix.Write(l.wakefd, one[:])
}

// unpark goes on with the clients that waited for the command table, once
// it is known or its fetch is over.
func (l *loop) unpark() {
	if len(l.parked) == 0 || l.d.fetching.Load() {
		return
	}
	parked := l.parked
	l.parked = nil
	for _, c := range parked {
		c.parked = false
		if !c.closed {
			l.parse(c)
		}
	}
}

// Backpressure: a client with this much unwritten output or this many
// unanswered commands is not read from until it catches up; a pinned
// backend is not read from while its client's output is this large.
const (
	maxClientOut     = 32 << 20
	maxClientPending = 100000
	maxPinnedIn      = 1 << 20
)

func overloaded(c *client) bool {
	return c.unsent() > maxClientOut || len(c.pend) > maxClientPending || (c.pin != nil && len(c.in) > maxPinnedIn)
}

func (l *loop) markC(c *client) {
	if !c.dirty && !c.closed {
		c.dirty = true
		l.dirtyC = append(l.dirtyC, c)
	}
}

func (l *loop) markB(b *lbackend) {
	if !b.dirty && !b.dead {
		b.dirty = true
		l.dirtyB = append(l.dirtyB, b)
	}
}
func newLoop(d *DB, addr string) (*loop, error) {
	sa, family, err := sockaddr(addr)
	if err != nil {
		return nil, err
	}
	lnfd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	_ = unix.SetsockoptInt(lnfd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	// Each loop has its own listening socket on the port; the kernel
	// spreads new connections over them.
	_ = unix.SetsockoptInt(lnfd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	if err := unix.Bind(lnfd, sa); err != nil {
		unix.Close(lnfd)
		return nil, err
	}
	if err := unix.Listen(lnfd, 4096); err != nil {
		unix.Close(lnfd)
		return nil, err
	}
	bound, _ := unix.Getsockname(lnfd)
	actual := addr
	switch b := bound.(type) {
	case *unix.SockaddrInet4:
		actual = net.JoinHostPort(net.IP(b.Addr[:]).String(), strconv.Itoa(b.Port))
	case *unix.SockaddrInet6:
		actual = net.JoinHostPort(net.IP(b.Addr[:]).String(), strconv.Itoa(b.Port))
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		unix.Close(lnfd)
		return nil, err
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, lnfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(lnfd)}); err != nil {
		unix.Close(lnfd)
		unix.Close(epfd)
		return nil, err
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err == nil {
		err = unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wakefd)})
	}
	if err != nil {
		unix.Close(lnfd)
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	return &loop{d: d, addr: actual, epfd: epfd, lnfd: lnfd, wakefd: wakefd, clients: map[int]*client{}, backends: map[string]*lbackend{},
		byFD: map[int]*lbackend{}, dialFailed: map[string]dialFailure{}, tunnels: map[*lbackend]bool{},
		events: make([]unix.EpollEvent, 512), rbuf: make([]byte, 64<<10), pbuf: make([]byte, 64<<10), done: make(chan struct{}), swept: time.Now()}, nil
}

func (l *loop) run() {
	// One thread for the loop's life: it comes back from epoll_wait on the
	// thread whose caches hold its buffers, instead of wherever the
	// scheduler finds one.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer close(l.done)
	defer l.shutdown()
	for {
		// Under load something is nearly always ready: ask without
		// blocking first, with a raw syscall that does not hand the
		// thread's P to the scheduler and take it back; block only when
		// nothing is.
		n, err := epollPoll(l.epfd, l.events)
		if n == 0 && err == nil {
			n, err = unix.EpollWait(l.epfd, l.events, 100)
		}
		if l.d.ctx.Err() != nil {
			return
		}
		l.now = time.Now()
		if err != nil && !errors.Is(err, unix.EINTR) {
			l.d.log.Error("epoll_wait", "err", err)
			return
		}
		for i := 0; i < n; i++ {
			ev := l.events[i]
			fd := int(ev.Fd)
			switch {
			case fd == l.lnfd:
				l.accept()
			case fd == l.wakefd:
				var b [8]byte
				_, _ = unix.Read(l.wakefd, b[:])
				l.adoptTLS()
			case l.byFD[fd] != nil:
				l.backendEvent(l.byFD[fd], ev.Events)
			case l.clients[fd] != nil:
				l.clientEvent(l.clients[fd], ev.Events)
			}
		}
		l.unpark()
		l.flush()
		if time.Since(l.swept) > time.Second {
			l.sweep()
		}
	}
}

func (l *loop) shutdown() {
	for _, c := range l.clients {
		l.closeClient(c)
	}
	for _, b := range l.backends {
		l.failBackend(b, errBackendClosed)
	}
	unix.Close(l.lnfd)
	unix.Close(l.wakefd)
	unix.Close(l.epfd)
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
		for _, r := range c.takeQueued() {
			r.owner = c
			l.enqueue(r) // copies r.cmd: c.raw may point into c.in
		}
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

// flush writes every backend's queued commands, then every client's
// completed answers in order, one write each.
func (l *loop) flush() {
	for i := 0; i < len(l.dirtyB); i++ {
		b := l.dirtyB[i]
		l.dirtyB[i] = nil
		b.dirty = false
		if b.dead {
			continue
		}
		l.confirm(b)
		if b.connecting {
			continue // written once the connect completes (EPOLLOUT)
		}
		if len(b.out) > 0 {
			n, err := rawWrite(b.fd, b.out)
			if err != nil && err != unix.EAGAIN {
				l.failBackend(b, err)
				continue
			}
			n = max(n, 0)
			b.out = b.out[:copy(b.out, b.out[n:])]
		}
		l.want(b.fd, &b.polling, len(b.out) > 0)
	}
	l.dirtyB = l.dirtyB[:0]
	for i := 0; i < len(l.dirtyC); i++ {
		c := l.dirtyC[i]
		l.dirtyC[i] = nil
		c.dirty = false
		if c.closed {
			continue
		}
		done := 0
		for done < len(c.pend) && c.pend[done].complete() {
			if p := &c.pend[done]; !p.start.IsZero() {
				l.d.lat.observe(time.Since(p.start), p.name)
			}
			c.out = append(c.out, c.pend[done].render()...)
			c.pend[done] = pending{}
			done++
		}
		if done > 0 {
			c.pend = c.pend[:copy(c.pend, c.pend[done:])]
		}
		if c.tls != nil && len(c.out) > 0 {
			// Encrypted whole into the session's buffer, written below.
			if _, err := c.tls.conn.Write(c.out); err != nil {
				l.closeClient(c)
				continue
			}
			c.out = c.out[:0]
			if cap(c.out) > 1<<20 {
				c.out = nil
			}
		}
		if out := c.wire(); len(*out) > 0 {
			n, err := rawWrite(c.fd, *out)
			if err != nil && err != unix.EAGAIN {
				l.closeClient(c)
				continue
			}
			n = max(n, 0)
			*out = (*out)[:copy(*out, (*out)[n:])]
			if cap(*out) > 1<<20 && len(*out) == 0 {
				*out = nil
			}
		}
		var mask uint32 = unix.EPOLLRDHUP
		if !overloaded(c) {
			mask |= unix.EPOLLIN
		}
		if c.unsent() > 0 {
			mask |= unix.EPOLLOUT
		}
		if t := c.tunnel; t != nil {
			// A slow reader of a pinned connection (pub/sub) slows the
			// backend down instead of filling the proxy's memory.
			l.wantIn(t, c.unsent() <= maxClientOut)
		}
		if mask != c.polling {
			c.polling = mask
			_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: mask, Fd: int32(c.fd)})
		}
		if c.closeAfter && c.unsent() == 0 && len(c.pend) == 0 {
			l.closeClient(c)
			continue
		}
		if c.pin != nil && c.unsent() == 0 && len(c.pend) == 0 {
			l.openTunnel(c)
		}
	}
	l.dirtyC = l.dirtyC[:0]
	if len(l.dirtyB) > 0 {
		l.flush() // tunnels opened above have output to send
	}
}

// wantIn turns reading a backend on or off, keeping its output interest.
func (l *loop) wantIn(b *lbackend, in bool) {
	mask := b.polling &^ uint32(unix.EPOLLIN)
	if in {
		mask |= unix.EPOLLIN
	}
	if mask != b.polling {
		b.polling = mask
		_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, b.fd, &unix.EpollEvent{Events: mask, Fd: int32(b.fd)})
	}
}

func (l *loop) want(fd int, cur *uint32, out bool) {
	mask := *cur & uint32(unix.EPOLLIN)
	if *cur == 0 {
		mask = unix.EPOLLIN
	}
	if out {
		mask |= unix.EPOLLOUT
	}
	if mask != *cur {
		*cur = mask
		_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, fd, &unix.EpollEvent{Events: mask, Fd: int32(fd)})
	}
}

// sweep closes idle clients and backends no longer in the route.
func (l *loop) sweep() {
	l.swept = time.Now()
	t := l.d.topo.Load()
	if idle := t.route.Idle; idle > 0 {
		for _, c := range l.clients {
			if len(c.pend) == 0 && time.Since(c.lastActive) > idle {
				l.closeClient(c)
			}
		}
	}
	keep := map[string]bool{}
	for _, sh := range t.route.Shards {
		keep[sh.Master] = true
		for _, r := range sh.Replicas {
			keep[r] = true
		}
	}
	for b := range l.tunnels {
		if (b.connecting || b.tunnelLogin) && time.Since(b.dialed) > time.Second {
			err := fmt.Errorf("connect %s: timed out", b.addr)
			l.dialFailed[b.addr] = dialFailure{at: time.Now(), err: err}
			l.failBackend(b, err)
		}
	}
	for addr, b := range l.backends {
		if b.head < len(b.pending) && !b.pending[b.head].sent.IsZero() && time.Since(b.pending[b.head].sent) > backendDeadline {
			// Silent, not closed (a host gone without a reset): fail what
			// waits rather than hang the clients until a route change.
			err := fmt.Errorf("no answer from %s for %s", addr, backendDeadline)
			l.dialFailed[addr] = dialFailure{at: time.Now(), err: err}
			l.failBackend(b, err)
			continue
		}
		if b.connecting && time.Since(b.dialed) > time.Second {
			err := fmt.Errorf("connect %s: timed out", addr)
			l.dialFailed[addr] = dialFailure{at: time.Now(), err: err}
			l.failBackend(b, err)
			continue
		}
		if !keep[addr] {
			// Replaced (failover, move): what is still pending there gets an
			// error instead of waiting on a server that may never answer.
			l.failBackend(b, errors.New("no longer in the route"))
		}
	}
}

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
		lp.wake() // it may be blocked with nothing to do: let it see the context
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
			n, err = unix.EpollWait(l.epfd, l.events, l.waitMillis())
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

// waitMillis is how long the loop may block in epoll_wait with nothing
// ready: 100 ms while it has clients or connections under way (their
// timeouts are checked at each turn), a second with only idle backend
// connections (the sweep's period), and for good with nothing at all.
// Every endpoint of every database has loops: on a host with hundreds of
// idle databases, a wake-up every 100 ms of each loop's locked thread
// cost more than the rest of the control plane. Shutdown and new work
// (parked clients, TLS handshakes done elsewhere) come through wakefd.
func (l *loop) waitMillis() int {
	switch {
	case len(l.clients) > 0 || len(l.tunnels) > 0 || len(l.parked) > 0:
		return 100
	case len(l.backends) > 0:
		return 1000
	default:
		return -1
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

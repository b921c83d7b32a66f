package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/marina-redis/marina/internal/resp"
)

// request is one command on its way to a backend. The reply (raw RESP) or
// the error is set before done is called.
type request struct {
	cmd   []byte
	reply []byte
	err   error
	done  func()
}

// backendConn multiplexes many clients' commands over one connection:
// a writer batches whatever is queued into one write, a reader matches the
// replies to the requests in order.
type backendConn struct {
	addr     string
	user, pw string
	queue    chan *request
	mu       sync.Mutex
	broken   bool
	closed   chan struct{}
}

var errBackendClosed = errors.New("backend connection closed")

func dialBackend(ctx context.Context, addr, user, pw string) (*backendConn, error) {
	d := net.Dialer{Timeout: time.Second, KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	// Authenticate synchronously before the connection carries traffic.
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write(resp.AppendCommand(nil, []byte("AUTH"), []byte(user), []byte(pw))); err != nil {
		conn.Close()
		return nil, err
	}
	rd := resp.NewReader(conn, 32<<10)
	rep, err := rd.ReadReply(nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if resp.IsError(rep) {
		conn.Close()
		return nil, fmt.Errorf("backend %s refused AUTH: %s", addr, trimCRLF(rep))
	}
	_ = conn.SetDeadline(time.Time{})
	b := &backendConn{addr: addr, user: user, pw: pw, queue: make(chan *request, 8192), closed: make(chan struct{})}
	pending := make(chan *request, 65536)
	go b.writeLoop(conn, pending)
	go b.readLoop(conn, rd, pending)
	return b, nil
}

func trimCRLF(b []byte) string {
	if len(b) >= 2 {
		b = b[:len(b)-2]
	}
	return string(b)
}

func (b *backendConn) usable() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.broken
}

func (b *backendConn) fail() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.broken {
		b.broken = true
		close(b.closed)
	}
}

// send queues a request; it fails at once if the connection is broken.
func (b *backendConn) send(r *request) {
	b.mu.Lock()
	if b.broken {
		b.mu.Unlock()
		r.err = errBackendClosed
		r.done()
		return
	}
	select {
	case b.queue <- r:
		b.mu.Unlock()
		return
	default:
	}
	b.mu.Unlock()
	// Queue full: wait for room (backpressure), or for the connection to break.
	select {
	case b.queue <- r:
	case <-b.closed:
		r.err = errBackendClosed
		r.done()
	}
}

func (b *backendConn) writeLoop(conn net.Conn, pending chan<- *request) {
	w := bufio.NewWriterSize(conn, 64<<10)
	defer close(pending)
	for {
		var r *request
		select {
		case r = <-b.queue:
		case <-b.closed:
			b.drainQueue()
			return
		}
		// Batch: everything already queued goes in the same write.
		for r != nil {
			pending <- r
			if _, err := w.Write(r.cmd); err != nil {
				b.fail()
				conn.Close()
				b.drainQueue()
				return
			}
			select {
			case r = <-b.queue:
			default:
				r = nil
			}
		}
		if err := w.Flush(); err != nil {
			b.fail()
			conn.Close()
			b.drainQueue()
			return
		}
	}
}

// drainQueue fails what is queued on a broken connection, and keeps doing
// so for a while: a sender that was blocked on a full queue may still get in.
func (b *backendConn) drainQueue() {
	deadline := time.After(5 * time.Second)
	for {
		select {
		case r := <-b.queue:
			r.err = errBackendClosed
			r.done()
		case <-deadline:
			return
		}
	}
}

func (b *backendConn) readLoop(conn net.Conn, rd *resp.Reader, pending <-chan *request) {
	var err error
	for r := range pending {
		if err == nil {
			r.reply, err = rd.ReadReply(nil)
			if err != nil {
				b.fail()
				conn.Close()
			}
		}
		if err != nil {
			r.reply, r.err = nil, fmt.Errorf("backend %s: %w", b.addr, err)
		}
		r.done()
	}
	conn.Close()
}

func (b *backendConn) close() { b.fail() }

// pool holds a few multiplexed connections to one backend; a client always
// uses the same one, so its commands stay in order.
type pool struct {
	addr, user, pw string
	mu             sync.Mutex
	conns          []*backendConn
}

const connsPerBackend = 4

func newPool(addr, user, pw string) *pool {
	return &pool{addr: addr, user: user, pw: pw, conns: make([]*backendConn, connsPerBackend)}
}

// get returns connection i, dialling it again if it broke.
func (p *pool) get(ctx context.Context, i uint64) (*backendConn, error) {
	idx := int(i % connsPerBackend)
	p.mu.Lock()
	c := p.conns[idx]
	p.mu.Unlock()
	if c != nil && c.usable() {
		return c, nil
	}
	nc, err := dialBackend(ctx, p.addr, p.user, p.pw)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if cur := p.conns[idx]; cur != nil && cur.usable() {
		nc.close()
		return cur, nil
	}
	p.conns[idx] = nc
	return nc, nil
}

func (p *pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		if c != nil {
			c.close()
		}
	}
}

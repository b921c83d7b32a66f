package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marina-redis/marina/internal/resp"
)

// The goroutine engine's backend connections (the command table's fetch
// uses them on both engines).

// backendConn multiplexes many clients' commands over one connection.
// Senders write themselves, combined: whoever finds no write in progress
// writes everything queued by then, so concurrent clients' commands share
// one syscall without a hand-off to a writer goroutine. A reader matches
// replies to requests in order.
type backendConn struct {
	addr    string
	conn    net.Conn
	broken  atomic.Bool
	mu      sync.Mutex
	buf     []byte
	writing bool
	// inflight is the order commands were written in; the reader takes
	// requests from it as replies arrive.
	inflight chan *request
	closed   chan struct{}
	once     sync.Once
}

var errBackendClosed = errors.New("backend connection closed")

func dialBackend(ctx context.Context, addr, user, pw string, tc *tls.Config) (*backendConn, error) {
	conn, rd, err := dialLogin(ctx, addr, user, pw, tc)
	if err != nil {
		return nil, err
	}
	b := &backendConn{addr: addr, conn: conn, inflight: make(chan *request, 1<<16), closed: make(chan struct{})}
	go b.readLoop(rd)
	return b, nil
}

// dialLogin connects to the redis-server at addr (over TLS when tc is
// set) and logs in as user, before the connection carries any traffic.
func dialLogin(ctx context.Context, addr, user, pw string, tc *tls.Config) (net.Conn, *resp.Reader, error) {
	d := net.Dialer{Timeout: time.Second, KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	if t, ok := conn.(*net.TCPConn); ok {
		_ = t.SetNoDelay(true)
	}
	if tc != nil {
		hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c := tls.Client(conn, tc)
		err := c.HandshakeContext(hctx)
		cancel()
		if err != nil {
			conn.Close()
			return nil, nil, fmt.Errorf("TLS with %s: %w", addr, err)
		}
		conn = c
	}
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write(resp.AppendCommand(nil, []byte("AUTH"), []byte(user), []byte(pw))); err != nil {
		conn.Close()
		return nil, nil, err
	}
	rd := resp.NewReader(conn, 64<<10)
	rep, err := rd.ReadReply(nil)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	if resp.IsError(rep) {
		conn.Close()
		return nil, nil, fmt.Errorf("backend %s refused AUTH: %s", addr, trimCRLF(rep))
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, rd, nil
}

func trimCRLF(b []byte) string {
	if len(b) >= 2 {
		b = b[:len(b)-2]
	}
	return string(b)
}

func (b *backendConn) usable() bool { return !b.broken.Load() }

func (b *backendConn) fail() {
	b.once.Do(func() {
		b.broken.Store(true)
		b.conn.Close()
		close(b.closed)
	})
}

// send writes a batch of requests (combined with concurrent batches) and
// registers them for their replies, in order.
func (b *backendConn) send(rs []*request) {
	b.mu.Lock()
	if b.broken.Load() {
		b.mu.Unlock()
		for _, r := range rs {
			r.err = errBackendClosed
			r.done()
		}
		return
	}
	for i, r := range rs {
		// In flight before it is written, so the reader always finds it.
		// The channel is large; if full, this blocks (backpressure).
		select {
		case b.inflight <- r:
		case <-b.closed:
			b.mu.Unlock()
			for _, r := range rs[i:] {
				r.err = errBackendClosed
				r.done()
			}
			return
		}
		b.buf = append(b.buf, r.cmd...)
	}
	if b.writing {
		b.mu.Unlock()
		return // the writer in progress takes it along
	}
	b.writing = true
	for len(b.buf) > 0 {
		out := b.buf
		b.buf = nil
		b.mu.Unlock()
		_, err := b.conn.Write(out)
		b.mu.Lock()
		if err != nil {
			b.writing = false
			b.mu.Unlock()
			b.fail()
			return
		}
		if cap(out) <= 64<<10 && b.buf == nil {
			b.buf = out[:0] // reuse the buffer
		}
	}
	b.writing = false
	b.mu.Unlock()
}

func (b *backendConn) readLoop(rd *resp.Reader) {
	var err error
	for {
		var r *request
		select {
		case r = <-b.inflight:
		case <-b.closed:
			// Fail what is left; senders see broken and stop adding.
			for {
				select {
				case r = <-b.inflight:
					r.err = errBackendClosed
					r.done()
				default:
					return
				}
			}
		}
		if err == nil {
			r.reply, err = rd.ReadReply(nil)
			if err != nil {
				b.fail()
			}
		}
		if err != nil {
			r.reply, r.err = nil, fmt.Errorf("backend %s: %w", b.addr, err)
		}
		r.done()
	}
}

func (b *backendConn) close() { b.fail() }

// pool holds a few multiplexed connections to one backend; a client always
// uses the same one, so its commands stay in order.
type pool struct {
	addr, user, pw string
	mu             sync.Mutex
	conns          []*backendConn
	tls            *tls.Config // nil: plaintext
}

const connsPerBackend = 1

func newPool(addr, user, pw string, tc *tls.Config) *pool {
	return &pool{addr: addr, user: user, pw: pw, tls: tc, conns: make([]*backendConn, connsPerBackend)}
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
	nc, err := dialBackend(ctx, p.addr, p.user, p.pw, p.tls)
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

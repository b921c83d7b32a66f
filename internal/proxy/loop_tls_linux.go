package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// A TLS client of the event loop: the handshake runs on a goroutine over a
// duplicate of the socket; then the loop owns the socket and drives the
// same tls.Conn itself, through tlsIO: ciphertext it reads from the socket
// is fed in, tls.Conn.Read returns plaintext or errWouldBlock (which
// crypto/tls treats as temporary: nothing is lost), and tls.Conn.Write
// encrypts into a buffer the loop writes out. No goroutine or extra socket
// per request.
type loopTLS struct {
	conn *tls.Conn
	io   *tlsIO
}

// tlsIO is the tls.Conn's transport: the real connection during the
// handshake, memory afterwards.
type tlsIO struct {
	net   net.Conn // during the handshake only
	in    []byte   // ciphertext from the socket, not yet consumed
	inOff int
	out   []byte // ciphertext for the socket
}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "would block" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

var errWouldBlock net.Error = wouldBlock{}

func (t *tlsIO) Read(p []byte) (int, error) {
	if t.net != nil {
		return t.net.Read(p)
	}
	if t.inOff >= len(t.in) {
		t.in, t.inOff = t.in[:0], 0
		return 0, errWouldBlock
	}
	n := copy(p, t.in[t.inOff:])
	t.inOff += n
	return n, nil
}

func (t *tlsIO) Write(p []byte) (int, error) {
	if t.net != nil {
		return t.net.Write(p)
	}
	t.out = append(t.out, p...)
	return len(p), nil
}

func (t *tlsIO) Close() error {
	if t.net != nil {
		return t.net.Close()
	}
	return nil
}

func (t *tlsIO) LocalAddr() net.Addr {
	if t.net != nil {
		return t.net.LocalAddr()
	}
	return &net.TCPAddr{}
}

func (t *tlsIO) RemoteAddr() net.Addr {
	if t.net != nil {
		return t.net.RemoteAddr()
	}
	return &net.TCPAddr{}
}

func (t *tlsIO) SetDeadline(d time.Time) error {
	if t.net != nil {
		return t.net.SetDeadline(d)
	}
	return nil
}

func (t *tlsIO) SetReadDeadline(d time.Time) error {
	if t.net != nil {
		return t.net.SetReadDeadline(d)
	}
	return nil
}

func (t *tlsIO) SetWriteDeadline(d time.Time) error {
	if t.net != nil {
		return t.net.SetWriteDeadline(d)
	}
	return nil
}

// tlsReady is a client whose handshake ended (err: it failed).
type tlsReady struct {
	fd  int
	tls *loopTLS
	err error
}

// startTLS runs a new client's handshake on a goroutine; the loop takes
// the client over when it is done (adoptTLS).
func (l *loop) startTLS(fd int, cfg *tls.Config) {
	dup, err := unix.Dup(fd)
	if err != nil {
		unix.Close(fd)
		return
	}
	go func() {
		f := os.NewFile(uintptr(dup), "tls-handshake")
		nc, err := net.FileConn(f)
		f.Close()
		var lt *loopTLS
		if err == nil {
			tio := &tlsIO{net: nc}
			tc := tls.Server(tio, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), tlsHandshakeTimeout)
			err = tc.HandshakeContext(ctx)
			cancel()
			nc.Close() // the duplicate; the loop keeps fd
			tio.net = nil
			lt = &loopTLS{conn: tc, io: tio}
		}
		l.readyMu.Lock()
		l.ready = append(l.ready, tlsReady{fd: fd, tls: lt, err: err})
		l.readyMu.Unlock()
		l.wake()
	}()
}

// adoptTLS registers the clients whose handshake is done.
func (l *loop) adoptTLS() {
	l.readyMu.Lock()
	ready := l.ready
	l.ready = nil
	l.readyMu.Unlock()
	for _, r := range ready {
		if r.err != nil {
			unix.Close(r.fd)
			continue
		}
		c := l.addClient(r.fd)
		if c == nil {
			continue
		}
		c.tls = r.tls
		// Bytes that came with the handshake may hold requests already.
		l.tlsDrain(c)
	}
}

// tlsDrain decrypts what the client's TLS session can, and serves it.
func (l *loop) tlsDrain(c *client) {
	for !c.closed {
		n, err := c.tls.conn.Read(l.pbuf)
		if n > 0 {
			l.clientData(c, l.pbuf[:n])
		}
		if err != nil {
			if !errors.Is(err, errWouldBlock) {
				l.closeClient(c)
			}
			break
		}
		if n == 0 {
			break
		}
	}
	if !c.closed && len(c.tls.io.out) > 0 {
		l.markC(c) // alerts, key updates: the session's own writes
	}
}

// wire is the buffer the loop writes to the client's socket: ciphertext
// for a TLS client, else the replies themselves.
func (c *client) wire() *[]byte {
	if c.tls != nil {
		return &c.tls.io.out
	}
	return &c.out
}

// unsent is what the client has yet to be sent, in bytes.
func (c *client) unsent() int {
	n := len(c.out)
	if c.tls != nil {
		n += len(c.tls.io.out)
	}
	return n
}

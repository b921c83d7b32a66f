package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// tlsHandshakeTimeout bounds a TLS client's handshake on an endpoint.
const tlsHandshakeTimeout = 10 * time.Second

// The endpoints reach redis-servers that speak TLS only through a bridge:
// the loop talks to one end of a socketpair, and two goroutines relay
// between the other end and the TLS connection. The loop's many requests
// to one redis-server share that connection, so the hop is paid per batch.

// relay copies both ways until either side ends, then closes both.
func relay(a, b net.Conn) {
	var once sync.Once
	done := func() {
		once.Do(func() {
			a.Close()
			b.Close()
		})
	}
	go func() {
		_, _ = io.Copy(a, b)
		done()
	}()
	_, _ = io.Copy(b, a)
	done()
}

// backendDialTimeout bounds the TLS dial of a bridge to a redis-server.
const backendDialTimeout = 2 * time.Second

// dialTLSBridge returns the loop's end of a bridge to the redis-server at
// addr over TLS. The dial happens on the bridge's goroutine: what the loop
// writes meanwhile waits in the socket; a failed dial closes the bridge,
// which the loop sees as a backend that hung up.
func dialTLSBridge(addr string, cfg *tls.Config) (int, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socketpair: %w", err)
	}
	f := os.NewFile(uintptr(fds[1]), "tls-bridge")
	inner, err := net.FileConn(f)
	f.Close()
	if err != nil {
		unix.Close(fds[0])
		return -1, err
	}
	go func() {
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: backendDialTimeout}, Config: cfg}
		ctx, cancel := context.WithTimeout(context.Background(), backendDialTimeout)
		conn, err := d.DialContext(ctx, "tcp", addr)
		cancel()
		if err != nil {
			inner.Close()
			return
		}
		if tc, ok := conn.(*tls.Conn); ok {
			if raw, ok := tc.NetConn().(*net.TCPConn); ok {
				_ = raw.SetNoDelay(true)
			}
		}
		relay(conn, inner)
	}()
	return fds[0], nil
}

package server

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/marina-redis/marina/internal/client"
)

// tlsTo opens a TLS connection to the node's API, trusting the cluster CA.
func (tc *testCluster) tlsTo(t *testing.T, i int) *tls.Conn {
	t.Helper()
	pool, err := client.LoadCAFile(tc.caFile())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", tc.nodes[i].HTTPAddr(),
		&tls.Config{RootCAs: pool, ServerName: tc.cfgs[i].Bind})
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// A client that sends half a request, or keeps an idle connection, or
// never finishes its TLS handshake, is cut off (the attack: connections
// held open forever, eating the descriptors the node's proxies and Raft
// share).
func TestHTTPSlowAndIdleClientsCutOff(t *testing.T) {
	tc := newTestClusterWith(t, 1, 64<<20, func(i int, c *Config) {
		c.HTTPReadTimeout, c.HTTPIdleTimeout = 500*time.Millisecond, 500*time.Millisecond
	})
	for _, tcase := range []struct{ name, send string }{
		{"half a request", "GET /v1/status HTTP/1.1\r\nHost: x\r\n"},
		{"a body that never comes", "POST /v1/dbs HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"},
		{"idle after a request", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"},
	} {
		t.Run(tcase.name, func(t *testing.T) {
			conn := tc.tlsTo(t, 0)
			defer conn.Close()
			if _, err := io.WriteString(conn, tcase.send); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := io.Copy(io.Discard, conn) // returns when the server closes
			if err != nil {
				t.Fatalf("connection still open after %v: %v", time.Since(start), err)
			}
		})
	}
	t.Run("a handshake that never comes", func(t *testing.T) {
		conn, err := net.Dial("tcp", tc.nodes[0].HTTPAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, conn); err != nil {
			t.Fatalf("connection still open: %v", err)
		}
	})
}

// The API holds at most HTTPMaxConns connections: one more waits to be
// accepted until another closes.
func TestHTTPConnectionCap(t *testing.T) {
	tc := newTestClusterWith(t, 1, 64<<20, func(i int, c *Config) { c.HTTPMaxConns = 4 })
	// The node's own clients (heartbeats to itself go in-process; its
	// status checks may hold one) leave room for a few of ours.
	var held []*tls.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	pool, err := client.LoadCAFile(tc.caFile())
	if err != nil {
		t.Fatal(err)
	}
	dial := func(timeout time.Duration) (*tls.Conn, error) {
		return tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", tc.nodes[0].HTTPAddr(),
			&tls.Config{RootCAs: pool, ServerName: tc.cfgs[0].Bind})
	}
	var refused bool
	for i := 0; i < 8; i++ {
		d := &net.Dialer{Timeout: 5 * time.Second}
		raw, err := d.Dial("tcp", tc.nodes[0].HTTPAddr())
		if err != nil {
			t.Fatal(err)
		}
		c := tls.Client(raw, &tls.Config{RootCAs: pool, ServerName: tc.cfgs[0].Bind})
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if err := c.Handshake(); err != nil {
			// Not accepted: the cap is reached.
			c.Close()
			refused = true
			break
		}
		_ = c.SetDeadline(time.Time{})
		held = append(held, c)
	}
	if !refused || len(held) > 4 {
		t.Fatalf("held %d connections with a cap of 4 (refused: %v)", len(held), refused)
	}
	// One closes: a new one is accepted.
	held[0].Close()
	held = held[1:]
	c, err := dial(5 * time.Second)
	if err != nil {
		t.Fatalf("after one closed: %v", err)
	}
	c.Close()
}

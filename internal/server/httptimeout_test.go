package server

import (
	"io"
	"net"
	"testing"
	"time"
)

// A client that sends half a request, or keeps an idle connection, is cut
// off (the attack: connections held open forever, eating the descriptors
// the node's proxies and Raft share).
func TestHTTPSlowAndIdleClientsCutOff(t *testing.T) {
	tc := newTestClusterWith(t, 1, 64<<20, func(i int, c *Config) {
		c.HTTPReadTimeout, c.HTTPIdleTimeout = 500*time.Millisecond, 500*time.Millisecond
	})
	addr := tc.nodes[0].HTTPAddr()
	for _, tcase := range []struct{ name, send string }{
		{"half a request", "GET /v1/status HTTP/1.1\r\nHost: x\r\n"},
		{"a body that never comes", "POST /v1/dbs HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"},
		{"idle after a request", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"},
	} {
		t.Run(tcase.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, tcase.send); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = io.Copy(io.Discard, conn) // returns when the server closes
			if err != nil {
				t.Fatalf("connection still open after %v: %v", time.Since(start), err)
			}
		})
	}
}

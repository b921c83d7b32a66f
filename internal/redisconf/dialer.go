package redisconf

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
)

// Dialer is how Marina's own clients (agent, fencer, probes, stats, the
// leader, the proxy's lag checks) reach redis-servers: as the internal
// user, RESP2, no client name, no retries, and over TLS when the servers
// speak it. A nil Dialer dials plaintext.
type Dialer struct {
	// TLS is the client configuration for the server at addr (nil: plaintext).
	TLS func(addr string) *tls.Config
	// Socket, when set, names the Unix socket of the server at addr if it
	// is one of this node's ("" otherwise): a dial goes there while the
	// socket exists (servers started before it had one are reached at
	// addr).
	Socket func(addr string) string
}

// internalBuffer sizes each buffer of an internal client's connections.
const internalBuffer = 8 << 10

// Internal returns options for the internal user of the server at addr:
// timeout bounds dialling, reading and writing, pool is the pool size.
func (d *Dialer) Internal(addr, secret string, timeout time.Duration, pool int) *redis.Options {
	// Small buffers: Marina's own commands and replies are small (INFO is a
	// few KiB), and a node holds several of these connections per instance;
	// go-redis's defaults (32 KiB each way, 128 KiB for the pipeline pool's)
	// made them most of a node's heap with hundreds of instances.
	o := &redis.Options{Addr: addr, Username: InternalUser, Password: secret, Protocol: 2, DisableIdentity: true,
		MaxRetries: -1, PoolSize: pool, DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout,
		ReadBufferSize: internalBuffer, WriteBufferSize: internalBuffer,
		PipelineReadBufferSize: internalBuffer, PipelineWriteBufferSize: internalBuffer, PipelinePoolSize: 1}
	if d != nil && d.TLS != nil {
		o.TLSConfig = d.TLS(addr)
	}
	if d != nil && d.Socket != nil {
		network := redis.NewDialer(o)
		o.Dialer = func(ctx context.Context, netw, a string) (net.Conn, error) {
			if p := d.Socket(addr); p != "" {
				if _, err := os.Stat(p); err == nil {
					nd := net.Dialer{Timeout: timeout}
					return nd.DialContext(ctx, "unix", p)
				}
			}
			return network(ctx, netw, a)
		}
	}
	return o
}

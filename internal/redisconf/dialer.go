package redisconf

import (
	"crypto/tls"
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
}

// Internal returns options for the internal user of the server at addr:
// timeout bounds dialling, reading and writing, pool is the pool size.
func (d *Dialer) Internal(addr, secret string, timeout time.Duration, pool int) *redis.Options {
	o := &redis.Options{Addr: addr, Username: InternalUser, Password: secret, Protocol: 2, DisableIdentity: true,
		MaxRetries: -1, PoolSize: pool, DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout}
	if d != nil && d.TLS != nil {
		o.TLSConfig = d.TLS(addr)
	}
	return o
}

package faulttest

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/api"
	"github.com/marina-redis/marina/internal/redisconf"
	"github.com/marina-redis/marina/internal/testutil"
)

// rcl connects to a redis-server of the cluster (TLS only: --redis-tls
// is the default).
func (c *cluster) rcl(addr, pw string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, Password: pw, Protocol: 2, DisableIdentity: true, MaxRetries: -1,
		TLSConfig: testutil.TLSWith(c.caFile(), addr)})
}

// admin connects to an instance as the internal user, with the secret read
// from its redis.conf on disk (CONFIG is not the clients').
func (c *cluster) admin(in api.Instance) *redis.Client {
	b, _ := os.ReadFile(filepath.Join(c.nodes[c.index(in.Node)].dir, "instances", in.ID, "redis.conf"))
	var secret string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 3 && f[0] == "user" && f[1] == redisconf.InternalUser {
			secret = strings.TrimPrefix(f[3], ">")
		}
	}
	return redis.NewClient(&redis.Options{Addr: in.Addr, Username: redisconf.InternalUser, Password: secret, Protocol: 2, DisableIdentity: true,
		TLSConfig: testutil.TLSWith(c.caFile(), in.Addr)})
}

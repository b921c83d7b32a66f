package agent

import (
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/testutil"
)

// A redis-server's cron runs at hz 1 while it holds no key with a TTL and
// at Redis's default 10 once it does (redisconf.Hz), following the
// keyspace both ways.
func TestHzFollowsExpiringKeys(t *testing.T) {
	const id, pw = "hz-0-abcdef", "hz-password-1"
	a, src, addr, _ := oneMaster(t, "hz", id, pw, 100*time.Millisecond, time.Minute)
	ctx := testutil.Ctx(t, time.Minute)
	// The agent's own connection: the default user may not read the config.
	admin := redis.NewClient(&redis.Options{Addr: addr, Username: "marina", Password: "hz-secret-1", Protocol: 2, DisableIdentity: true})
	defer admin.Close()
	hz := func(want string) {
		t.Helper()
		testutil.WaitFor(t, 15*time.Second, "hz "+want, func() error {
			got, err := admin.ConfigGet(ctx, "hz").Result()
			if err != nil {
				return err
			}
			if got["hz"] != want {
				return fmt.Errorf("hz %s", got["hz"])
			}
			return nil
		})
	}
	hz("1")
	a.Grant(time.Now(), 0, src.Index()) // writable: a lease
	testutil.WaitFor(t, 10*time.Second, "a key with a TTL", func() error {
		return admin.Set(ctx, "k", "v", time.Hour).Err()
	})
	hz("10")
	if err := admin.Persist(ctx, "k").Err(); err != nil {
		t.Fatal(err)
	}
	hz("1")
}

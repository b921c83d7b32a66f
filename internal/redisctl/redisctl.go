// Package redisctl is the one owner of the live settings Marina changes on
// a running redis-server: its fence (writes and the replication user), its role, and
// the client Marina's own components reach it with. The agent (its fencer
// and converge loop) and the leader (its direct fence of a silent node's
// demoted master, its switchover checks) both go through it, so the rule
// between them is written once, here.
//
// # The ordering rule
//
// A fence decision carries the shard epoch it was taken in, and the server
// records the epoch of the decision it carries (redisconf.FenceEpochKey,
// also in the rendered config, so a fresh start has it from its first
// reply). A writer applies its decision only if it is not older than the
// server's (Order):
//
//   - an older epoch never changes anything, fence or lift: a leader's
//     direct fence of a demotion the shard has since moved past cannot
//     re-fence the master of a later epoch, and an agent whose local state
//     lags behind cannot lift a fence a later epoch put there;
//   - a newer epoch always applies (and records itself);
//   - within one epoch the decision may change both ways: the agent's lease
//     comes and goes within an epoch, and the agent is the only writer
//     that ever lifts a fence (the leader only fences, which is always
//     safe); the same decision again changes nothing.
//
// The read of the server's epoch and the write are two steps, not one
// atomic compare-and-set (Redis has none for CONFIG): two writers of one
// server interleaving between them are the agent's fencer (one goroutine
// per instance) and the leader's direct fence, which only runs while the
// instance's node is silent, past its lease, when the fencer lifts nothing.
package redisctl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/redisconf"
	"github.com/marina-redis/marina/internal/resp"
)

// Client returns a client of the internal user of the server at addr, with
// the options every Marina component uses (redisconf.Dialer.Internal: RESP2,
// no client name, no retries, TLS when the servers speak it): timeout
// bounds dialling, reading and writing, pool is the pool size.
func Client(d *redisconf.Dialer, addr, secret string, timeout time.Duration, pool int, opts ...Option) *redis.Client {
	o := d.Internal(addr, secret, timeout, pool)
	for _, f := range opts {
		f(o)
	}
	return redis.NewClient(o)
}

// Option adjusts a Client's options.
type Option func(*redis.Options)

// DialTimeout bounds dialling apart from reading and writing.
func DialTimeout(t time.Duration) Option { return func(o *redis.Options) { o.DialTimeout = t } }

// Fence is one decision about a server's fence: whether it must refuse
// writes and syncs, and the shard epoch the decision was taken in.
type Fence struct {
	Fenced bool
	Epoch  uint64
}

// Recorded is the fence a server carries.
type Recorded struct {
	Fenced bool
	// Epoch of the decision, when Known: a server started from a config
	// rendered before the epoch was recorded has none.
	Epoch uint64
	Known bool
	// Partial: the fence's parts disagree (the replication user's on/off
	// is not what the switch says, or it is missing: a server from before
	// that user). The decision is applied again, whole.
	Partial bool
}

// Verdict is what Order decides for a new decision.
type Verdict int

const (
	// Same: the server carries this decision already.
	Same Verdict = iota
	// Apply: the decision is newer, or of the same epoch and different.
	Apply
	// Stale: the server carries a decision of a later epoch; this one
	// must not undo it.
	Stale
)

func (v Verdict) String() string {
	switch v {
	case Same:
		return "same"
	case Apply:
		return "apply"
	default:
		return "stale"
	}
}

// Order is the rule between the writers of one fence (see the package
// comment): it says whether decision next may replace the recorded cur.
func Order(cur Recorded, next Fence) Verdict {
	switch {
	case !cur.Known:
		return Apply // nothing to compare with: record the epoch
	case next.Epoch < cur.Epoch:
		return Stale
	case next.Epoch > cur.Epoch || next.Fenced != cur.Fenced || cur.Partial:
		return Apply
	default:
		return Same
	}
}

// ErrStale is returned by ApplyFence for a decision older than the one the
// server carries.
var ErrStale = errors.New("fence decision of an older epoch than the server's")

// ReadFence returns the fence the server carries.
func ReadFence(ctx context.Context, c *redis.Client) (Recorded, error) {
	var conf, user *redis.Cmd
	_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		conf = p.Do(ctx, "CONFIG", "GET", redisconf.FenceKey, redisconf.FenceEpochKey)
		user = p.Do(ctx, "ACL", "GETUSER", redisconf.ReplUser)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return Recorded{}, fmt.Errorf("fence: %w", err)
	}
	if conf.Err() != nil {
		return Recorded{}, fmt.Errorf("fence: config get: %w", conf.Err())
	}
	r := recorded(resp.Pairs(conf.Val()))
	on, exists := false, user.Err() == nil
	if exists {
		flags, _ := resp.Pairs(user.Val())["flags"].([]any)
		for _, f := range flags {
			on = on || f == "on"
		}
	}
	r.Partial = !exists || on == r.Fenced
	return r, nil
}

func recorded(m map[string]any) Recorded {
	fence, _ := m[redisconf.FenceKey].(string)
	epoch, _ := m[redisconf.FenceEpochKey].(string)
	r := Recorded{Fenced: fence != redisconf.FenceValue(false) && fence != ""}
	r.Epoch, r.Known = redisconf.ParseFenceEpoch(epoch)
	return r
}

// ApplyFence brings the server's fence to f if Order allows it: the fence
// switch, the epoch and the replication user's on/off in one MULTI, so a
// server is never left half-fenced. It returns the fence the server
// carries afterwards; ErrStale (with the server's newer fence) when f is
// older than it.
func ApplyFence(ctx context.Context, c *redis.Client, f Fence) (Recorded, error) {
	cur, err := ReadFence(ctx, c)
	if err != nil {
		return cur, err
	}
	switch Order(cur, f) {
	case Same:
		return cur, nil
	case Stale:
		return cur, fmt.Errorf("%w: epoch %d, server at %d", ErrStale, f.Epoch, cur.Epoch)
	}
	// The user is (re)created whole: a server from before it has none. Its
	// password derives from the database's secret, which c (a Client of
	// the internal user) logs in with.
	acl := []any{"ACL", "SETUSER", redisconf.ReplUser, "reset", ">" + redisconf.ReplSecret(c.Options().Password)}
	for _, r := range redisconf.ReplRules(f.Fenced) {
		acl = append(acl, r)
	}
	_, err = c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ConfigSet(ctx, redisconf.FenceKey, redisconf.FenceValue(f.Fenced))
		p.ConfigSet(ctx, redisconf.FenceEpochKey, redisconf.FenceEpochValue(f.Epoch))
		p.Do(ctx, acl...)
		return nil
	})
	if err != nil {
		return cur, fmt.Errorf("fence: %w", err)
	}
	return Recorded{Fenced: f.Fenced, Epoch: f.Epoch, Known: true}, nil
}

// Writable says whether the server takes writes as a master: its role is
// master and its fence is off (the leader's check that a switchover's new
// master is serving, read on the server itself).
func Writable(ctx context.Context, c *redis.Client) (bool, error) {
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return false, err
	}
	f, err := ReadFence(ctx, c)
	if err != nil {
		return false, err
	}
	return strings.Contains(info, "role:master") && !f.Fenced, nil
}

// Promote makes the server a master (REPLICAOF NO ONE). Its fence is not
// touched: it stays fenced until its fencer lifts it.
func Promote(ctx context.Context, c *redis.Client) error {
	if err := c.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		return fmt.Errorf("replicaof no one: %w", err)
	}
	return nil
}

// Follow makes the server a replica of master (host:port).
func Follow(ctx context.Context, c *redis.Client, master string) error {
	host, port, err := net.SplitHostPort(master)
	if err != nil {
		return fmt.Errorf("replicaof %s: %w", master, err)
	}
	if err := c.Do(ctx, "REPLICAOF", host, port).Err(); err != nil {
		return fmt.Errorf("replicaof %s: %w", master, err)
	}
	return nil
}

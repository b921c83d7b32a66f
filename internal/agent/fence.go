package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/redisconf"
	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/timing"
)

// fenceLoop is the one owner of an instance's fence on a running server:
// it alone applies and lifts it (min-replicas-to-write out of reach, and
// no SYNC/PSYNC for the internal user), from the desired role and the
// lease as they are at that moment. The converge loop, a restart of the
// agent or of the redis-server cannot undo it: converge leaves the fence
// alone, and the rendered config carries the fence as the lease is when it
// is written. It reports the fence with the epoch it was checked against,
// and only if that did not change while it worked, so the leader never
// takes an earlier answer for a later one.
func (wk *worker) fenceLoop(ctx context.Context, addr, secret string) {
	c := redis.NewClient(wk.a.cfg.Redis.Internal(addr, secret, 300*time.Millisecond, 1))
	defer c.Close()
	// A periodic look catches a server restarted behind the agent's back.
	t := time.NewTicker(wk.a.cfg.Interval)
	defer t.Stop()
	retry := 20 * time.Millisecond
	for {
		err := wk.fenceOnce(ctx, c)
		var again <-chan time.Time
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			again = time.After(retry)
			retry = min(retry*2, time.Second)
		} else {
			retry = 20 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-wk.fenceCh:
		case <-t.C:
		case <-again:
		}
	}
}

// fenceOnce makes the server's fence what it must be now, then reports it.
func (wk *worker) fenceOnce(ctx context.Context, c *redis.Client) error {
	for {
		wk.mu.Lock()
		w := wk.w
		wk.mu.Unlock()
		fenced := mustFence(w.role, wk.a.LeaseOK())
		if err := applyFence(ctx, c, fenced); err != nil {
			return err
		}
		wk.mu.Lock()
		now := wk.w
		wk.mu.Unlock()
		if now.epoch != w.epoch || now.role != w.role || mustFence(now.role, wk.a.LeaseOK()) != fenced {
			continue // the answer is already old: apply the new one first
		}
		before := wk.status().Fenced
		wk.setStatus(func(s *Status) { s.Fenced, s.Epoch = fenced, w.epoch })
		if fenced != before && w.role != state.RoleReplica {
			what := "lifted"
			if fenced {
				what = "applied"
			}
			wk.a.log.Info("fence "+what, "instance", w.id, "epoch", w.epoch, "lease", wk.a.LeaseOK())
		}
		return nil
	}
}

// FenceApplyTimeout bounds one attempt of the fencer at a server, and
// FenceMargin is how long after an agent's lease ends the leader still
// waits before it promotes another master; their reasons are in
// internal/timing, the one home of the margins.
const (
	FenceApplyTimeout = timing.FenceApplyTimeout
	FenceMargin       = timing.FenceMargin
)

// fenceBusyMax is the longest a fencer can take, from the end of the
// lease, to apply the fence on a server that answers; FenceMargin must
// cover it (fence_test.go checks).
const fenceBusyMax = 2*FenceApplyTimeout + 100*time.Millisecond

// applyFence sets the fence on a running server when it differs: the
// setting and the replication rights in one MULTI, so a server is never
// left half-fenced, writes first.
func applyFence(ctx context.Context, c *redis.Client, fenced bool) error {
	cctx, cancel := context.WithTimeout(ctx, FenceApplyTimeout)
	defer cancel()
	want := redisconf.FenceValue(fenced)
	got, err := c.ConfigGet(cctx, redisconf.FenceKey).Result()
	if err != nil {
		return fmt.Errorf("fence: config get: %w", err)
	}
	if got[redisconf.FenceKey] == want {
		return nil
	}
	acl := []any{"ACL", "SETUSER", redisconf.InternalUser}
	for _, r := range redisconf.SyncRules(fenced) {
		acl = append(acl, r)
	}
	_, err = c.TxPipelined(cctx, func(p redis.Pipeliner) error {
		p.ConfigSet(cctx, redisconf.FenceKey, want)
		p.Do(cctx, acl...)
		return nil
	})
	if err != nil {
		return fmt.Errorf("fence: %w", err)
	}
	return nil
}

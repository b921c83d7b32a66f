package agent

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/redisctl"
	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/timing"
)

// fenceLoop is the agent's side of an instance's fence on a running
// server: it alone, on this node, applies and lifts it (through
// redisctl.ApplyFence: min-replicas-to-write out of reach, no SYNC/PSYNC
// for the internal user, and the shard epoch of the decision), from the
// desired role and the lease as they are at that moment. The converge
// loop, a restart of the agent or of the redis-server cannot undo it:
// converge leaves the fence alone, and the rendered config carries the
// fence as the lease is when it is written. The leader's direct fence of a
// silent node's demoted master is the only other writer, and the epoch
// orders the two (redisctl.Order): neither undoes a decision of a later
// epoch. It reports the fence with the epoch it was checked against, and
// only if that did not change while it worked, so the leader never takes
// an earlier answer for a later one.
func (wk *worker) fenceLoop(ctx context.Context, addr, secret string) {
	c := redisctl.Client(wk.a.cfg.Redis, addr, secret, 300*time.Millisecond, 1)
	defer c.Close()
	// A periodic look catches a server restarted behind the agent's back.
	t := time.NewTimer(wk.a.resyncPace())
	defer t.Stop()
	const firstRetry = 20 * time.Millisecond
	retry := firstRetry
	for {
		err := wk.fenceOnce(ctx, c)
		var again <-chan time.Time
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			again = time.After(retry)
			retry = min(retry*2, time.Second)
			wk.mu.Lock()
			role := wk.w.role
			wk.mu.Unlock()
			if mustFence(role, wk.a.LeaseOK()) {
				retry = firstRetry // a fence is due: keep at it until it holds or the worker kills
			}
		} else {
			retry = firstRetry
		}
		t.Reset(wk.a.resyncPace())
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
		actx, cancel := context.WithTimeout(ctx, wk.fenceAttempt(fenced))
		rec, err := redisctl.ApplyFence(actx, c, redisctl.Fence{Fenced: fenced, Epoch: w.epoch})
		cancel()
		stale := errors.Is(err, redisctl.ErrStale)
		if err != nil && !stale {
			return err
		}
		wk.mu.Lock()
		now := wk.w
		wk.mu.Unlock()
		if now.epoch != w.epoch || now.role != w.role || mustFence(now.role, wk.a.LeaseOK()) != fenced {
			continue // the answer is already old: apply the new one first
		}
		if stale {
			// The server carries a decision of a later epoch than this
			// node's state: report what it is; the state will catch up.
			wk.a.log.Info("fence of a later epoch on the server left alone", "instance", w.id, "epoch", w.epoch,
				"server_epoch", rec.Epoch, "server_fenced", rec.Fenced)
			fenced = rec.Fenced
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

// fenceAttempt bounds one attempt of the fencer: a lift or a check gets
// FenceApplyTimeout; a fence may take until its deadline (hang.go), since
// a server on a starved host answers late and a dropped connection costs
// a reconnection it can afford even less.
func (wk *worker) fenceAttempt(fenced bool) time.Duration {
	if !fenced {
		return FenceApplyTimeout
	}
	now := time.Now()
	left := fenceDeadline(wk.a.LeaseOK(), wk.a.leaseEnd(), now, wk.a.cfg.Lease).Sub(now) - killLead
	return min(max(FenceApplyTimeout, left), wk.a.cfg.Lease+FenceMargin)
}

// FenceApplyTimeout bounds one attempt of the fencer to check or lift a
// fence (an attempt to fence may take longer: fenceAttempt), and
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

package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/marina-redis/marina/internal/state"
)

// The lease is the agent's right to let its masters take writes. It comes
// only from a leader that a quorum confirmed (controller.Ack), counts from
// when the heartbeat it answered was sent, minus the age of that
// confirmation, and holds only once the local state has applied the
// leader's commit index of that moment: so a node coming back from a
// partition never lifts a fence on the word of a state that still names
// its instance master while the majority has moved on.

// grant is one acknowledged heartbeat: the lease runs from at for the
// configured lease once the local state has applied index.
type grant struct {
	at    time.Time
	index uint64
}

// maxPending bounds the grants waiting for the local state to catch up;
// the oldest go first (a later grant covers more).
const maxPending = 32

// foldGrants folds the grants the local state has caught up with (index at
// most applied) into the lease's end, and returns the ones still waiting.
func foldGrants(until time.Time, pending []grant, applied uint64, lease time.Duration) (time.Time, []grant) {
	var rest []grant
	for _, g := range pending {
		if g.index > applied {
			rest = append(rest, g)
			continue
		}
		if end := g.at.Add(lease); end.After(until) {
			until = end
		}
	}
	return until, rest
}

// mustFence is the one rule of who takes writes: a master, while its
// agent holds the lease. Replicas and demoted masters are fenced too, so
// none of them can be a sync source with old data either.
func mustFence(role string, lease bool) bool {
	return role != state.RoleMaster || !lease
}

// Grant records a heartbeat the leader acknowledged: sent is when the
// report left, age the leader's proof age, index its commit index.
func (a *Agent) Grant(sent time.Time, age time.Duration, index uint64) {
	a.leaseMu.Lock()
	a.pending = append(a.pending, grant{at: sent.Add(-age), index: index})
	if len(a.pending) > maxPending {
		a.pending = a.pending[len(a.pending)-maxPending:]
	}
	a.leaseMu.Unlock()
	select {
	case a.granted <- struct{}{}:
	default:
	}
}

// LeaseOK says whether the agent holds the lease now.
func (a *Agent) LeaseOK() bool {
	return time.Now().UnixNano() < a.until.Load()
}

// Fenced is true while this node holds no lease: its masters take no
// writes, and the proxy refuses writes to them. It is set by the lease
// watcher at the lease's end to the millisecond.
func (a *Agent) Fenced() bool { return a.fenced.Load() }

// watchLease keeps the lease: it folds grants in as the local state
// catches up, and at the lease's end fences every local master at once
// (each worker's fencer applies it). It runs on its own, so nothing the
// reconcile loop waits for can delay a fence.
func (a *Agent) watchLease(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		// Any applied entry, an event included, may be the one a grant waits for.
		changed := a.src.Applied()
		a.leaseMu.Lock()
		until, rest := foldGrants(time.Unix(0, a.until.Load()), a.pending, a.src.Index(), a.cfg.Lease)
		a.pending = rest
		a.until.Store(until.UnixNano())
		waiting := len(rest) > 0
		a.leaseMu.Unlock()
		ok := time.Now().Before(until)
		a.setLease(ok)
		if ok {
			timer.Reset(time.Until(until))
		} else {
			timer.Reset(time.Hour)
		}
		var applied <-chan struct{}
		if waiting {
			applied = changed // a grant waits for the state to reach its index
		}
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-applied:
		case <-a.granted:
		}
	}
}

// setLease records a change of the lease and has every worker apply it.
func (a *Agent) setLease(ok bool) {
	if ok != a.fenced.Load() {
		return // no change
	}
	a.fenced.Store(!ok)
	if ok {
		a.log.Info("leader contact confirmed: lease granted")
	} else {
		a.log.Warn("no lease: fencing local masters", "lease", a.cfg.Lease)
		a.fenceMasters(fmt.Sprintf("no contact with a confirmed leader for %s (lease): writes refused until one confirms this node's state", a.cfg.Lease))
	}
	a.mu.Lock()
	for _, wk := range a.workers {
		wk.poke()
	}
	a.mu.Unlock()
}

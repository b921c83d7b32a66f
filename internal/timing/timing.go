// Package timing is the one home of Marina's timing defaults and of the
// safety margins derived from them. The server, the agent, the controller,
// `marina check` and the CLI's help text read their defaults here; every
// margin that depends on another setting (the leader waits longer than an
// agent's lease, a report is fresh for two heartbeats) is a method, computed
// from the values in force, never a second constant.
package timing

import (
	"fmt"
	"time"

	"github.com/marina-redis/marina/internal/failover"
)

// Timing is the cluster's timing. A zero field means the default
// (WithDefaults fills it); the fields mirror `marina server` flags.
type Timing struct {
	// Heartbeat: each node reports to the leader this often, and each
	// acknowledged report renews its agent's lease (250ms; no flag).
	Heartbeat time.Duration
	// ElectionTimeout: Raft heartbeat and election timeout (--raft-timeout,
	// 1s). Chosen for loaded hosts: at 500ms a 2-core host saturated by
	// a few hundred redis-servers lost its leader again and again
	// (bench/scale); a leader's node that dies is noticed 0.5s later.
	ElectionTimeout time.Duration
	// NodeDownAfter: a node whose reports stop this long is marked down
	// (--node-down-after, 5s).
	NodeDownAfter time.Duration
	// DownAfter: a master seen failing this long, by its own side and by
	// another node, is failed over (--down-after, 1s).
	DownAfter time.Duration
	// Lease: an agent without a confirmed leader's word this long fences
	// its masters (--lease, 800ms). It bounds the writes a cut-off master
	// takes (the async loss window after a cut).
	Lease time.Duration
	// MaxLinkDown: a replica whose link has been down longer is not
	// promoted unless forced (--max-link-down, 10s).
	MaxLinkDown time.Duration
	// HealAfter: the replicas of a node down this long are rebuilt
	// elsewhere (--heal-after, 1m).
	HealAfter time.Duration
	// CrashHold: a crashed master with replicas is not restarted in place
	// for this long, so the leader can promote a replica instead (5s; no flag).
	CrashHold time.Duration
	// ProbeInterval and ProbeTimeout pace the agents' health probes
	// (100ms, 300ms; no flag).
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	// Flap damping (failover.Damping, docs/failover.md#flap-damping): the
	// first FlapMax failovers of a shard within FlapWindow start at once
	// (--flap-max 3, --flap-window 1h); each further one starts no earlier
	// than FlapDelay after the previous failover, doubling with each one,
	// at most FlapDelayMax (--flap-delay 10s, --flap-delay-max 5m).
	FlapMax      int
	FlapWindow   time.Duration
	FlapDelay    time.Duration
	FlapDelayMax time.Duration
}

// FenceApplyTimeout bounds one attempt of an agent's fencer at a server: a
// server that does not answer within it is not holding writes for anyone
// either, and the next attempt starts at once.
const FenceApplyTimeout = 200 * time.Millisecond

// FenceMargin is how long after an agent's lease ends the leader still
// waits before it promotes another master: time for the fencer to finish an
// attempt already under way (FenceApplyTimeout), make the one that applies
// the fence (another), and for its timer to fire late (internal/agent's
// fence_test checks that it covers the fencer's worst case).
const FenceMargin = 500 * time.Millisecond

// reportSlack is added to two heartbeats before a node's last report counts
// as stale: delivery and scheduling delay of a report that is on time.
const reportSlack = 100 * time.Millisecond

// minDuration is the shortest detection or lease setting accepted: below
// it, scheduling noise alone would trigger failovers and fences.
const minDuration = 100 * time.Millisecond

// Defaults returns the defaults of every field.
func Defaults() Timing {
	return Timing{
		Heartbeat:       250 * time.Millisecond,
		ElectionTimeout: time.Second,
		NodeDownAfter:   5 * time.Second,
		DownAfter:       time.Second,
		Lease:           800 * time.Millisecond,
		MaxLinkDown:     10 * time.Second,
		HealAfter:       time.Minute,
		CrashHold:       5 * time.Second,
		ProbeInterval:   100 * time.Millisecond,
		ProbeTimeout:    300 * time.Millisecond,
		FlapMax:         3,
		FlapWindow:      time.Hour,
		FlapDelay:       10 * time.Second,
		FlapDelayMax:    5 * time.Minute,
	}
}

// WithDefaults returns t with every zero field set to its default.
func (t Timing) WithDefaults() Timing {
	d := Defaults()
	fill := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	fill(&t.Heartbeat, d.Heartbeat)
	fill(&t.ElectionTimeout, d.ElectionTimeout)
	fill(&t.NodeDownAfter, d.NodeDownAfter)
	fill(&t.DownAfter, d.DownAfter)
	fill(&t.Lease, d.Lease)
	fill(&t.MaxLinkDown, d.MaxLinkDown)
	fill(&t.HealAfter, d.HealAfter)
	fill(&t.CrashHold, d.CrashHold)
	fill(&t.ProbeInterval, d.ProbeInterval)
	fill(&t.ProbeTimeout, d.ProbeTimeout)
	fill(&t.FlapWindow, d.FlapWindow)
	fill(&t.FlapDelay, d.FlapDelay)
	fill(&t.FlapDelayMax, d.FlapDelayMax)
	if t.FlapMax == 0 {
		t.FlapMax = d.FlapMax
	}
	return t
}

// LeaseWait is how long after the last report of a silent node the leader
// waits before it promotes a replica of a master there: the agent's lease
// (by then it has fenced its masters, or it is gone) plus FenceMargin (its
// fencer may still be applying the fence when the lease ends).
func (t Timing) LeaseWait() time.Duration { return t.Lease + FenceMargin }

// ReportStale is how old a node's last report may be and still count as
// what the node sees now: two heartbeats (one may be late or lost) plus the
// delivery slack of one on time. After it the node is silent.
func (t Timing) ReportStale() time.Duration { return 2*t.Heartbeat + reportSlack }

// HeartbeatTimeout bounds one heartbeat round trip: two intervals, so a
// slow answer is not abandoned before the next report would be sent anyway.
func (t Timing) HeartbeatTimeout() time.Duration { return 2 * t.Heartbeat }

// Damping is the flap damping policy of these settings.
func (t Timing) Damping() failover.Damping {
	return failover.Damping{Free: t.FlapMax, Window: t.FlapWindow, Delay: t.FlapDelay, MaxDelay: t.FlapDelayMax}
}

// Validate refuses settings that cannot work; t must have its defaults
// filled. Errors name the `marina server` flags.
func (t Timing) Validate() error {
	for _, c := range []struct {
		flag string
		d    time.Duration
	}{{"--node-down-after", t.NodeDownAfter}, {"--raft-timeout", t.ElectionTimeout}, {"--down-after", t.DownAfter},
		{"--lease", t.Lease}, {"--max-link-down", t.MaxLinkDown}} {
		if c.d < minDuration {
			return fmt.Errorf("%s %v: must be at least %v", c.flag, c.d, minDuration)
		}
	}
	switch {
	case t.Heartbeat <= 0:
		return fmt.Errorf("heartbeat interval %v: must be positive", t.Heartbeat)
	case t.Lease <= t.Heartbeat:
		// Each acknowledged heartbeat renews the lease: a lease that ends
		// before the next heartbeat fences every master between the two.
		return fmt.Errorf("--lease %v: must be longer than the heartbeat interval (%v) that renews it", t.Lease, t.Heartbeat)
	case t.NodeDownAfter <= t.ReportStale():
		// A node whose last report still counts as fresh cannot be down.
		return fmt.Errorf("--node-down-after %v: must be longer than %v (two heartbeats and their slack)", t.NodeDownAfter, t.ReportStale())
	case t.HealAfter < 0, t.CrashHold < 0, t.ProbeInterval <= 0, t.ProbeTimeout <= 0:
		return fmt.Errorf("negative or zero timing: heal-after %v, crash hold %v, probes %v/%v", t.HealAfter, t.CrashHold, t.ProbeInterval, t.ProbeTimeout)
	case t.FlapMax < 0:
		return fmt.Errorf("--flap-max %d: must not be negative", t.FlapMax)
	case t.FlapWindow < 0:
		return fmt.Errorf("--flap-window %v: must not be negative", t.FlapWindow)
	case t.FlapDelay < 0:
		return fmt.Errorf("--flap-delay %v: must not be negative", t.FlapDelay)
	case t.FlapDelayMax < t.FlapDelay:
		// The cap is what bounds how long a shard waits for its master.
		return fmt.Errorf("--flap-delay-max %v: must be at least --flap-delay %v", t.FlapDelayMax, t.FlapDelay)
	}
	return nil
}

// Per-node budgets of the agent's per-instance loops, in runs per second
// over all of a node's instances. Below them each loop runs at its base
// interval (fast failure detection on small nodes); above them the loops
// slow down together, so that hundreds of instances on one host leave
// Raft and the API their share of the CPU. With the defaults a node keeps
// 100ms health probes up to 20 instances and probes each once a second at
// 200 instances.
const (
	ProbeBudget  = 200 // health probes of local instances, and of remote masters
	ResyncBudget = 50  // periodic looks of workers and fencers without a change
)

// Pace is how often one of n loops that share a budget of perSecond runs
// runs: base, or n/perSecond seconds when that is longer.
func Pace(base time.Duration, n, perSecond int) time.Duration {
	if perSecond <= 0 || n <= 0 {
		return base
	}
	return max(base, time.Duration(n)*time.Second/time.Duration(perSecond))
}

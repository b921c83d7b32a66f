// Package failover holds the pure decisions of automatic failover: when a
// master counts as failed, which replica to promote, and whether a shard has
// failed over too often. It takes values and returns values; the controller
// does the I/O.
package failover

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Observation is what the cluster knows about one master right now.
type Observation struct {
	// Crashed: the master's own agent saw its process exit (certain).
	Crashed bool
	// LocalFailingSince: the master's own agent's probes fail since then.
	LocalFailingSince time.Time
	// NodeSilentSince: the master's node has not reported since then
	// (zero while its reports are fresh).
	NodeSilentSince time.Time
	// RemoteFailingSince: other nodes whose direct probes fail, since when.
	RemoteFailingSince []time.Time
}

// Failed says whether a master has failed: its own side (agent or node
// silence) and at least one other node must agree, each for downAfter
// (a crash the agent saw is certain and needs no wait), so one partitioned
// observer never causes a failover.
func Failed(o Observation, now time.Time, downAfter time.Duration) (bool, string) {
	var local string
	switch {
	case o.Crashed:
		local = "redis-server exited (seen by its agent)"
	case !o.LocalFailingSince.IsZero() && now.Sub(o.LocalFailingSince) >= downAfter:
		local = fmt.Sprintf("not answering its agent for %s", now.Sub(o.LocalFailingSince).Round(time.Millisecond))
	case !o.NodeSilentSince.IsZero() && now.Sub(o.NodeSilentSince) >= downAfter:
		local = fmt.Sprintf("its node silent for %s", now.Sub(o.NodeSilentSince).Round(time.Millisecond))
	default:
		return false, ""
	}
	for _, t := range o.RemoteFailingSince {
		if t.IsZero() {
			continue
		}
		if o.Crashed || now.Sub(t) >= downAfter {
			return true, local + fmt.Sprintf(", unreachable from %d other node(s)", countSince(o.RemoteFailingSince, now, downAfter, o.Crashed))
		}
	}
	return false, ""
}

// Since is when the master began to fail, as far as o tells (now if it
// does not: a crash is seen as it happens).
func (o Observation) Since(now time.Time) time.Time {
	t := now
	for _, s := range []time.Time{o.LocalFailingSince, o.NodeSilentSince} {
		if !s.IsZero() && s.Before(t) {
			t = s
		}
	}
	return t
}

// LinkDownAllowed is how long a replica's link may have been down for it
// to be promoted: maxLinkDown before the master began to fail, plus all
// the time since (redis-sentinel counts it so too). A replica whose link
// went down with its master has the master's data however long the
// failover waited (for flap damping, for the lease); one whose link was
// down long before has not.
func LinkDownAllowed(maxLinkDown time.Duration, failedSince, now time.Time) time.Duration {
	if failedSince.IsZero() || failedSince.After(now) {
		return maxLinkDown
	}
	return maxLinkDown + now.Sub(failedSince)
}

func countSince(ts []time.Time, now time.Time, d time.Duration, any bool) int {
	n := 0
	for _, t := range ts {
		if !t.IsZero() && (any || now.Sub(t) >= d) {
			n++
		}
	}
	return n
}

// Candidate is a replica as the leader found it when it asked directly.
type Candidate struct {
	ID        string
	Reachable bool
	// Following: the replica replicated from the failed master.
	Following   bool
	LinkDownFor time.Duration
	Syncing     bool // a full sync is in progress: its data is incomplete
	Offset      int64
	Priority    int
}

// ErrNoCandidate means no replica may be promoted.
var ErrNoCandidate = errors.New("no replica can be promoted")

// Choose picks the replica to promote: the highest replication offset among
// the reachable replicas that followed the failed master, are not in a full
// sync, have a priority above 0 and (unless forced) whose link has been down
// no longer than maxLinkDown. Ties go to the higher priority, then the id.
func Choose(cands []Candidate, maxLinkDown time.Duration, force bool) (Candidate, error) {
	var ok []Candidate
	var why []string
	for _, c := range cands {
		switch {
		case !c.Reachable:
			why = append(why, c.ID+" unreachable")
		case c.Priority <= 0:
			why = append(why, c.ID+" has priority 0")
		case !c.Following:
			why = append(why, c.ID+" did not follow the master")
		case c.Syncing:
			why = append(why, c.ID+" in a full sync")
		case !force && c.LinkDownFor > maxLinkDown:
			why = append(why, fmt.Sprintf("%s link down for %s", c.ID, c.LinkDownFor.Round(time.Second)))
		default:
			ok = append(ok, c)
		}
	}
	if len(ok) == 0 {
		if len(why) == 0 {
			why = append(why, "no replicas")
		}
		return Candidate{}, fmt.Errorf("%w: %s", ErrNoCandidate, strings.Join(why, ", "))
	}
	sort.SliceStable(ok, func(i, j int) bool {
		a, b := ok[i], ok[j]
		if a.Offset != b.Offset {
			return a.Offset > b.Offset
		}
		if a.Priority != b.Priority {
			return a.Priority > b.Priority
		}
		return a.ID < b.ID
	})
	return ok[0], nil
}

// Damping spaces the failovers of one shard instead of forbidding them
// (flap damping, docs/failover.md#flap-damping). The first Free failovers
// within Window start at once; after that, the failover that has k earlier
// ones within Window (k >= Free) starts no earlier than
// min(Delay * 2^(k-Free), MaxDelay) after the most recent of them. So a
// shard whose master is gone waits at most MaxDelay for its failover, and
// history older than Window no longer counts.
type Damping struct {
	Free     int           // failovers within Window that are never held (--flap-max)
	Window   time.Duration // --flap-window
	Delay    time.Duration // spacing before the first held one (--flap-delay); 0: no damping
	MaxDelay time.Duration // the spacing doubles up to this (--flap-delay-max)
}

// Spacing is the least time between the previous failover and the one that
// has k earlier failovers within the window: 0 while k < Free, else Delay
// doubled k-Free times, capped at MaxDelay.
func (d Damping) Spacing(k int) time.Duration {
	if d.Delay <= 0 || k < d.Free {
		return 0
	}
	s := d.Delay
	for i := d.Free; i < k && s < d.MaxDelay; i++ {
		s *= 2
	}
	if d.MaxDelay > 0 && s > d.MaxDelay {
		s = d.MaxDelay
	}
	return s
}

// Hold says how long a failover of a shard must still wait, given the times
// of its recent failovers (any order), and which one within the window it
// would be (nth, from 1). wait is 0 when it may start now. wait never
// exceeds the spacing itself, even when a recorded time lies in the future
// (another leader's clock ahead of this one).
func (d Damping) Hold(recent []time.Time, now time.Time) (wait time.Duration, nth int) {
	var last time.Time
	k := 0
	for _, t := range recent {
		if now.Sub(t) >= d.Window {
			continue
		}
		k++
		if t.After(last) {
			last = t
		}
	}
	sp := d.Spacing(k)
	if sp == 0 {
		return 0, k + 1
	}
	wait = last.Add(sp).Sub(now)
	return min(max(wait, 0), sp), k + 1
}

// Held is the one wording of a held failover, for events, logs and
// `marina check`: "delayed 10s by flap damping (4th failover within 1h0m0s)".
func Held(wait time.Duration, nth int, window time.Duration) string {
	return fmt.Sprintf("delayed %s by flap damping (%s failover within %s)", wait.Round(time.Second), Ordinal(nth), window)
}

// Ordinal spells n as 1st, 2nd, 3rd, 4th, 11th, 21st...
func Ordinal(n int) string {
	suffix := "th"
	switch {
	case n%100 >= 11 && n%100 <= 13:
	case n%10 == 1:
		suffix = "st"
	case n%10 == 2:
		suffix = "nd"
	case n%10 == 3:
		suffix = "rd"
	}
	return fmt.Sprintf("%d%s", n, suffix)
}

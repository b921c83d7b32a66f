package proxy

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// LatencyBounds are the upper bounds of the latency histogram's buckets;
// the last bucket counts everything slower.
var LatencyBounds = []time.Duration{100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, time.Second}

// SlowThreshold: commands slower than this (proxy in to answer out) go to
// the slow log.
const SlowThreshold = 10 * time.Millisecond

const slowLogSize = 128

// slowCommandMax bounds what the slow log keeps of one command.
const slowCommandMax = 256

// SlowEntry is one slow command.
type SlowEntry struct {
	At       time.Time     `json:"at"`
	Duration time.Duration `json:"duration_ns"`
	Command  string        `json:"command"`
}

type latency struct {
	buckets [12]atomic.Int64
	sum     atomic.Int64 // nanoseconds
	mu      sync.Mutex
	slow    []SlowEntry
}

func (l *latency) observe(d time.Duration, cmd string) {
	i := 0
	for i < len(LatencyBounds) && d > LatencyBounds[i] {
		i++
	}
	l.buckets[i].Add(1)
	l.sum.Add(int64(d))
	if d >= SlowThreshold {
		if len(cmd) > slowCommandMax {
			// Raw client input of any length must not stay in memory.
			cmd = cmd[:slowCommandMax] + fmt.Sprintf("... (%d more bytes)", len(cmd)-slowCommandMax)
		}
		l.mu.Lock()
		l.slow = append(l.slow, SlowEntry{At: time.Now().UTC(), Duration: d, Command: cmd})
		if len(l.slow) > slowLogSize {
			l.slow = l.slow[len(l.slow)-slowLogSize:]
		}
		l.mu.Unlock()
	}
}

// Snapshot is a database proxy's counters on this node.
type Snapshot struct {
	DB          string        `json:"db"`
	Addr        string        `json:"addr"`
	Ops         int64         `json:"ops"`
	Errors      int64         `json:"errors"`
	Connections int64         `json:"connections"`
	Accepted    int64         `json:"accepted"`
	Rejected    int64         `json:"rejected"`
	LatencyNs   int64         `json:"latency_sum_ns"`
	Buckets     []int64       `json:"latency_buckets"` // counts per LatencyBounds, last: slower
	BoundsNs    []int64       `json:"latency_bounds_ns"`
	SlowLog     []SlowEntry   `json:"slowlog"`
	Engine      string        `json:"engine"`
	Uptime      time.Duration `json:"uptime_ns"`
}

// Snapshot returns the proxy's counters.
func (d *DB) Snapshot() Snapshot {
	t := d.topo.Load()
	s := Snapshot{DB: t.route.Name, Addr: d.Addr(), Ops: d.Stats.Ops.Load(), Errors: d.Stats.Errors.Load(),
		Connections: d.Stats.Connections.Load(), Accepted: d.Stats.Accepted.Load(), Rejected: d.Stats.Rejected.Load(),
		LatencyNs: d.lat.sum.Load(), Engine: d.eng.name(), Uptime: time.Since(d.started)}
	for i := range d.lat.buckets {
		s.Buckets = append(s.Buckets, d.lat.buckets[i].Load())
	}
	for _, b := range LatencyBounds {
		s.BoundsNs = append(s.BoundsNs, int64(b))
	}
	d.lat.mu.Lock()
	s.SlowLog = append([]SlowEntry(nil), d.lat.slow...)
	d.lat.mu.Unlock()
	return s
}

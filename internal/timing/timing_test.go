package timing

import (
	"strings"
	"testing"
	"time"
)

func TestDerived(t *testing.T) {
	cases := []struct {
		name                     string
		in                       Timing
		leaseWait, stale, hbWait time.Duration
	}{
		{"defaults", Timing{}, 1300 * time.Millisecond, 600 * time.Millisecond, 500 * time.Millisecond},
		{"longer lease", Timing{Lease: 2 * time.Second}, 2500 * time.Millisecond, 600 * time.Millisecond, 500 * time.Millisecond},
		{"faster heartbeats", Timing{Heartbeat: 100 * time.Millisecond}, 1300 * time.Millisecond, 300 * time.Millisecond, 200 * time.Millisecond},
	}
	for _, c := range cases {
		tm := c.in.WithDefaults()
		if got := tm.LeaseWait(); got != c.leaseWait {
			t.Errorf("%s: LeaseWait = %v, want %v", c.name, got, c.leaseWait)
		}
		if tm.LeaseWait() <= tm.Lease {
			t.Errorf("%s: the leader must wait longer than the lease", c.name)
		}
		if got := tm.ReportStale(); got != c.stale {
			t.Errorf("%s: ReportStale = %v, want %v", c.name, got, c.stale)
		}
		if got := tm.HeartbeatTimeout(); got != c.hbWait {
			t.Errorf("%s: HeartbeatTimeout = %v, want %v", c.name, got, c.hbWait)
		}
		if err := tm.Validate(); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

func TestDefaults(t *testing.T) {
	d := Defaults()
	// The values the flags' help and the docs name.
	want := Timing{Heartbeat: 250 * time.Millisecond, ElectionTimeout: time.Second, NodeDownAfter: 5 * time.Second,
		DownAfter: time.Second, Lease: 800 * time.Millisecond, MaxLinkDown: 10 * time.Second, HealAfter: time.Minute,
		CrashHold: 5 * time.Second, ProbeInterval: 100 * time.Millisecond, ProbeTimeout: 300 * time.Millisecond,
		FlapMax: 3, FlapWindow: time.Hour, FlapDelay: 10 * time.Second, FlapDelayMax: 5 * time.Minute}
	if d != want {
		t.Fatalf("Defaults() = %+v, want %+v", d, want)
	}
	if (Timing{}).WithDefaults() != d {
		t.Fatal("a zero Timing does not take every default")
	}
	set := Timing{Lease: 2 * time.Second, FlapMax: 7}.WithDefaults()
	if set.Lease != 2*time.Second || set.FlapMax != 7 || set.Heartbeat != d.Heartbeat {
		t.Fatalf("set fields overwritten or zero ones not filled: %+v", set)
	}
	dm := d.Damping()
	if dm.Free != 3 || dm.Window != time.Hour || dm.Delay != 10*time.Second || dm.MaxDelay != 5*time.Minute {
		t.Fatalf("Damping() = %+v", dm)
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*Timing)
		err  string // "" when valid
	}{
		{"defaults", func(*Timing) {}, ""},
		{"lease shorter than the heartbeat", func(t *Timing) { t.Lease = 200 * time.Millisecond }, "--lease 200ms: must be longer than the heartbeat"},
		{"lease equal to the heartbeat", func(t *Timing) { t.Lease = 250 * time.Millisecond }, "--lease 250ms"},
		{"short lease with fast heartbeats", func(t *Timing) { t.Lease, t.Heartbeat = 200*time.Millisecond, 50*time.Millisecond }, ""},
		{"lease under the minimum", func(t *Timing) { t.Lease, t.Heartbeat = 50*time.Millisecond, 10*time.Millisecond }, "--lease 50ms: must be at least 100ms"},
		{"down-after under the minimum", func(t *Timing) { t.DownAfter = 10 * time.Millisecond }, "--down-after 10ms"},
		{"raft timeout under the minimum", func(t *Timing) { t.ElectionTimeout = time.Millisecond }, "--raft-timeout 1ms"},
		{"node down before a report is stale", func(t *Timing) { t.NodeDownAfter = 500 * time.Millisecond }, "--node-down-after 500ms: must be longer than 600ms"},
		{"negative flap-max", func(t *Timing) { t.FlapMax = -1 }, "--flap-max -1"},
		{"delay cap under the delay", func(t *Timing) { t.FlapDelay, t.FlapDelayMax = time.Minute, 10*time.Second }, "--flap-delay-max 10s: must be at least --flap-delay 1m0s"},
		{"delay equal to its cap", func(t *Timing) { t.FlapDelay, t.FlapDelayMax = time.Minute, time.Minute }, ""},
		{"negative heal-after", func(t *Timing) { t.HealAfter = -time.Second }, "heal-after"},
	}
	for _, c := range cases {
		tm := Defaults()
		c.mod(&tm)
		err := tm.Validate()
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: err %v, want %q", c.name, err, c.err)
		}
	}
}

func TestPace(t *testing.T) {
	cases := []struct {
		base      time.Duration
		n, budget int
		want      time.Duration
	}{
		{100 * time.Millisecond, 1, ProbeBudget, 100 * time.Millisecond},
		{100 * time.Millisecond, 20, ProbeBudget, 100 * time.Millisecond},
		{100 * time.Millisecond, 40, ProbeBudget, 200 * time.Millisecond},
		{100 * time.Millisecond, 200, ProbeBudget, time.Second},
		{time.Second, 200, ResyncBudget, 4 * time.Second},
		{time.Second, 0, ResyncBudget, time.Second},
		{time.Second, 10, 0, time.Second},
	}
	for _, c := range cases {
		if got := Pace(c.base, c.n, c.budget); got != c.want {
			t.Errorf("Pace(%v, %d, %d) = %v, want %v", c.base, c.n, c.budget, got, c.want)
		}
	}
}

package failover

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestFailed(t *testing.T) {
	now := time.Unix(1000, 0)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	const down = time.Second
	cases := []struct {
		name   string
		o      Observation
		failed bool
		reason string
	}{
		{"healthy", Observation{}, false, ""},
		{"crash confirmed by a refused probe", Observation{Crashed: true, RemoteFailingSince: []time.Time{ago(10 * time.Millisecond)}}, true, "exited"},
		{"crash without a second observer", Observation{Crashed: true}, false, ""},
		{"hang for down-after on both sides", Observation{LocalFailingSince: ago(1100 * time.Millisecond), RemoteFailingSince: []time.Time{ago(1050 * time.Millisecond)}}, true, "not answering its agent"},
		{"hang not yet down-after", Observation{LocalFailingSince: ago(900 * time.Millisecond), RemoteFailingSince: []time.Time{ago(900 * time.Millisecond)}}, false, ""},
		{"remote too recent", Observation{LocalFailingSince: ago(2 * time.Second), RemoteFailingSince: []time.Time{ago(500 * time.Millisecond)}}, false, ""},
		{"partitioned observer alone", Observation{RemoteFailingSince: []time.Time{ago(10 * time.Second)}}, false, ""},
		{"agent alone", Observation{LocalFailingSince: ago(10 * time.Second)}, false, ""},
		{"node silent and unreachable", Observation{NodeSilentSince: ago(1500 * time.Millisecond), RemoteFailingSince: []time.Time{{}, ago(1200 * time.Millisecond)}}, true, "silent"},
		{"node silent but reachable from others", Observation{NodeSilentSince: ago(5 * time.Second)}, false, ""},
	}
	for _, c := range cases {
		got, reason := Failed(c.o, now, down)
		if got != c.failed || !strings.Contains(reason, c.reason) {
			t.Errorf("%s: failed=%v %q, want %v %q", c.name, got, reason, c.failed, c.reason)
		}
	}
}

func TestChoose(t *testing.T) {
	good := func(id string, off int64) Candidate {
		return Candidate{ID: id, Reachable: true, Following: true, Offset: off, Priority: 100}
	}
	mod := func(c Candidate, f func(*Candidate)) Candidate { f(&c); return c }
	cases := []struct {
		name    string
		cands   []Candidate
		force   bool
		want    string
		wantErr string
	}{
		{"highest offset", []Candidate{good("r1", 100), good("r2", 200)}, false, "r2", ""},
		{"tie: priority then id", []Candidate{good("r2", 100), mod(good("r3", 100), func(c *Candidate) { c.Priority = 50 }), good("r1", 100)}, false, "r1", ""},
		{"unreachable skipped", []Candidate{mod(good("r1", 900), func(c *Candidate) { c.Reachable = false }), good("r2", 100)}, false, "r2", ""},
		{"priority 0 never", []Candidate{mod(good("r1", 900), func(c *Candidate) { c.Priority = 0 }), good("r2", 100)}, false, "r2", ""},
		{"priority 0 even forced", []Candidate{mod(good("r1", 900), func(c *Candidate) { c.Priority = 0 })}, true, "", "priority 0"},
		{"mid full sync never", []Candidate{mod(good("r1", 900), func(c *Candidate) { c.Syncing = true }), good("r2", 100)}, false, "r2", ""},
		{"lagging link skipped", []Candidate{mod(good("r1", 900), func(c *Candidate) { c.LinkDownFor = time.Minute }), good("r2", 100)}, false, "r2", ""},
		{"lagging link only", []Candidate{mod(good("r1", 900), func(c *Candidate) { c.LinkDownFor = time.Minute })}, false, "", "link down for 1m0s"},
		{"lagging link forced", []Candidate{mod(good("r1", 900), func(c *Candidate) { c.LinkDownFor = time.Minute })}, true, "r1", ""},
		{"not following", []Candidate{mod(good("r1", 900), func(c *Candidate) { c.Following = false })}, false, "", "did not follow"},
		{"none", nil, false, "", "no replicas"},
	}
	for _, c := range cases {
		got, err := Choose(c.cands, 10*time.Second, c.force)
		if c.wantErr != "" {
			if !errors.Is(err, ErrNoCandidate) || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%s: err %v, want %q", c.name, err, c.wantErr)
			}
			continue
		}
		if err != nil || got.ID != c.want {
			t.Errorf("%s: got %q %v, want %q", c.name, got.ID, err, c.want)
		}
	}
}

func TestDamped(t *testing.T) {
	now := time.Unix(10000, 0)
	recent := []time.Time{now.Add(-50 * time.Minute), now.Add(-20 * time.Minute), now.Add(-5 * time.Minute)}
	cases := []struct {
		max    int
		window time.Duration
		damped bool
		wait   time.Duration
	}{
		{3, time.Hour, true, 10 * time.Minute},
		{4, time.Hour, false, 0},
		{2, 30 * time.Minute, true, 10 * time.Minute},
		{0, time.Hour, false, 0},
	}
	for _, c := range cases {
		d, w := Damped(recent, now, c.window, c.max)
		if d != c.damped || w != c.wait {
			t.Errorf("max %d window %v: %v %v, want %v %v", c.max, c.window, d, w, c.damped, c.wait)
		}
	}
}

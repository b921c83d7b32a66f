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

// A failover held (flap damping) does not age its replicas out: the link
// allowance counts from when the master began to fail.
func TestLinkDownAllowed(t *testing.T) {
	now := time.Unix(1000, 0)
	const maxDown = 10 * time.Second
	cases := []struct {
		name      string
		o         Observation
		linkDown  time.Duration // the replica's, at promotion
		promotion bool
	}{
		{"link went down with the master, failover held 20s", Observation{LocalFailingSince: now.Add(-21 * time.Second)}, 21 * time.Second, true},
		{"link down 5s before the master failed, held 20s", Observation{LocalFailingSince: now.Add(-20 * time.Second)}, 25 * time.Second, true},
		{"link down 15s before the master failed", Observation{LocalFailingSince: now.Add(-20 * time.Second)}, 35 * time.Second, false},
		{"node silent: from its silence", Observation{NodeSilentSince: now.Add(-30 * time.Second), LocalFailingSince: now.Add(-time.Second)}, 35 * time.Second, true},
		{"a crash, seen now", Observation{Crashed: true}, 11 * time.Second, false},
	}
	for _, c := range cases {
		allowed := LinkDownAllowed(maxDown, c.o.Since(now), now)
		r := Candidate{ID: "r1", Reachable: true, Following: true, Priority: 100, LinkDownFor: c.linkDown}
		_, err := Choose([]Candidate{r}, allowed, false)
		if (err == nil) != c.promotion {
			t.Errorf("%s: allowed %s, err %v, want promotion %v", c.name, allowed, err, c.promotion)
		}
	}
	if got := LinkDownAllowed(maxDown, time.Time{}, now); got != maxDown {
		t.Errorf("no failure time: %s", got)
	}
}

func TestDampingSpacing(t *testing.T) {
	d := Damping{Free: 3, Window: time.Hour, Delay: 10 * time.Second, MaxDelay: 5 * time.Minute}
	// The documented schedule (docs/failover.md#flap-damping), k earlier
	// failovers within the window.
	want := map[int]time.Duration{0: 0, 1: 0, 2: 0, 3: 10 * time.Second, 4: 20 * time.Second, 5: 40 * time.Second,
		6: 80 * time.Second, 7: 160 * time.Second, 8: 5 * time.Minute, 9: 5 * time.Minute, 20: 5 * time.Minute, 1000: 5 * time.Minute}
	for k, w := range want {
		if got := d.Spacing(k); got != w {
			t.Errorf("Spacing(%d) = %v, want %v", k, got, w)
		}
	}
	if got := (Damping{Free: 3, Window: time.Hour}).Spacing(10); got != 0 {
		t.Errorf("no delay: Spacing = %v, want 0 (damping off)", got)
	}
	if got := (Damping{Free: 0, Window: time.Hour, Delay: time.Second, MaxDelay: time.Minute}).Spacing(0); got != time.Second {
		t.Errorf("free 0: Spacing(0) = %v, want 1s", got)
	}
}

func TestDampingHold(t *testing.T) {
	now := time.Unix(100000, 0)
	ago := func(ds ...time.Duration) []time.Time {
		var out []time.Time
		for _, d := range ds {
			out = append(out, now.Add(-d))
		}
		return out
	}
	def := Damping{Free: 3, Window: time.Hour, Delay: 10 * time.Second, MaxDelay: 5 * time.Minute}
	cases := []struct {
		name   string
		d      Damping
		recent []time.Time
		wait   time.Duration
		nth    int
	}{
		{"no history", def, nil, 0, 1},
		{"within the free ones", def, ago(30*time.Second, 10*time.Second), 0, 3},
		{"fourth right after the third", def, ago(50*time.Minute, 20*time.Minute, 4*time.Second), 6 * time.Second, 4},
		{"fourth once the spacing passed", def, ago(50*time.Minute, 20*time.Minute, 10*time.Second), 0, 4},
		{"fourth long after the third", def, ago(50*time.Minute, 20*time.Minute, 5*time.Minute), 0, 4},
		{"fifth doubles", def, ago(40*time.Minute, 30*time.Minute, 20*time.Minute, 5*time.Second), 15 * time.Second, 5},
		{"order does not matter", def, ago(5*time.Second, 40*time.Minute, 20*time.Minute, 30*time.Minute), 15 * time.Second, 5},
		{"capped", def, ago(59*time.Minute, 58*time.Minute, 57*time.Minute, 56*time.Minute, 55*time.Minute, 54*time.Minute,
			53*time.Minute, 52*time.Minute, 51*time.Minute, time.Second), 5*time.Minute - time.Second, 11},
		{"history decays with the window", def, ago(61*time.Minute, 62*time.Minute, 63*time.Minute, time.Second), 0, 2},
		{"a failover exactly a window ago no longer counts", def, ago(time.Hour, 20*time.Minute, time.Second), 0, 3},
		{"a future time (clock skew) waits no more than the spacing", def, []time.Time{now.Add(-time.Minute), now.Add(-2 * time.Minute), now.Add(time.Hour)}, 10 * time.Second, 4},
		{"free 1", Damping{Free: 1, Window: time.Hour, Delay: 2 * time.Second, MaxDelay: time.Minute}, ago(time.Second), time.Second, 2},
		{"damping off", Damping{Free: 1, Window: time.Hour}, ago(3*time.Second, 2*time.Second, time.Second), 0, 4},
	}
	for _, c := range cases {
		wait, nth := c.d.Hold(c.recent, now)
		if wait != c.wait || nth != c.nth {
			t.Errorf("%s: Hold = %v, %d; want %v, %d", c.name, wait, nth, c.wait, c.nth)
		}
		if sp := c.d.Spacing(nth - 1); wait > sp {
			t.Errorf("%s: wait %v beyond the spacing %v", c.name, wait, sp)
		}
	}
}

func TestHeld(t *testing.T) {
	cases := map[int]string{1: "1st", 2: "2nd", 3: "3rd", 4: "4th", 11: "11th", 12: "12th", 13: "13th", 21: "21st", 22: "22nd", 101: "101st", 111: "111th"}
	for n, w := range cases {
		if got := Ordinal(n); got != w {
			t.Errorf("Ordinal(%d) = %q, want %q", n, got, w)
		}
	}
	if got, want := Held(9600*time.Millisecond, 4, time.Hour), "delayed 10s by flap damping (4th failover within 1h0m0s)"; got != want {
		t.Errorf("Held = %q, want %q", got, want)
	}
}

package controller

import (
	"reflect"
	"testing"
	"time"

	"github.com/marina-redis/marina/internal/state"
)

func TestDownNodes(t *testing.T) {
	t0 := time.Unix(1000, 0)
	st := state.New()
	for _, id := range []string{"a", "b", "c", "d"} {
		st.Nodes[id] = &state.Node{ID: id, Status: state.NodeUp}
	}
	st.Nodes["d"].Status = state.NodeDown
	cases := []struct {
		name    string
		reports map[string]time.Time
		now     time.Time
		want    []string
	}{
		{"fresh leader gives a grace period", nil, t0.Add(4 * time.Second), nil},
		{"silent since leadership", nil, t0.Add(6 * time.Second), []string{"a", "b", "c"}},
		{"recent reports", map[string]time.Time{"a": t0.Add(5 * time.Second), "b": t0.Add(5 * time.Second), "c": t0.Add(1 * time.Second)},
			t0.Add(7 * time.Second), []string{"c"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			reps := map[string]Report{}
			for id, at := range c.reports {
				reps[id] = Report{Received: at}
			}
			got := DownNodes(st, reps, t0, c.now, 5*time.Second)
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}
}

func TestSwitchOwned(t *testing.T) {
	now := time.Unix(1000, 0)
	cases := []struct {
		name string
		p    *state.Pending
		want bool
	}{
		{"no pending", nil, false},
		{"a failover", &state.Pending{Since: now}, false},
		{"a switchover being driven", &state.Pending{Since: now.Add(-time.Second), Kind: state.KindSwitchover}, true},
		// Its leader died or gave up: the failover loop finishes it.
		{"a switchover past the pause", &state.Pending{Since: now.Add(-maxPause - time.Second), Kind: state.KindSwitchover}, false},
	}
	for _, c := range cases {
		if got := switchOwned(c.p, now); got != c.want {
			t.Errorf("%s: switchOwned = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestCaughtUp(t *testing.T) {
	cases := []struct {
		master, applied int64
		want            bool
	}{
		{100, 100, true},
		{100, 120, true},
		{100, 99, true},  // a stray byte: no command fits in it
		{100, 87, true},  // 13 bytes: still shorter than any command
		{100, 86, false}, // room for a command
		{100, 20, false},
	}
	for _, c := range cases {
		if got := caughtUp(c.master, c.applied); got != c.want {
			t.Errorf("caughtUp(%d, %d) = %v, want %v", c.master, c.applied, got, c.want)
		}
	}
}

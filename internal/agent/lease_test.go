package agent

import (
	"testing"
	"time"

	"github.com/marina-redis/marina/internal/state"
)

func TestFoldGrants(t *testing.T) {
	t0 := time.Unix(1000, 0)
	lease := time.Second
	cases := []struct {
		name      string
		until     time.Time
		pending   []grant
		applied   uint64
		wantUntil time.Time
		wantLeft  int
	}{
		{"no grants", t0, nil, 10, t0, 0},
		{"applied grant extends", time.Time{}, []grant{{t0, 5}}, 5, t0.Add(lease), 0},
		// The leader's state at the ack was ahead of ours: it may name our
		// master demoted, so the grant waits.
		{"grant ahead of the local state waits", time.Time{}, []grant{{t0, 6}}, 5, time.Time{}, 1},
		{"only the caught-up grants count", time.Time{}, []grant{{t0, 3}, {t0.Add(200 * time.Millisecond), 9}}, 5, t0.Add(lease), 1},
		{"an older grant never shortens", t0.Add(3 * time.Second), []grant{{t0, 1}}, 5, t0.Add(3 * time.Second), 0},
		{"latest applied grant wins", time.Time{}, []grant{{t0, 1}, {t0.Add(300 * time.Millisecond), 2}}, 2, t0.Add(1300 * time.Millisecond), 0},
	}
	for _, c := range cases {
		until, left := foldGrants(c.until, c.pending, c.applied, lease)
		if !until.Equal(c.wantUntil) || len(left) != c.wantLeft {
			t.Errorf("%s: until %v left %d, want %v %d", c.name, until, len(left), c.wantUntil, c.wantLeft)
		}
	}
}

func TestMustFence(t *testing.T) {
	cases := []struct {
		role  string
		lease bool
		want  bool
	}{
		{state.RoleMaster, true, false},
		{state.RoleMaster, false, true},
		{state.RoleReplica, true, true},
		{state.RoleReplica, false, true},
	}
	for _, c := range cases {
		if got := mustFence(c.role, c.lease); got != c.want {
			t.Errorf("mustFence(%s, lease %v) = %v, want %v", c.role, c.lease, got, c.want)
		}
	}
}

package proxy

import "testing"

// An idle loop blocks until something happens; one with clients or
// connections under way wakes every 100 ms for their timeouts.
func TestLoopWaitMillis(t *testing.T) {
	cases := []struct {
		name string
		l    *loop
		want int
	}{
		{"nothing at all", &loop{}, -1},
		{"idle backend connections", &loop{backends: map[string]*lbackend{"a": {}}}, 1000},
		{"a client", &loop{clients: map[int]*client{7: {}}, backends: map[string]*lbackend{"a": {}}}, 100},
		{"a connection under way", &loop{tunnels: map[*lbackend]bool{{}: true}}, 100},
		{"a parked client", &loop{parked: []*client{{}}}, 100},
	}
	for _, c := range cases {
		if got := c.l.waitMillis(); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

package scheduler

import (
	"fmt"
	"strings"
	"testing"

	"github.com/marina-redis/marina/internal/state"
)

const mib = int64(1 << 20)

func node(id, zone string, capMiB, allocMiB int64) Node {
	return Node{ID: id, Zone: zone, Capacity: capMiB * mib, Allocated: allocMiB * mib, Eligible: true,
		PortMin: 7000, PortMax: 7009, UsedPorts: map[int]bool{}}
}

func ids() IDFunc {
	n := 0
	return func(shard int) string { n++; return fmt.Sprintf("s%d-i%d", shard, n) }
}

func spec(shards, replicas int, memMiB int64) state.Spec {
	return state.Spec{Name: "db", Shards: shards, Replicas: replicas, Memory: memMiB * mib}
}

func TestPlace(t *testing.T) {
	down := node("n3", "", 1024, 0)
	down.Eligible = false
	noPorts := node("n2", "", 1024, 0)
	noPorts.PortMax = noPorts.PortMin
	noPorts.UsedPorts[noPorts.PortMin] = true
	busy := node("n1", "", 1024, 0)
	busy.Masters = 3

	cases := []struct {
		name    string
		nodes   []Node
		spec    state.Spec
		want    [][]string // per shard: master node then replica nodes
		wantErr string
	}{
		{"fits 1x1", []Node{node("n1", "", 100, 0), node("n2", "", 100, 0)}, spec(1, 1, 64),
			[][]string{{"n1", "n2"}}, ""},
		{"best fit packs the tightest node", []Node{node("n1", "", 1000, 0), node("n2", "", 100, 0), node("n3", "", 70, 0)}, spec(1, 1, 64),
			[][]string{{"n3", "n2"}}, ""},
		{"masters spread over nodes", []Node{node("n1", "", 1000, 0), node("n2", "", 1000, 0), node("n3", "", 1000, 0)}, spec(3, 1, 64),
			[][]string{{"n1", "n2"}, {"n2", "n1"}, {"n3", "n1"}}, ""},
		{"node with masters avoided", []Node{busy, node("n2", "", 1024, 0)}, spec(1, 1, 64),
			[][]string{{"n2", "n1"}}, ""},
		{"replica prefers another zone", []Node{node("a1", "a", 200, 0), node("a2", "a", 100, 0), node("b1", "b", 1000, 0)}, spec(1, 1, 64),
			[][]string{{"a2", "b1"}}, ""}, // a2 is the tightest fit; a1 would be tighter but shares zone a
		{"worst-fit fallback finds arrangement", []Node{node("a", "", 128, 0), node("b", "", 64, 0), node("c", "", 64, 0)}, spec(2, 1, 64),
			[][]string{{"a", "b"}, {"c", "a"}}, ""},
		{"anti-affinity: too few nodes", []Node{node("n1", "", 1000, 0), node("n2", "", 1000, 0)}, spec(1, 2, 64),
			nil, "each shard needs 3 distinct nodes"},
		{"down node not used", []Node{node("n1", "", 1000, 0), node("n2", "", 1000, 0), down}, spec(1, 2, 64),
			nil, "n3 not available"},
		{"not enough memory", []Node{node("n1", "", 100, 0), node("n2", "", 100, 50)}, spec(1, 1, 64),
			nil, "each shard needs 2 distinct nodes with 64 MiB free, only 1 have it"},
		{"total memory short", []Node{node("n1", "", 100, 0), node("n2", "", 100, 0)}, spec(2, 1, 64),
			nil, "needs 256 MiB (4 instances of 64 MiB), only 200 MiB free"},
		{"no ports", []Node{node("n1", "", 1000, 0), noPorts}, spec(1, 1, 64),
			nil, "n2 no free port"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Place(c.nodes, c.spec, ids())
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %d shards", len(got))
			}
			for i, sh := range got {
				var nodes []string
				for _, in := range sh.Instances {
					nodes = append(nodes, in.Node)
				}
				if strings.Join(nodes, ",") != strings.Join(c.want[i], ",") {
					t.Errorf("shard %d on %v, want %v", i, nodes, c.want[i])
				}
				if sh.Instances[0].Role != state.RoleMaster {
					t.Errorf("shard %d: first instance is %s", i, sh.Instances[0].Role)
				}
			}
		})
	}
}

func TestPlacePortsAndInvariants(t *testing.T) {
	nodes := []Node{node("n1", "", 4096, 0), node("n2", "", 4096, 0), node("n3", "", 4096, 0)}
	nodes[0].UsedPorts[7000] = true
	got, err := Place(nodes, spec(4, 2, 64), ids())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, sh := range got {
		onNode := map[string]bool{}
		for _, in := range sh.Instances {
			key := fmt.Sprintf("%s:%d", in.Node, in.Port)
			if seen[key] {
				t.Fatalf("port reused: %s", key)
			}
			seen[key] = true
			if onNode[in.Node] {
				t.Fatalf("shard %d has two instances on %s", sh.Index, in.Node)
			}
			onNode[in.Node] = true
			if in.Node == "n1" && in.Port == 7000 {
				t.Fatal("used port handed out")
			}
		}
	}
	if got[3].SlotEnd != 16383 || got[0].SlotStart != 0 {
		t.Fatalf("slot ranges %v", got)
	}
	// Input nodes untouched: placement is pure.
	if nodes[0].Allocated != 0 || len(nodes[1].UsedPorts) != 0 {
		t.Fatal("Place mutated its input")
	}
}

func TestUpdate(t *testing.T) {
	base := func() ([]Node, *state.Database) {
		nodes := []Node{node("n1", "a", 256, 0), node("n2", "b", 256, 0), node("n3", "a", 256, 0)}
		db := &state.Database{Spec: spec(1, 1, 64)}
		sh, err := Place(nodes, db.Spec, ids())
		if err != nil {
			t.Fatal(err)
		}
		db.Shards = sh
		// Nodes as seen with db placed.
		for _, in := range sh[0].Instances {
			for i := range nodes {
				if nodes[i].ID == in.Node {
					nodes[i].Allocated += db.Memory
					nodes[i].UsedPorts[in.Port] = true
				}
			}
		}
		return nodes, db
	}
	cases := []struct {
		name     string
		change   func(*state.Spec)
		replicas int
		wantErr  string
	}{
		{"grow memory fits", func(s *state.Spec) { s.Memory = 200 * mib }, 1, ""},
		{"grow memory does not fit", func(s *state.Spec) { s.Memory = 300 * mib }, 0, "needs 236 MiB more, has 192 MiB free"},
		{"add replica", func(s *state.Spec) { s.Replicas = 2 }, 2, ""},
		{"too many replicas", func(s *state.Spec) { s.Replicas = 3 }, 0, "3 replicas do not fit"},
		{"remove replica", func(s *state.Spec) { s.Replicas = 0 }, 0, ""},
		{"shards change refused", func(s *state.Spec) { s.Shards = 2 }, 0, "changing the number of shards"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			nodes, db := base()
			sp := db.Spec
			c.change(&sp)
			got, err := Update(nodes, db, sp, ids())
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n := len(got[0].Replicas()); n != c.replicas {
				t.Fatalf("replicas = %d, want %d", n, c.replicas)
			}
			m, _ := got[0].Master()
			if orig, _ := db.Shards[0].Master(); m != orig {
				t.Fatalf("master moved: %v -> %v", orig, m)
			}
		})
	}
}

func TestChooseRemovalPrefersDuplicateZone(t *testing.T) {
	nodes := []Node{node("n1", "a", 256, 0), node("n2", "b", 256, 0), node("n3", "a", 256, 0)}
	byID := map[string]*Node{}
	for i := range nodes {
		byID[nodes[i].ID] = &nodes[i]
	}
	sh := state.Shard{Instances: []state.Instance{
		{ID: "m", Node: "n1", Role: state.RoleMaster},
		{ID: "r1", Node: "n2", Role: state.RoleReplica},
		{ID: "r2", Node: "n3", Role: state.RoleReplica},
	}}
	if got := chooseRemoval(sh, byID); got.ID != "r2" {
		t.Fatalf("removed %s, want r2 (zone a twice)", got.ID)
	}
}

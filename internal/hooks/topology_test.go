package hooks

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/marina-redis/marina/internal/state"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func node(i int) *state.Node {
	h := fmt.Sprintf("10.0.0.%d", i)
	return &state.Node{ID: fmt.Sprintf("n%d", i), Addr: h, RaftAddr: h + ":7071", HTTPAddr: h + ":7070", Memory: 1 << 30,
		PortMin: 7100, PortMax: 7199, ProxyMin: 6400, ProxyMax: 6999}
}

// inst is an instance of database db's shard sh with id suffix x.
func inst(db string, sh int, x string, n, port int, role string) state.Instance {
	return state.Instance{ID: fmt.Sprintf("%s-%d-%s", db, sh, x), Node: fmt.Sprintf("n%d", n), Port: port, Role: role}
}

// testDB is a database with one shard per instance list.
func testDB(name string, created time.Time, proxy int, shards ...[]state.Instance) *state.Database {
	db := &state.Database{Spec: state.Spec{Name: name, Memory: 1 << 20, Shards: len(shards), Replicas: len(shards[0]) - 1,
		Persistence: state.PersistNone, Eviction: "noeviction"}, Secret: "sec-" + name, ProxyPort: proxy, CreatedAt: created}
	for i, ins := range shards {
		db.Shards = append(db.Shards, state.Shard{Index: i, SlotStart: i * state.NumSlots / len(shards),
			SlotEnd: (i+1)*state.NumSlots/len(shards) - 1, Instances: ins})
	}
	return db
}

// fsmWith is an FSM with nodes n1..n3 and the database "a": master on n1,
// replica on n2.
func fsmWith(t *testing.T) (*state.FSM, func(cmds ...state.Command)) {
	t.Helper()
	f := state.NewFSM()
	idx := uint64(0)
	apply := func(cmds ...state.Command) {
		t.Helper()
		for _, c := range cmds {
			idx++
			if r := f.Apply(&raft.Log{Index: idx, Data: state.Encode(c)}); r != nil {
				t.Fatalf("apply %s: %v", c.Op(), r)
			}
		}
	}
	for i := 1; i <= 3; i++ {
		apply(&state.UpsertNode{Node: node(i)})
	}
	apply(&state.CreateDB{DB: testDB("a", t0, 6400,
		[]state.Instance{inst("a", 0, "aaaaaa", 1, 7100, state.RoleMaster), inst("a", 0, "bbbbbb", 2, 7100, state.RoleReplica)})})
	return f, apply
}

type step struct {
	cmds []state.Command
	want []string // "db kind"
	// master, when set: the first change's shard 0 master id.
	master string
}

func TestDiff(t *testing.T) {
	const (
		a0 = "a-0-aaaaaa"
		a1 = "a-0-bbbbbb"
	)
	t1 := t0.Add(time.Minute)
	demote := &state.Demote{ShardRef: state.ShardRef{Name: "a", Shard: 0, Epoch: 0}, From: a0, Time: t1, Reason: "crashed"}
	promote := &state.Promote{ShardRef: state.ShardRef{Name: "a", Shard: 0, Epoch: 1}, To: a1, Time: t1.Add(time.Second), Kind: "failover"}
	replaceWith := func(kind string) state.Command {
		add := inst("a", 0, "cccccc", 3, 7100, state.RoleReplica)
		return &state.ReplaceInstance{ShardRef: state.ShardRef{Name: "a", Shard: 0, Epoch: 0}, From: a1, Add: &add, Kind: kind, Time: t1, Reason: "r"}
	}
	withReplicas := func() *state.Database {
		db := testDB("a", t0, 6400, []state.Instance{inst("a", 0, "aaaaaa", 1, 7100, state.RoleMaster),
			inst("a", 0, "bbbbbb", 2, 7100, state.RoleReplica), inst("a", 0, "cccccc", 3, 7100, state.RoleReplica)})
		return db
	}
	moreMemory := testDB("a", t0, 6400, []state.Instance{inst("a", 0, "aaaaaa", 1, 7100, state.RoleMaster), inst("a", 0, "bbbbbb", 2, 7100, state.RoleReplica)})
	moreMemory.Memory = 2 << 20
	b := testDB("b", t1, 6401, []state.Instance{inst("b", 0, "aaaaaa", 2, 7101, state.RoleMaster)},
		[]state.Instance{inst("b", 1, "aaaaaa", 3, 7101, state.RoleMaster)})
	cases := []struct {
		name  string
		steps []step
	}{
		{"nothing changed", []step{{}}},
		{"create", []step{{cmds: []state.Command{&state.CreateDB{DB: b}}, want: []string{"b create"}}}},
		{"delete", []step{{cmds: []state.Command{&state.DeleteDB{Name: "a"}}, want: []string{"a delete"}}}},
		{"failover in two looks: nothing while pending", []step{
			{cmds: []state.Command{demote}},
			{cmds: []state.Command{promote}, want: []string{"a failover"}, master: a1},
		}},
		{"failover in one look", []step{{cmds: []state.Command{demote, promote}, want: []string{"a failover"}, master: a1}}},
		{"failover back to the old master", []step{{cmds: []state.Command{demote,
			&state.Promote{ShardRef: state.ShardRef{Name: "a", Shard: 0, Epoch: 1}, To: a0, Time: t1}}, want: []string{"a failover"}, master: a0}}},
		{"switchover", []step{{cmds: []state.Command{&state.Switchover{ShardRef: state.ShardRef{Name: "a", Shard: 0, Epoch: 0}, From: a0, To: a1, Time: t1}},
			want: []string{"a switchover"}, master: a1}}},
		{"heal", []step{{cmds: []state.Command{replaceWith("heal")}, want: []string{"a move"}}}},
		{"drain move", []step{{cmds: []state.Command{replaceWith("move")}, want: []string{"a move"}}}},
		{"replica added", []step{{cmds: []state.Command{&state.UpdateDB{DB: withReplicas()}}, want: []string{"a replicas"}}}},
		{"memory change is no topology change", []step{{cmds: []state.Command{&state.UpdateDB{DB: moreMemory}}}}},
		{"node down: endpoints", []step{{cmds: []state.Command{&state.SetNodeStatus{NodeID: "n3", Status: state.NodeDown, Time: t1}},
			want: []string{"a endpoints"}}}},
		{"deleted and created again between looks", []step{{cmds: []state.Command{&state.DeleteDB{Name: "a"},
			&state.CreateDB{DB: testDB("a", t1, 6400, []state.Instance{inst("a", 0, "dddddd", 3, 7100, state.RoleMaster)})}},
			want: []string{"a create"}, master: "a-0-dddddd"}}},
		{"an event alone is no change", []step{{cmds: []state.Command{&state.AddEvent{Event: &state.Event{Type: "hook-failed", DB: "a"}}}}}},
		{"two databases, sorted", []step{{cmds: []state.Command{&state.CreateDB{DB: b}, &state.DeleteDB{Name: "a"}},
			want: []string{"a delete", "b create"}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, apply := fsmWith(t)
			snap, first := Diff(Snapshot{}, f.State(), f.Events().All())
			if got := kinds(first); fmt.Sprint(got) != "[a sync]" {
				t.Fatalf("first diff %v, want [a sync]", got)
			}
			for i, s := range tc.steps {
				apply(s.cmds...)
				var changes []Change
				snap, changes = Diff(snap, f.State(), f.Events().All())
				if got := kinds(changes); fmt.Sprint(got) != fmt.Sprint(s.want) {
					t.Fatalf("step %d: changes %v, want %v", i, got, s.want)
				}
				if s.master != "" && changes[0].Topo.Shards[0].Master.ID != s.master {
					t.Fatalf("step %d: master %+v, want %s", i, changes[0].Topo.Shards[0].Master, s.master)
				}
				// Nothing new: nothing announced again.
				if _, again := Diff(snap, f.State(), f.Events().All()); len(again) != 0 {
					t.Fatalf("step %d: diff of the same state: %v", i, kinds(again))
				}
			}
		})
	}
}

func kinds(cs []Change) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.DB+" "+c.Kind)
		if (c.Kind == KindDelete) != (c.Topo == nil) {
			panic("topology must be nil exactly for deletes")
		}
	}
	return out
}

// A database first seen during a failover is announced as a sync once it
// has a master again.
func TestDiffStartsDuringFailover(t *testing.T) {
	f, apply := fsmWith(t)
	apply(&state.Demote{ShardRef: state.ShardRef{Name: "a", Shard: 0, Epoch: 0}, From: "a-0-aaaaaa", Time: t0})
	snap, changes := Diff(Snapshot{}, f.State(), f.Events().All())
	if len(changes) != 0 {
		t.Fatalf("changes while pending: %v", kinds(changes))
	}
	apply(&state.Promote{ShardRef: state.ShardRef{Name: "a", Shard: 0, Epoch: 1}, To: "a-0-bbbbbb", Time: t0})
	snap, changes = Diff(snap, f.State(), f.Events().All())
	if fmt.Sprint(kinds(changes)) != "[a sync]" || changes[0].Topo.Shards[0].Master.ID != "a-0-bbbbbb" {
		t.Fatalf("changes %v", kinds(changes))
	}
	if _, again := Diff(snap, f.State(), f.Events().All()); len(again) != 0 || len(snap.Waiting) != 0 {
		t.Fatalf("again %v, waiting %v", kinds(again), snap.Waiting)
	}
}

// A failover whose events were trimmed away is still a failover.
func TestKindWithoutEvents(t *testing.T) {
	old := Topology{Created: t0, Shards: []ShardTopology{{Epoch: 1, Master: Member{ID: "x"}}}}
	cur := Topology{Created: t0, Shards: []ShardTopology{{Epoch: 2, Master: Member{ID: "y"}}}}
	if k := kindOf(old, cur, nil); k != KindFailover {
		t.Fatalf("kind %q", k)
	}
	if k := kindOf(old, cur, map[string]bool{"switchover": true}); k != KindSwitchover {
		t.Fatalf("kind %q", k)
	}
	if k := kindOf(old, old, nil); k != "" {
		t.Fatalf("kind %q for no change", k)
	}
}

func TestDocument(t *testing.T) {
	f, _ := fsmWith(t)
	_, changes := Diff(Snapshot{}, f.State(), f.Events().All())
	now := time.Date(2025, 6, 7, 8, 9, 10, 0, time.UTC)
	b, err := json.Marshal(NewDocument(changes[0], "n2", now))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"version":1,"name":"a","kind":"sync","time":"2025-06-07T08:09:10Z","node":"n2","proxy_port":6400,` +
		`"endpoints":["10.0.0.1:6400","10.0.0.2:6400","10.0.0.3:6400"],` +
		`"shards":[{"index":0,"slot_start":0,"slot_end":16383,"epoch":0,"master":{"id":"a-0-aaaaaa","node":"n1","addr":"10.0.0.1:7100"},` +
		`"replicas":[{"id":"a-0-bbbbbb","node":"n2","addr":"10.0.0.2:7100"}]}]}`
	if string(b) != want {
		t.Fatalf("document\n got %s\nwant %s", b, want)
	}
	// The secret never leaves through a document.
	if strings.Contains(string(b), "sec-a") {
		t.Fatal("secret in document")
	}
	del, err := json.Marshal(NewDocument(Change{DB: "a", Kind: KindDelete}, "n2", now))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"version":1,"name":"a","kind":"delete","time":"2025-06-07T08:09:10Z","node":"n2"}`; string(del) != want {
		t.Fatalf("delete document %s, want %s", del, want)
	}
}

package state

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// Log entries and snapshots written before typed commands and the event
// log (one flat command struct, events inside the state) still apply.
func TestReadsTheUntypedFormat(t *testing.T) {
	f := NewFSM()
	old := []string{
		`{"op":"upsert-node","node":{"id":"n1","addr":"127.0.0.1","raft_addr":"n1:7071","http_addr":"n1:7070","memory":1073741824,"status":"","joined_at":"0001-01-01T00:00:00Z","port_min":7000,"port_max":7099},"time":"0001-01-01T00:00:00Z"}`,
		`{"op":"upsert-node","node":{"id":"n2","addr":"127.0.0.1","raft_addr":"n2:7071","http_addr":"n2:7070","memory":1073741824,"status":"","joined_at":"0001-01-01T00:00:00Z","port_min":7000,"port_max":7099},"time":"0001-01-01T00:00:00Z"}`,
		`{"op":"set-token","token_hash":"h","time":"0001-01-01T00:00:00Z"}`,
		`{"op":"create-db","db":{"name":"a","memory":8388608,"shards":1,"replicas":1,"persistence":"none","eviction":"noeviction","password":"password1","secret":"s","shard_list":[{"index":0,"slot_start":0,"slot_end":16383,"instances":[{"id":"a-0-aaaaaa","node":"n1","port":7000,"role":"master"},{"id":"a-0-bbbbbb","node":"n2","port":7000,"role":"replica"}],"epoch":0}],"created_at":"2026-01-01T00:00:00Z","updated_at":"0001-01-01T00:00:00Z"},"time":"0001-01-01T00:00:00Z"}`,
		`{"op":"demote","name":"a","time":"2026-01-01T00:00:01Z","from":"a-0-aaaaaa","to":"a-0-bbbbbb","reason":"planned","kind":"switchover"}`,
		`{"op":"promote","name":"a","time":"2026-01-01T00:00:02Z","epoch":1,"to":"a-0-bbbbbb","kind":"switchover"}`,
		`{"op":"set-draining","node_id":"n1","time":"2026-01-01T00:00:03Z","draining":true,"reason":"maintenance"}`,
		`{"op":"event","time":"0001-01-01T00:00:00Z","event":{"id":0,"time":"2026-01-01T00:00:04Z","type":"fence","shard":0,"node":"n1","reason":"lease"}}`,
	}
	for i, e := range old {
		if r := f.Apply(&raft.Log{Index: uint64(i + 1), Data: []byte(e)}); r != nil {
			t.Fatalf("entry %d: %v", i, r)
		}
	}
	st := f.State()
	m, _ := st.DBs["a"].Shards[0].Master()
	if st.TokenHash != "h" || m.ID != "a-0-bbbbbb" || st.DBs["a"].Shards[0].Epoch != 1 || !st.Nodes["n1"].Draining {
		t.Fatalf("state after the old log: token %q master %s epoch %d", st.TokenHash, m.ID, st.DBs["a"].Shards[0].Epoch)
	}
	var types []string
	for _, e := range f.Events().All() {
		types = append(types, e.Type)
	}
	if strings.Join(types, ",") != "db-created,switchover-started,switchover,drain,fence" {
		t.Fatalf("events %v", types)
	}

	// A snapshot of the old format: events and their counter in the state.
	snap := `{"index":9,"state":{"token_hash":"h","nodes":{"n1":{"id":"n1","addr":"127.0.0.1","raft_addr":"n1:7071","http_addr":"n1:7070","memory":1073741824,"status":"up","joined_at":"0001-01-01T00:00:00Z","port_min":7000,"port_max":7099}},"dbs":{},"events":[{"id":41,"time":"2026-01-01T00:00:00Z","type":"drain","shard":0,"node":"n1","reason":""},{"id":42,"time":"2026-01-01T00:00:01Z","type":"undrain","shard":0,"node":"n1","reason":""}],"next_event":42}}`
	g := NewFSM()
	if err := g.Restore(io.NopCloser(strings.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if g.Index() != 9 || g.State().Nodes["n1"] == nil || len(g.Events().All()) != 2 || g.Events().Last() != 42 {
		t.Fatalf("restored index %d events %+v last %d", g.Index(), g.Events().All(), g.Events().Last())
	}
	if err := applyCmd(g, 10, &AddEvent{Event: &Event{Type: "x", Time: time.Unix(1, 0)}}); err != nil {
		t.Fatal(err)
	}
	if evs := g.Events().Since(42, ""); len(evs) != 1 || evs[0].ID != 43 {
		t.Fatalf("event after restore: %+v", evs)
	}
}

// Step never writes the state it is given, whatever the command.
func TestStepLeavesTheOldStateAlone(t *testing.T) {
	f := NewFSM()
	for i, id := range []string{"n1", "n2", "n3"} {
		if err := applyCmd(f, uint64(i+1), &UpsertNode{Node: testNode(id)}); err != nil {
			t.Fatal(err)
		}
	}
	db := testDB("a", 7000)
	if err := applyCmd(f, 4, &CreateDB{DB: db}); err != nil {
		t.Fatal(err)
	}
	before := f.State()
	snapshot := string(Encode(&CreateDB{DB: before.DBs["a"]}))
	nodes := string(Encode(&UpsertNode{Node: before.Nodes["n1"]}))
	t0 := time.Unix(100, 0).UTC()
	cmds := []Command{
		&Demote{ShardRef: ShardRef{Name: "a"}, From: "a-0-aaaaaa", Time: t0},
		&Promote{ShardRef: ShardRef{Name: "a", Epoch: 1}, To: "a-0-bbbbbb", Time: t0},
		&ReplaceInstance{ShardRef: ShardRef{Name: "a", Epoch: 1}, From: "a-0-aaaaaa", Add: &Instance{ID: "a-0-cccccc", Node: "n3", Port: 7001}},
		&SetNodeStatus{NodeID: "n1", Status: NodeDown, Time: t0},
		&SetDraining{NodeID: "n1", Draining: true},
		&SetZonePriority{Zone: "z", Priority: 0},
		&DeleteDB{Name: "a"},
	}
	for i, c := range cmds {
		if err := applyCmd(f, uint64(5+i), c); err != nil {
			t.Fatalf("%s: %v", c.Op(), err)
		}
	}
	if got := string(Encode(&CreateDB{DB: before.DBs["a"]})); got != snapshot {
		t.Fatalf("the published database changed:\n%s\n%s", snapshot, got)
	}
	if got := string(Encode(&UpsertNode{Node: before.Nodes["n1"]})); got != nodes {
		t.Fatalf("the published node changed:\n%s\n%s", nodes, got)
	}
	if before.ZonePriority != nil || f.State().DBs["a"] != nil {
		t.Fatal("zone priorities or databases shared between states")
	}
}

// Events wake the readers of events only; desired-state changes wake the
// reconcilers.
func TestEventsDoNotWakeReconcilers(t *testing.T) {
	f := NewFSM()
	changed, events, applied := f.Changed(), f.Events().Changed(), f.Applied()
	if err := applyCmd(f, 1, &AddEvent{Event: &Event{Type: "fence"}}); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]<-chan struct{}{"events": events, "applied": applied} {
		select {
		case <-ch:
		default:
			t.Fatalf("%s not signalled", name)
		}
	}
	select {
	case <-changed:
		t.Fatal("an event woke the desired-state watchers")
	default:
	}
	if err := applyCmd(f, 2, &UpsertNode{Node: testNode("n1")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("a node change did not wake the desired-state watchers")
	}
}

// The log keeps the newest MaxEvents, numbered without gaps.
func TestEventLogBounded(t *testing.T) {
	l := newEventLog()
	for i := 0; i < 3*MaxEvents+7; i++ {
		l.add([]Event{{Type: "e"}})
	}
	all := l.All()
	if len(all) != MaxEvents || all[0].ID != 2*MaxEvents+8 || all[len(all)-1].ID != 3*MaxEvents+7 || l.Last() != 3*MaxEvents+7 {
		t.Fatalf("len %d first %d last %d", len(all), all[0].ID, all[len(all)-1].ID)
	}
	if s := l.Since(3*MaxEvents+5, ""); len(s) != 2 || s[0].ID != 3*MaxEvents+6 {
		t.Fatalf("since: %+v", s)
	}
	if s := l.Since(0, ""); len(s) != MaxEvents {
		t.Fatalf("since 0: %d", len(s))
	}
}

// The placement index a run of commands keeps up to date equals the one
// built from scratch, and it refuses what the full check refused.
func TestPlacementIndexFollowsTheDatabases(t *testing.T) {
	f := NewFSM()
	idx := uint64(0)
	apply := func(c Command) error {
		idx++
		return applyCmd(f, idx, c)
	}
	for _, id := range []string{"n1", "n2", "n3"} {
		if err := apply(&UpsertNode{Node: testNode(id)}); err != nil {
			t.Fatal(err)
		}
	}
	for i, name := range []string{"a", "b", "c", "d"} {
		db := testDB(name, 7000+i)
		db.ProxyPort = 6400 + i
		if err := apply(&CreateDB{DB: db}); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Unix(100, 0).UTC()
	steps := []Command{
		&DeleteDB{Name: "b"},
		&Demote{ShardRef: ShardRef{Name: "a"}, From: "a-0-aaaaaa", Time: t0},
		&Promote{ShardRef: ShardRef{Name: "a", Epoch: 1}, To: "a-0-bbbbbb", Time: t0},
		&ReplaceInstance{ShardRef: ShardRef{Name: "a", Epoch: 1}, From: "a-0-aaaaaa", Add: &Instance{ID: "a-0-cccccc", Node: "n3", Port: 7001}},
	}
	for _, c := range steps {
		if err := apply(c); err != nil {
			t.Fatalf("%s: %v", c.Op(), err)
		}
	}
	grown := testDB("c", 7002)
	grown.ProxyPort, grown.Memory = 6402, 16<<20
	if err := apply(&UpdateDB{DB: grown}); err != nil {
		t.Fatal(err)
	}
	// b's ports and proxy port are free again; 7001 on n3 is a's now.
	reuse := testDB("e", 7001)
	reuse.ProxyPort = 6401
	if err := apply(&CreateDB{DB: reuse}); err != nil {
		t.Fatal(err)
	}
	taken := testDB("f", 7009)
	taken.Shards[0].Instances[1].Node, taken.Shards[0].Instances[1].Port = "n3", 7001
	if err := apply(&CreateDB{DB: taken}); err == nil || !strings.Contains(err.Error(), "port 7001 already used on node n3") {
		t.Fatalf("taken port: %v", err)
	}
	proxy := testDB("g", 7010)
	proxy.ProxyPort = 6402
	if err := apply(&CreateDB{DB: proxy}); err == nil || !strings.Contains(err.Error(), "proxy port 6402 already used by c") {
		t.Fatalf("taken proxy port: %v", err)
	}
	got, want := f.State().placed, buildPlacement(f.State().DBs)
	for id, u := range got.nodes {
		w := want.nodes[id]
		if w == nil {
			w = &nodeUse{}
		}
		if u.alloc != w.alloc || len(u.ports) != len(w.ports) {
			t.Fatalf("node %s: alloc %d ports %v, rebuilt %d %v", id, u.alloc, u.ports, w.alloc, w.ports)
		}
		for p, db := range w.ports {
			if u.ports[p] != db {
				t.Fatalf("node %s port %d: %q, rebuilt %q", id, p, u.ports[p], db)
			}
		}
	}
	for k, b := range want.proxy {
		for p, db := range b {
			if got.proxyOwner(p) != db || len(got.proxy[k]) != len(b) {
				t.Fatalf("proxy port %d: %q, rebuilt %q", p, got.proxyOwner(p), db)
			}
		}
	}
}

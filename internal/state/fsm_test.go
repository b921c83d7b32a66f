package state

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func testNode(id string) *Node {
	return &Node{ID: id, Addr: "127.0.0.1", RaftAddr: id + ":7071", HTTPAddr: id + ":7070", Memory: 1 << 30, PortMin: 7000, PortMax: 7099}
}

func testDB(name string, port int) *Database {
	return &Database{
		Spec:   Spec{Name: name, Memory: 8 << 20, Shards: 1, Replicas: 1, Persistence: PersistNone, Eviction: "noeviction", Password: "password1"},
		Secret: "s",
		Shards: []Shard{{Index: 0, SlotStart: 0, SlotEnd: 16383, Instances: []Instance{
			{ID: name + "-0-aaaaaa", Node: "n1", Port: port, Role: RoleMaster},
			{ID: name + "-0-bbbbbb", Node: "n2", Port: port, Role: RoleReplica},
		}}},
	}
}

func applyCmd(f *FSM, idx uint64, c Command) error {
	res := f.Apply(&raft.Log{Index: idx, Data: Encode(c)})
	if err, ok := res.(error); ok && err != nil {
		return err
	}
	return nil
}

// unknownOp is a command no FSM knows.
type unknownOp struct{}

func (unknownOp) Op() string       { return "explode" }
func (unknownOp) apply(*txn) error { return nil }

func TestApply(t *testing.T) {
	bad := testDB("bad", 7001)
	bad.Shards[0].Instances[1].Node = "n1" // master and replica together
	bad.Shards[0].Instances[1].Port = 7005
	twoMasters := testDB("tm", 7002)
	twoMasters.Shards[0].Instances[1].Role = RoleMaster
	outOfRange := testDB("oor", 9000)
	unknownNode := testDB("un", 7003)
	unknownNode.Shards[0].Instances[1].Node = "n9"
	invalid := testDB("inv", 7004)
	invalid.Eviction = "whenever"
	pathID := testDB("path", 7006)
	pathID.Shards[0].Instances[1].ID = "../raft"
	tooBig := testDB("big", 7007)
	tooBig.Memory = 800 << 20 // two nodes of 1GiB each already hold 8MiB
	tooBig.Shards[0].Instances = tooBig.Shards[0].Instances[:1]
	tooBig.Replicas = 0
	tooBig2 := testDB("big2", 7008)
	tooBig2.Memory = 800 << 20
	tooBig2.Shards[0].Instances = tooBig2.Shards[0].Instances[:1]
	tooBig2.Replicas = 0
	badNode := testNode("n5")
	badNode.PortMin = 80

	cases := []struct {
		name    string
		cmd     Command
		wantErr string
	}{
		{"create", &CreateDB{DB: testDB("a", 7000)}, ""},
		{"duplicate name", &CreateDB{DB: testDB("a", 7010)}, "already exists"},
		{"port taken", &CreateDB{DB: testDB("b", 7000)}, "port 7000 already used"},
		{"anti-affinity", &CreateDB{DB: bad}, "two instances on node n1"},
		{"two masters", &CreateDB{DB: twoMasters}, "2 masters"},
		{"port out of range", &CreateDB{DB: outOfRange}, "outside node"},
		{"unknown node", &CreateDB{DB: unknownNode}, "unknown node n9"},
		{"invalid spec", &CreateDB{DB: invalid}, "invalid eviction"},
		{"instance id is not a path", &CreateDB{DB: pathID}, "invalid instance id"},
		{"fits capacity", &CreateDB{DB: tooBig}, ""},
		{"over capacity", &CreateDB{DB: tooBig2}, "would hold"},
		{"invalid node", &UpsertNode{Node: badNode}, "invalid port range"},
		{"update missing", &UpdateDB{DB: testDB("zz", 7020)}, "not found"},
		{"delete missing", &DeleteDB{Name: "zz"}, "not found"},
		{"bad node status", &SetNodeStatus{NodeID: "n1", Status: "sleepy"}, "invalid node status"},
		{"unknown op", unknownOp{}, "unknown command"},
	}
	f := NewFSM()
	for i, id := range []string{"n1", "n2"} {
		if err := applyCmd(f, uint64(i+1), &UpsertNode{Node: testNode(id)}); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := f.State()
			err := applyCmd(f, uint64(10+i), c.cmd)
			if c.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("err %v, want %q", err, c.wantErr)
			}
			if len(f.State().DBs) != len(before.DBs) || len(f.State().Nodes) != len(before.Nodes) {
				t.Fatal("refused command changed the state")
			}
		})
	}
	if f.Index() != uint64(10+len(cases)-1) {
		t.Fatalf("index %d", f.Index())
	}
}

// Creating, changing and deleting a database are events, with what changed.
func TestDatabaseEvents(t *testing.T) {
	f := NewFSM()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	idx := uint64(0)
	must := func(c Command) {
		t.Helper()
		idx++
		if err := applyCmd(f, idx, c); err != nil {
			t.Fatal(err)
		}
	}
	must(&UpsertNode{Node: &Node{ID: "n1", Addr: "127.0.0.1", RaftAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2", Memory: 1 << 30, PortMin: 7000, PortMax: 7999}})
	db := &Database{Spec: Spec{Name: "a", Memory: 1 << 20, Shards: 1}, CreatedAt: t0, UpdatedAt: t0,
		Shards: []Shard{{Index: 0, SlotEnd: NumSlots - 1, Instances: []Instance{{ID: "a-0-abc123", Node: "n1", Port: 7000, Role: RoleMaster}}}}}
	db.Defaults()
	must(&CreateDB{DB: db})
	up := db.Clone()
	up.Memory, up.UpdatedAt = 2<<20, t0.Add(time.Minute)
	must(&UpdateDB{DB: up, Reason: "memory 1.0 MiB -> 2.0 MiB"})
	must(&DeleteDB{Name: "a", Time: t0.Add(time.Hour)})
	var got []string
	for _, e := range f.Events().All() {
		got = append(got, e.Type+"@"+e.Time.Sub(t0).String()+":"+e.Reason)
	}
	want := "db-created@0s:1 shard(s) x 0 replica(s), 1.0 MiB per shard|db-updated@1m0s:memory 1.0 MiB -> 2.0 MiB|db-deleted@1h0m0s:"
	if strings.Join(got, "|") != want {
		t.Fatalf("events\n got %s\nwant %s", strings.Join(got, "|"), want)
	}
}

func TestUpsertKeepsStatus(t *testing.T) {
	f := NewFSM()
	_ = applyCmd(f, 1, &UpsertNode{Node: testNode("n1")})
	_ = applyCmd(f, 2, &SetDraining{NodeID: "n1", Draining: true})
	n := testNode("n1")
	n.Memory = 2 << 30
	_ = applyCmd(f, 3, &UpsertNode{Node: n})
	got := f.State().Nodes["n1"]
	if !got.Draining || got.Status != NodeUp || got.Memory != 2<<30 {
		t.Fatalf("node %+v", got)
	}
}

type sink struct {
	bytes.Buffer
}

func (s *sink) ID() string    { return "s" }
func (s *sink) Cancel() error { return nil }
func (s *sink) Close() error  { return nil }

func TestSnapshotRestore(t *testing.T) {
	f := NewFSM()
	_ = applyCmd(f, 1, &UpsertNode{Node: testNode("n1")})
	_ = applyCmd(f, 2, &UpsertNode{Node: testNode("n2")})
	_ = applyCmd(f, 3, &SetToken{TokenHash: "h"})
	if err := applyCmd(f, 4, &CreateDB{DB: testDB("a", 7000)}); err != nil {
		t.Fatal(err)
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var s sink
	if err := snap.Persist(&s); err != nil {
		t.Fatal(err)
	}
	g := NewFSM()
	changed := g.Changed()
	if err := g.Restore(io.NopCloser(&s.Buffer)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("restore did not notify watchers")
	}
	if g.Index() != 4 {
		t.Fatalf("restored index %d, want 4", g.Index())
	}
	st := g.State()
	if st.TokenHash != "h" || len(st.Nodes) != 2 || st.DBs["a"] == nil || st.DBs["a"].Shards[0].Instances[1].Node != "n2" {
		t.Fatalf("restored %+v", st)
	}
	if evs := g.Events().All(); len(evs) != 1 || evs[0].Type != "db-created" || g.Events().Last() != 1 {
		t.Fatalf("restored events %+v", evs)
	}
	// A published state never changes: the next apply builds a new one.
	if err := applyCmd(g, 5, &DeleteDB{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	if st.DBs["a"] == nil || g.State().DBs["a"] != nil {
		t.Fatal("an apply changed a published state")
	}
}

// The failover commands: demote then promote, switchover and replace, each
// refused when its epoch is stale.
func TestShardCommands(t *testing.T) {
	f := NewFSM()
	for i, id := range []string{"n1", "n2", "n3"} {
		_ = applyCmd(f, uint64(i+1), &UpsertNode{Node: testNode(id)})
	}
	db := testDB("a", 7000)
	db.Replicas = 2
	db.Shards[0].Instances = append(db.Shards[0].Instances, Instance{ID: "a-0-cccccc", Node: "n3", Port: 7000, Role: RoleReplica})
	if err := applyCmd(f, 4, &CreateDB{DB: db}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0).UTC()
	steps := []struct {
		name    string
		cmd     Command
		wantErr string
		master  string
		epoch   uint64
	}{
		{"promote without failover", &Promote{ShardRef: ShardRef{Name: "a", Epoch: 0}, To: "a-0-bbbbbb"}, "no failover in progress", "a-0-aaaaaa", 0},
		{"demote a replica", &Demote{ShardRef: ShardRef{Name: "a", Epoch: 0}, From: "a-0-bbbbbb"}, "not the master", "a-0-aaaaaa", 0},
		{"demote", &Demote{ShardRef: ShardRef{Name: "a", Epoch: 0}, From: "a-0-aaaaaa", Time: t0, Reason: "crashed"}, "", "", 1},
		{"demote again (stale epoch)", &Demote{ShardRef: ShardRef{Name: "a", Epoch: 0}, From: "a-0-aaaaaa"}, "epoch 1, decision was for 0", "", 1},
		{"promote", &Promote{ShardRef: ShardRef{Name: "a", Epoch: 1}, To: "a-0-cccccc", Time: t0.Add(time.Second)}, "", "a-0-cccccc", 1},
		{"promote twice", &Promote{ShardRef: ShardRef{Name: "a", Epoch: 1}, To: "a-0-bbbbbb"}, "no failover in progress", "a-0-cccccc", 1},
		{"switchover", &Switchover{ShardRef: ShardRef{Name: "a", Epoch: 1}, From: "a-0-cccccc", To: "a-0-aaaaaa"}, "", "a-0-aaaaaa", 2},
		{"switchover stale", &Switchover{ShardRef: ShardRef{Name: "a", Epoch: 1}, From: "a-0-aaaaaa", To: "a-0-bbbbbb"}, "epoch 2", "a-0-aaaaaa", 2},
		{"replace the master refused", &ReplaceInstance{ShardRef: ShardRef{Name: "a", Epoch: 2}, From: "a-0-aaaaaa", Add: &Instance{ID: "a-0-dddddd", Node: "n3", Port: 7001}}, "only replicas", "a-0-aaaaaa", 2},
		{"replace onto a node of the shard refused", &ReplaceInstance{ShardRef: ShardRef{Name: "a", Epoch: 2}, From: "a-0-bbbbbb", Add: &Instance{ID: "a-0-dddddd", Node: "n3", Port: 7001}}, "two instances on node n3", "a-0-aaaaaa", 2},
	}
	for i, s := range steps {
		err := applyCmd(f, uint64(10+i), s.cmd)
		if s.wantErr == "" && err != nil || s.wantErr != "" && (err == nil || !strings.Contains(err.Error(), s.wantErr)) {
			t.Fatalf("%s: err %v, want %q", s.name, err, s.wantErr)
		}
		sh := f.State().DBs["a"].Shards[0]
		m, _ := sh.Master()
		if m.ID != s.master || sh.Epoch != s.epoch {
			t.Fatalf("%s: master %q epoch %d, want %q %d", s.name, m.ID, sh.Epoch, s.master, s.epoch)
		}
	}
	st := f.State()
	sh := st.DBs["a"].Shards[0]
	if len(sh.Failovers) != 1 || !sh.Failovers[0].Equal(t0.Add(time.Second)) {
		t.Fatalf("failovers %v", sh.Failovers)
	}
	var types []string
	for _, e := range f.Events().All() {
		types = append(types, e.Type)
	}
	if strings.Join(types, ",") != "db-created,failover-started,failover,switchover" {
		t.Fatalf("events %v", types)
	}
}

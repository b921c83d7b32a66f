package hooks

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/testutil"
)

func TestMergeKind(t *testing.T) {
	for _, c := range []struct{ queued, newer, want string }{
		// A node marked down right after the promotion: still a failover.
		{KindFailover, KindEndpoints, KindFailover},
		{KindEndpoints, KindFailover, KindFailover},
		{KindSwitchover, KindFailover, KindFailover},
		{KindFailover, KindSwitchover, KindFailover},
		{KindSwitchover, KindMove, KindSwitchover},
		{KindMove, KindReplicas, KindMove},
		{KindReplicas, KindUpdate, KindReplicas},
		{KindUpdate, KindEndpoints, KindUpdate},
		{KindSync, KindEndpoints, KindEndpoints},
		{KindEndpoints, KindSync, KindEndpoints},
		{KindSync, KindSync, KindSync},
		// Consumers that never heard of the database hear of it by a create.
		{KindCreate, KindFailover, KindCreate},
		{KindCreate, KindEndpoints, KindCreate},
		// Deleted and created again (kindOf says create): a create.
		{KindFailover, KindCreate, KindCreate},
		// Delete and create: the latest wins.
		{KindCreate, KindDelete, KindDelete},
		{KindDelete, KindCreate, KindCreate},
		{KindFailover, KindDelete, KindDelete},
		{KindSync, KindDelete, KindDelete},
		{KindDelete, KindDelete, KindDelete},
		// Anything after a delete means the database is back: a create.
		{KindDelete, KindEndpoints, KindCreate},
		{KindDelete, KindFailover, KindCreate},
	} {
		if got := mergeKind(c.queued, c.newer); got != c.want {
			t.Errorf("mergeKind(%s, %s) = %s, want %s", c.queued, c.newer, got, c.want)
		}
	}
	// The whole order, both ways round.
	order := []string{KindCreate, KindFailover, KindSwitchover, KindMove, KindReplicas, KindUpdate, KindEndpoints, KindSync}
	for i, hi := range order {
		for _, lo := range order[i+1:] {
			if a, b := mergeKind(hi, lo), mergeKind(lo, hi); a != hi || b != hi {
				t.Errorf("%s over %s: got %s and %s", hi, lo, a, b)
			}
		}
	}
}

func doc(db, kind string, endpoints ...string) job {
	d := Document{Version: DocVersion, Name: db, Kind: kind, Node: "n1", Time: t0}
	if kind != KindDelete {
		d.Topology = &Topology{Name: db, Endpoints: endpoints, Shards: []ShardTopology{}}
	}
	return job{doc: d}
}

// takeAll takes every queued document, as "db kind", marking each done.
func takeAll(t *testing.T, q *queue) []string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // take returns what is queued, then false
	var out []string
	for {
		db, j, ok := q.take(ctx)
		if !ok {
			return out
		}
		out = append(out, db+" "+j.doc.Kind)
		q.done(db)
	}
}

// A queued document replaced by a newer one: the newer topology, the kind
// of higher precedence, and its place in the queue.
func TestQueueReplace(t *testing.T) {
	q := newQueue()
	q.put("a", doc("a", KindFailover, "e1", "e2", "e3"))
	q.put("a", doc("a", KindEndpoints, "e1", "e2"))
	ctx := testutil.Ctx(t, 10*time.Second)
	db, j, ok := q.take(ctx)
	if !ok || db != "a" || j.doc.Kind != KindFailover || fmt.Sprint(j.doc.Endpoints) != "[e1 e2]" {
		t.Fatalf("took %s %+v %v", db, j.doc, ok)
	}
	// Queued behind a running one: merged too, and queued once it is done.
	q.put("a", doc("a", KindSync))
	q.put("a", doc("a", KindSwitchover, "e9"))
	q.put("a", doc("a", KindDelete))
	if !q.superseded("a") {
		t.Fatal("not superseded")
	}
	if got := takeAll(t, q); len(got) != 0 {
		t.Fatalf("taken while running: %v", got)
	}
	q.done("a")
	q.put("a", doc("a", KindCreate, "e7"))
	db, j, ok = q.take(ctx)
	if !ok || j.doc.Kind != KindCreate || j.doc.Topology == nil || fmt.Sprint(j.doc.Endpoints) != "[e7]" {
		t.Fatalf("after delete and create: %s %+v %v", db, j.doc, ok)
	}
	q.done("a")
	if got := takeAll(t, q); len(got) != 0 {
		t.Fatalf("left over: %v", got)
	}
}

// Failovers and the like go before a restart's sync of every database and
// a node flap's endpoints documents; each lane keeps its order.
func TestQueueOrder(t *testing.T) {
	q := newQueue()
	var want []string
	for i := range 1000 {
		q.put(fmt.Sprintf("db%03d", i), doc("", KindSync))
	}
	ctx := testutil.Ctx(t, 10*time.Second)
	if db, _, _ := q.take(ctx); db != "db000" { // running
		t.Fatalf("first %s", db)
	}
	q.put("db000", doc("", KindFailover)) // waits for its run, then goes first
	q.put("db500", doc("", KindEndpoints))
	q.put("db010", doc("", KindEndpoints))
	q.put("zz", doc("", KindFailover))
	q.put("db010", doc("", KindFailover)) // moves up
	q.put("db020", doc("", KindDelete))
	q.put("yy", doc("", KindEndpoints))
	q.put("xx", doc("", KindSwitchover))
	q.put("ww", doc("", KindCreate))
	q.put("db010", doc("", KindEndpoints)) // stays up, a failover
	q.done("db000")
	want = append(want, "zz failover", "db010 failover", "db020 delete", "xx switchover", "ww create", "db000 failover")
	for i := 1; i < 1000; i++ {
		switch i {
		case 10, 20:
		case 500:
			want = append(want, "db500 endpoints")
		default:
			want = append(want, fmt.Sprintf("db%03d sync", i))
		}
	}
	want = append(want, "yy endpoints")
	if got := takeAll(t, q); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("order:\n%v\nwant\n%v", got, want)
	}
}

// The diff of real FSM commands into the queue: a failover, then the node
// marked down before the hook took the document.
func TestQueueFailoverThenNodeDown(t *testing.T) {
	f, apply := fsmWith(t)
	q := newQueue()
	put := func(snap Snapshot) Snapshot {
		next, changes := Diff(snap, f.State(), f.Events().All())
		for _, c := range changes {
			q.put(c.DB, job{doc: NewDocument(c, "n1", t0)})
		}
		return next
	}
	snap := put(Snapshot{})
	if got := takeAll(t, q); fmt.Sprint(got) != "[a sync]" {
		t.Fatalf("first: %v", got)
	}
	apply(&state.Demote{ShardRef: state.ShardRef{Name: "a", Shard: 0, Epoch: 0}, From: "a-0-aaaaaa", Time: t0},
		&state.Promote{ShardRef: state.ShardRef{Name: "a", Shard: 0, Epoch: 1}, To: "a-0-bbbbbb", Time: t0})
	snap = put(snap)
	apply(&state.SetNodeStatus{NodeID: "n3", Status: state.NodeDown, Time: t0})
	put(snap)
	ctx := testutil.Ctx(t, 10*time.Second)
	_, j, _ := q.take(ctx)
	if j.doc.Kind != KindFailover || len(j.doc.Endpoints) != 2 || j.doc.Shards[0].Master.ID != "a-0-bbbbbb" {
		t.Fatalf("document %+v", j.doc)
	}
}

// stateSeen is a Source that tells when Run has queued the documents of a
// state: Run asks for the change channel again only after that, at the
// next change.
type stateSeen struct {
	*state.FSM
	mu   sync.Mutex
	last *state.State
	done []*state.State
}

func (s *stateSeen) State() *state.State {
	st := s.FSM.State()
	s.mu.Lock()
	s.last = st
	s.mu.Unlock()
	return st
}

func (s *stateSeen) Changed() <-chan struct{} {
	s.mu.Lock()
	if s.last != nil {
		s.done = append(s.done, s.last)
	}
	s.mu.Unlock()
	return s.FSM.Changed()
}

// handled says whether Run queued the documents of a state for which ok.
func (s *stateSeen) handled(ok func(*state.State) bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.done {
		if ok(st) {
			return true
		}
	}
	return false
}

// A failover's document goes before the sync documents queued at start,
// and keeps its kind when the node marked down right after it changes the
// endpoints.
func TestRunFailoverFirst(t *testing.T) {
	dir := t.TempDir()
	out, gate := filepath.Join(dir, "docs"), filepath.Join(dir, "gate")
	f, apply := fsmWith(t)
	for i, name := range []string{"b", "c", "d", "e", "f"} {
		port := 7101 + i
		apply(&state.CreateDB{DB: testDB(name, t0, 6401+i, []state.Instance{
			inst(name, 0, "aaaaaa", 1, port, state.RoleMaster), inst(name, 0, "bbbbbb", 2, port, state.RoleReplica)})})
	}
	src := &stateSeen{FSM: f}
	cmd := fmt.Sprintf(`cat >> %s; while [ ! -f %s ]; do sleep 0.01; done`, out, gate)
	startRun(t, Config{Node: "n1", Exec: cmd, Timeout: time.Minute, Workers: 1, Log: testutil.Logger()}, src)
	testutil.WaitFor(t, 10*time.Second, "sync document of a", func() error {
		docs, err := readDocs(out)
		if err != nil || len(docs) != 1 || docs[0].Name != "a" || docs[0].Kind != KindSync {
			return fmt.Errorf("docs %+v err %v", docs, err)
		}
		return nil
	})
	// a's hook is stuck at the gate, b..f's syncs wait: d fails over, then
	// n3 is marked down (an endpoints change of every database).
	apply(&state.Demote{ShardRef: state.ShardRef{Name: "d", Shard: 0, Epoch: 0}, From: "d-0-aaaaaa", Time: t0},
		&state.Promote{ShardRef: state.ShardRef{Name: "d", Shard: 0, Epoch: 1}, To: "d-0-bbbbbb", Time: t0})
	apply(&state.SetNodeStatus{NodeID: "n3", Status: state.NodeDown, Time: t0})
	testutil.WaitFor(t, 10*time.Second, "node down seen", func() error {
		// A change that changes no topology makes Run ask for the next one
		// (an event would not: events do not wake the desired-state readers).
		apply(&state.SetZonePriority{Zone: "unused", Priority: 1})
		if !src.handled(func(st *state.State) bool { return st.Nodes["n3"].Status == state.NodeDown }) {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	want := "a sync 3, d failover 2, b endpoints 2, c endpoints 2, e endpoints 2, f endpoints 2, a endpoints 2"
	testutil.WaitFor(t, 10*time.Second, "documents in order", func() error {
		docs, err := readDocs(out)
		var got []string
		for _, d := range docs {
			got = append(got, fmt.Sprintf("%s %s %d", d.Name, d.Kind, len(d.Endpoints)))
		}
		if s := strings.Join(got, ", "); s != want {
			return fmt.Errorf("documents %s (err %v), want %s", s, err, want)
		}
		return nil
	})
	docs, _ := readDocs(out)
	if m := docs[1].Shards[0].Master.ID; m != "d-0-bbbbbb" {
		t.Fatalf("failover document's master %s", m)
	}
}

func TestFailureLimiter(t *testing.T) {
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	l := failureLimiter{burst: 2, window: time.Minute}
	type step struct {
		sec    int
		db     string // add a failure of db; "": ask for the summary
		one    bool   // add: recorded one by one
		reason string // summary: "" for none, else a part of the reason
		sumDB  string
	}
	for i, s := range []step{
		{sec: 0, db: "a", one: true},
		{sec: 1, db: "b", one: true},
		{sec: 2, db: "c"},
		{sec: 3, db: "c"},
		{sec: 4, db: "d"},
		{sec: 30}, // the window has not ended
		{sec: 60, reason: "exec hook failed for 2 more databases (3 failures) in 1m0s, too many for an event each (the node's log has each): c, d; last: d failed"},
		// Failures go on: the next window has no burst, one summary.
		{sec: 61, db: "e"},
		{sec: 119, db: "e"},
		{sec: 119},
		{sec: 125, reason: "for 1 more database (2 failures)", sumDB: "e"},
		// A window without failures ends the run: a full burst again.
		{sec: 150},
		{sec: 190, db: "f", one: true},
		{sec: 191, db: "g", one: true},
		{sec: 192, db: "h"},
		// Held at the window's end, before the summary: in it.
		{sec: 250, db: "i"},
		{sec: 251, reason: "for 2 more databases (2 failures)"},
	} {
		if s.db != "" {
			if one := l.add(at(s.sec), s.db, s.db+" failed"); one != s.one {
				t.Fatalf("step %d %+v: one %v", i, s, one)
			}
			if _, held := l.due(); !s.one && !held {
				t.Fatalf("step %d: failure not held", i)
			}
			continue
		}
		e, ok := l.summary(at(s.sec), "n1")
		if ok != (s.reason != "") || !strings.Contains(e.Reason, s.reason) || e.DB != s.sumDB ||
			(ok && (e.Type != EventHookFailed || e.Node != "n1")) {
			t.Fatalf("step %d %+v: summary %v %+v", i, s, ok, e)
		}
	}
	if _, held := l.due(); held {
		t.Fatal("failures held after the summary")
	}
	// Many databases: ten named, the rest counted.
	l = failureLimiter{burst: 0, window: time.Minute}
	for i := range 1000 {
		l.add(at(i%60), fmt.Sprintf("db%04d", i), "x")
	}
	e, ok := l.summary(at(60), "n1")
	if !ok || !strings.Contains(e.Reason, "for 1000 more databases (1000 failures)") ||
		!strings.Contains(e.Reason, "db0000, db0001, db0002, db0003, db0004, db0005, db0006, db0007, db0008, db0009 and 990 more; last: x") || len(e.Reason) > 1000 {
		t.Fatalf("summary %v %q", ok, e.Reason)
	}
}

// A broken hook failing for every database: a few events, then one
// summing up the rest, not an event per database.
func TestRunFailureEventsLimited(t *testing.T) {
	f, apply := fsmWith(t)
	for i := range 20 {
		name := fmt.Sprintf("x%02d", i)
		apply(&state.CreateDB{DB: testDB(name, t0, 6401+i, []state.Instance{inst(name, 0, "aaaaaa", 1, 7101+i, state.RoleMaster)})})
	}
	ev := &events{}
	startRun(t, Config{Node: "n1", Exec: `cat > /dev/null; exit 1`, Timeout: 5 * time.Second, Log: testutil.Logger(), Event: ev.record,
		failureEvents: 3, failureWindow: 300 * time.Millisecond}, f)
	held := regexp.MustCompile(`for (\d+) more databases? \((\d+) failures?\) in 300ms`)
	testutil.WaitFor(t, 20*time.Second, "21 failures reported", func() error {
		one, summed, summaries := 0, 0, 0
		for _, e := range ev.list() {
			if e.Type != EventHookFailed || e.Node != "n1" {
				return fmt.Errorf("event %+v", e)
			}
			if strings.HasPrefix(e.Reason, "exec hook for sync of ") {
				one++
				continue
			}
			m := held.FindStringSubmatch(e.Reason)
			if m == nil {
				return fmt.Errorf("event %+v", e)
			}
			n, _ := strconv.Atoi(m[2])
			summed += n
			summaries++
		}
		if one != 3 || one+summed != 21 {
			return fmt.Errorf("%d events one by one, %d failures in %d summaries", one, summed, summaries)
		}
		return nil
	})
}

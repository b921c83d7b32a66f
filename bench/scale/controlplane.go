package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/raft"

	"github.com/marina-redis/marina/internal/hooks"
	"github.com/marina-redis/marina/internal/proxy"
	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/topology"
)

// controlPlane feeds the FSM and the topology view with dbs databases (1
// shard, 1 replica) on nodes nodes, without Raft's network or any
// redis-server, and prints what the control plane costs at that size.
func controlPlane(dbs, nodes int) error {
	f := state.NewFSM()
	idx := uint64(0)
	apply := func(c state.Command) (time.Duration, error) {
		idx++
		data := state.Encode(c)
		t0 := time.Now()
		r := f.Apply(&raft.Log{Index: idx, Data: data})
		d := time.Since(t0)
		if err, ok := r.(error); ok && err != nil {
			return d, err
		}
		return d, nil
	}
	for i := range nodes {
		n := &state.Node{ID: fmt.Sprintf("n%03d", i), Addr: fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), RaftAddr: "x:1", HTTPAddr: "x:2",
			Memory: 1 << 40, PortMin: 10000, PortMax: 60000, ProxyMin: 6400, ProxyMax: 6400 + dbs}
		if _, err := apply(&state.UpsertNode{Node: n}); err != nil {
			return err
		}
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	creates := make([]time.Duration, 0, dbs)
	t0 := time.Now()
	for i := range dbs {
		name := fmt.Sprintf("db%05d", i)
		port := 10000 + i/nodes*2 // two instances per node per round
		db := &state.Database{Spec: state.Spec{Name: name, Memory: 16 << 20, Shards: 1, Replicas: 1, Persistence: state.PersistNone,
			Eviction: "noeviction", Password: "password-" + name, Durability: state.DurabilityAsync, ReadFrom: "master"},
			Secret: "secret-" + name, ProxyPort: 6400 + i, CreatedAt: time.Unix(int64(i), 0).UTC(),
			Shards: []state.Shard{{Index: 0, SlotEnd: state.NumSlots - 1, Instances: []state.Instance{
				{ID: name + "-0-aaaaaa", Node: fmt.Sprintf("n%03d", i%nodes), Port: port, Role: state.RoleMaster},
				{ID: name + "-0-bbbbbb", Node: fmt.Sprintf("n%03d", (i+1)%nodes), Port: port + 1, Role: state.RoleReplica},
			}}}}
		d, err := apply(&state.CreateDB{DB: db})
		if err != nil {
			return fmt.Errorf("create %s: %w", name, err)
		}
		creates = append(creates, d)
	}
	fill := time.Since(t0)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	perDB := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / int64(dbs)

	// At full size: the commands a running cluster applies most.
	var steady []time.Duration
	t1 := time.Unix(1e6, 0).UTC()
	for i := range 1000 {
		name := fmt.Sprintf("db%05d", (i*7919)%dbs)
		sh := f.State().DBs[name].Shards[0]
		m, _ := sh.Master()
		r := sh.Replicas()[0]
		for _, c := range []state.Command{
			&state.Demote{ShardRef: state.ShardRef{Name: name, Epoch: sh.Epoch}, From: m.ID, Time: t1, Reason: "bench"},
			&state.Promote{ShardRef: state.ShardRef{Name: name, Epoch: sh.Epoch + 1}, To: r.ID, Time: t1},
			&state.SetNodeStatus{NodeID: m.Node, Status: state.NodeUp, Time: t1},
			&state.AddEvent{Event: &state.Event{Type: "fence", Node: m.Node, Time: t1}},
		} {
			d, err := apply(c)
			if err != nil {
				return fmt.Errorf("%s on %s: %w", c.Op(), name, err)
			}
			steady = append(steady, d)
		}
	}

	// One state read, and one pass of the views every node computes.
	const reads = 1_000_000
	var sink *state.State
	readAllocs, readNs := allocs(func() {
		for range reads {
			sink = f.State()
		}
	})
	_ = sink
	st := f.State()
	var routes int
	routeAllocs, routeNs := allocs(func() { routes = len(proxy.Routes(st, "n000", proxy.Limits{}, nil)) })
	var endpoints int
	_, viewNs := allocs(func() {
		for _, db := range st.DBs {
			endpoints += len(topology.Endpoints(st, db))
			_, _ = topology.ServingMaster(db.Shards[0])
		}
	})
	_, diffNs := allocs(func() { hooks.Diff(hooks.Snapshot{}, st, f.Events().All()) })

	// Snapshot and restore.
	snapStart := time.Now()
	snap, err := f.Snapshot()
	if err != nil {
		return err
	}
	capture := time.Since(snapStart)
	var sink2 memSink
	persistStart := time.Now()
	if err := snap.Persist(&sink2); err != nil {
		return err
	}
	persist := time.Since(persistStart)
	size := sink2.Len()
	g := state.NewFSM()
	restoreStart := time.Now()
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink2.Bytes()))); err != nil {
		return err
	}
	restore := time.Since(restoreStart)
	if len(g.State().DBs) != dbs {
		return fmt.Errorf("restored %d databases, want %d", len(g.State().DBs), dbs)
	}

	fmt.Printf("\ncontrol plane alone: %d databases (1 shard, 1 replica) on %d nodes, FSM and topology view in process\n\n", dbs, nodes)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "figure\tvalue\ttarget")
	p := func(name, value, target string) { fmt.Fprintf(w, "%s\t%s\t%s\n", name, value, target) }
	p("create-db apply p50 / p99 / max", fmt.Sprintf("%s (fill %s)", spread(creates), fill.Round(time.Millisecond)), "p99 < 1ms")
	p("apply at full size p50 / p99 / max", spread(steady)+" (demote, promote, node status, event x1000)", "p99 < 1ms")
	p("one state read", fmt.Sprintf("%.1f ns, %.2f allocations", float64(readNs)/reads, float64(readAllocs)/reads), "no allocation")
	p("proxy routes of one node", fmt.Sprintf("%s, %d allocations, %d routes", time.Duration(routeNs), routeAllocs, routes), "")
	p("endpoints + serving master, all dbs", time.Duration(viewNs).String(), "")
	p("hooks diff, all dbs", time.Duration(diffNs).String(), "")
	p("snapshot capture / persist / size", fmt.Sprintf("%s / %s / %.1f MiB", capture.Round(time.Microsecond), persist.Round(time.Millisecond), float64(size)/(1<<20)), "capture ~0")
	p("restore", restore.Round(time.Millisecond).String(), "")
	p("memory per database", fmt.Sprintf("%d bytes (heap %.1f MiB for %d)", perDB, float64(after.HeapAlloc)/(1<<20), dbs), "")
	return w.Flush()
}

// allocs runs fn once and returns the allocations and nanoseconds it took.
func allocs(fn func()) (uint64, int64) {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	t0 := time.Now()
	fn()
	d := time.Since(t0)
	runtime.ReadMemStats(&b)
	return b.Mallocs - a.Mallocs, d.Nanoseconds()
}

// spread is "p50 / p99 / max" of durations, with pct's nearest rank.
func spread(ds []time.Duration) string {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	r := func(p float64) string { return pct(s, p).Round(time.Microsecond).String() }
	return r(0.5) + " / " + r(0.99) + " / " + r(1)
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct{ bytes.Buffer }

func (*memSink) ID() string    { return "bench" }
func (*memSink) Cancel() error { return nil }
func (*memSink) Close() error  { return nil }

package stats

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/marina-redis/marina/internal/resp"
)

const masterInfo = `# Server
redis_version:7.0.15
uptime_in_seconds:42
# Clients
connected_clients:7
# Memory
used_memory:1048576
maxmemory:16777216
# Stats
total_connections_received:20
total_commands_processed:1000
total_net_input_bytes:5000
total_net_output_bytes:9000
rejected_connections:0
expired_keys:3
evicted_keys:2
keyspace_hits:80
keyspace_misses:20
# Replication
role:master
connected_slaves:2
slave0:ip=127.0.0.2,port=7101,state=online,offset=900,lag=0
slave1:ip=127.0.0.3,port=7102,state=wait_bgsave,offset=0,lag=1
master_repl_offset:1000
# Commandstats
cmdstat_get:calls=60,usec=120,usec_per_call=2.00,rejected_calls=0,failed_calls=0
cmdstat_set:calls=40,usec=200,usec_per_call=5.00,rejected_calls=0,failed_calls=0
# Keyspace
db0:keys=10,expires=1,avg_ttl=0
db1:keys=5,expires=0,avg_ttl=0
`

const replicaInfo = `role:slave
master_link_status:up
slave_repl_offset:900
used_memory:2048
connected_clients:1
`

func TestParseRaw(t *testing.T) {
	r := ParseRaw(resp.ParseInfo(masterInfo))
	want := Raw{Role: "master", UsedMemory: 1 << 20, MaxMemory: 16 << 20, Clients: 7, Commands: 1000, CommandUsec: 320, CommandCalls: 100,
		Hits: 80, Misses: 20, Evicted: 2, Expired: 3, Keys: 15, NetIn: 5000, NetOut: 9000, ReplOffset: 1000, UptimeSeconds: 42, TotalConns: 20}
	got := r
	got.Replicas = nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseRaw:\n got %+v\nwant %+v", got, want)
	}
	if len(r.Replicas) != 2 || r.Replicas[0] != (ReplicaInfo{Addr: "127.0.0.2:7101", State: "online", Offset: 900}) || r.Replicas[1].Lag != 1 {
		t.Fatalf("replicas %+v", r.Replicas)
	}
	rep := ParseRaw(resp.ParseInfo(replicaInfo))
	if rep.Role != "replica" || !rep.LinkUp || rep.ReplOffset != 900 {
		t.Fatalf("replica %+v", rep)
	}
	if down := ParseRaw(map[string]string{"role": "slave", "master_link_status": "down"}); down.LinkUp {
		t.Fatal("link down read as up")
	}
}

func TestDerive(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	t1 := t0.Add(2 * time.Second)
	cases := []struct {
		name      string
		prev, cur Raw
		prevT     time.Time
		ops       float64
		hit       *float64
		latency   float64
		evicted   float64
	}{
		{"rates over the interval", Raw{Commands: 100, Hits: 10, Misses: 10, CommandUsec: 100, CommandCalls: 50, Evicted: 0},
			Raw{Commands: 300, Hits: 40, Misses: 20, CommandUsec: 500, CommandCalls: 150, Evicted: 4}, t0, 100, ptr(0.75), 4, 2},
		{"no lookups: no hit ratio", Raw{Commands: 5}, Raw{Commands: 5}, t0, 0, nil, 0, 0},
		{"restart: counters count from zero", Raw{Commands: 1000, Hits: 500}, Raw{Commands: 20, Hits: 10}, t0, 10, ptr(1), 0, 0},
		{"first sample: gauges only", Raw{}, Raw{Commands: 1000}, time.Time{}, 0, nil, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := Derive(c.prev, c.cur, c.prevT, t1)
			if p.OpsPerSec != c.ops || p.LatencyUs != c.latency || p.EvictedPerSec != c.evicted {
				t.Fatalf("ops %v latency %v evicted %v", p.OpsPerSec, p.LatencyUs, p.EvictedPerSec)
			}
			if (p.HitRatio == nil) != (c.hit == nil) || (p.HitRatio != nil && *p.HitRatio != *c.hit) {
				t.Fatalf("hit ratio %v, want %v", p.HitRatio, c.hit)
			}
		})
	}
}

func ptr(f float64) *float64 { return &f }

func TestMerge(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pt := func(at time.Duration, ops float64, mem, keys int64, hits, misses int64) Point {
		return Point{T: t0.Add(at), OpsPerSec: ops, UsedMemory: mem, Keys: keys, Clients: 1, Hits: hits, Misses: misses, Usec: int64(ops), Calls: int64(ops)}
	}
	series := []Series{
		{ID: "m0", DB: "d", Shard: 0, Role: "master", Points: []Point{pt(1*time.Second, 100, 10, 5, 8, 2), pt(6*time.Second, 50, 10, 5, 0, 0)},
			Latest: &InstanceView{ID: "m0", Shard: 0, Role: "master", Offset: 1000}},
		// Two points of m1 in one bucket (collection jitter): the later one
		// counts, with both intervals' lookups.
		{ID: "m1", DB: "d", Shard: 1, Role: "master", Points: []Point{pt(1500*time.Millisecond, 999, 999, 999, 2, 0), pt(2*time.Second, 10, 20, 7, 0, 0)},
			Latest: &InstanceView{ID: "m1", Shard: 1, Role: "master", Offset: 50}},
		{ID: "r0", DB: "d", Shard: 0, Role: "replica", Points: []Point{pt(3*time.Second, 100, 10, 5, 0, 10)},
			Latest: &InstanceView{ID: "r0", Shard: 0, Role: "replica", Offset: 900, Link: "up"}},
	}
	for i := range series { // points taken in the series' current role
		for j := range series[i].Points {
			series[i].Points[j].Master = series[i].Role == "master"
		}
	}
	points, views := Merge(series, 5*time.Second, true)
	if len(points) != 2 {
		t.Fatalf("points %+v", points)
	}
	p := points[0]
	// Ops, memory and keys from the masters only (the replica repeats
	// them); clients and lookups from every instance.
	if p.OpsPerSec != 110 || p.UsedMemory != 30 || p.Keys != 12 || p.Clients != 3 || p.HitRatio == nil || *p.HitRatio != 10.0/22 {
		t.Fatalf("first bucket %+v hit %v", p, *p.HitRatio)
	}
	if !p.T.Equal(t0.Add(5*time.Second)) || !points[1].T.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("bucket times %v %v", p.T, points[1].T)
	}
	if len(views) != 3 || views[0].ID != "m0" || views[1].ID != "r0" || views[2].ID != "m1" {
		t.Fatalf("views order %+v", views)
	}
	if views[1].LagBytes == nil || *views[1].LagBytes != 100 || views[0].LagBytes != nil {
		t.Fatalf("replica lag %+v", views[1])
	}
	// A node's view sums everything.
	points, _ = Merge(series, 5*time.Second, false)
	if points[0].OpsPerSec != 210 || points[0].UsedMemory != 40 {
		t.Fatalf("node sums %+v", points[0])
	}
}

func TestRingAndHistory(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := newRing(3)
	for i := 0; i < 5; i++ {
		r.add(Point{T: t0.Add(time.Duration(i) * time.Second), Keys: int64(i)})
	}
	got := r.between(t0, t0.Add(time.Hour))
	if len(got) != 3 || got[0].Keys != 2 || got[2].Keys != 4 || !r.oldest().Equal(t0.Add(2*time.Second)) {
		t.Fatalf("ring keeps the newest, oldest first: %+v", got)
	}
	if got := r.between(t0.Add(3*time.Second), t0.Add(3*time.Second)); len(got) != 1 || got[0].Keys != 3 {
		t.Fatalf("between bounds inclusive: %+v", got)
	}
	// A large ring grows as points come, never past its size, and keeps
	// the newest in order once it wraps.
	big := newRing(100)
	for i := 0; i < 250; i++ {
		big.add(Point{T: t0.Add(time.Duration(i) * time.Second), Keys: int64(i)})
		if i == 20 && cap(big.buf) >= 100 {
			t.Fatalf("21 points took a buffer of %d", cap(big.buf))
		}
		if n := len(big.between(t0, t0.Add(time.Hour))); n != min(i+1, 100) {
			t.Fatalf("after %d points: %d kept", i+1, n)
		}
	}
	if got := big.between(t0, t0.Add(time.Hour)); got[0].Keys != 150 || got[99].Keys != 249 || cap(big.buf) != 100 {
		t.Fatalf("wrapped ring: first %d last %d cap %d", got[0].Keys, got[99].Keys, cap(big.buf))
	}

	// Ten minutes of 5s points: the coarse ring gets one averaged point per
	// completed minute.
	h := newHistory(5 * time.Second)
	for i := 0; i < 120; i++ {
		h.add(Point{T: t0.Add(time.Duration(i) * 5 * time.Second), OpsPerSec: float64(i % 12), UsedMemory: 100, Hits: 1, Misses: 1})
	}
	coarse := h.coarse.between(t0, t0.Add(time.Hour))
	if len(coarse) != 9 {
		t.Fatalf("coarse points %d, want 9 completed minutes", len(coarse))
	}
	if c := coarse[0]; c.OpsPerSec != 5.5 || c.UsedMemory != 100 || c.Hits != 12 || c.HitRatio == nil || *c.HitRatio != 0.5 || !c.T.Equal(t0.Add(time.Minute)) {
		t.Fatalf("coarse point %+v", c)
	}
	// One resolution per query, chosen by how far back it reaches.
	if got := h.between(t0.Add(-24*time.Hour), t0.Add(time.Hour), false); len(got) != 120 {
		t.Fatalf("fine ring: %d points", len(got))
	}
	if got := h.between(t0.Add(-24*time.Hour), t0.Add(time.Hour), true); len(got) != 9 {
		t.Fatalf("coarse ring: %d points", len(got))
	}
	now := t0.Add(24 * time.Hour)
	if Coarse(now.Add(-time.Hour), now) || !Coarse(now.Add(-2*time.Hour), now) {
		t.Fatal("the last hour is fine, two hours back is coarse")
	}
}

// Points travel between nodes as JSON: the counter deltas behind the hit
// ratio and the latency, and the role each point was taken in, must
// survive it, or a database whose instances are on other nodes loses them.
func TestSeriesOverTheWire(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	in := []Series{
		{ID: "a", DB: "d", Role: "replica", Points: []Point{
			// Taken while "a" was the master (before a switchover).
			Derive(Raw{Role: "master", Commands: 0}, Raw{Role: "master", Commands: 100, Hits: 3, Misses: 1, CommandUsec: 50, CommandCalls: 10, Keys: 7}, t0, t0.Add(time.Second)),
		}},
		{ID: "b", DB: "d", Role: "master", Points: []Point{
			// Taken while "b" was the replica.
			Derive(Raw{Role: "replica"}, Raw{Role: "replica", Commands: 40, Keys: 7}, t0, t0.Add(time.Second)),
		}},
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out []Series
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	points, _ := Merge(out, 5*time.Second, true)
	if len(points) != 1 {
		t.Fatalf("points %+v", points)
	}
	p := points[0]
	if p.HitRatio == nil || *p.HitRatio != 0.75 || p.LatencyUs != 5 {
		t.Fatalf("hit ratio %v latency %v after JSON", p.HitRatio, p.LatencyUs)
	}
	if p.OpsPerSec != 100 || p.Keys != 7 {
		t.Fatalf("the master at the time counts, not the master now: %+v", p)
	}
}

func TestGraphiteLines(t *testing.T) {
	now := time.Unix(1700000000, 0)
	out := string(GraphiteLines("", "node.1", now, []Sample{
		{ID: "orders-0-a", DB: "orders", Shard: 0, Up: true, T: now, Raw: Raw{UsedMemory: 123, Keys: 9}},
		{ID: "never-answered", DB: "orders", T: time.Time{}},
	}, []ProxyFigures{{DB: "orders", Ops: 77}}))
	for _, want := range []string{
		"marina.db.orders.shard0.orders-0-a.used_memory 123 1700000000\n",
		"marina.db.orders.shard0.orders-0-a.keys 9 1700000000\n",
		"marina.db.orders.shard0.orders-0-a.up 1 1700000000\n",
		"marina.proxy.node_1.orders.commands 77 1700000000\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	if !strings.Contains(out, "marina.db.orders.shard0.never-answered.up 0 1700000000\n") || strings.Contains(out, "never-answered.keys") {
		t.Error("an instance that does not answer sends up 0 and no figures")
	}
}

func TestParseTime(t *testing.T) {
	def := time.Unix(5, 0)
	for _, c := range []struct {
		in   string
		want time.Time
		err  bool
	}{
		{"", def, false},
		{"1700000000", time.Unix(1700000000, 0), false},
		{"2026-01-01T00:00:00Z", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), false},
		{"yesterday", time.Time{}, true},
	} {
		got, err := ParseTime(c.in, def)
		if (err != nil) != c.err || (!c.err && !got.Equal(c.want)) {
			t.Errorf("ParseTime(%q) = %v, %v", c.in, got, err)
		}
	}
}

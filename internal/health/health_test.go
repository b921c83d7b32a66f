package health

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/marina-redis/marina/internal/api"
	"github.com/marina-redis/marina/internal/state"
)

var now = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func node(id string) api.Node {
	return api.Node{ID: id, Status: state.NodeUp, Voter: true}
}

func inst(id, node, role string) api.Instance {
	return api.Instance{ID: id, Node: node, Role: role, State: "running", ObservedRole: role, LinkUp: true, Offset: 1000, UsedMemory: 10 << 20}
}

// db has shards with one master and reps replicas, all healthy.
func db(name string, shards, reps int) api.DB {
	d := api.DB{Name: name, Memory: 64 << 20, ShardCount: shards, Replicas: reps, Eviction: "noeviction", Status: api.DBReady}
	for i := 0; i < shards; i++ {
		sh := api.Shard{Index: i, Master: inst(fmt.Sprintf("%s-%d-m", name, i), "n1", state.RoleMaster)}
		for r := 0; r < reps; r++ {
			sh.Replicas = append(sh.Replicas, inst(fmt.Sprintf("%s-%d-r%d", name, i, r), fmt.Sprintf("n%d", r+2), state.RoleReplica))
		}
		d.Shards = append(d.Shards, sh)
	}
	return d
}

// healthy is a 3-node cluster with 4 databases, 8 shards.
func healthy() Input {
	return Input{
		Status: api.Status{Leader: "n1", ServedBy: "n2", Nodes: []api.Node{node("n1"), node("n2"), node("n3")}},
		DBs:    []api.DB{db("cache", 1, 1), db("orders", 2, 1), db("sessions", 4, 2), db("tmp", 1, 0)},
		Now:    now,
	}
}

func ev(typ, dbName string, shard int, ago time.Duration) state.Event {
	return state.Event{Type: typ, DB: dbName, Shard: shard, Time: now.Add(-ago)}
}

func TestEvaluate(t *testing.T) {
	cases := []struct {
		name string
		mod  func(in *Input)
		lim  func(l *Limits)
		code int
		// substrings the status line must contain / must not contain
		want    []string
		notWant []string
	}{
		{name: "all well", code: OK, want: []string{
			"MARINA OK - 3/3 nodes up, 4 databases, 8/8 shards with a master | nodes_up=3;;;0;3 dbs=4;;;0 dbs_ready=4;;;0;4 shards_with_master=8;;;0;8 instances_running=19;;;0;19 memory_used_max=15%;90;;0;100 replica_lag_max=0B;16777216;;0"}},
		{name: "one database", mod: func(in *Input) { in.DBs = in.DBs[:1] }, code: OK,
			want: []string{"MARINA OK - 3/3 nodes up, 1 database, 1/1 shards with a master |"}},
		{name: "empty cluster", mod: func(in *Input) { in.DBs = nil }, code: OK,
			want: []string{"MARINA OK - 3/3 nodes up, 0 databases, 0/0 shards with a master |"}},

		// Control plane.
		{name: "no leader", mod: func(in *Input) {
			in.Status.Leader = ""
			for i := range in.DBs {
				in.DBs[i].Status = api.DBUnknown
			}
		}, code: Critical, want: []string{"MARINA CRITICAL - no Raft leader: the cluster has no quorum (answered by n2)"},
			notWant: []string{"observed"}},
		{name: "voters lost", mod: func(in *Input) {
			in.Status.Nodes[1].Status, in.Status.Nodes[2].Status = state.NodeDown, state.NodeDown
		}, code: Critical, want: []string{"only 1/3 Raft voters up", "node n2 down", "1/3 nodes up"}},
		{name: "non-voter down only warns", mod: func(in *Input) {
			in.Status.Nodes = append(in.Status.Nodes, api.Node{ID: "n4", Status: state.NodeDown})
		}, code: Warning, want: []string{"MARINA WARNING - node n4 down; 3/4 nodes up"}},
		{name: "node down with last seen", mod: func(in *Input) {
			seen := now.Add(-95 * time.Second)
			in.Status.Nodes[2].Status, in.Status.Nodes[2].LastSeen = state.NodeDown, &seen
		}, code: Warning, want: []string{"node n3 down (last seen 1m35s ago)"}},
		{name: "instances on a down node are down", mod: func(in *Input) {
			in.Status.Nodes[0].Status = state.NodeDown // n1 holds every master; its last report said running
		}, code: Critical, want: []string{"MARINA CRITICAL - cache shard 0: master cache-0-m on n1 down (node down)", "; 5 more; 2/3 nodes up",
			"0/8 shards with a master", "instances_running=11;;;0;19", "memory_used_max=15%"}},
		{name: "replica on a down node", mod: func(in *Input) {
			in.Status.Nodes[2].Status = state.NodeDown
			in.DB = "sessions"
		}, code: Warning, want: []string{"sessions shard 0: replica sessions-0-r1 on n3 down (node down)", "8/12 instances running"},
			notWant: []string{"node n3"}},
		{name: "node draining", mod: func(in *Input) { in.Status.Nodes[1].Draining = true }, code: Warning,
			want: []string{"MARINA WARNING - node n2 draining; 3/3 nodes up"}},
		{name: "no observations from leader", mod: func(in *Input) { in.DBs[1].Status = api.DBUnknown }, code: Unknown,
			want: []string{"MARINA UNKNOWN - no observed state: n2 could not reach leader n1"}},
		{name: "unknown ranks below warning", mod: func(in *Input) {
			in.DBs[1].Status = api.DBUnknown
			in.Status.Nodes[2].Draining = true
		}, code: Warning, want: []string{"MARINA WARNING - node n3 draining; no observed state"}},

		// Masters.
		{name: "master down", mod: func(in *Input) {
			in.DBs[1].Status = api.DBDegraded
			in.DBs[1].Shards[1].Master.State = "down"
		}, code: Critical, want: []string{"MARINA CRITICAL - orders shard 1: master orders-1-m on n1 down", "7/8 shards with a master", "instances_running=18;;;0;19"}},
		{name: "master down outranks warnings in the line", mod: func(in *Input) {
			in.Status.Nodes[1].Draining = true
			in.DBs[1].Shards[1].Master.State = "down"
		}, code: Critical, want: []string{"MARINA CRITICAL - orders shard 1: master orders-1-m on n1 down; node n2 draining"}},
		{name: "master starting while provisioning", mod: func(in *Input) {
			in.DBs[0].Status = api.DBProvisioning
			in.DBs[0].Shards[0].Master.State = api.StatePending
		}, code: Warning, want: []string{"cache shard 0: master cache-0-m on n1 pending"}},
		{name: "master loading after provisioning is critical", mod: func(in *Input) {
			in.DBs[0].Status = api.DBDegraded
			in.DBs[0].Shards[0].Master.State = "loading"
		}, code: Critical, want: []string{"cache shard 0: master cache-0-m on n1 loading"}},
		{name: "master not answering", mod: func(in *Input) {
			since := now.Add(-5 * time.Second)
			in.DBs[3].Shards[0].Master.FailingSince = &since
		}, code: Critical, want: []string{"MARINA CRITICAL - tmp shard 0: master tmp-0-m on n1 not answering for 5s; tmp: only 0/1 instances running", "instances_running=18;"}},
		{name: "one slow probe is not an outage", mod: func(in *Input) {
			since := now.Add(-300 * time.Millisecond)
			in.DBs[3].Shards[0].Master.FailingSince = &since
		}, code: OK},
		{name: "replica not answering", mod: func(in *Input) {
			since := now.Add(-3 * time.Second)
			in.DBs[0].Shards[0].Replicas[0].FailingSince = &since
		}, code: Warning, want: []string{"cache shard 0: replica cache-0-r0 on n2 not answering for 3s"}},
		{name: "master runs as replica", mod: func(in *Input) { in.DBs[0].Shards[0].Master.ObservedRole = "replica" }, code: Warning,
			want: []string{"cache shard 0: master cache-0-m on n1 runs as replica", "7/8 shards with a master"}},
		{name: "failover in progress", mod: func(in *Input) {
			sh := &in.DBs[1].Shards[0]
			old := sh.Master
			old.Role, old.State = state.RoleReplica, "down"
			sh.Master, sh.Replicas = api.Instance{}, append(sh.Replicas, old)
			in.Events = []state.Event{ev("failover", "orders", 0, 2*time.Hour), ev("failover-started", "orders", 0, 1500*time.Millisecond)}
		}, code: Warning, want: []string{"orders shard 0: failover in progress for 1.5s", "7/8 shards with a master"}},
		{name: "failover pending too long", mod: func(in *Input) {
			in.DBs[1].Shards[0].Master = api.Instance{}
			in.Events = []state.Event{ev("failover-started", "orders", 0, 45*time.Second), ev("failover-blocked", "orders", 0, 44*time.Second)}
		}, code: Critical, want: []string{"MARINA CRITICAL - orders shard 0 has no master: failover pending for 45s"}},
		{name: "no master, no event", mod: func(in *Input) {
			in.DBs[1].Shards[0].Master = api.Instance{}
			in.Events = []state.Event{ev("failover-started", "orders", 0, 2*time.Hour), ev("failover", "orders", 0, 2*time.Hour)}
		}, code: Critical, want: []string{"MARINA CRITICAL - orders shard 0 has no master;"}},
		{name: "failover of another shard does not count", mod: func(in *Input) {
			in.DBs[1].Shards[0].Master = api.Instance{}
			in.Events = []state.Event{ev("failover-started", "orders", 1, time.Second), ev("failover-started", "other", 0, time.Second)}
		}, code: Critical, want: []string{"orders shard 0 has no master;"}},
		{name: "failover threshold configurable", mod: func(in *Input) {
			in.DBs[1].Shards[0].Master = api.Instance{}
			in.Events = []state.Event{ev("failover-started", "orders", 0, 45*time.Second)}
		}, lim: func(l *Limits) { l.FailoverCritical = time.Minute }, code: Warning, want: []string{"failover in progress for 45s"}},

		// Mostly down.
		{name: "database mostly down", mod: func(in *Input) {
			in.DBs[2].Status = api.DBDegraded
			for i := range in.DBs[2].Shards {
				for j := range in.DBs[2].Shards[i].Replicas {
					in.DBs[2].Shards[i].Replicas[j].State = "down"
				}
			}
		}, code: Critical, want: []string{"MARINA CRITICAL - sessions: only 4/12 instances running", "sessions shard 0: replica sessions-0-r0 on n2 down"}},
		{name: "half down is not mostly", mod: func(in *Input) {
			for i := range in.DBs[1].Shards {
				in.DBs[1].Shards[i].Replicas[0].State = "down"
			}
		}, code: Warning, notWant: []string{"instances running;"}},

		// Replicas.
		{name: "replica missing", mod: func(in *Input) { in.DBs[2].Shards[3].Replicas = in.DBs[2].Shards[3].Replicas[:1] }, code: Warning,
			want: []string{"MARINA WARNING - sessions shard 3 has 1 of 2 replicas"}},
		{name: "replica down", mod: func(in *Input) { in.DBs[0].Shards[0].Replicas[0].State = "down" }, code: Warning,
			want: []string{"MARINA WARNING - cache shard 0: replica cache-0-r0 on n2 down; 3/3 nodes up", "instances_running=18;;;0;19"}},
		{name: "replica starting", mod: func(in *Input) {
			in.DBs[0].Status = api.DBProvisioning
			in.DBs[0].Shards[0].Replicas[0].State = "starting"
		}, code: Warning, want: []string{"cache shard 0: replica cache-0-r0 on n2 starting"}},
		{name: "replica link down", mod: func(in *Input) { in.DBs[0].Shards[0].Replicas[0].LinkUp = false }, code: Warning,
			want: []string{"cache shard 0: replica cache-0-r0 on n2 has its link to the master down"}},
		{name: "replica runs as master", mod: func(in *Input) { in.DBs[0].Shards[0].Replicas[0].ObservedRole = "master" }, code: Warning,
			want: []string{"cache shard 0: replica cache-0-r0 on n2 runs as master"}},
		{name: "replica lagging", mod: func(in *Input) { in.DBs[1].Shards[1].Master.Offset = 1000 + 20<<20 }, code: Warning,
			want: []string{"orders shard 1: replica orders-1-r0 on n2 lags 20971520 bytes behind", "replica_lag_max=20971520B;16777216;;0"}},
		{name: "replica a little behind", mod: func(in *Input) { in.DBs[1].Shards[1].Master.Offset = 1000 + 1<<20 }, code: OK,
			want: []string{"replica_lag_max=1048576B;"}},
		{name: "replica ahead of a stale master report", mod: func(in *Input) { in.DBs[1].Shards[1].Replicas[0].Offset = 5000 }, code: OK,
			want: []string{"replica_lag_max=0B;"}},
		{name: "lag check off", mod: func(in *Input) { in.DBs[1].Shards[1].Master.Offset = 1 << 40 }, lim: func(l *Limits) { l.LagBytes = 0 },
			code: OK},

		// Memory.
		{name: "memory high", mod: func(in *Input) { in.DBs[1].Shards[0].Replicas[0].UsedMemory = 62 << 20 }, code: Warning,
			want: []string{"orders shard 0: orders-0-r0 on n2 uses 96% of maxmemory", "memory_used_max=96%;90;;0;100"}},
		{name: "memory at 90% exactly", mod: func(in *Input) { in.DBs[1].Memory = 100 << 20; in.DBs[1].Shards[0].Master.UsedMemory = 90 << 20 },
			code: OK, want: []string{"memory_used_max=90%"}},
		{name: "evicting cache full is fine", mod: func(in *Input) {
			in.DBs[0].Eviction = "allkeys-lru"
			in.DBs[0].Shards[0].Master.UsedMemory = 64 << 20
		}, code: OK, want: []string{"memory_used_max=100%"}},
		{name: "memory of a down instance ignored", mod: func(in *Input) {
			in.DBs[0].Shards[0].Replicas[0].UsedMemory, in.DBs[0].Shards[0].Replicas[0].State = 70<<20, "down"
		}, code: Warning, notWant: []string{"maxmemory"}},

		// Flap damping (defaults: 3 at once per hour, then 10s doubling up to 5m).
		{name: "a shard that flaps", mod: func(in *Input) {
			in.Events = []state.Event{ev("failover", "orders", 1, 50*time.Minute), ev("failover", "orders", 1, 20*time.Minute), ev("failover", "orders", 1, 10*time.Minute)}
		}, code: Warning, want: []string{"MARINA WARNING - orders shard 1: 3 failovers within 1h0m0s: flap damping spaces the next one 10s after the last"},
			notWant: []string{"from now"}},
		{name: "a shard that flaps, spacing running", mod: func(in *Input) {
			in.Events = []state.Event{ev("failover", "orders", 1, 50*time.Minute), ev("failover", "orders", 1, 20*time.Minute),
				ev("failover", "orders", 1, 10*time.Minute), ev("failover", "orders", 1, 5*time.Second)}
		}, code: Warning, want: []string{"orders shard 1: 4 failovers within 1h0m0s: flap damping spaces the next one 20s after the last, 15s from now"}},
		{name: "old failovers do not damp", mod: func(in *Input) {
			in.Events = []state.Event{ev("failover", "orders", 1, 90*time.Minute), ev("failover", "orders", 1, 20*time.Minute), ev("failover", "orders", 1, 10*time.Minute)}
		}, code: OK},
		{name: "held failover of a down master is a warning with the delay left", mod: func(in *Input) {
			in.DBs[1].Shards[1].Master.State = "down"
			in.Events = []state.Event{ev("failover", "orders", 1, 50*time.Minute), ev("failover", "orders", 1, 20*time.Minute),
				ev("failover", "orders", 1, 6*time.Second), ev("failover-damped", "orders", 1, 2*time.Second)}
		}, code: Warning, want: []string{"MARINA WARNING - orders shard 1: master orders-1-m on n1 down; failover delayed 6s by flap damping (4th failover within 1h0m0s), 4s left"},
			notWant: []string{"spaces the next"}},
		{name: "held longer than failover-critical is critical", mod: func(in *Input) {
			in.DBs[1].Shards[1].Master.State = "down"
			// 6 failovers within the hour: the 7th waits 80s after the last.
			for i := 8; i >= 4; i-- {
				in.Events = append(in.Events, ev("failover", "orders", 1, time.Duration(i)*time.Minute))
			}
			in.Events = append(in.Events, ev("failover", "orders", 1, 20*time.Second), ev("failover-damped", "orders", 1, 10*time.Second))
		}, code: Critical, want: []string{"MARINA CRITICAL - orders shard 1: master orders-1-m on n1 down; failover delayed 1m10s by flap damping (7th failover within 1h0m0s), 1m0s left"}},
		{name: "a down master no longer held is critical", mod: func(in *Input) {
			in.DBs[1].Shards[1].Master.State = "down"
			in.Events = []state.Event{ev("failover", "orders", 1, 50*time.Minute), ev("failover", "orders", 1, 20*time.Minute),
				ev("failover", "orders", 1, 30*time.Second), ev("failover-damped", "orders", 1, 25*time.Second)}
		}, code: Critical, want: []string{"orders shard 1: master orders-1-m on n1 down"}, notWant: []string{"left"}},
		{name: "damped event, master back in place", mod: func(in *Input) {
			in.Events = []state.Event{ev("failover", "orders", 1, 50*time.Minute), ev("failover-damped", "orders", 1, 5*time.Minute)}
		}, code: Warning, want: []string{"orders shard 1: flap damping held a failover 5m0s ago; its master came back in place"}},
		{name: "damped event superseded by a failover", mod: func(in *Input) {
			in.Events = []state.Event{ev("failover-damped", "orders", 1, 50*time.Minute), ev("failover", "orders", 1, 5*time.Minute)}
		}, code: OK},
		{name: "flap settings follow the servers", mod: func(in *Input) {
			in.Events = []state.Event{ev("failover", "orders", 1, 50*time.Minute), ev("failover", "orders", 1, 20*time.Minute)}
		}, lim: func(l *Limits) { l.Damping.Free, l.Damping.Delay = 2, time.Minute }, code: Warning,
			want: []string{"2 failovers within 1h0m0s: flap damping spaces the next one 1m0s after the last"}},

		// One database.
		{name: "db only", mod: func(in *Input) { in.DB = "orders"; in.Status.Nodes[2].Status = state.NodeDown }, code: OK,
			want: []string{"MARINA OK - database orders ready, 2/2 shards with a master, 4/4 instances running | nodes_up=2;;;0;3 dbs=1;;;0 dbs_ready=1;;;0;1 shards_with_master=2;;;0;2 instances_running=4;;;0;4"}},
		{name: "db only sees its problems", mod: func(in *Input) {
			in.DB = "orders"
			in.DBs[2].Shards[0].Master.State = "down"
			in.DBs[1].Shards[0].Replicas[0].LinkUp = false
		}, code: Warning, want: []string{"MARINA WARNING - orders shard 0: replica orders-0-r0 on n2 has its link to the master down; database orders ready"},
			notWant: []string{"sessions"}},
		{name: "db only still needs a leader", mod: func(in *Input) {
			in.DB, in.Status.Leader = "orders", ""
			in.DBs[1].Status = api.DBUnknown
		}, code: Critical, want: []string{"no Raft leader"}},
		{name: "unknown db", mod: func(in *Input) { in.DB = "nope" }, code: Unknown, want: []string{"MARINA UNKNOWN - database nope not found"}},

		// Many problems: the line names the first five, worst first.
		{name: "many problems", mod: func(in *Input) {
			for i := range in.DBs[2].Shards {
				in.DBs[2].Shards[i].Replicas[0].LinkUp = false
				in.DBs[2].Shards[i].Replicas[1].LinkUp = false
			}
			in.DBs[3].Shards[0].Master.State = "down"
		}, code: Critical, want: []string{"MARINA CRITICAL - tmp shard 0: master tmp-0-m on n1 down; tmp: only 0/1 instances running; sessions shard 0:", "; 5 more; 3/3 nodes up"}},
		{name: "pipe in a name stays out of perfdata", mod: func(in *Input) { in.Status.Nodes[1].ID = "n|2"; in.Status.Nodes[1].Draining = true },
			code: Warning, want: []string{"node n/2 draining"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := healthy()
			if c.mod != nil {
				c.mod(&in)
			}
			lim := DefaultLimits()
			if c.lim != nil {
				c.lim(&lim)
			}
			res := Evaluate(in, lim)
			line := res.Line()
			if res.Code != c.code {
				t.Errorf("code %d (%s), want %d: %s", res.Code, CodeName(res.Code), c.code, line)
			}
			if !strings.HasPrefix(line, "MARINA "+CodeName(c.code)+" - ") {
				t.Errorf("line %q does not start with the code word", line)
			}
			for _, w := range c.want {
				if !strings.Contains(line, w) {
					t.Errorf("line %q\nlacks %q", line, w)
				}
			}
			for _, w := range c.notWant {
				if strings.Contains(line, w) {
					t.Errorf("line %q\nhas %q", line, w)
				}
			}
			if strings.ContainsAny(line, "\n\r") || strings.Count(line, "|") > 1 {
				t.Errorf("not one line with one perfdata separator: %q", line)
			}
		})
	}
}

func TestUnknownResult(t *testing.T) {
	r := UnknownResult("cannot reach http://127.0.0.1:7070: connection refused")
	if r.Code != Unknown || r.Line() != "MARINA UNKNOWN - cannot reach http://127.0.0.1:7070: connection refused" {
		t.Fatalf("%d %q", r.Code, r.Line())
	}
	if UnknownResult("a\nb | c").Line() != "MARINA UNKNOWN - a b / c" {
		t.Fatal(UnknownResult("a\nb | c").Line())
	}
}

func TestWorse(t *testing.T) {
	for _, c := range [][3]int{{OK, Unknown, Unknown}, {Unknown, Warning, Warning}, {Critical, Warning, Critical}, {Warning, Unknown, Warning}, {OK, OK, OK}} {
		if got := Worse(c[0], c[1]); got != c[2] {
			t.Errorf("Worse(%d,%d) = %d", c[0], c[1], got)
		}
	}
}

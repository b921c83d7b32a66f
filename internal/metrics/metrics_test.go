package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/marina-redis/marina/internal/proxy"
	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/stats"
)

// exported lists the names of every metric the collector describes.
func exported(t *testing.T) map[string]bool {
	ch := make(chan *prometheus.Desc, 100)
	New(Sources{}).Describe(ch)
	close(ch)
	re := regexp.MustCompile(`fqName: "([a-z_]+)"`)
	out := map[string]bool{}
	for d := range ch {
		m := re.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("desc %s", d)
		}
		out[m[1]] = true
	}
	return out
}

// The Grafana dashboard in the repository queries only metrics Marina
// exports (histograms through their _bucket series).
func TestGrafanaDashboardUsesExportedMetrics(t *testing.T) {
	b, err := os.ReadFile("../../docs/grafana/marina.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	have := exported(t)
	re := regexp.MustCompile(`marina_[a-z_]+`)
	used := 0
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, name := range re.FindAllString(tg.Expr, -1) {
				used++
				base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
				if !have[name] && !have[base] {
					t.Errorf("panel %q queries %s, which Marina does not export", p.Title, name)
				}
			}
		}
	}
	if used < 10 {
		t.Fatalf("only %d metric references in the dashboard", used)
	}
}

// Values come from the sources as they are at scrape time; the failover
// counter counts each event once, however often it is scraped.
func TestCollect(t *testing.T) {
	st := state.New()
	st.Nodes["n1"] = &state.Node{ID: "n1", Status: state.NodeUp, Memory: 1 << 30}
	st.DBs["d"] = &state.Database{Spec: state.Spec{Name: "d", Memory: 1 << 20, Shards: 1}, Shards: []state.Shard{{Index: 0, Epoch: 3,
		Instances: []state.Instance{{ID: "d-0-a", Node: "n1", Port: 7100, Role: state.RoleMaster}}}}}
	fsm := state.NewFSM()
	for i, e := range []state.Event{{Type: "failover", DB: "d", Shard: 0}, {Type: "switchover", DB: "d", Shard: 0}, {Type: "node-down"}} {
		if r := fsm.Apply(&raft.Log{Index: uint64(i + 1), Data: state.Encode(&state.AddEvent{Event: &e})}); r != nil {
			t.Fatal(r)
		}
	}
	src := Sources{Node: "n1", State: func() *state.State { return st }, Events: fsm.Events,
		Samples: func() []stats.Sample {
			return []stats.Sample{{ID: "d-0-a", DB: "d", Node: "n1", Role: "master", Up: true, T: time.Now(), Raw: stats.Raw{Keys: 42, Commands: 7}}}
		},
		Proxies: func() []proxy.Snapshot {
			return []proxy.Snapshot{{DB: "d", Ops: 9, Buckets: []int64{1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, BoundsNs: []int64{1e5, 2.5e5, 5e5, 1e6, 2.5e6, 5e6, 1e7, 2.5e7, 5e7, 1e8, 1e9}}}
		},
		IsLeader: func() bool { return true }, Applied: func() uint64 { return 11 }}
	c := New(src)
	for i := 0; i < 2; i++ {
		want := `
# HELP marina_failovers_total Role changes seen in the cluster's event log since this process started: failover or switchover.
# TYPE marina_failovers_total counter
marina_failovers_total{db="d",kind="failover",shard="0"} 1
marina_failovers_total{db="d",kind="switchover",shard="0"} 1
# HELP marina_redis_keys Keys in the redis-server.
# TYPE marina_redis_keys gauge
marina_redis_keys{db="d",instance="d-0-a",node="n1",role="master",shard="0"} 42
# HELP marina_shard_epoch Role-change epoch of the shard.
# TYPE marina_shard_epoch gauge
marina_shard_epoch{db="d",shard="0"} 3
# HELP marina_raft_applied_index Last Raft log index applied on this node.
# TYPE marina_raft_applied_index gauge
marina_raft_applied_index{node="n1"} 11
`
		if err := testutil.CollectAndCompare(c, strings.NewReader(want), "marina_failovers_total", "marina_redis_keys", "marina_shard_epoch", "marina_raft_applied_index"); err != nil {
			t.Fatal(err)
		}
	}
	// The endpoint's latency histogram: cumulative buckets, all commands counted.
	if err := testutil.CollectAndCompare(c, strings.NewReader(`
# HELP marina_proxy_command_duration_seconds Time from a command's arrival to its answer.
# TYPE marina_proxy_command_duration_seconds histogram
marina_proxy_command_duration_seconds_bucket{db="d",le="0.0001"} 1
marina_proxy_command_duration_seconds_bucket{db="d",le="0.00025"} 3
marina_proxy_command_duration_seconds_bucket{db="d",le="0.0005"} 3
marina_proxy_command_duration_seconds_bucket{db="d",le="0.001"} 3
marina_proxy_command_duration_seconds_bucket{db="d",le="0.0025"} 3
marina_proxy_command_duration_seconds_bucket{db="d",le="0.005"} 3
marina_proxy_command_duration_seconds_bucket{db="d",le="0.01"} 3
marina_proxy_command_duration_seconds_bucket{db="d",le="0.025"} 3
marina_proxy_command_duration_seconds_bucket{db="d",le="0.05"} 3
marina_proxy_command_duration_seconds_bucket{db="d",le="0.1"} 3
marina_proxy_command_duration_seconds_bucket{db="d",le="1"} 3
marina_proxy_command_duration_seconds_bucket{db="d",le="+Inf"} 4
marina_proxy_command_duration_seconds_sum{db="d"} 0
marina_proxy_command_duration_seconds_count{db="d"} 4
`), "marina_proxy_command_duration_seconds"); err != nil {
		t.Fatal(err)
	}
}

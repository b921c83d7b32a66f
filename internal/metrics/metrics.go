// Package metrics exposes a node's figures in Prometheus format: its
// redis-servers (from the stats collector), its database endpoints (proxy
// counters), the cluster as this node's copy of the state sees it (nodes,
// shards, failovers) and Raft. Metrics are built at scrape time from those
// sources, as exporters do, so nothing is counted twice or goes stale.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/marina-redis/marina/internal/proxy"
	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/stats"
)

// Sources are what the metrics are read from.
type Sources struct {
	Node     string
	State    func() *state.State
	Events   func() *state.EventLog
	Samples  func() []stats.Sample
	Proxies  func() []proxy.Snapshot
	IsLeader func() bool
	Applied  func() uint64
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("marina_"+name, help, labels, nil)
}

var (
	instLabels = []string{"db", "shard", "instance", "node", "role"}

	dRedisUp      = desc("redis_up", "1 if the last INFO of the redis-server answered.", instLabels...)
	dMemUsed      = desc("redis_memory_used_bytes", "used_memory of the redis-server.", instLabels...)
	dMemMax       = desc("redis_memory_max_bytes", "maxmemory of the redis-server.", instLabels...)
	dClients      = desc("redis_connected_clients", "Client connections to the redis-server.", instLabels...)
	dCommands     = desc("redis_commands_processed_total", "Commands processed by the redis-server.", instLabels...)
	dCmdSeconds   = desc("redis_commands_duration_seconds_total", "Server time spent in commands.", instLabels...)
	dHits         = desc("redis_keyspace_hits_total", "Successful key lookups.", instLabels...)
	dMisses       = desc("redis_keyspace_misses_total", "Failed key lookups.", instLabels...)
	dEvicted      = desc("redis_evicted_keys_total", "Keys evicted by maxmemory.", instLabels...)
	dExpired      = desc("redis_expired_keys_total", "Keys expired.", instLabels...)
	dKeys         = desc("redis_keys", "Keys in the redis-server.", instLabels...)
	dNetIn        = desc("redis_net_input_bytes_total", "Bytes received by the redis-server.", instLabels...)
	dNetOut       = desc("redis_net_output_bytes_total", "Bytes sent by the redis-server.", instLabels...)
	dReplOffset   = desc("redis_replication_offset_bytes", "Replication offset (master_repl_offset or slave_repl_offset).", instLabels...)
	dLinkUp       = desc("redis_master_link_up", "Replicas: 1 if the link to the master is up.", instLabels...)
	dUptime       = desc("redis_uptime_seconds", "Seconds since the redis-server started.", instLabels...)
	dProxyConns   = desc("proxy_connections", "Open client connections to the database endpoint on this node.", "db")
	dProxyAcc     = desc("proxy_connections_accepted_total", "Client connections accepted.", "db")
	dProxyRej     = desc("proxy_connections_rejected_total", "Client connections refused (max clients).", "db")
	dProxyOps     = desc("proxy_commands_total", "Commands received by the endpoint.", "db")
	dProxyErrs    = desc("proxy_errors_total", "Commands answered with an error by the proxy itself.", "db")
	dProxyLatency = desc("proxy_command_duration_seconds", "Time from a command's arrival to its answer.", "db")
	dNodeUp       = desc("node_up", "1 if the node is up (heartbeats), as the state says.", "node", "zone")
	dNodeDraining = desc("node_draining", "1 if the node is draining.", "node")
	dNodeMem      = desc("node_memory_bytes", "Memory the node offers to redis-servers.", "node")
	dNodeAlloc    = desc("node_memory_allocated_bytes", "Memory reserved by instances placed on the node.", "node")
	dDBs          = desc("databases", "Databases in the cluster.")
	dDBMem        = desc("database_memory_limit_bytes", "maxmemory per shard times shards.", "db")
	dShardEpoch   = desc("shard_epoch", "Role-change epoch of the shard.", "db", "shard")
	dShardMaster  = desc("shard_has_master", "1 if the shard has a master (0 mid-failover).", "db", "shard")
	dShardRepl    = desc("shard_replicas", "Replicas placed for the shard.", "db", "shard")
	dFailovers    = desc("failovers_total", "Role changes seen in the cluster's event log since this process started: failover or switchover.", "db", "shard", "kind")
	dLeader       = desc("raft_leader", "1 if this node is the Raft leader.", "node")
	dApplied      = desc("raft_applied_index", "Last Raft log index applied on this node.", "node")
)

// Collector is a prometheus.Collector over Sources.
type Collector struct {
	src Sources

	mu        sync.Mutex
	lastEvent uint64
	failovers map[[3]string]float64
}

// New returns the collector.
func New(src Sources) *Collector {
	return &Collector{src: src, failovers: map[[3]string]float64{}}
}

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dRedisUp, dMemUsed, dMemMax, dClients, dCommands, dCmdSeconds, dHits, dMisses, dEvicted,
		dExpired, dKeys, dNetIn, dNetOut, dReplOffset, dLinkUp, dUptime, dProxyConns, dProxyAcc, dProxyRej, dProxyOps, dProxyErrs,
		dProxyLatency, dNodeUp, dNodeDraining, dNodeMem, dNodeAlloc, dDBs, dDBMem, dShardEpoch, dShardMaster, dShardRepl,
		dFailovers, dLeader, dApplied} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Collect builds the metrics from the sources' current values.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	counter := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}
	if c.src.Samples != nil {
		for _, s := range c.src.Samples() {
			l := []string{s.DB, strconv.Itoa(s.Shard), s.ID, s.Node, s.Role}
			gauge(dRedisUp, b2f(s.Up), l...)
			if !s.Up {
				continue // no figures rather than the last ones frozen
			}
			r := s.Raw
			gauge(dMemUsed, float64(r.UsedMemory), l...)
			gauge(dMemMax, float64(r.MaxMemory), l...)
			gauge(dClients, float64(r.Clients), l...)
			counter(dCommands, float64(r.Commands), l...)
			counter(dCmdSeconds, float64(r.CommandUsec)/1e6, l...)
			counter(dHits, float64(r.Hits), l...)
			counter(dMisses, float64(r.Misses), l...)
			counter(dEvicted, float64(r.Evicted), l...)
			counter(dExpired, float64(r.Expired), l...)
			gauge(dKeys, float64(r.Keys), l...)
			counter(dNetIn, float64(r.NetIn), l...)
			counter(dNetOut, float64(r.NetOut), l...)
			gauge(dReplOffset, float64(r.ReplOffset), l...)
			if r.Role == "replica" {
				gauge(dLinkUp, b2f(r.LinkUp), l...)
			}
			gauge(dUptime, float64(r.UptimeSeconds), l...)
		}
	}
	if c.src.Proxies != nil {
		for _, p := range c.src.Proxies() {
			gauge(dProxyConns, float64(p.Connections), p.DB)
			counter(dProxyAcc, float64(p.Accepted), p.DB)
			counter(dProxyRej, float64(p.Rejected), p.DB)
			counter(dProxyOps, float64(p.Ops), p.DB)
			counter(dProxyErrs, float64(p.Errors), p.DB)
			buckets := map[float64]uint64{}
			var cum, total uint64
			for i, n := range p.Buckets {
				total += uint64(n)
				if i < len(p.BoundsNs) {
					cum += uint64(n)
					buckets[time.Duration(p.BoundsNs[i]).Seconds()] = cum
				}
			}
			ch <- prometheus.MustNewConstHistogram(dProxyLatency, total, time.Duration(p.LatencyNs).Seconds(), buckets, p.DB)
		}
	}
	if c.src.State != nil {
		st := c.src.State()
		alloc := st.Allocated()
		for _, id := range st.NodeIDs() {
			n := st.Nodes[id]
			gauge(dNodeUp, b2f(n.Status == state.NodeUp), id, n.Zone)
			gauge(dNodeDraining, b2f(n.Draining), id)
			gauge(dNodeMem, float64(n.Memory), id)
			gauge(dNodeAlloc, float64(alloc[id]), id)
		}
		gauge(dDBs, float64(len(st.DBs)))
		for _, name := range st.DBNames() {
			db := st.DBs[name]
			gauge(dDBMem, float64(db.Memory)*float64(len(db.Shards)), name)
			for _, sh := range db.Shards {
				shard := strconv.Itoa(sh.Index)
				_, ok := sh.Master()
				gauge(dShardEpoch, float64(sh.Epoch), name, shard)
				gauge(dShardMaster, b2f(ok), name, shard)
				gauge(dShardRepl, float64(len(sh.Replicas())), name, shard)
			}
		}
		c.mu.Lock()
		var evs []state.Event
		if c.src.Events != nil {
			evs = c.src.Events().Since(c.lastEvent, "")
		}
		for _, e := range evs {
			c.lastEvent = e.ID
			if e.Type == "failover" || e.Type == "switchover" {
				c.failovers[[3]string{e.DB, strconv.Itoa(e.Shard), e.Type}]++
			}
		}
		for k, v := range c.failovers {
			counter(dFailovers, v, k[0], k[1], k[2])
		}
		c.mu.Unlock()
	}
	if c.src.IsLeader != nil {
		gauge(dLeader, b2f(c.src.IsLeader()), c.src.Node)
	}
	if c.src.Applied != nil {
		gauge(dApplied, float64(c.src.Applied()), c.src.Node)
	}
}

// Handler serves /metrics: Marina's metrics plus the Go process's own.
func Handler(src Sources) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(New(src), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Package stats collects INFO from the redis-servers on a node at an
// interval, keeps their history in memory (fine and coarse rings), and
// turns it into per-database and per-node series, Prometheus metrics and
// Graphite lines. The decisions (parsing, rates, aggregation, retention)
// are pure functions here; collector.go does the I/O.
package stats

import (
	"sort"
	"strconv"
	"strings"
	"time"
)

// Raw is what one INFO reply says, reduced to the counters and gauges
// Marina keeps.
type Raw struct {
	Role          string
	UsedMemory    int64
	MaxMemory     int64
	Clients       int64
	Commands      int64 // total_commands_processed
	CommandUsec   int64 // sum of cmdstat usec: server time spent in commands
	CommandCalls  int64 // sum of cmdstat calls, the divisor of CommandUsec
	Hits, Misses  int64
	Evicted       int64
	Expired       int64
	Keys          int64
	NetIn, NetOut int64
	ReplOffset    int64 // master_repl_offset (masters) or slave_repl_offset (replicas)
	LinkUp        bool  // replicas: master_link_status up
	Replicas      []ReplicaInfo
	UptimeSeconds int64
	RejectedConns int64
	TotalConns    int64
}

// ReplicaInfo is a master's view of one replica (INFO slaveN lines).
type ReplicaInfo struct {
	Addr   string // ip:port
	State  string
	Offset int64
	Lag    int64 // seconds since the last ack
}

// ParseRaw reads the fields of an `INFO all` reply (as resp.ParseInfo maps it).
func ParseRaw(info map[string]string) Raw {
	i := func(k string) int64 {
		n, _ := strconv.ParseInt(info[k], 10, 64)
		return n
	}
	r := Raw{Role: info["role"], UsedMemory: i("used_memory"), MaxMemory: i("maxmemory"), Clients: i("connected_clients"),
		Commands: i("total_commands_processed"), Hits: i("keyspace_hits"), Misses: i("keyspace_misses"),
		Evicted: i("evicted_keys"), Expired: i("expired_keys"), NetIn: i("total_net_input_bytes"), NetOut: i("total_net_output_bytes"),
		UptimeSeconds: i("uptime_in_seconds"), RejectedConns: i("rejected_connections"), TotalConns: i("total_connections_received")}
	if r.Role == "slave" {
		r.Role = "replica"
		r.ReplOffset = i("slave_repl_offset")
		r.LinkUp = info["master_link_status"] == "up"
	} else {
		r.ReplOffset = i("master_repl_offset")
	}
	for k, v := range info {
		switch {
		case strings.HasPrefix(k, "cmdstat_"):
			f := fields(v)
			c, _ := strconv.ParseInt(f["calls"], 10, 64)
			u, _ := strconv.ParseInt(f["usec"], 10, 64)
			r.CommandCalls += c
			r.CommandUsec += u
		case strings.HasPrefix(k, "db") && isDigits(k[2:]):
			n, _ := strconv.ParseInt(fields(v)["keys"], 10, 64)
			r.Keys += n
		case strings.HasPrefix(k, "slave") && isDigits(k[5:]):
			f := fields(v)
			off, _ := strconv.ParseInt(f["offset"], 10, 64)
			lag, _ := strconv.ParseInt(f["lag"], 10, 64)
			r.Replicas = append(r.Replicas, ReplicaInfo{Addr: f["ip"] + ":" + f["port"], State: f["state"], Offset: off, Lag: lag})
		}
	}
	sort.Slice(r.Replicas, func(a, b int) bool { return r.Replicas[a].Addr < r.Replicas[b].Addr })
	return r
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// fields splits "a=1,b=2" into a map.
func fields(v string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(v, ",") {
		if k, val, ok := strings.Cut(kv, "="); ok {
			out[k] = val
		}
	}
	return out
}

// Point is one instant of a series: an instance's, a database's or a
// node's. Rates are per second over the interval before T.
type Point struct {
	T          time.Time `json:"t"`
	OpsPerSec  float64   `json:"ops_per_sec"`
	UsedMemory int64     `json:"used_memory"`
	MaxMemory  int64     `json:"maxmemory"`
	Clients    int64     `json:"clients"`
	// HitRatio is hits/(hits+misses) over the interval; nil without lookups.
	HitRatio      *float64 `json:"hit_ratio"`
	LatencyUs     float64  `json:"latency_us"` // mean server time per command
	EvictedPerSec float64  `json:"evicted_per_sec"`
	ExpiredPerSec float64  `json:"expired_per_sec"`
	Keys          int64    `json:"keys"`
	NetInPerSec   float64  `json:"net_in_per_sec"`
	NetOutPerSec  float64  `json:"net_out_per_sec"`
	// Counter deltas behind the ratios, so that points of several instances
	// (fetched from several nodes) can be combined exactly.
	Hits   int64 `json:"hits,omitempty"`
	Misses int64 `json:"misses,omitempty"`
	Usec   int64 `json:"cmd_usec,omitempty"`
	Calls  int64 `json:"cmd_calls,omitempty"`
	Offset int64 `json:"offset,omitempty"`
	// Master: the instance was a master when the point was taken (a
	// failover does not rewrite a database's history).
	Master  bool `json:"master,omitempty"`
	Samples int  `json:"-"` // fine points averaged into a coarse one
}

// delta is cur-prev for a counter; a restart (counter going down) counts
// from zero rather than producing a negative rate.
func delta(prev, cur int64) int64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}

// Derive is the point of an instance at cur.T from two consecutive samples.
func Derive(prev, cur Raw, prevT, curT time.Time) Point {
	p := Point{T: curT, UsedMemory: cur.UsedMemory, MaxMemory: cur.MaxMemory, Clients: cur.Clients, Keys: cur.Keys, Offset: cur.ReplOffset,
		Master: cur.Role == "master"}
	dt := curT.Sub(prevT).Seconds()
	if dt <= 0 || prevT.IsZero() {
		return p
	}
	rate := func(a, b int64) float64 { return float64(delta(a, b)) / dt }
	p.OpsPerSec = rate(prev.Commands, cur.Commands)
	p.EvictedPerSec = rate(prev.Evicted, cur.Evicted)
	p.ExpiredPerSec = rate(prev.Expired, cur.Expired)
	p.NetInPerSec = rate(prev.NetIn, cur.NetIn)
	p.NetOutPerSec = rate(prev.NetOut, cur.NetOut)
	p.Hits, p.Misses = delta(prev.Hits, cur.Hits), delta(prev.Misses, cur.Misses)
	p.Usec, p.Calls = delta(prev.CommandUsec, cur.CommandUsec), delta(prev.CommandCalls, cur.CommandCalls)
	p.finish()
	return p
}

// finish sets the ratios from the counter deltas.
func (p *Point) finish() {
	p.HitRatio = nil
	if p.Hits+p.Misses > 0 {
		r := float64(p.Hits) / float64(p.Hits+p.Misses)
		p.HitRatio = &r
	}
	p.LatencyUs = 0
	if p.Calls > 0 {
		p.LatencyUs = float64(p.Usec) / float64(p.Calls)
	}
}

// Series is one instance's history as delivered by a node.
type Series struct {
	ID     string  `json:"id"`
	DB     string  `json:"db"`
	Shard  int     `json:"shard"`
	Node   string  `json:"node"`
	Role   string  `json:"role"`
	Points []Point `json:"points"`
	// Latest is the last sample's view (also set when Points is filtered
	// down to nothing): gauges for the topology table.
	Latest *InstanceView `json:"latest,omitempty"`
}

// InstanceView is an instance's current figures.
type InstanceView struct {
	ID         string    `json:"id"`
	Node       string    `json:"node"`
	Shard      int       `json:"shard"`
	Role       string    `json:"role"`
	UsedMemory int64     `json:"used_memory"`
	OpsPerSec  float64   `json:"ops_per_sec"`
	Clients    int64     `json:"clients"`
	Offset     int64     `json:"offset"`
	LagBytes   *int64    `json:"lag_bytes,omitempty"` // replicas: behind their master (set by Merge)
	Link       string    `json:"link,omitempty"`      // replicas: up or down
	Keys       int64     `json:"keys"`
	T          time.Time `json:"t"`
	// Stale: the last INFO failed; the figures are from the one before.
	Stale bool `json:"stale,omitempty"`
}

// Aggregate is a database's or a node's series, and the instances behind it.
type Aggregate struct {
	DB        string         `json:"db,omitempty"`
	Node      string         `json:"node,omitempty"`
	Interval  float64        `json:"interval_seconds"`
	Points    []Point        `json:"points"`
	Instances []InstanceView `json:"instances"`
	// Missing lists nodes whose figures could not be fetched.
	Missing []string `json:"missing_nodes,omitempty"`
}

// Merge combines instance series into one series, bucketed by interval.
// Database semantics (masters only for figures that replicas repeat: ops,
// memory, keys, evictions, expiries, latency; every instance for clients,
// lookups and network) when masterOnly is set, by the role each point was
// taken in; plain sums (a node's view) otherwise.
func Merge(series []Series, interval time.Duration, masterOnly bool) ([]Point, []InstanceView) {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	buckets := map[int64]*Point{} // by bucket start, unix ns
	var views []InstanceView
	masterOffset := map[string]int64{} // db/shard -> master's offset
	for _, s := range series {
		if s.Latest != nil && s.Role == "master" {
			masterOffset[s.DB+"/"+strconv.Itoa(s.Shard)] = s.Latest.Offset
		}
	}
	for _, s := range series {
		if s.Latest != nil {
			v := *s.Latest
			if s.Role == "replica" {
				if mo, ok := masterOffset[s.DB+"/"+strconv.Itoa(s.Shard)]; ok {
					lag := max(mo-v.Offset, 0)
					v.LagBytes = &lag
				}
			}
			views = append(views, v)
		}
		// One point per instance and bucket (the latest, with the counter
		// deltas of all): collection jitter can put two into one bucket.
		last := map[int64]Point{}
		for _, p := range s.Points {
			k := p.T.Truncate(interval).UnixNano()
			q, ok := last[k]
			if ok && q.T.After(p.T) {
				p, q = q, p
			}
			if ok { // counter deltas of both intervals count
				p.Hits, p.Misses, p.Usec, p.Calls = p.Hits+q.Hits, p.Misses+q.Misses, p.Usec+q.Usec, p.Calls+q.Calls
			}
			last[k] = p
		}
		for k, p := range last {
			master := p.Master || !masterOnly
			b := buckets[k]
			if b == nil {
				b = &Point{T: p.T.Truncate(interval).Add(interval).UTC()}
				buckets[k] = b
			}
			b.Clients += p.Clients
			b.Hits += p.Hits
			b.Misses += p.Misses
			b.NetInPerSec += p.NetInPerSec
			b.NetOutPerSec += p.NetOutPerSec
			if master {
				b.OpsPerSec += p.OpsPerSec
				b.UsedMemory += p.UsedMemory
				b.MaxMemory += p.MaxMemory
				b.Keys += p.Keys
				b.EvictedPerSec += p.EvictedPerSec
				b.ExpiredPerSec += p.ExpiredPerSec
				b.Usec += p.Usec
				b.Calls += p.Calls
			}
		}
	}
	out := make([]Point, 0, len(buckets))
	for _, b := range buckets {
		b.finish()
		out = append(out, *b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].T.Before(out[j].T) })
	sort.Slice(views, func(i, j int) bool {
		if views[i].Shard != views[j].Shard {
			return views[i].Shard < views[j].Shard
		}
		if views[i].Role != views[j].Role {
			return views[i].Role == "master"
		}
		return views[i].ID < views[j].ID
	})
	return out, views
}

// ring is a circular buffer of up to size points, oldest first. It grows
// as points come (a node tracks hundreds of instances, most of them new:
// a day of coarse points each, allocated up front, was most of its heap).
type ring struct {
	buf  []Point
	size int
	next int
	full bool
}

func newRing(n int) *ring { return &ring{size: max(n, 1)} }

func (r *ring) add(p Point) {
	if !r.full { // next == len(buf): one more slot
		if len(r.buf) == cap(r.buf) {
			grown := make([]Point, len(r.buf), min(r.size, max(16, 2*cap(r.buf))))
			copy(grown, r.buf)
			r.buf = grown
		}
		r.buf = r.buf[:len(r.buf)+1]
	}
	r.buf[r.next] = p
	r.next++
	if r.next == r.size {
		r.next, r.full = 0, true
	}
}

// between returns the points with from <= T <= to, oldest first.
func (r *ring) between(from, to time.Time) []Point {
	var out []Point
	emit := func(ps []Point) {
		for _, p := range ps {
			if !p.T.Before(from) && !p.T.After(to) {
				out = append(out, p)
			}
		}
	}
	if r.full {
		emit(r.buf[r.next:])
	}
	emit(r.buf[:r.next])
	return out
}

func (r *ring) oldest() time.Time {
	if r.full {
		return r.buf[r.next].T
	}
	if r.next > 0 {
		return r.buf[0].T
	}
	return time.Time{}
}

// Retention: the fine ring keeps FineFor at the collection interval, the
// coarse ring CoarseFor at CoarseStep.
const (
	FineFor    = time.Hour
	CoarseStep = time.Minute
	CoarseFor  = 24 * time.Hour
)

// history is one instance's fine and coarse rings plus the coarse point
// being filled.
type history struct {
	fine, coarse *ring
	acc          Point
	accStart     time.Time
}

func newHistory(interval time.Duration) *history {
	return &history{fine: newRing(int(FineFor / interval)), coarse: newRing(int(CoarseFor / CoarseStep))}
}

// add records a fine point and rolls the coarse one over each CoarseStep:
// rates and gauges averaged, counter deltas summed.
func (h *history) add(p Point) {
	h.fine.add(p)
	start := p.T.Truncate(CoarseStep)
	if !h.accStart.IsZero() && !start.Equal(h.accStart) && h.acc.Samples > 0 {
		h.coarse.add(average(h.acc))
		h.acc = Point{}
	}
	h.accStart = start
	a := &h.acc
	a.T = start.Add(CoarseStep)
	a.Samples++
	a.OpsPerSec += p.OpsPerSec
	a.UsedMemory += p.UsedMemory
	a.MaxMemory += p.MaxMemory
	a.Clients += p.Clients
	a.EvictedPerSec += p.EvictedPerSec
	a.ExpiredPerSec += p.ExpiredPerSec
	a.Keys += p.Keys
	a.NetInPerSec += p.NetInPerSec
	a.NetOutPerSec += p.NetOutPerSec
	a.Hits += p.Hits
	a.Misses += p.Misses
	a.Usec += p.Usec
	a.Calls += p.Calls
	a.Offset = p.Offset
	a.Master = p.Master
}

func average(a Point) Point {
	n := float64(a.Samples)
	p := a
	p.OpsPerSec /= n
	p.UsedMemory = int64(float64(a.UsedMemory) / n)
	p.MaxMemory = int64(float64(a.MaxMemory) / n)
	p.Clients = int64(float64(a.Clients) / n)
	p.EvictedPerSec /= n
	p.ExpiredPerSec /= n
	p.Keys = int64(float64(a.Keys) / n)
	p.NetInPerSec /= n
	p.NetOutPerSec /= n
	p.finish()
	return p
}

// between answers from the fine or the coarse ring: one resolution for
// every instance of a query, chosen by the caller (Coarse).
func (h *history) between(from, to time.Time, coarse bool) []Point {
	if coarse {
		return h.coarse.between(from, to)
	}
	return h.fine.between(from, to)
}

// Coarse says whether a query from..to is answered at CoarseStep: when it
// reaches further back than the fine rings hold.
func Coarse(from, now time.Time) bool {
	return from.Before(now.Add(-FineFor - CoarseStep))
}

// ParseTime reads a query time: unix seconds or RFC 3339; empty gives def.
func ParseTime(s string, def time.Time) (time.Time, error) {
	if s == "" {
		return def, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0), nil
	}
	return time.Parse(time.RFC3339, s)
}

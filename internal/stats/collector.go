package stats

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/redisconf"
	"github.com/marina-redis/marina/internal/redisctl"
	"github.com/marina-redis/marina/internal/resp"
	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/topology"
)

// Source is the local copy of the desired state.
type Source interface {
	State() *state.State
}

// Collector reads INFO from this node's redis-servers every Interval and
// keeps their history. Each node collects its own instances only; the API
// merges the nodes' answers for a database.
type Collector struct {
	// Redis dials the node's redis-servers (nil: plaintext).
	Redis    *redisconf.Dialer
	Node     string
	Src      Source
	Interval time.Duration // default 5s
	Log      *slog.Logger
	// OnSample, when set, is called after each round (Graphite sink).
	OnSample func(ctx context.Context, now time.Time)

	mu   sync.Mutex
	inst map[string]*tracked
}

// tracked is one local instance being collected.
type tracked struct {
	meta   Series // identity (no points)
	addr   string
	secret string
	client *redis.Client
	prev   Raw
	prevT  time.Time
	hist   *history
	last   Point
	up     bool
}

// Sample is an instance's latest raw counters, for metrics and Graphite.
type Sample struct {
	ID, DB, Node, Role string
	Shard              int
	Up                 bool
	Raw                Raw
	T                  time.Time
}

func (c *Collector) interval() time.Duration {
	if c.Interval <= 0 {
		return 5 * time.Second
	}
	return c.Interval
}

// Run collects until ctx ends. Rounds run at the middle of each interval
// (wall clock), on every node alike: each instance's point then lands in
// the middle of its bucket when the nodes' series are merged, not on an
// edge where jitter would move it to the neighbour.
func (c *Collector) Run(ctx context.Context) {
	iv := c.interval()
	now := time.Now()
	wait := time.Until(now.Truncate(iv).Add(iv / 2))
	if wait < 0 {
		wait += iv
	}
	first := time.NewTimer(wait)
	select {
	case <-ctx.Done():
		first.Stop()
		return
	case <-first.C:
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	defer c.closeAll()
	for {
		c.collect(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *Collector) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, tr := range c.inst {
		tr.client.Close()
	}
	c.inst = nil
}

// sync starts tracking new local instances and forgets removed ones (a
// changed address or password starts a new history; a role change does
// not: each point carries the role it was taken in).
func (c *Collector) sync(st *state.State) []*tracked {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inst == nil {
		c.inst = map[string]*tracked{}
	}
	node, ok := st.Nodes[c.Node]
	want := map[string]bool{}
	if ok {
		for _, pi := range st.InstancesOn(c.Node) {
			want[pi.ID] = true
			addr := topology.HostPort(node.Addr, pi.Port)
			tr := c.inst[pi.ID]
			if tr != nil && (tr.addr != addr || tr.secret != pi.DB.Secret) {
				tr.client.Close()
				tr = nil
			}
			if tr == nil {
				timeout := min(c.interval(), 2*time.Second)
				tr = &tracked{addr: addr, secret: pi.DB.Secret, hist: newHistory(c.interval()),
					client: redisctl.Client(c.Redis, addr, pi.DB.Secret, timeout, 1)}
				c.inst[pi.ID] = tr
			}
			tr.meta = Series{ID: pi.ID, DB: pi.DB.Name, Shard: pi.Shard, Node: c.Node, Role: pi.Role}
		}
	}
	var out []*tracked
	for id, tr := range c.inst {
		if !want[id] {
			tr.client.Close()
			delete(c.inst, id)
			continue
		}
		out = append(out, tr)
	}
	return out
}

func (c *Collector) collect(ctx context.Context) {
	trs := c.sync(c.Src.State())
	var wg sync.WaitGroup
	for _, tr := range trs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.one(ctx, tr)
		}()
	}
	wg.Wait()
	if c.OnSample != nil {
		c.OnSample(ctx, time.Now())
	}
}

// one reads INFO from one instance and records the point.
func (c *Collector) one(ctx context.Context, tr *tracked) {
	info, err := tr.client.Info(ctx, "all").Result()
	now := time.Now().UTC()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		if tr.up && c.Log != nil {
			c.Log.Debug("stats: INFO failed", "instance", tr.meta.ID, "err", err)
		}
		tr.up = false
		return
	}
	raw := ParseRaw(resp.ParseInfo(info))
	if raw.Role != "" {
		tr.meta.Role = raw.Role // as the server says: it may lag the state during a failover
	}
	p := Derive(tr.prev, raw, tr.prevT, now)
	if !tr.prevT.IsZero() {
		tr.hist.add(p)
	}
	tr.prev, tr.prevT, tr.last, tr.up = raw, now, p, true
}

// Local returns this node's instance series between from and to, for one
// database or (db == "") all, at the fine or the coarse resolution.
func (c *Collector) Local(db string, from, to time.Time, coarse bool) []Series {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := []Series{}
	for _, tr := range c.inst {
		if db != "" && tr.meta.DB != db {
			continue
		}
		s := tr.meta
		s.Points = tr.hist.between(from, to, coarse)
		if s.Points == nil {
			s.Points = []Point{}
		}
		if !tr.prevT.IsZero() {
			link := ""
			if tr.prev.Role == "replica" {
				link = "down"
				if tr.prev.LinkUp {
					link = "up"
				}
			}
			s.Latest = &InstanceView{ID: s.ID, Node: s.Node, Shard: s.Shard, Role: s.Role, UsedMemory: tr.prev.UsedMemory,
				OpsPerSec: tr.last.OpsPerSec, Clients: tr.prev.Clients, Offset: tr.prev.ReplOffset, Link: link, Keys: tr.prev.Keys, T: tr.prevT,
				Stale: !tr.up}
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Samples returns every local instance's latest raw counters.
func (c *Collector) Samples() []Sample {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Sample, 0, len(c.inst))
	for _, tr := range c.inst {
		out = append(out, Sample{ID: tr.meta.ID, DB: tr.meta.DB, Node: tr.meta.Node, Role: tr.meta.Role, Shard: tr.meta.Shard,
			Up: tr.up, Raw: tr.prev, T: tr.prevT})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// IntervalSeconds is the collection interval in seconds.
func (c *Collector) IntervalSeconds() float64 { return c.interval().Seconds() }

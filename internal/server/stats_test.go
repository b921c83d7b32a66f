package server

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/api"
	"github.com/marina-redis/marina/internal/client"
	"github.com/marina-redis/marina/internal/testutil"
)

// graphiteSink is a carbon plaintext listener: it keeps every line received.
type graphiteSink struct {
	ln    net.Listener
	mu    sync.Mutex
	lines []string
}

func newGraphiteSink(t *testing.T) *graphiteSink {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &graphiteSink{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					g.mu.Lock()
					g.lines = append(g.lines, sc.Text())
					g.mu.Unlock()
				}
			}()
		}
	}()
	return g
}

func (g *graphiteSink) find(sub string) (string, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, l := range g.lines {
		if strings.Contains(l, sub) {
			return l, true
		}
	}
	return "", false
}

// scrape fetches and parses a node's /metrics.
func scrape(hc *http.Client, addr, token string) (map[string]*dto.MetricFamily, int, error) {
	req, _ := http.NewRequest("GET", "https://"+addr+"/metrics", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, resp.StatusCode, nil
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	return fams, 200, err
}

// sumMetric adds up a family's values over the series whose labels match.
func sumMetric(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, int) {
	f := fams[name]
	if f == nil {
		return 0, 0
	}
	var sum float64
	n := 0
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		n++
		switch {
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum, n
}

// The collector reads INFO from every instance; the API merges the nodes'
// series per database and per node; /metrics and Graphite carry the same
// figures.
func TestStatsMetricsGraphite(t *testing.T) {
	g := newGraphiteSink(t)
	tc := newTestClusterWith(t, 3, 256<<20, func(i int, c *Config) {
		c.StatsInterval = 200 * time.Millisecond
		if i == 0 {
			c.Graphite = g.ln.Addr().String()
		}
	})
	ctx := testutil.Ctx(t, 2*time.Minute)
	c := tc.client(1)
	if _, err := c.CreateDB(ctx, api.CreateDBRequest{Name: "st", Memory: 16 << 20, Shards: 2, Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	db := tc.waitReady(c, "st")
	rdb := redis.NewClient(&redis.Options{Addr: db.Endpoints[0], Password: db.Password, Protocol: 2, DisableIdentity: true})
	defer rdb.Close()
	testutil.WaitFor(t, 10*time.Second, "endpoint", func() error { return rdb.Ping(ctx).Err() })
	for i := 0; i < 50; i++ {
		if err := rdb.Set(ctx, fmt.Sprintf("key:%d", i), "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 100; i++ { // 50 hits, 50 misses
		_ = rdb.Get(ctx, fmt.Sprintf("key:%d", i)).Err()
	}

	var agg any
	testutil.WaitFor(t, 20*time.Second, "database stats with the writes", func() error {
		s, err := c.DBStats(ctx, "st", "", "")
		if err != nil {
			return err
		}
		agg = s
		if len(s.Points) < 2 || len(s.Instances) != 4 || len(s.Missing) > 0 {
			return fmt.Errorf("%d points, %d instances, missing %v", len(s.Points), len(s.Instances), s.Missing)
		}
		last := s.Points[len(s.Points)-1]
		if last.Keys != 50 || last.MaxMemory != 2*16<<20 || last.UsedMemory <= 0 {
			return fmt.Errorf("last point %+v", last)
		}
		var ops float64
		var hits, lookups int64
		for _, p := range s.Points {
			ops = max(ops, p.OpsPerSec)
			hits += p.Hits
			lookups += p.Hits + p.Misses
		}
		// Every shard's lookups, wherever its master runs: the leader
		// merges the other nodes' points too.
		if ops <= 0 || lookups < 100 || hits < 50 {
			return fmt.Errorf("ops %v, %d lookups, %d hits in %+v", ops, lookups, hits, s.Points)
		}
		for _, in := range s.Instances {
			if in.Role == "replica" && (in.Link != "up" || in.LagBytes == nil) {
				return fmt.Errorf("replica view %+v", in)
			}
		}
		return nil
	})
	t.Logf("stats: %+v", agg)

	// Every database's latest figures in one call (the console's list).
	// (The newest bucket above may still be filling; this one is whole.)
	testutil.WaitFor(t, 10*time.Second, "latest stats", func() error {
		latest, err := c.LatestStats(ctx)
		if err != nil {
			return err
		}
		if p := latest.DBs["st"]; p.Keys != 50 || p.MaxMemory != 2*16<<20 || p.T.After(time.Now()) {
			return fmt.Errorf("latest point %+v", p)
		}
		return nil
	})

	// Per node: the same merge over one node's instances; bad input is a 4xx.
	ns, err := c.NodeStats(ctx, "n1", "", "")
	if err != nil || len(ns.Points) == 0 || ns.Node != "n1" {
		t.Fatalf("node stats %+v %v", ns, err)
	}
	for _, in := range ns.Instances {
		if in.Node != "n1" {
			t.Fatalf("node stats hold another node's instance %+v", in)
		}
	}
	for _, bad := range []struct {
		call func() error
		code int
	}{
		{func() error { _, err := c.DBStats(ctx, "nope", "", ""); return err }, 404},
		{func() error { _, err := c.NodeStats(ctx, "nope", "", ""); return err }, 404},
		{func() error { _, err := c.DBStats(ctx, "st", "yesterday", ""); return err }, 400},
		{func() error { _, err := c.DBStats(ctx, "st", "2000", "1000"); return err }, 400},
	} {
		var ce *client.Error
		if err := bad.call(); !errors.As(err, &ce) || ce.Code != bad.code {
			t.Fatalf("want HTTP %d, got %v", bad.code, err)
		}
	}

	// /metrics: behind the token; every node exports its own instances, so
	// the masters' keys add up over the cluster.
	token := tc.cfgs[2].Token
	if _, code, err := scrape(tc.httpClient(), tc.nodes[0].HTTPAddr(), ""); err != nil || code != 401 {
		t.Fatalf("metrics without a token: %d %v", code, err)
	}
	testutil.WaitFor(t, 10*time.Second, "metrics", func() error {
		var keys, proxyOps float64
		masters := 0
		for _, nd := range tc.nodes {
			fams, code, err := scrape(tc.httpClient(), nd.HTTPAddr(), token)
			if err != nil || code != 200 {
				return fmt.Errorf("scrape %s: %d %v", nd.HTTPAddr(), code, err)
			}
			k, _ := sumMetric(fams, "marina_redis_keys", map[string]string{"db": "st", "role": "master"})
			keys += k
			// Nodes without an instance of st have no series for it.
			if up, n := sumMetric(fams, "marina_redis_up", map[string]string{"db": "st"}); int(up) != n {
				return fmt.Errorf("%s: redis_up %v of %d", nd.ID(), up, n)
			}
			m, _ := sumMetric(fams, "marina_redis_up", map[string]string{"db": "st", "role": "master"})
			masters += int(m)
			o, _ := sumMetric(fams, "marina_proxy_commands_total", map[string]string{"db": "st"})
			proxyOps += o
			if h, n := sumMetric(fams, "marina_shard_has_master", map[string]string{"db": "st"}); h != 2 || n != 2 {
				return fmt.Errorf("%s: shards with a master %v of %d", nd.ID(), h, n)
			}
			if _, n := sumMetric(fams, "marina_node_up", nil); n != 3 {
				return fmt.Errorf("%s: %d node_up series", nd.ID(), n)
			}
		}
		if keys != 50 || masters != 2 || proxyOps < 150 {
			return fmt.Errorf("keys %v masters %d proxy commands %v", keys, masters, proxyOps)
		}
		return nil
	})

	// A switchover is counted by every node's failover counter.
	if _, err := c.Switchover(ctx, "st", 0); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "switchover counted", func() error {
		for _, nd := range tc.nodes {
			fams, _, err := scrape(tc.httpClient(), nd.HTTPAddr(), token)
			if err != nil {
				return err
			}
			if v, _ := sumMetric(fams, "marina_failovers_total", map[string]string{"db": "st", "shard": "0", "kind": "switchover"}); v != 1 {
				return fmt.Errorf("%s: failovers_total %v", nd.ID(), v)
			}
		}
		return nil
	})

	// Graphite got node 1's instances and endpoints in plaintext.
	testutil.WaitFor(t, 10*time.Second, "graphite lines", func() error {
		l, ok := g.find(".used_memory ")
		if !ok || !strings.HasPrefix(l, "marina.db.st.shard") {
			return fmt.Errorf("no instance line yet (%q)", l)
		}
		if f := strings.Fields(l); len(f) != 3 {
			return fmt.Errorf("line %q is not 'path value timestamp'", l)
		}
		if _, ok := g.find("marina.proxy.n1.st.commands "); !ok {
			return errors.New("no proxy line yet")
		}
		return nil
	})
}

package stats

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Graphite sends each collection round to a Graphite (carbon) server with
// the plaintext protocol: "path value timestamp\n" lines over TCP.
type Graphite struct {
	Addr   string // host:port of carbon's plaintext listener
	Prefix string // default "marina"

	mu   sync.Mutex
	conn net.Conn
}

// ProxyFigures are a database endpoint's counters on this node.
type ProxyFigures struct {
	DB                         string
	Connections, Ops, Errors   int64
	LatencySumNs, LatencyCount int64
}

// graphiteName makes s one safe path component: dots and spaces would
// split or break the metric path.
func graphiteName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
}

// GraphiteLines renders one round: every instance's figures and every
// endpoint's counters, stamped with now.
func GraphiteLines(prefix, node string, now time.Time, samples []Sample, proxies []ProxyFigures) []byte {
	if prefix == "" {
		prefix = "marina"
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	var b []byte
	line := func(path string, v int64) {
		b = fmt.Appendf(b, "%s %d %s\n", path, v, ts)
	}
	for _, s := range samples {
		base := fmt.Sprintf("%s.db.%s.shard%d.%s", prefix, graphiteName(s.DB), s.Shard, graphiteName(s.ID))
		if !s.Up {
			// Only the fact: old figures stamped now would draw flat lines
			// where Graphite should show a gap.
			line(base+".up", 0)
			continue
		}
		r := s.Raw
		line(base+".up", 1)
		line(base+".used_memory", r.UsedMemory)
		line(base+".maxmemory", r.MaxMemory)
		line(base+".connected_clients", r.Clients)
		line(base+".commands_processed", r.Commands)
		line(base+".command_usec", r.CommandUsec)
		line(base+".keyspace_hits", r.Hits)
		line(base+".keyspace_misses", r.Misses)
		line(base+".evicted_keys", r.Evicted)
		line(base+".expired_keys", r.Expired)
		line(base+".keys", r.Keys)
		line(base+".net_input_bytes", r.NetIn)
		line(base+".net_output_bytes", r.NetOut)
		line(base+".repl_offset", r.ReplOffset)
	}
	for _, p := range proxies {
		base := fmt.Sprintf("%s.proxy.%s.%s", prefix, graphiteName(node), graphiteName(p.DB))
		line(base+".connections", p.Connections)
		line(base+".commands", p.Ops)
		line(base+".errors", p.Errors)
		line(base+".latency_sum_ns", p.LatencySumNs)
		line(base+".latency_count", p.LatencyCount)
	}
	return b
}

// Send writes lines, reconnecting once if the connection broke. It gives
// up after timeout: a slow or absent Graphite never holds the collector.
func (g *Graphite) Send(ctx context.Context, lines []byte, timeout time.Duration) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if g.conn == nil {
			d := net.Dialer{Timeout: timeout}
			if g.conn, err = d.DialContext(ctx, "tcp", g.Addr); err != nil {
				g.conn = nil
				return fmt.Errorf("graphite %s: %w", g.Addr, err)
			}
		}
		_ = g.conn.SetWriteDeadline(time.Now().Add(timeout))
		if _, err = g.conn.Write(lines); err == nil {
			return nil
		}
		g.conn.Close()
		g.conn = nil
	}
	return fmt.Errorf("graphite %s: %w", g.Addr, err)
}

// Close drops the connection.
func (g *Graphite) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conn != nil {
		g.conn.Close()
		g.conn = nil
	}
}

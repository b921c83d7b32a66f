package server

import (
	"context"
	"time"

	"github.com/marina-redis/marina/internal/stats"
)

// graphiteSink sends each stats round to the configured Graphite server;
// a failure is logged when its message changes, never retried into the
// next round. close drops the connection when the collector stops.
func (n *Node) graphiteSink() (send func(context.Context, time.Time), close func()) {
	g := &stats.Graphite{Addr: n.cfg.Graphite, Prefix: n.cfg.GraphitePrefix}
	var lastErr string
	send = func(ctx context.Context, now time.Time) {
		var figs []stats.ProxyFigures
		for _, p := range n.Proxies.Snapshots() {
			var count int64
			for _, b := range p.Buckets {
				count += b
			}
			figs = append(figs, stats.ProxyFigures{DB: p.DB, Connections: p.Connections, Ops: p.Ops, Errors: p.Errors,
				LatencySumNs: p.LatencyNs, LatencyCount: count})
		}
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		err := g.Send(ctx, stats.GraphiteLines(g.Prefix, n.cfg.ID, now, n.Stats.Samples(), figs), time.Second)
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		if msg != lastErr {
			if err != nil {
				n.log.Warn("graphite", "err", err)
			} else {
				n.log.Info("graphite: sending again", "addr", n.cfg.Graphite)
			}
			lastErr = msg
		}
	}
	return send, g.Close
}

package server

import (
	"context"

	"github.com/marina-redis/marina/internal/doctor"
)

// doctorReport checks this host for what its redis-servers and endpoints
// need: the open-files targets follow what the state places here.
func (n *Node) doctorReport(ctx context.Context) doctor.Report {
	st := n.FSM.State()
	needs := doctor.Needs{Instances: len(st.InstancesOn(n.cfg.ID)), ProxyMaxClients: n.cfg.ProxyMaxClients}
	if n.cfg.ProxyMin != 0 {
		for _, db := range st.DBs {
			if db.ProxyPort != 0 {
				needs.ProxyEndpoints++
			}
		}
	}
	rep := doctor.Run(ctx, "/", n.cfg.RedisServer, needs)
	rep.Node = n.cfg.ID
	return rep
}

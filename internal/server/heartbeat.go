package server

import (
	"context"
	"errors"
	"time"

	"github.com/marina-redis/marina/internal/client"
	"github.com/marina-redis/marina/internal/controller"
)

// heartbeats reports this node and its instances to the leader.
func (n *Node) heartbeats(ctx context.Context) {
	t := time.NewTicker(n.cfg.Heartbeat)
	defer t.Stop()
	var peer *client.Client
	var peerAddr string
	for {
		rep := controller.Report{Node: n.self(), Instances: n.Agent.Statuses(), Probes: n.Agent.Probes(), Fences: n.Agent.Fences(),
			Cert: n.certStatus()}
		// The lease counts from when the report left, not when the answer
		// came back: the leader counts its wait from when it arrived.
		sent := time.Now()
		hctx, cancel := context.WithTimeout(ctx, n.cfg.timing().HeartbeatTimeout())
		var err error
		var ack controller.Ack
		id := n.Raft.LeaderID()
		err = errNoLeader
		switch {
		case id == "":
		case id == n.cfg.ID:
			ack, err = n.Ctl.Heartbeat(hctx, rep)
		default:
			if ln, ok := n.FSM.State().Nodes[id]; ok {
				if ln.HTTPAddr != peerAddr {
					peer, peerAddr = n.peerClient(id, ln.HTTPAddr), ln.HTTPAddr
				}
				ack, err = peer.Heartbeat(hctx, rep)
			}
		}
		cancel()
		if err == nil {
			n.Agent.Grant(sent, ack.LeaseAge, ack.Index)
			n.Agent.AckFences(rep.Fences)
		}
		if err != nil && ctx.Err() == nil {
			n.log.Debug("heartbeat", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-n.Agent.Urgent():
		case <-n.Agent.Notify():
			// A change to report: soon, but coalesced with others.
			select {
			case <-time.After(20 * time.Millisecond):
			case <-ctx.Done():
				return
			}
		}
	}
}

var errNoLeader = errors.New("no leader known")

package client

import (
	"context"
	"net/http"

	"github.com/marina-redis/marina/internal/api"
	"github.com/marina-redis/marina/internal/state"
)

// RecordEvent reports a node's own event (a failed hook) to the cluster.
func (c *Client) RecordEvent(ctx context.Context, e state.Event) error {
	return c.do(ctx, http.MethodPost, "/v1/internal/event",
		api.EventRequest{Type: e.Type, DB: e.DB, Shard: e.Shard, Node: e.Node, Reason: e.Reason}, nil)
}

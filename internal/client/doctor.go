package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/marina-redis/marina/internal/doctor"
)

// NodeDoctor returns a node's host report (its settings for redis), asked
// through whichever node this client talks to.
func (c *Client) NodeDoctor(ctx context.Context, node string) (*doctor.Report, error) {
	var r doctor.Report
	return &r, c.do(ctx, http.MethodGet, "/v1/nodes/"+url.PathEscape(node)+"/doctor", nil, &r)
}

// LocalDoctor returns the host report of the node this client talks to.
func (c *Client) LocalDoctor(ctx context.Context) (*doctor.Report, error) {
	var r doctor.Report
	return &r, c.do(ctx, http.MethodGet, "/v1/local/doctor", nil, &r)
}

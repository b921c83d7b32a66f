package client

import (
	"context"
	"net/url"

	"github.com/marina-redis/marina/internal/api"
	"github.com/marina-redis/marina/internal/stats"
)

// DBStats returns a database's series; from and to are unix seconds or
// RFC 3339 ("" for the last hour).
func (c *Client) DBStats(ctx context.Context, name, from, to string) (*stats.Aggregate, error) {
	var out stats.Aggregate
	err := c.do(ctx, "GET", "/v1/dbs/"+url.PathEscape(name)+"/stats?"+rangeQuery(from, to), nil, &out)
	return &out, err
}

// NodeStats returns a node's series, summed over its instances.
func (c *Client) NodeStats(ctx context.Context, id, from, to string) (*stats.Aggregate, error) {
	var out stats.Aggregate
	err := c.do(ctx, "GET", "/v1/nodes/"+url.PathEscape(id)+"/stats?"+rangeQuery(from, to), nil, &out)
	return &out, err
}

func rangeQuery(from, to string) string {
	q := url.Values{}
	if from != "" {
		q.Set("from", from)
	}
	if to != "" {
		q.Set("to", to)
	}
	return q.Encode()
}

// LatestStats returns every database's latest complete point.
func (c *Client) LatestStats(ctx context.Context) (*api.DBLatest, error) {
	var out api.DBLatest
	err := c.do(ctx, "GET", "/v1/stats/dbs", nil, &out)
	return &out, err
}

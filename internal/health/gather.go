package health

import (
	"context"
	"time"

	"github.com/marina-redis/marina/internal/api"
	"github.com/marina-redis/marina/internal/client"
)

// Gather asks the API (any node) for what Evaluate needs: the status, the
// databases (or just db) and the events.
func Gather(ctx context.Context, c *client.Client, db string) (Input, error) {
	in := Input{DB: db}
	st, err := c.Status(ctx)
	if err != nil {
		return in, err
	}
	in.Status = *st
	if db != "" {
		d, err := c.GetDB(ctx, db)
		if err != nil {
			return in, err
		}
		in.DBs = []api.DB{*d}
	} else if in.DBs, err = c.ListDBs(ctx); err != nil {
		return in, err
	}
	if in.Events, err = c.Events(ctx, db); err != nil {
		return in, err
	}
	in.Now = time.Now()
	return in, nil
}

package controller

import (
	"context"
	"regexp"
	"strings"
	"time"

	"github.com/marina-redis/marina/internal/state"
)

// nodeEventRE is the event types nodes may report (POST
// /v1/internal/event): their own doings, such as a hook that failed, never
// what the cluster decides (failover, fence...).
var nodeEventRE = regexp.MustCompile(`^hook-[a-z-]{1,26}$`)

// RecordEvent writes an event a node reports, for example a hook that still
// failed after its retries. The leader stamps the time.
func (c *Controller) RecordEvent(ctx context.Context, e state.Event) (uint64, error) {
	if !nodeEventRE.MatchString(e.Type) {
		return 0, errf(Invalid, "event type %q: nodes report hook-* events only", e.Type)
	}
	if err := state.ValidateNodeID(e.Node); err != nil {
		return 0, errf(Invalid, "event node: %v", err)
	}
	if _, ok := c.fsm.State().Nodes[e.Node]; !ok {
		return 0, errf(Invalid, "event node %s is not a member", e.Node)
	}
	// The database may be gone already (a failed delete hook): only its name is checked.
	if e.DB != "" {
		if err := state.ValidateName(e.DB); err != nil {
			return 0, errf(Invalid, "event db: %v", err)
		}
	}
	if e.Shard < 0 || e.Shard >= state.MaxShards {
		return 0, errf(Invalid, "event shard %d: must be 0..%d", e.Shard, state.MaxShards-1)
	}
	if len(e.Reason) > 2000 || strings.ContainsAny(e.Reason, "\x00") {
		return 0, errf(Invalid, "event reason: at most 2000 characters of text")
	}
	e.ID, e.Time, e.Instance, e.Epoch = 0, time.Now().UTC(), "", 0
	return c.apply(ctx, &state.AddEvent{Event: &e})
}

package agent

import (
	"context"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/redisconf"
	"github.com/marina-redis/marina/internal/redisctl"
)

// healthProbe pings the local instance every ProbeInterval.
type healthProbe struct {
	cancel  context.CancelFunc
	done    chan struct{}
	changed chan struct{}
}

func startHealthProbe(wk *worker, addr, secret string) *healthProbe {
	ctx, cancel := context.WithCancel(context.Background())
	hp := &healthProbe{cancel: cancel, done: make(chan struct{}), changed: make(chan struct{}, 1)}
	cfg := wk.a.cfg
	go func() {
		defer close(hp.done)
		c := redisctl.Client(cfg.Redis, addr, secret, cfg.ProbeTimeout, 1)
		defer c.Close()
		t := time.NewTimer(wk.a.probePace())
		defer t.Stop()
		for {
			start := time.Now()
			ok := alivePing(ctx, c, cfg.ProbeTimeout)
			if ctx.Err() != nil {
				return
			}
			changed := false
			wk.setStatus(func(s *Status) {
				changed = s.Healthy != ok
				s.Healthy = ok
				if ok {
					s.FailingSince = time.Time{}
				} else if s.FailingSince.IsZero() {
					s.FailingSince = start
				}
			})
			if changed {
				select {
				case hp.changed <- struct{}{}:
				default:
				}
			}
			t.Reset(wk.a.probePace())
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return hp
}

func (hp *healthProbe) stop() {
	hp.cancel()
	<-hp.done
}

// waitReady polls PING until the server answers (or is loading its data).
func waitReady(ctx context.Context, c *redis.Client, p *process) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && p.running() && ctx.Err() == nil {
		err := c.Ping(ctx).Err()
		if err == nil || strings.HasPrefix(err.Error(), "LOADING") {
			return
		}
		select {
		case <-time.After(5 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

// waitMaster returns once the master at addr accepts this database's
// internal user, or after max. Checking the secret, not just the port, skips
// a just-deleted database's server still holding a reused port.
func waitMaster(ctx context.Context, d *redisconf.Dialer, addr, secret string, max time.Duration) {
	c := redisctl.Client(d, addr, secret, 200*time.Millisecond, 1)
	defer c.Close()
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if c.Ping(ctx).Err() == nil {
			return
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

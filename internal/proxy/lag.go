package proxy

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/redisconf"
	"github.com/marina-redis/marina/internal/state"
	topo "github.com/marina-redis/marina/internal/topology"
)

// lagProber asks the replicas of databases that read from replicas how
// far behind they are.
type lagProber struct {
	redis   *redisconf.Dialer
	mu      sync.Mutex
	ok      map[string]bool
	clients map[string]*redis.Client
}

func newLagProber(d *redisconf.Dialer) *lagProber {
	return &lagProber{redis: d, ok: map[string]bool{}, clients: map[string]*redis.Client{}}
}

func (p *lagProber) inSync(addr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ok[addr]
}

func (p *lagProber) probe(ctx context.Context, st *state.State) {
	type target struct{ addr, secret string }
	var targets []target
	for _, db := range st.DBs {
		if db.ReadFrom != "replica" && db.ReadFrom != "any" {
			continue
		}
		for _, sh := range db.Shards {
			for _, in := range sh.Replicas() {
				if a := topo.Addr(st, in); a != "" {
					targets = append(targets, target{a, db.Secret})
				}
			}
		}
	}
	ok := map[string]bool{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, t := range targets {
		c := p.client(t.addr, t.secret)
		wg.Add(1)
		go func() {
			defer wg.Done()
			qctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			info, err := c.Info(qctx, "replication").Result()
			good := err == nil && topo.ParseLink(info).ServesReads()
			mu.Lock()
			ok[t.addr] = good
			mu.Unlock()
		}()
	}
	wg.Wait()
	p.mu.Lock()
	p.ok = ok
	for addr, c := range p.clients {
		if _, used := ok[addr]; !used {
			c.Close()
			delete(p.clients, addr)
		}
	}
	p.mu.Unlock()
}

func (p *lagProber) client(addr, secret string) *redis.Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.clients[addr]; ok {
		return c
	}
	o := p.redis.Internal(addr, secret, 200*time.Millisecond, 1)
	o.ReadTimeout, o.WriteTimeout = 0, 0 // go-redis defaults, as before
	c := redis.NewClient(o)
	p.clients[addr] = c
	return c
}

func (p *lagProber) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for a, c := range p.clients {
		c.Close()
		delete(p.clients, a)
	}
}

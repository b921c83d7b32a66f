package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/marina-redis/marina/internal/state"
)

// EventHookFailed is the type of the cluster event recorded when a hook
// still fails after its retries.
const EventHookFailed = "hook-failed"

// Defaults.
const (
	DefaultTimeout = 10 * time.Second
	DefaultRetries = 3
	DefaultBackoff = time.Second
	DefaultWorkers = 4
)

// Config is one node's hooks.
type Config struct {
	Node          string
	Exec          string        // shell command run for every change; empty: none
	Timeout       time.Duration // per attempt (0: DefaultTimeout)
	Retries       int           // attempts after the first
	Backoff       time.Duration // before the first retry, doubling (0: DefaultBackoff)
	HAProxyConfig string        // file the HAProxy backends are written to; empty: none
	HAProxyReload string        // shell command run after the file changed
	// RedisCA, when set, is the CA bundle of redis-servers that speak TLS
	// only: HAProxy backends reach them over TLS, verified with it.
	RedisCA string
	Workers int // exec hooks running at once, each for another database (0: DefaultWorkers)
	Log     *slog.Logger
	// Event records a cluster event (a hook failed after its retries); nil: logged only.
	Event func(ctx context.Context, e state.Event) error

	// Limits of the exec hook's failure events (0: FailureEvents,
	// FailureWindow); tests shorten them.
	failureEvents int
	failureWindow time.Duration
}

// Enabled says whether any hook is configured.
func (c Config) Enabled() bool { return c.Exec != "" || c.HAProxyConfig != "" }

// Validate checks the configuration; errors name the server flags.
func (c Config) Validate() error {
	if c.HAProxyReload != "" && c.HAProxyConfig == "" {
		return errors.New("--haproxy-reload needs --haproxy-config (the file whose changes it reloads)")
	}
	if c.Timeout < 0 || (c.Timeout > 0 && c.Timeout < 10*time.Millisecond) || c.Timeout > time.Hour {
		return fmt.Errorf("--hook-timeout %v: must be 10ms..1h", c.Timeout)
	}
	if c.Retries < 0 || c.Retries > 100 {
		return fmt.Errorf("--hook-retries %d: must be 0..100", c.Retries)
	}
	if (c.Exec != "" || c.HAProxyReload != "") && !executable(Shell) {
		return fmt.Errorf("hooks run with %s, which is missing", Shell)
	}
	if c.HAProxyConfig != "" {
		if strings.HasSuffix(c.HAProxyConfig, "/") {
			return fmt.Errorf("--haproxy-config %q: must name a file", c.HAProxyConfig)
		}
		dir := filepath.Dir(c.HAProxyConfig)
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return fmt.Errorf("--haproxy-config %s: directory %s does not exist", c.HAProxyConfig, dir)
		}
		if fi, err := os.Stat(c.HAProxyConfig); err == nil && fi.IsDir() {
			return fmt.Errorf("--haproxy-config %s: is a directory, must name a file", c.HAProxyConfig)
		}
	}
	return nil
}

func executable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

func (c *Config) defaults() {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Backoff == 0 {
		c.Backoff = DefaultBackoff
	}
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.failureEvents == 0 {
		c.failureEvents = FailureEvents
	}
	if c.failureWindow == 0 {
		c.failureWindow = FailureWindow
	}
}

// Source is the local copy of the state: state.FSM.
type Source interface {
	State() *state.State
	Changed() <-chan struct{}
	Events() *state.EventLog
}

// Run watches src and runs the hooks for every topology change until ctx
// ends; it returns once every hook goroutine has stopped (running commands
// are killed). Reading the state is the only thing it does in the FSM's
// reach: hooks run in goroutines of their own, coalesced per database (the
// latest topology wins, with the most telling kind: mergeKind), failovers
// and the like before the rest (laneOf), so they never hold up the FSM, the
// agent or a failover.
func Run(ctx context.Context, cfg Config, src Source) {
	cfg.defaults()
	log := cfg.Log.With("component", "hooks")
	ex := &Exec{Timeout: cfg.Timeout, Retries: cfg.Retries, Backoff: cfg.Backoff, Log: log}
	var wg sync.WaitGroup
	defer wg.Wait()
	var q *queue
	if cfg.Exec != "" {
		q = newQueue()
		fr := newFailureReporter(cfg, log)
		wg.Go(func() { fr.run(ctx) })
		for range cfg.Workers {
			wg.Go(func() { execWorker(ctx, cfg, ex, q, fr, log) })
		}
	}
	var hp *haproxyLoop
	if cfg.HAProxyConfig != "" {
		hp = &haproxyLoop{wake: make(chan struct{}, 1),
			w: &haproxyWriter{node: cfg.Node, path: cfg.HAProxyConfig, reload: cfg.HAProxyReload, caFile: cfg.RedisCA, exec: ex, needReload: true}}
		wg.Go(func() { hp.run(ctx, cfg, log) })
	}
	var snap Snapshot
	state.Watch(ctx, src, 0, func(st *state.State) {
		first := snap.Topo == nil
		next, changes := Diff(snap, st, src.Events().All())
		snap = next
		now := time.Now()
		for _, c := range changes {
			log.Info("topology change", "db", c.DB, "kind", c.Kind)
			if q != nil {
				q.put(c.DB, job{doc: NewDocument(c, cfg.Node, now)})
			}
		}
		if hp != nil && (first || len(changes) > 0) {
			topos := make([]Topology, 0, len(snap.Topo))
			for _, t := range snap.Topo {
				topos = append(topos, t)
			}
			hp.set(topos)
		}
	})
}

// execWorker runs the exec hook for one database at a time.
func execWorker(ctx context.Context, cfg Config, ex *Exec, q *queue, fr *failureReporter, log *slog.Logger) {
	for {
		db, j, ok := q.take(ctx)
		if !ok {
			return
		}
		kind := j.doc.Kind
		b, err := json.Marshal(j.doc)
		if err != nil {
			panic(err) // plain data types: cannot fail
		}
		res, err := ex.Run(ctx, "exec", cfg.Exec, append(b, '\n'), []string{"MARINA_DB=" + db, "MARINA_EVENT=" + kind},
			func() bool { return q.superseded(db) })
		q.done(db)
		switch {
		case err == nil, ctx.Err() != nil:
		case errors.Is(err, ErrSuperseded):
			log.Info("hook retries dropped: a newer document is waiting", "db", db, "event", kind)
		default:
			log.Error("hook gave up", "db", db, "event", kind, "exit", res.Exit, "err", err, "stderr", res.Stderr)
			fr.failed(db, fmt.Sprintf("exec hook for %s of %s: %v%s", kind, db, err, res.stderrSuffix()))
		}
	}
}

// report records a failure of the HAProxy hook as a cluster event.
func report(ctx context.Context, cfg Config, log *slog.Logger, db, reason string) {
	record(ctx, cfg, log, state.Event{Type: EventHookFailed, DB: db, Node: cfg.Node, Reason: reason})
}

// record records a hook failure as a cluster event. It is best effort: the
// failure is logged already, and without a leader no event can be written.
func record(ctx context.Context, cfg Config, log *slog.Logger, e state.Event) {
	if cfg.Event == nil {
		return
	}
	if len(e.Reason) > 1000 {
		e.Reason = e.Reason[:1000] + "..."
	}
	db := e.DB
	for attempt := 1; ; attempt++ {
		ectx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := cfg.Event(ectx, e)
		cancel()
		if err == nil || ctx.Err() != nil {
			return
		}
		if attempt == 3 {
			log.Warn("hook failure not recorded as an event", "db", db, "err", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// haproxyLoop writes the HAProxy file from its own goroutine, always for the
// latest topologies.
type haproxyLoop struct {
	w     *haproxyWriter
	mu    sync.Mutex
	topos []Topology
	wake  chan struct{} // capacity 1: pending work, coalesced
}

func (h *haproxyLoop) set(t []Topology) {
	h.mu.Lock()
	h.topos = t
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// haproxyRetry is when a failed write or reload is tried again without a
// new change.
const haproxyRetry = 30 * time.Second

func (h *haproxyLoop) run(ctx context.Context, cfg Config, log *slog.Logger) {
	var retry <-chan time.Time
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.wake:
		case <-retry:
		}
		h.mu.Lock()
		topos := h.topos
		h.mu.Unlock()
		changed, err := h.w.apply(ctx, topos)
		if ctx.Err() != nil {
			return
		}
		if changed {
			log.Info("haproxy config written", "path", h.w.path, "databases", len(topos))
		}
		if err == nil {
			failing, retry = false, nil
			continue
		}
		log.Error("haproxy hook failed", "path", h.w.path, "err", err)
		if !failing {
			// One event per run of failures, not one per retry.
			report(ctx, cfg, log, "", "haproxy hook: "+err.Error())
		}
		failing, retry = true, time.After(haproxyRetry)
	}
}

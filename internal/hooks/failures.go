package hooks

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/marina-redis/marina/internal/state"
)

// Limits of the hook-failed events of one node's exec hook. A broken hook
// fails for every database on every change: a node flap with a thousand
// databases would otherwise write a thousand events per node and push the
// failover events out of the bounded event log (state.MaxEvents), which
// `marina check` and the hooks' own diff read.
const (
	// FailureEvents is how many failures a window records one by one.
	FailureEvents = 5
	// FailureWindow: the failures past FailureEvents within it are summed up
	// in one event at its end.
	FailureWindow = 5 * time.Minute
)

// failureLimiter decides which exec hook failures become events: the
// first burst of a window one by one, the rest summed up in one event when
// the window ends. A run of failures longer than a window is then one
// summary per window; a window without failures ends the run, and the next
// failure opens a new window with a full burst. It is pure: the caller
// gives the time.
type failureLimiter struct {
	burst  int
	window time.Duration

	start time.Time // of the current window; zero: none yet
	sent  int       // failures recorded one by one in it
	held  map[string]int
	total int    // failures held, all databases
	last  string // reason of the last one held
}

// add says whether a failure at now is to be recorded as an event of its
// own; if not, it is held for the window's summary.
func (l *failureLimiter) add(now time.Time, db, reason string) bool {
	if l.start.IsZero() || (l.total == 0 && !now.Before(l.start.Add(l.window))) {
		l.start, l.sent = now, 0 // a new run of failures
	}
	if l.sent < l.burst {
		l.sent++
		return true
	}
	if l.held == nil {
		l.held = map[string]int{}
	}
	l.held[db]++
	l.total++
	l.last = reason
	return false
}

// due returns when the held failures are summed up; false while none are.
func (l *failureLimiter) due() (time.Time, bool) {
	return l.start.Add(l.window), l.total > 0
}

// summary returns the event summing up the held failures once the window
// ended at now. The next window starts then, with its burst spent: while
// the failures go on, one summary per window.
func (l *failureLimiter) summary(now time.Time, node string) (state.Event, bool) {
	end := l.start.Add(l.window)
	if l.total == 0 || now.Before(end) {
		return state.Event{}, false
	}
	dbs := make([]string, 0, len(l.held))
	for db := range l.held {
		dbs = append(dbs, db)
	}
	sort.Strings(dbs)
	e := state.Event{Type: EventHookFailed, Node: node}
	if len(dbs) == 1 {
		e.DB = dbs[0]
	}
	const names = 10
	list := strings.Join(dbs[:min(len(dbs), names)], ", ")
	if len(dbs) > names {
		list += fmt.Sprintf(" and %d more", len(dbs)-names)
	}
	e.Reason = fmt.Sprintf("exec hook failed for %s (%s) in %v, too many for an event each (the node's log has each): %s; last: %s",
		plural(len(dbs), "more database"), plural(l.total, "failure"), l.window, list, l.last)
	l.start, l.sent = end, l.burst
	l.held, l.total, l.last = nil, 0, ""
	return e, true
}

// failureReporter records exec hook failures as events, as the limiter
// allows, from a goroutine of its own: no worker waits for the leader.
type failureReporter struct {
	cfg  Config
	log  *slog.Logger
	now  func() time.Time
	wake chan struct{} // capacity 1

	mu  sync.Mutex
	lim failureLimiter
	out []state.Event // failures to record one by one
}

func newFailureReporter(cfg Config, log *slog.Logger) *failureReporter {
	return &failureReporter{cfg: cfg, log: log, now: time.Now, wake: make(chan struct{}, 1),
		lim: failureLimiter{burst: cfg.failureEvents, window: cfg.failureWindow}}
}

// failed reports one database's failure (already logged by the caller).
func (r *failureReporter) failed(db, reason string) {
	r.mu.Lock()
	one := r.lim.add(r.now(), db, reason)
	if one {
		r.out = append(r.out, state.Event{Type: EventHookFailed, DB: db, Node: r.cfg.Node, Reason: reason})
	}
	r.mu.Unlock()
	if !one {
		r.log.Warn("hook failure held for a summary event: too many failures for an event each", "db", db,
			"events", r.lim.burst, "window", r.lim.window)
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// run records the events until ctx ends.
func (r *failureReporter) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		r.mu.Lock()
		out := r.out
		r.out = nil
		now := r.now()
		sum, ok := r.lim.summary(now, r.cfg.Node)
		due, held := r.lim.due()
		total := r.lim.total
		r.mu.Unlock()
		if ok {
			out = append(out, sum)
		}
		for _, e := range out {
			record(ctx, r.cfg, r.log, e)
		}
		if held {
			timer.Reset(max(due.Sub(now), 0))
		} else {
			timer.Stop()
		}
		select {
		case <-ctx.Done():
			if held {
				r.log.Warn("hook failures not summed up in an event: shutting down", "failures", total)
			}
			return
		case <-r.wake:
		case <-timer.C:
		}
	}
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

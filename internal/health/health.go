// Package health turns the cluster as the API shows it into one Nagios
// verdict: an exit code (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN) and one
// status line with performance data. Evaluate is pure (views in, verdict
// out) so every case is table-tested; `marina check` only fetches the
// views and prints the line.
package health

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/marina-redis/marina/internal/agent"
	"github.com/marina-redis/marina/internal/api"
	"github.com/marina-redis/marina/internal/failover"
	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/timing"
)

// Nagios plugin exit codes.
const (
	OK       = 0
	Warning  = 1
	Critical = 2
	Unknown  = 3
)

// CodeName is the word Nagios expects after the service name.
func CodeName(code int) string {
	switch code {
	case OK:
		return "OK"
	case Warning:
		return "WARNING"
	case Critical:
		return "CRITICAL"
	default:
		return "UNKNOWN"
	}
}

// rank orders codes by severity as the monitoring-plugins guidelines do:
// OK < UNKNOWN < WARNING < CRITICAL.
func rank(code int) int {
	return map[int]int{OK: 0, Unknown: 1, Warning: 2, Critical: 3}[code]
}

// Worse returns the more severe of two codes.
func Worse(a, b int) int {
	if rank(b) > rank(a) {
		return b
	}
	return a
}

// Input is what the API answered.
type Input struct {
	Status api.Status    // GET /v1/status: leader and nodes
	DBs    []api.DB      // GET /v1/dbs, or just GET /v1/dbs/NAME
	Events []state.Event // GET /v1/events (failovers in progress, flap damping)
	Now    time.Time
	// DB, when set, limits the check to that database (node problems are
	// then only seen through its instances).
	DB string
}

// Limits are the thresholds.
type Limits struct {
	// FailoverCritical: a shard without a master is a failover in
	// progress (WARNING) for this long, CRITICAL after.
	FailoverCritical time.Duration
	// LagBytes: a replica further behind its master is WARNING (0: no check).
	LagBytes int64
	// MemoryRatio: used memory above this share of maxmemory is WARNING
	// for databases that do not evict (0: no check).
	MemoryRatio float64
	// Damping mirrors the servers' --flap-max, --flap-window, --flap-delay
	// and --flap-delay-max: a down master whose failover it holds is
	// WARNING, CRITICAL when the hold is longer than FailoverCritical.
	Damping failover.Damping
	// ProbeGrace: an instance whose agent's probes have failed this long
	// counts as not running (one slow probe is not an outage).
	ProbeGrace time.Duration
}

// DefaultLimits are the defaults of `marina check`.
func DefaultLimits() Limits {
	return Limits{FailoverCritical: 30 * time.Second, LagBytes: 16 << 20, MemoryRatio: 0.9, Damping: timing.Defaults().Damping(),
		ProbeGrace: 2 * time.Second}
}

// Problem is one finding.
type Problem struct {
	Code int
	Msg  string
}

// Result is the verdict.
type Result struct {
	Code     int
	Problems []Problem // most severe first
	Summary  string
	Perf     []string
}

// maxShown bounds the problems spelled out in the status line.
const maxShown = 5

// Line is the one status line: "MARINA OK - summary | perfdata".
func (r Result) Line() string {
	var parts []string
	for i, p := range r.Problems {
		if i == maxShown {
			parts = append(parts, fmt.Sprintf("%d more", len(r.Problems)-maxShown))
			break
		}
		parts = append(parts, p.Msg)
	}
	if r.Summary != "" {
		parts = append(parts, r.Summary)
	}
	line := "MARINA " + CodeName(r.Code) + " - " + clean(strings.Join(parts, "; "))
	if len(r.Perf) > 0 {
		line += " | " + strings.Join(r.Perf, " ")
	}
	return line
}

// clean keeps the text on one line and out of the perfdata ("|").
func clean(s string) string {
	return strings.ReplaceAll(strings.Join(strings.Fields(s), " "), "|", "/")
}

// UnknownResult is the verdict when the cluster could not be asked.
func UnknownResult(msg string) Result {
	return Result{Code: Unknown, Problems: []Problem{{Unknown, msg}}}
}

type eval struct {
	in       Input
	lim      Limits
	res      Result
	seen     map[string]bool
	nodeDown map[string]bool
}

// observed is an instance as far as can be known: the leader keeps the
// last report of a node that went silent, so an instance on a node marked
// down is taken as down whatever that report said.
// One that runs but has not answered its agent's probes for ProbeGrace
// (hung, stopped) is not serving either.
func (e *eval) observed(in api.Instance) api.Instance {
	if in.State != agent.StateRunning {
		return in
	}
	if e.nodeDown[in.Node] {
		in.State = "down (node down)"
	} else if in.FailingSince != nil && e.in.Now.Sub(*in.FailingSince) >= e.lim.ProbeGrace {
		in.State = fmt.Sprintf("not answering for %s", e.in.Now.Sub(*in.FailingSince).Round(time.Second))
	}
	return in
}

func (e *eval) add(code int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if e.seen[msg] {
		return
	}
	e.seen[msg] = true
	e.res.Problems = append(e.res.Problems, Problem{code, msg})
	e.res.Code = Worse(e.res.Code, code)
}

// Evaluate judges the cluster (or one database of it).
//
// CRITICAL: no Raft leader or too few voters up; a shard without a master
// for longer than FailoverCritical, or whose master does not run (or runs
// but does not answer) unless flap damping holds its failover for no longer
// than FailoverCritical; a database with fewer than half its instances
// running.
// WARNING: a node down or draining; a failover in progress; a down master
// whose failover flap damping holds (with the delay left); a shard that
// failed over more than the damping's free failovers within its window; a
// replica missing, not running, unlinked or lagging; memory above
// MemoryRatio of maxmemory (non-evicting databases); a master still
// converging to its role; instances still starting.
// UNKNOWN: no observed state (the answering node could not reach the
// leader), or the asked database does not exist.
func Evaluate(in Input, lim Limits) Result {
	e := &eval{in: in, lim: lim, seen: map[string]bool{}, nodeDown: map[string]bool{}}
	for _, n := range in.Status.Nodes {
		e.nodeDown[n.ID] = n.Status == state.NodeDown
	}
	dbs := in.DBs
	if in.DB != "" {
		dbs = nil
		for _, db := range in.DBs {
			if db.Name == in.DB {
				dbs = append(dbs, db)
			}
		}
		if len(dbs) == 0 {
			return UnknownResult(fmt.Sprintf("database %s not found", in.DB))
		}
	}
	e.cluster()
	st := dbStats{}
	for _, db := range dbs {
		e.db(db, &st)
	}
	sort.SliceStable(e.res.Problems, func(i, j int) bool { return rank(e.res.Problems[i].Code) > rank(e.res.Problems[j].Code) })

	up, nodes := 0, len(in.Status.Nodes)
	for _, n := range in.Status.Nodes {
		if n.Status == state.NodeUp {
			up++
		}
	}
	ready := 0
	for _, db := range dbs {
		if db.Status == api.DBReady {
			ready++
		}
	}
	if in.DB != "" {
		e.res.Summary = fmt.Sprintf("database %s %s, %d/%d shards with a master, %d/%d instances running",
			in.DB, dbs[0].Status, st.shardsOK, st.shards, st.running, st.instances)
	} else {
		e.res.Summary = fmt.Sprintf("%d/%d nodes up, %s, %d/%d shards with a master", up, nodes, plural(len(dbs), "database"), st.shardsOK, st.shards)
	}
	memPct := int64(st.memRatio * 100)
	e.res.Perf = []string{
		fmt.Sprintf("nodes_up=%d;;;0;%d", up, nodes),
		fmt.Sprintf("dbs=%d;;;0", len(dbs)),
		fmt.Sprintf("dbs_ready=%d;;;0;%d", ready, len(dbs)),
		fmt.Sprintf("shards_with_master=%d;;;0;%d", st.shardsOK, st.shards),
		fmt.Sprintf("instances_running=%d;;;0;%d", st.running, st.instances),
		fmt.Sprintf("memory_used_max=%d%%;%d;;0;100", memPct, int64(lim.MemoryRatio*100)),
		fmt.Sprintf("replica_lag_max=%dB;%d;;0", st.maxLag, lim.LagBytes),
	}
	return e.res
}

func (e *eval) cluster() {
	s := e.in.Status
	if s.Leader == "" {
		e.add(Critical, "no Raft leader: the cluster has no quorum (answered by %s)", orDash(s.ServedBy))
	}
	voters, votersUp := 0, 0
	for _, n := range s.Nodes {
		if n.Voter {
			voters++
			if n.Status == state.NodeUp {
				votersUp++
			}
		}
	}
	if s.Leader != "" && voters > 0 && votersUp*2 <= voters {
		e.add(Critical, "only %d/%d Raft voters up: no quorum", votersUp, voters)
	}
	if e.in.DB != "" {
		return
	}
	for _, n := range s.Nodes {
		switch {
		case n.Status != state.NodeUp:
			since := ""
			if n.LastSeen != nil {
				since = fmt.Sprintf(" (last seen %s ago)", e.in.Now.Sub(*n.LastSeen).Round(time.Second))
			}
			e.add(Warning, "node %s %s%s", n.ID, n.Status, since)
		case n.Draining:
			e.add(Warning, "node %s draining", n.ID)
		}
	}
}

type dbStats struct {
	shards, shardsOK   int
	instances, running int
	memRatio           float64
	maxLag             int64
}

func (e *eval) db(db api.DB, st *dbStats) {
	if db.Status == api.DBUnknown {
		st.shards += len(db.Shards)
		for _, sh := range db.Shards {
			st.instances += len(sh.Replicas)
			if sh.Master.ID != "" {
				st.instances++
			}
		}
		if e.in.Status.Leader != "" {
			// Only the leader holds the agents' reports.
			e.add(Unknown, "no observed state: %s could not reach leader %s", orDash(e.in.Status.ServedBy), e.in.Status.Leader)
		}
		return
	}
	starting := db.Status == api.DBProvisioning
	total, running := 0, 0
	for _, sh := range db.Shards {
		st.shards++
		where := fmt.Sprintf("%s shard %d", db.Name, sh.Index)
		m := e.observed(sh.Master)
		masterOK := false
		fl := e.flapOf(db.Name, sh.Index)
		switch {
		case m.ID == "":
			since, known := e.pendingSince(db.Name, sh.Index)
			age := e.in.Now.Sub(since)
			switch {
			case known && age < e.lim.FailoverCritical:
				e.add(Warning, "%s: failover in progress for %s", where, age.Round(100*time.Millisecond))
			case known:
				e.add(Critical, "%s has no master: failover pending for %s", where, age.Round(time.Second))
			default:
				e.add(Critical, "%s has no master", where)
			}
		default:
			total++
			if m.State == agent.StateRunning {
				running++
			}
			switch {
			case m.State != agent.StateRunning && starting && isStarting(m.State):
				e.add(Warning, "%s: master %s on %s %s", where, m.ID, m.Node, m.State)
			case m.State != agent.StateRunning && fl.wait > 0:
				// Flap damping holds its failover: the shard gets a master
				// when the delay ends (or when this one comes back).
				start := e.in.Now
				if !fl.heldAt.IsZero() && fl.heldAt.Before(start) {
					start = fl.heldAt
				}
				total := e.in.Now.Add(fl.wait).Sub(start)
				code := Warning
				if total > e.lim.FailoverCritical {
					code = Critical
				}
				e.add(code, "%s: master %s on %s %s; failover %s, %s left", where, m.ID, m.Node, m.State,
					failover.Held(total, fl.nth, e.lim.Damping.Window), fl.wait.Round(time.Second))
				fl.reported = true
			case m.State != agent.StateRunning:
				e.add(Critical, "%s: master %s on %s %s", where, m.ID, m.Node, m.State)
			case m.ObservedRole != state.RoleMaster:
				// The agent converges roles within a heartbeat or two
				// (switchover, restart); a lasting mismatch stays visible.
				e.add(Warning, "%s: master %s on %s runs as %s", where, m.ID, m.Node, orDash(m.ObservedRole))
			default:
				masterOK = true
				st.shardsOK++
			}
		}
		if n := len(sh.Replicas); n < db.Replicas {
			e.add(Warning, "%s has %d of %d replicas", where, n, db.Replicas)
		}
		for _, r := range sh.Replicas {
			r = e.observed(r)
			total++
			switch {
			case r.State != agent.StateRunning:
				e.add(Warning, "%s: replica %s on %s %s", where, r.ID, r.Node, r.State)
			case r.ObservedRole != state.RoleReplica:
				e.add(Warning, "%s: replica %s on %s runs as %s", where, r.ID, r.Node, orDash(r.ObservedRole))
			case !r.LinkUp:
				e.add(Warning, "%s: replica %s on %s has its link to the master down", where, r.ID, r.Node)
			}
			if r.State == agent.StateRunning {
				running++
				if masterOK && r.LinkUp {
					lag := max(m.Offset-r.Offset, 0)
					st.maxLag = max(st.maxLag, lag)
					if e.lim.LagBytes > 0 && lag > e.lim.LagBytes {
						e.add(Warning, "%s: replica %s on %s lags %d bytes behind", where, r.ID, r.Node, lag)
					}
				}
			}
		}
		e.memory(db, sh, where, st)
		e.damping(fl, masterOK, where)
	}
	st.instances += total
	st.running += running
	if total > 0 && running*2 < total {
		e.add(Critical, "%s: only %d/%d instances running", db.Name, running, total)
	}
}

// isStarting: states an instance passes through right after a change.
func isStarting(s string) bool {
	return s == api.StatePending || s == agent.StateStarting || s == agent.StateLoading
}

func (e *eval) memory(db api.DB, sh api.Shard, where string, st *dbStats) {
	if db.Memory <= 0 {
		return
	}
	worst, who := 0.0, api.Instance{}
	for _, in := range append([]api.Instance{sh.Master}, sh.Replicas...) {
		if in = e.observed(in); in.ID == "" || in.State != agent.StateRunning {
			continue
		}
		if r := float64(in.UsedMemory) / float64(db.Memory); r > worst {
			worst, who = r, in
		}
	}
	st.memRatio = max(st.memRatio, worst)
	// A full cache that evicts is working as intended.
	evicts := db.Eviction != "" && db.Eviction != "noeviction"
	if e.lim.MemoryRatio > 0 && worst > e.lim.MemoryRatio && !evicts {
		e.add(Warning, "%s: %s on %s uses %d%% of maxmemory", where, who.ID, who.Node, int64(worst*100))
	}
}

// pendingSince finds when the shard's failover in progress began: its
// last failover-started event not followed by a promotion.
func (e *eval) pendingSince(db string, shard int) (time.Time, bool) {
	var since time.Time
	open := false
	for _, ev := range e.in.Events {
		if ev.DB != db || ev.Shard != shard {
			continue
		}
		switch ev.Type {
		case "failover-started":
			since, open = ev.Time, true
		case "failover", "switchover":
			open = false
		}
	}
	return since, open
}

// flap is what flap damping does to one shard, as the events show it.
type flap struct {
	failovers []time.Time   // the shard's failovers
	heldAt    time.Time     // its last failover-damped event not followed by a failover
	wait      time.Duration // how long a failover would still be held now
	nth       int           // which failover within the window it would be
	reported  bool          // a held failover was reported with the master
}

func (e *eval) flapOf(db string, shard int) flap {
	var f flap
	for _, ev := range e.in.Events {
		if ev.DB != db || ev.Shard != shard {
			continue
		}
		switch ev.Type {
		case "failover":
			f.failovers = append(f.failovers, ev.Time)
			f.heldAt = time.Time{}
		case "failover-damped":
			f.heldAt = ev.Time
		}
	}
	f.wait, f.nth = e.lim.Damping.Hold(f.failovers, e.in.Now)
	return f
}

// damping warns about a shard that flaps: more failovers within the window
// than the damping lets through at once (its next one is spaced), or a
// failover damping held that never happened (its master came back).
func (e *eval) damping(f flap, masterOK bool, where string) {
	d := e.lim.Damping
	if f.reported {
		return
	}
	if k := f.nth - 1; d.Delay > 0 && k >= d.Free {
		left := ""
		if f.wait > 0 {
			left = fmt.Sprintf(", %s from now", f.wait.Round(time.Second))
		}
		e.add(Warning, "%s: %d failovers within %s: flap damping spaces the next one %s after the last%s",
			where, k, d.Window, d.Spacing(k), left)
		return
	}
	if masterOK && !f.heldAt.IsZero() && e.in.Now.Sub(f.heldAt) < d.Window {
		e.add(Warning, "%s: flap damping held a failover %s ago; its master came back in place", where, e.in.Now.Sub(f.heldAt).Round(time.Second))
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

package sentinel

import (
	"crypto/sha1"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/topology"
)

// Pure functions from the desired state to what Sentinel clients expect:
// master names, addresses and the field/value lists of SENTINEL MASTER,
// REPLICAS and SENTINELS. No sockets here, so they are table-tested.

// Resolve finds the shard a master name stands for: a database's name is its
// shard 0, NAME-i is shard i. An exact database name wins over NAME-i, so a
// database called "orders-1" is never shadowed by shard 1 of "orders".
func Resolve(st *state.State, name string) (db *state.Database, shard int, ok bool) {
	if d, ok := st.DBs[name]; ok {
		if len(d.Shards) == 0 {
			return nil, 0, false
		}
		return d, 0, true
	}
	i := strings.LastIndexByte(name, '-')
	if i <= 0 || i == len(name)-1 {
		return nil, 0, false
	}
	suffix := name[i+1:]
	if len(suffix) > 3 || (len(suffix) > 1 && suffix[0] == '0') {
		return nil, 0, false // one spelling per shard: "orders-01" is not shard 1
	}
	n, err := strconv.Atoi(suffix)
	if err != nil || n < 0 {
		return nil, 0, false
	}
	d, ok := st.DBs[name[:i]]
	if !ok || n >= len(d.Shards) {
		return nil, 0, false
	}
	return d, n, true
}

// Entry is one master name and the shard it resolves to.
type Entry struct {
	Name  string
	DB    *state.Database
	Shard int
}

// NamesOf lists the names that resolve to a shard of db: NAME and NAME-0 for
// shard 0, NAME-i for the others (those shadowed by another database's exact
// name are left out).
func NamesOf(st *state.State, db *state.Database, shard int) []string {
	cands := []string{fmt.Sprintf("%s-%d", db.Name, shard)}
	if shard == 0 {
		cands = []string{db.Name, db.Name + "-0"}
	}
	var out []string
	for _, n := range cands {
		if d, s, ok := Resolve(st, n); ok && d.Name == db.Name && s == shard {
			out = append(out, n)
		}
	}
	return out
}

// Entries lists every master name the scope may see, sorted by database and
// shard: what SENTINEL MASTERS and INFO show. Clients such as redis-py look
// their name up in SENTINEL MASTERS, so both NAME and NAME-0 are listed.
func Entries(st *state.State, sc Scope) []Entry {
	var out []Entry
	for _, name := range st.DBNames() {
		if !sc.Allows(name) {
			continue
		}
		db := st.DBs[name]
		for i := range db.Shards {
			for _, n := range NamesOf(st, db, i) {
				out = append(out, Entry{Name: n, DB: db, Shard: i})
			}
		}
	}
	return out
}

// Scope is what an authenticated connection may see.
type Scope struct {
	All bool            // the cluster API token: every database
	DBs map[string]bool // database passwords: those databases
}

// Allows says whether the scope covers a database.
func (s Scope) Allows(db string) bool { return s.All || s.DBs[db] }

// Authenticate maps a password to a scope: the API token (compared through
// the hash the state keeps) sees all databases, a database password sees
// the databases with that password. ok is false for neither.
func Authenticate(st *state.State, password string, hashToken func(string) string) (Scope, bool) {
	if password == "" {
		return Scope{}, false
	}
	if st.TokenHash != "" && hashToken != nil &&
		subtle.ConstantTimeCompare([]byte(hashToken(password)), []byte(st.TokenHash)) == 1 {
		return Scope{All: true}, true
	}
	sc := Scope{DBs: map[string]bool{}}
	for name, db := range st.DBs {
		if db.Password != "" && subtle.ConstantTimeCompare([]byte(db.Password), []byte(password)) == 1 {
			sc.DBs[name] = true
		}
	}
	return sc, len(sc.DBs) > 0
}

// RunID is a stable 40-hex id in the shape of Redis's run_id, for an
// instance or (prefixed) a node's sentinel.
func RunID(id string) string {
	h := sha1.Sum([]byte("marina/" + id))
	return hex.EncodeToString(h[:])
}

// Env is what the views need besides the state.
type Env struct {
	Self      string        // this node's id
	DownAfter time.Duration // shown as down-after-milliseconds
}

// MasterAddr is the shard's master as host and port; ok is false while the
// shard is failing over (Pending) or has no master: clients get a null
// reply and retry.
func MasterAddr(st *state.State, db *state.Database, shard int) (host string, port int, ok bool) {
	m, ok := topology.ServingMaster(db.Shards[shard])
	if !ok {
		return "", 0, false
	}
	n, ok := st.Nodes[m.Node]
	if !ok {
		return "", 0, false
	}
	return n.Addr, m.Port, true
}

func instAddr(st *state.State, in state.Instance) (string, int) {
	if n, ok := st.Nodes[in.Node]; ok {
		return n.Addr, in.Port
	}
	return "", in.Port
}

// Sentinel is another node's sentinel endpoint.
type Sentinel struct {
	NodeID string
	Host   string
	Port   int
	Down   bool
}

// Others lists the sentinels of the other nodes, by node id.
func Others(st *state.State, self string) []Sentinel {
	var out []Sentinel
	for _, id := range st.NodeIDs() {
		n := st.Nodes[id]
		if id == self || n.SentinelAddr == "" {
			continue
		}
		h, p, err := net.SplitHostPort(n.SentinelAddr)
		port, perr := strconv.Atoi(p)
		if err != nil || perr != nil {
			continue
		}
		out = append(out, Sentinel{NodeID: id, Host: h, Port: port, Down: n.Status == state.NodeDown})
	}
	return out
}

// Status is a master's status as INFO shows it: ok, sdown (its node is
// down) or odown (failing over: no master in the state).
func Status(st *state.State, db *state.Database, shard int) string {
	m, ok := topology.ServingMaster(db.Shards[shard])
	switch {
	case !ok:
		return "odown"
	case topology.NodeDown(st, m.Node):
		return "sdown"
	}
	return "ok"
}

// shownMaster is the instance shown as the master: the master, or during a
// failover the demoted one, as a real sentinel shows the old master until
// the switch.
func shownMaster(db *state.Database, shard int) (state.Instance, bool) {
	sh := db.Shards[shard]
	if m, ok := sh.Master(); ok {
		return m, true
	}
	if sh.Pending != nil {
		for _, in := range sh.Instances {
			if in.ID == sh.Pending.Old {
				return in, true
			}
		}
	}
	return state.Instance{}, false
}

func itoa(n int) string { return strconv.Itoa(n) }

// MasterFields is one master as SENTINEL MASTER shows it: field, value, ...
// in real redis-sentinel's order, numbers as decimal strings (redis-py
// converts them with int()).
func MasterFields(st *state.State, env Env, name string, db *state.Database, shard int) []string {
	sh := db.Shards[shard]
	m, _ := shownMaster(db, shard)
	host, port := instAddr(st, m)
	flags := "master"
	switch Status(st, db, shard) {
	case "odown":
		flags = "master,s_down,o_down,failover_in_progress"
	case "sdown":
		flags = "master,s_down"
	}
	others := len(Others(st, env.Self))
	return []string{
		"name", name,
		"ip", host,
		"port", itoa(port),
		"runid", RunID(m.ID),
		"flags", flags,
		"link-pending-commands", "0",
		"link-refcount", "1",
		"last-ping-sent", "0",
		"last-ok-ping-reply", "0",
		"last-ping-reply", "0",
		"down-after-milliseconds", strconv.FormatInt(env.DownAfter.Milliseconds(), 10),
		"info-refresh", "0",
		"role-reported", "master",
		"role-reported-time", "0",
		"config-epoch", strconv.FormatUint(sh.Epoch, 10),
		"num-slaves", itoa(len(sh.Replicas())),
		"num-other-sentinels", itoa(others),
		"quorum", itoa((others+1)/2 + 1),
		"failover-timeout", "180000",
		"parallel-syncs", "1",
	}
}

// ReplicaFields lists a shard's replicas as SENTINEL REPLICAS shows them.
// A replica on a down node is flagged s_down, which clients skip.
func ReplicaFields(st *state.State, env Env, db *state.Database, shard int) [][]string {
	sh := db.Shards[shard]
	mhost, mport, mok := MasterAddr(st, db, shard)
	if !mok {
		mhost, mport = "?", 0
	}
	var out [][]string
	for _, r := range sh.Replicas() {
		if sh.Pending != nil && r.ID == sh.Pending.Old {
			continue // shown as the master until the switch
		}
		host, port := instAddr(st, r)
		flags, link := "slave", "ok"
		if topology.NodeDown(st, r.Node) {
			flags, link = "slave,s_down", "err"
		} else if !mok {
			link = "err"
		}
		out = append(out, []string{
			"name", net.JoinHostPort(host, itoa(port)),
			"ip", host,
			"port", itoa(port),
			"runid", RunID(r.ID),
			"flags", flags,
			"link-pending-commands", "0",
			"link-refcount", "1",
			"last-ping-sent", "0",
			"last-ok-ping-reply", "0",
			"last-ping-reply", "0",
			"down-after-milliseconds", strconv.FormatInt(env.DownAfter.Milliseconds(), 10),
			"info-refresh", "0",
			"role-reported", "slave",
			"role-reported-time", "0",
			"master-link-down-time", "0",
			"master-link-status", link,
			"master-host", mhost,
			"master-port", itoa(mport),
			"slave-priority", itoa(st.Priority(r.Node)),
			"slave-repl-offset", "0",
			"replica-announced", "1",
		})
	}
	return out
}

// SentinelFields lists the other nodes' sentinels as SENTINEL SENTINELS
// shows them; clients add their ip:port to the sentinels they try.
func SentinelFields(st *state.State, env Env) [][]string {
	var out [][]string
	for _, s := range Others(st, env.Self) {
		flags := "sentinel"
		if s.Down {
			flags = "sentinel,s_down"
		}
		id := RunID("sentinel/" + s.NodeID)
		out = append(out, []string{
			"name", id,
			"ip", s.Host,
			"port", itoa(s.Port),
			"runid", id,
			"flags", flags,
			"link-pending-commands", "0",
			"link-refcount", "1",
			"last-ping-sent", "0",
			"last-ok-ping-reply", "0",
			"last-ping-reply", "0",
			"down-after-milliseconds", strconv.FormatInt(env.DownAfter.Milliseconds(), 10),
			"last-hello-message", "0",
			"voted-leader", "?",
			"voted-leader-epoch", "0",
		})
	}
	return out
}

// InfoSentinel is the "# Sentinel" section of INFO.
func InfoSentinel(st *state.State, env Env, sc Scope) string {
	entries := Entries(st, sc)
	sentinels := len(Others(st, env.Self)) + 1
	var b strings.Builder
	fmt.Fprintf(&b, "# Sentinel\r\nsentinel_masters:%d\r\nsentinel_tilt:0\r\nsentinel_tilt_since_seconds:-1\r\n", len(entries))
	b.WriteString("sentinel_running_scripts:0\r\nsentinel_scripts_queue_length:0\r\nsentinel_simulate_failure_flags:0\r\n")
	for i, e := range entries {
		addr := ""
		if m, ok := shownMaster(e.DB, e.Shard); ok {
			h, p := instAddr(st, m)
			addr = net.JoinHostPort(h, itoa(p))
		}
		fmt.Fprintf(&b, "master%d:name=%s,status=%s,address=%s,slaves=%d,sentinels=%d\r\n",
			i, e.Name, Status(st, e.DB, e.Shard), addr, len(e.DB.Shards[e.Shard].Replicas()), sentinels)
	}
	return b.String()
}

// ShardKey names one shard.
type ShardKey struct {
	DB    string
	Shard int
}

// Masters is every shard's master address (host:port), "" while it has none.
func Masters(st *state.State) map[ShardKey]string {
	out := map[ShardKey]string{}
	for name, db := range st.DBs {
		for i := range db.Shards {
			addr := ""
			if h, p, ok := MasterAddr(st, db, i); ok {
				addr = net.JoinHostPort(h, itoa(p))
			}
			out[ShardKey{name, i}] = addr
		}
	}
	return out
}

// Switch is one shard whose master moved.
type Switch struct {
	ShardKey
	Old, New string // host:port
}

// Switches compares the last known master of every shard with the current
// ones. The last known master is kept while a shard has none (failing
// over), so the switch is announced from the old master to the new one once
// the promotion is in the state. A new shard announces nothing; a deleted
// one is forgotten. It returns the switches, sorted, and the next "last".
func Switches(last, cur map[ShardKey]string) ([]Switch, map[ShardKey]string) {
	next := make(map[ShardKey]string, len(cur))
	var out []Switch
	for k, addr := range cur {
		prev, known := last[k]
		switch {
		case addr == "":
			if known {
				next[k] = prev
			} else {
				next[k] = ""
			}
		default:
			next[k] = addr
			if known && prev != "" && prev != addr {
				out = append(out, Switch{ShardKey: k, Old: prev, New: addr})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].DB != out[j].DB {
			return out[i].DB < out[j].DB
		}
		return out[i].Shard < out[j].Shard
	})
	return out, next
}

// Payload is the +switch-master message for one name:
// "<name> <oldip> <oldport> <newip> <newport>".
func (s Switch) Payload(name string) string {
	oh, op, _ := net.SplitHostPort(s.Old)
	nh, np, _ := net.SplitHostPort(s.New)
	return strings.Join([]string{name, oh, op, nh, np}, " ")
}

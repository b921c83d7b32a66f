package sentinel

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/marina-redis/marina/internal/state"
)

func hashTok(s string) string { return "h:" + s }

// testState: nodes n1..n3 (n3 has no sentinel), "orders" with 2 shards of
// master + replica, "cache" with one shard and no replica.
func testState() *state.State {
	st := state.New()
	st.TokenHash = hashTok("the-token")
	for i, id := range []string{"n1", "n2", "n3"} {
		n := &state.Node{ID: id, Addr: "127.0.0." + string(rune('1'+i)), Status: state.NodeUp}
		if id != "n3" {
			n.SentinelAddr = n.Addr + ":26379"
		}
		st.Nodes[id] = n
	}
	st.DBs["orders"] = &state.Database{Spec: state.Spec{Name: "orders", Password: "orders-pw", Shards: 2}, Shards: []state.Shard{
		{Index: 0, Epoch: 3, Instances: []state.Instance{{ID: "orders-0-aaaaaa", Node: "n1", Port: 7100, Role: state.RoleMaster},
			{ID: "orders-0-bbbbbb", Node: "n2", Port: 7100, Role: state.RoleReplica}}},
		{Index: 1, Instances: []state.Instance{{ID: "orders-1-cccccc", Node: "n2", Port: 7101, Role: state.RoleMaster},
			{ID: "orders-1-dddddd", Node: "n3", Port: 7100, Role: state.RoleReplica}}},
	}}
	st.DBs["cache"] = &state.Database{Spec: state.Spec{Name: "cache", Password: "cache-pw", Shards: 1}, Shards: []state.Shard{
		{Index: 0, Instances: []state.Instance{{ID: "cache-0-eeeeee", Node: "n3", Port: 7105, Role: state.RoleMaster}}},
	}}
	return st
}

func TestResolve(t *testing.T) {
	st := testState()
	shadow := testState()
	shadow.DBs["orders-1"] = &state.Database{Spec: state.Spec{Name: "orders-1"}, Shards: []state.Shard{{Index: 0}}}
	cases := []struct {
		st        *state.State
		name      string
		db        string
		shard     int
		ok        bool
		wantNames []string // NamesOf the resolved shard
	}{
		{st, "orders", "orders", 0, true, []string{"orders", "orders-0"}},
		{st, "orders-0", "orders", 0, true, []string{"orders", "orders-0"}},
		{st, "orders-1", "orders", 1, true, []string{"orders-1"}},
		{st, "orders-2", "", 0, false, nil},
		{st, "orders-01", "", 0, false, nil},
		{st, "orders-", "", 0, false, nil},
		{st, "orders--1", "", 0, false, nil},
		{st, "-1", "", 0, false, nil},
		{st, "cache", "cache", 0, true, []string{"cache", "cache-0"}},
		{st, "cache-0", "cache", 0, true, []string{"cache", "cache-0"}},
		{st, "cache-1", "", 0, false, nil},
		{st, "nope", "", 0, false, nil},
		{st, "", "", 0, false, nil},
		{st, "orders-99999999999999999999", "", 0, false, nil},
		// An exact database name wins: shard 1 of orders loses its NAME-1.
		{shadow, "orders-1", "orders-1", 0, true, []string{"orders-1", "orders-1-0"}},
	}
	for _, c := range cases {
		db, shard, ok := Resolve(c.st, c.name)
		if ok != c.ok || (ok && (db.Name != c.db || shard != c.shard)) {
			t.Errorf("Resolve(%q) = %v %d %v, want %s %d %v", c.name, db, shard, ok, c.db, c.shard, c.ok)
			continue
		}
		if ok {
			if got := NamesOf(c.st, db, shard); !reflect.DeepEqual(got, c.wantNames) {
				t.Errorf("NamesOf(%q) = %v, want %v", c.name, got, c.wantNames)
			}
		}
	}
	if got := NamesOf(shadow, shadow.DBs["orders"], 1); got != nil {
		t.Errorf("shadowed shard names %v", got)
	}
}

func TestAuthenticateAndEntries(t *testing.T) {
	st := testState()
	st.DBs["twin"] = &state.Database{Spec: state.Spec{Name: "twin", Password: "cache-pw"}, Shards: []state.Shard{{}}}
	cases := []struct {
		pw    string
		ok    bool
		names string
	}{
		{"the-token", true, "cache cache-0 orders orders-0 orders-1 twin twin-0"},
		{"orders-pw", true, "orders orders-0 orders-1"},
		{"cache-pw", true, "cache cache-0 twin twin-0"}, // two databases share it
		{"wrong", false, ""},
		{"", false, ""},
		{"h:the-token", false, ""}, // the hash itself is no password
	}
	for _, c := range cases {
		sc, ok := Authenticate(st, c.pw, hashTok)
		if ok != c.ok {
			t.Errorf("Authenticate(%q) ok=%v", c.pw, ok)
			continue
		}
		var names []string
		for _, e := range Entries(st, sc) {
			names = append(names, e.Name)
		}
		if got := strings.Join(names, " "); ok && got != c.names {
			t.Errorf("Authenticate(%q) sees %q, want %q", c.pw, got, c.names)
		}
	}
}

// fields turns a field/value list into a map, checking it is pairs.
func fields(t *testing.T, kv []string) map[string]string {
	t.Helper()
	if len(kv)%2 != 0 {
		t.Fatalf("odd field list %v", kv)
	}
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		if _, dup := m[kv[i]]; dup {
			t.Fatalf("duplicate field %s", kv[i])
		}
		m[kv[i]] = kv[i+1]
	}
	return m
}

func TestMasterFields(t *testing.T) {
	env := Env{Self: "n1", DownAfter: 1500 * time.Millisecond}
	down := testState()
	down.Nodes["n1"].Status = state.NodeDown
	pending := testState()
	sh := &pending.DBs["orders"].Shards[0]
	sh.Instances[0].Role = state.RoleReplica
	sh.Pending = &state.Pending{Old: "orders-0-aaaaaa"}
	cases := []struct {
		name   string
		st     *state.State
		want   map[string]string
		status string
	}{
		{"healthy", testState(), map[string]string{"name": "orders", "ip": "127.0.0.1", "port": "7100", "flags": "master",
			"role-reported": "master", "num-slaves": "1", "num-other-sentinels": "1", "quorum": "2", "config-epoch": "3",
			"down-after-milliseconds": "1500"}, "ok"},
		{"node down", down, map[string]string{"ip": "127.0.0.1", "port": "7100", "flags": "master,s_down"}, "sdown"},
		// Mid-failover the old master is shown, flagged, as redis-sentinel does.
		{"failing over", pending, map[string]string{"ip": "127.0.0.1", "port": "7100",
			"flags": "master,s_down,o_down,failover_in_progress", "num-slaves": "2"}, "odown"},
	}
	for _, c := range cases {
		db := c.st.DBs["orders"]
		got := fields(t, MasterFields(c.st, env, "orders", db, 0))
		for k, v := range c.want {
			if got[k] != v {
				t.Errorf("%s: %s = %q, want %q", c.name, k, got[k], v)
			}
		}
		for _, k := range []string{"runid", "link-pending-commands", "last-ping-sent", "info-refresh", "role-reported-time",
			"failover-timeout", "parallel-syncs"} {
			if _, ok := got[k]; !ok {
				t.Errorf("%s: no field %s", c.name, k)
			}
		}
		if len(got["runid"]) != 40 {
			t.Errorf("runid %q", got["runid"])
		}
		if s := Status(c.st, db, 0); s != c.status {
			t.Errorf("%s: status %s, want %s", c.name, s, c.status)
		}
		_, _, ok := MasterAddr(c.st, db, 0)
		if ok != (c.status != "odown") {
			t.Errorf("%s: MasterAddr ok=%v", c.name, ok)
		}
	}
}

func TestReplicaFields(t *testing.T) {
	env := Env{Self: "n1", DownAfter: time.Second}
	st := testState()
	st.Nodes["n3"].Status = state.NodeDown
	st.ZonePriority = map[string]int{"b": 0}
	st.Nodes["n2"].Zone = "b"
	cases := []struct {
		shard int
		want  []map[string]string
	}{
		{0, []map[string]string{{"name": "127.0.0.2:7100", "ip": "127.0.0.2", "port": "7100", "flags": "slave", "master-link-status": "ok",
			"master-host": "127.0.0.1", "master-port": "7100", "slave-priority": "0", "role-reported": "slave"}}},
		{1, []map[string]string{{"ip": "127.0.0.3", "port": "7100", "flags": "slave,s_down", "master-link-status": "err",
			"master-host": "127.0.0.2", "master-port": "7101", "slave-priority": "100"}}},
	}
	for _, c := range cases {
		rows := ReplicaFields(st, env, st.DBs["orders"], c.shard)
		if len(rows) != len(c.want) {
			t.Fatalf("shard %d: %d replicas", c.shard, len(rows))
		}
		for i, r := range rows {
			got := fields(t, r)
			for k, v := range c.want[i] {
				if got[k] != v {
					t.Errorf("shard %d replica %d: %s = %q, want %q", c.shard, i, k, got[k], v)
				}
			}
		}
	}
	// During a failover the demoted master is not offered as a replica.
	sh := &st.DBs["orders"].Shards[0]
	sh.Instances[0].Role = state.RoleReplica
	sh.Pending = &state.Pending{Old: "orders-0-aaaaaa"}
	rows := ReplicaFields(st, env, st.DBs["orders"], 0)
	if len(rows) != 1 || fields(t, rows[0])["master-host"] != "?" || fields(t, rows[0])["master-link-status"] != "err" {
		t.Fatalf("replicas mid-failover: %v", rows)
	}
}

func TestSentinelFields(t *testing.T) {
	st := testState()
	st.Nodes["n2"].Status = state.NodeDown
	rows := SentinelFields(st, Env{Self: "n1"})
	if len(rows) != 1 {
		t.Fatalf("sentinels %v", rows) // n1 is self, n3 has none
	}
	got := fields(t, rows[0])
	if got["ip"] != "127.0.0.2" || got["port"] != "26379" || got["flags"] != "sentinel,s_down" || got["runid"] != RunID("sentinel/n2") || got["name"] != got["runid"] {
		t.Fatalf("sentinel fields %v", got)
	}
}

func TestInfoSentinel(t *testing.T) {
	st := testState()
	sc, _ := Authenticate(st, "orders-pw", hashTok)
	got := InfoSentinel(st, Env{Self: "n1"}, sc)
	for _, want := range []string{
		"# Sentinel\r\n", "sentinel_masters:3\r\n",
		"master0:name=orders,status=ok,address=127.0.0.1:7100,slaves=1,sentinels=2\r\n",
		"master1:name=orders-0,status=ok,address=127.0.0.1:7100,slaves=1,sentinels=2\r\n",
		"master2:name=orders-1,status=ok,address=127.0.0.2:7101,slaves=1,sentinels=2\r\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("INFO lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "cache") {
		t.Errorf("INFO shows another database:\n%s", got)
	}
}

func TestSwitches(t *testing.T) {
	k0, k1 := ShardKey{"orders", 0}, ShardKey{"orders", 1}
	a, b, c := "127.0.0.1:7100", "127.0.0.2:7100", "127.0.0.3:7100"
	type m = map[ShardKey]string
	cases := []struct {
		name      string
		last, cur m
		want      []Switch
		next      m
	}{
		{"first look announces nothing", nil, m{k0: a, k1: b}, nil, m{k0: a, k1: b}},
		{"unchanged", m{k0: a}, m{k0: a}, nil, m{k0: a}},
		{"switch", m{k0: a, k1: b}, m{k0: c, k1: b}, []Switch{{k0, a, c}}, m{k0: c, k1: b}},
		{"failing over keeps the old master", m{k0: a}, m{k0: ""}, nil, m{k0: a}},
		{"promotion after pending", m{k0: a}, m{k0: b}, []Switch{{k0, a, b}}, m{k0: b}},
		{"promoted back to the same master", m{k0: a}, m{k0: a}, nil, m{k0: a}},
		{"new shard without master yet", m{}, m{k0: ""}, nil, m{k0: ""}},
		{"first master of a new shard", m{k0: ""}, m{k0: a}, nil, m{k0: a}},
		{"deleted database forgotten", m{k0: a, k1: b}, m{}, nil, m{}},
		{"two shards sorted", m{k0: a, k1: b}, m{k1: c, k0: b}, []Switch{{k0, a, b}, {k1, b, c}}, m{k0: b, k1: c}},
	}
	for _, tc := range cases {
		got, next := Switches(tc.last, tc.cur)
		if !reflect.DeepEqual(got, tc.want) || !reflect.DeepEqual(next, tc.next) {
			t.Errorf("%s: got %v next %v, want %v next %v", tc.name, got, next, tc.want, tc.next)
		}
	}
	// A failover seen through the state: master, pending, new master.
	st := testState()
	last := Masters(st)
	sh := &st.DBs["orders"].Shards[0]
	sh.Instances[0].Role, sh.Pending = state.RoleReplica, &state.Pending{Old: "orders-0-aaaaaa"}
	if sw, next := Switches(last, Masters(st)); len(sw) != 0 {
		t.Fatalf("switch while pending: %v", sw)
	} else {
		last = next
	}
	sh.Instances[1].Role, sh.Pending = state.RoleMaster, nil
	sw, _ := Switches(last, Masters(st))
	if len(sw) != 1 {
		t.Fatalf("switches %v", sw)
	}
	var payloads []string
	for _, n := range NamesOf(st, st.DBs["orders"], sw[0].Shard) {
		payloads = append(payloads, sw[0].Payload(n))
	}
	want := []string{"orders 127.0.0.1 7100 127.0.0.2 7100", "orders-0 127.0.0.1 7100 127.0.0.2 7100"}
	if !reflect.DeepEqual(payloads, want) {
		t.Fatalf("payloads %q, want %q", payloads, want)
	}
}

func TestMatch(t *testing.T) {
	cases := []struct {
		p, s string
		want bool
	}{
		{"*", "+switch-master", true},
		{"+switch-master", "+switch-master", true},
		{"+switch*", "+switch-master", true},
		{"*master", "+switch-master", true},
		{"+sw?tch-master", "+switch-master", true},
		{"[+-]switch-master", "+switch-master", true},
		{"[^+]switch-master", "+switch-master", false},
		{"[a-z]switch-master", "+switch-master", false},
		{"+switch-[l-n]aster", "+switch-master", true},
		{"\\+switch-master", "+switch-master", true},
		{"\\*", "*", true},
		{"\\*", "x", false},
		{"a/*", "a/b/c", true}, // unlike path.Match
		{"+sdown", "+switch-master", false},
		{"*x*y*z*", strings.Repeat("a", 200), false},
		{"", "", true},
		{"", "a", false},
		{"[", "a", false},
	}
	for _, c := range cases {
		if got := Match(c.p, c.s); got != c.want {
			t.Errorf("Match(%q, %q) = %v", c.p, c.s, got)
		}
	}
}

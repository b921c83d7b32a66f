package topology

import (
	"testing"
	"time"

	"github.com/marina-redis/marina/internal/state"
)

func TestLink(t *testing.T) {
	const up = "role:slave\r\nmaster_host:10.0.0.1\r\nmaster_port:7001\r\nmaster_link_status:up\r\nmaster_sync_in_progress:0\r\nslave_repl_offset:42\r\n"
	cases := []struct {
		name                   string
		info                   string
		inSync, reads, promote bool
		downFor                time.Duration
	}{
		{"fresh", up + "master_last_io_seconds_ago:0\r\n", true, true, true, 0},
		{"quiet master", up + "master_last_io_seconds_ago:5\r\n", true, false, true, 0},
		{"link down 3s", "role:slave\r\nmaster_host:10.0.0.1\r\nmaster_port:7001\r\nmaster_link_status:down\r\nmaster_sync_in_progress:0\r\nmaster_link_down_since_seconds:3\r\n", false, false, true, 3 * time.Second},
		{"link down 30s", "role:slave\r\nmaster_host:10.0.0.1\r\nmaster_port:7001\r\nmaster_link_status:down\r\nmaster_sync_in_progress:0\r\nmaster_link_down_since_seconds:30\r\n", false, false, false, 30 * time.Second},
		{"never synced", "role:slave\r\nmaster_host:10.0.0.1\r\nmaster_port:7001\r\nmaster_link_status:down\r\nmaster_sync_in_progress:0\r\nmaster_link_down_since_seconds:-1\r\n", false, false, false, NeverSynced},
		{"full sync", "role:slave\r\nmaster_host:10.0.0.1\r\nmaster_port:7001\r\nmaster_link_status:up\r\nmaster_sync_in_progress:1\r\nmaster_last_io_seconds_ago:0\r\n", false, false, false, 0},
		{"other master", "role:slave\r\nmaster_host:10.0.0.2\r\nmaster_port:7001\r\nmaster_link_status:up\r\nmaster_sync_in_progress:0\r\nmaster_last_io_seconds_ago:0\r\n", true, true, false, 0},
		{"a master", "role:master\r\n", false, false, false, NeverSynced},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := ParseLink(c.info)
			if l.InSync() != c.inSync || l.ServesReads() != c.reads || (l.Follows("10.0.0.1:7001") && !l.Syncing && l.DownFor <= 10*time.Second) != c.promote || l.DownFor != c.downFor {
				t.Fatalf("%+v: in sync %v reads %v follows %v", l, l.InSync(), l.ServesReads(), l.Follows("10.0.0.1:7001"))
			}
		})
	}
	if l := ParseLink(up); l.Offset != 42 || l.MasterAddr != "10.0.0.1:7001" {
		t.Fatalf("%+v", l)
	}
}

func TestView(t *testing.T) {
	st := state.New()
	st.Nodes["n1"] = &state.Node{ID: "n1", Addr: "127.0.0.1", Status: state.NodeUp, ProxyMin: 6400}
	st.Nodes["n2"] = &state.Node{ID: "n2", Addr: "::1", Status: state.NodeUp, ProxyMin: 6400}
	st.Nodes["n3"] = &state.Node{ID: "n3", Addr: "127.0.0.3", Status: state.NodeDown, ProxyMin: 6400}
	st.Nodes["n4"] = &state.Node{ID: "n4", Addr: "127.0.0.4", Status: state.NodeUp} // no proxy range
	m := state.Instance{ID: "a-0-aaaaaa", Node: "n1", Port: 7000, Role: state.RoleMaster}
	r := state.Instance{ID: "a-0-bbbbbb", Node: "n2", Port: 7001, Role: state.RoleReplica}
	db := &state.Database{Spec: state.Spec{Name: "a"}, ProxyPort: 6400, Shards: []state.Shard{{Instances: []state.Instance{m, r}}}}
	if got := Addr(st, r); got != "[::1]:7001" {
		t.Fatalf("addr %s", got)
	}
	if got := Addr(st, state.Instance{Node: "n9", Port: 1}); got != "" {
		t.Fatalf("addr on an unknown node %q", got)
	}
	if eps := Endpoints(st, db); len(eps) != 2 || eps[0] != "127.0.0.1:6400" || eps[1] != "[::1]:6400" {
		t.Fatalf("endpoints %v", eps)
	}
	if got, ok := ServingMaster(db.Shards[0]); !ok || got.ID != m.ID || !Stable(db) {
		t.Fatal("a shard with a master and nothing pending serves")
	}
	db.Shards[0].Pending = &state.Pending{Old: r.ID}
	if _, ok := ServingMaster(db.Shards[0]); ok || Stable(db) {
		t.Fatal("a shard failing over has no serving master")
	}
	if !NodeDown(st, "n3") || !NodeDown(st, "n9") || NodeDown(st, "n1") {
		t.Fatal("node down")
	}
	db.ProxyPort = 0
	if eps := Endpoints(st, db); len(eps) != 0 || eps == nil {
		t.Fatalf("no proxy port: %v", eps)
	}
}

package proxy

import (
	"fmt"
	"testing"

	"github.com/marina-redis/marina/internal/resp"
	"github.com/marina-redis/marina/internal/slots"
)

// What a command means is decided without sockets: a session of a DB that
// has a routing snapshot and a command table, and no engine, queues the
// backend requests a command needs and merges their replies.
func TestDispatchWithoutSockets(t *testing.T) {
	shards := []string{"shard0:1", "shard1:1", "shard2:1"}
	d := &DB{}
	d.topo.Store(newTopology(testRoute("127.0.0.1", shards...)))
	tab := cmdTable{
		"get":  {name: "get", arity: 2, first: 1, last: 1, step: 1, readonly: true},
		"set":  {name: "set", arity: -3, first: 1, last: 1, step: 1, write: true},
		"mget": {name: "mget", arity: -2, first: 1, last: -1, step: 1, readonly: true},
	}
	d.cmds.Store(&tab)
	s := newSession(d)
	cmd := func(args ...string) {
		var b [][]byte
		for _, a := range args {
			b = append(b, []byte(a))
		}
		s.dispatch(b)
	}
	// A backend that answers GET and MGET with "v:" and the key.
	answer := func(r *request) {
		args, _, err := resp.ParseCommand(r.cmd, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		switch string(args[0]) {
		case "GET":
			r.reply = resp.AppendBulk(nil, []byte("v:"+string(args[1])))
		case "MGET":
			r.reply = resp.AppendArrayHeader(nil, len(args)-1)
			for _, k := range args[1:] {
				r.reply = resp.AppendBulk(r.reply, []byte("v:"+string(k)))
			}
		default:
			r.reply = resp.OK
		}
		r.finished = true
	}
	owner := func(key string) string { return shards[d.topo.Load().slotMap[slots.Of([]byte(key))]] }

	cmd("GET", "k")
	if q := s.queued; len(q) != 0 || string(s.pend[0].render()) != "-NOAUTH Authentication required.\r\n" {
		t.Fatalf("before AUTH: %d queued, %q", len(q), s.pend[0].render())
	}
	cmd("AUTH", testPW)
	cmd("GET", "k")
	q := append([]*request(nil), s.queued...)
	s.sent()
	if len(q) != 1 || q[0].addr != owner("k") {
		t.Fatalf("GET k: %d requests, to %v (owner %s)", len(q), q, owner("k"))
	}
	answer(q[0])
	keys := []string{"MGET"}
	for i := 0; i < 12; i++ {
		keys = append(keys, fmt.Sprintf("key:%d", i))
	}
	cmd(keys...)
	q = append(q[:0], s.queued...)
	s.sent()
	if len(q) < 2 {
		t.Fatalf("MGET of 12 keys: %d requests, want one per shard that holds some", len(q))
	}
	for _, r := range q {
		args, _, _ := resp.ParseCommand(r.cmd, 0, nil)
		for _, k := range args[1:] {
			if owner(string(k)) != r.addr {
				t.Fatalf("%s sent to %s, owned by %s", k, r.addr, owner(string(k)))
			}
		}
		answer(r)
	}
	want := []string{"+OK\r\n", "$3\r\nv:k\r\n"}
	mget := resp.AppendArrayHeader(nil, 12)
	for _, k := range keys[1:] {
		mget = resp.AppendBulk(mget, []byte("v:"+k))
	}
	want = append(want, string(mget))
	for i, w := range want {
		if !s.pend[i+1].complete() || string(s.pend[i+1].render()) != w {
			t.Errorf("answer %d: %q, want %q", i, s.pend[i+1].render(), w)
		}
	}
}

package resp

import "testing"

func TestExpires(t *testing.T) {
	cases := []struct {
		info string
		want int64
	}{
		{"# Keyspace\r\n", 0},
		{"# Keyspace\r\ndb0:keys=10,expires=0,avg_ttl=0\r\n", 0},
		{"# Keyspace\r\ndb0:keys=10,expires=3,avg_ttl=1200\r\ndb2:keys=1,expires=1,avg_ttl=5\r\n", 4},
		{"# Replication\r\nrole:master\r\ndbfilename:x\r\n", 0},
	}
	for _, c := range cases {
		if got := Expires(ParseInfo(c.info)); got != c.want {
			t.Errorf("%q: %d, want %d", c.info, got, c.want)
		}
	}
}

func TestPairs(t *testing.T) {
	for _, v := range []any{
		[]any{"maxmemory", "100", "flags", []any{"on"}},
		map[any]any{"maxmemory": "100", "flags": []any{"on"}},
	} {
		m := Pairs(v)
		if m["maxmemory"] != "100" || len(m["flags"].([]any)) != 1 || len(m) != 2 {
			t.Errorf("%v: %v", v, m)
		}
	}
	if m := Pairs([]any{"odd"}); len(m) != 0 {
		t.Errorf("a key without a value: %v", m)
	}
	if m := Pairs(nil); len(m) != 0 {
		t.Errorf("nil: %v", m)
	}
}

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

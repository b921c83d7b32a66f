package resp

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseInfo reads the "field:value" lines of an INFO reply; section
// headers ("# Replication") and blank lines are skipped.
func ParseInfo(s string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, "#") {
			out[k] = v
		}
	}
	return out
}

// Expires sums the keys with a TTL over the databases of an INFO keyspace
// section ("db0:keys=10,expires=3,avg_ttl=0").
func Expires(f map[string]string) int64 {
	var n int64
	for k, v := range f {
		if !strings.HasPrefix(k, "db") {
			continue
		}
		for _, kv := range strings.Split(v, ",") {
			if x, ok := strings.CutPrefix(kv, "expires="); ok {
				e, _ := strconv.ParseInt(x, 10, 64)
				n += e
			}
		}
	}
	return n
}

// Pairs reads a reply of keys and values (CONFIG GET, ACL GETUSER): a
// RESP2 list of alternating keys and values, or a RESP3 map.
func Pairs(v any) map[string]any {
	m := map[string]any{}
	switch v := v.(type) {
	case []any:
		for i := 0; i+1 < len(v); i += 2 {
			m[fmt.Sprint(v[i])] = v[i+1]
		}
	case map[any]any:
		for k, x := range v {
			m[fmt.Sprint(k)] = x
		}
	}
	return m
}

package resp

import "strings"

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

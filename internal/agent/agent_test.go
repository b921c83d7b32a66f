package agent

import (
	"testing"
	"time"

	"github.com/marina-redis/marina/internal/resp"
)

func TestBackoff(t *testing.T) {
	cases := []struct {
		failures int
		want     time.Duration
	}{{0, 100 * time.Millisecond}, {1, 100 * time.Millisecond}, {2, 200 * time.Millisecond}, {4, 800 * time.Millisecond}, {20, 30 * time.Second}}
	for _, c := range cases {
		if got := backoff(c.failures); got != c.want {
			t.Errorf("backoff(%d) = %v, want %v", c.failures, got, c.want)
		}
	}
}

func TestParseInfo(t *testing.T) {
	in := "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:7001\r\nmaster_link_status:up\r\n\r\n# Memory\r\nused_memory:1024\r\n"
	got := resp.ParseInfo(in)
	for k, v := range map[string]string{"role": "slave", "master_host": "127.0.0.1", "master_port": "7001", "master_link_status": "up", "used_memory": "1024"} {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if _, ok := got["# Memory"]; ok {
		t.Error("section header parsed as a field")
	}
}

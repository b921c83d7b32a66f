package redisconf

import (
	"strings"
	"testing"

	"github.com/marina-redis/marina/internal/state"
)

func TestRender(t *testing.T) {
	base := Config{Port: 7001, Bind: "127.0.0.2", Dir: "/d", MaxMemory: 64 << 20, Policy: "allkeys-lru",
		Password: "clientpw1", Secret: "sekrit123"}
	cases := []struct {
		name    string
		mod     func(*Config)
		want    []string
		notWant []string
	}{
		{"master none", func(c *Config) { c.Persistence = state.PersistNone },
			[]string{"port 7001", "bind 127.0.0.2", "maxmemory 67108864", "maxmemory-policy allkeys-lru", "appendonly no", `save ""`,
				"user default on >clientpw1 ~* &* +@all " + ClientRules, "user marina on >sekrit123 ~* &* +@all -sync -psync",
				"user marina-repl >" + ReplSecret("sekrit123") + " on -@all +ping +replconf +psync", "masteruser marina-repl", "masterauth " + ReplSecret("sekrit123"), "protected-mode yes"},
			[]string{"\nreplicaof "}}, // the directive, not the denied command
		{"replica aof", func(c *Config) { c.Persistence = state.PersistAOF; c.ReplicaOf = "127.0.0.3:7002" },
			[]string{"appendonly yes", "replicaof 127.0.0.3 7002"}, nil},
		{"rdb", func(c *Config) { c.Persistence = state.PersistRDB },
			[]string{`save "3600 1 300 100 60 10000"`, "appendonly no"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := base
			c.mod(&cfg)
			out := cfg.Render()
			lines := map[string]bool{}
			for _, l := range strings.Split(out, "\n") {
				lines[l] = true
			}
			for _, w := range c.want {
				if !lines[w] {
					t.Errorf("missing line %q in\n%s", w, out)
				}
			}
			for _, w := range c.notWant {
				if strings.Contains(out, w) {
					t.Errorf("unexpected %q", w)
				}
			}
		})
	}
}

package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// StartRedis writes conf to dir/redis.conf and runs a redis-server from it
// until the test ends.
func StartRedis(t *testing.T, dir, conf string) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server not installed")
	}
	path := filepath.Join(dir, "redis.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("redis-server", path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
}

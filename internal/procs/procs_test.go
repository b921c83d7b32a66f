package procs

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// A redis-server running from an instance dir without a pidfile (started
// an instant before its agent died) is found by its working directory.
func TestKillInstancesWithoutPidfile(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed")
	}
	dir := t.TempDir()
	inst := filepath.Join(dir, "instances", "x-0-abcdef")
	if err := os.MkdirAll(inst, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("redis-server", "--port", "0", "--save", "", "--appendonly", "no")
	cmd.Dir = inst
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	KillInstances(dir)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("redis-server without a pidfile still runs")
	}
}

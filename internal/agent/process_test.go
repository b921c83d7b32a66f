package agent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/marina-redis/marina/internal/redisconf"
	"github.com/marina-redis/marina/internal/testutil"
)

// A redis-server started by one agent is adopted by the next only if it is
// the same instance: same address and same directory.
func TestAdoptProcess(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	port := testutil.FreePort(t, host)
	dir := t.TempDir()
	cfg := redisconf.Config{Port: port, Bind: host, Dir: dir, MaxMemory: 1 << 20, Policy: "noeviction", Password: "password1", Secret: "secret12"}
	conf := filepath.Join(dir, "redis.conf")
	if err := os.WriteFile(conf, []byte(cfg.Render()), 0o600); err != nil {
		t.Fatal(err)
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal(err)
	}
	p, err := startProcess(bin, conf) // full path, as the agent starts it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.stop(context.Background(), killSig, time.Second) })
	addr := fmt.Sprintf("%s:%d", host, port)
	testutil.WaitFor(t, 5*time.Second, "pidfile", func() error {
		_, err := os.Stat(filepath.Join(dir, "redis.pid"))
		return err
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ap, err := adoptProcess(ctx, dir, addr)
	if err != nil {
		t.Fatalf("adopt own instance: %v", err)
	}
	if ap.pid != p.pid {
		t.Fatalf("adopted pid %d, started %d", ap.pid, p.pid)
	}
	// The same pidfile seen from another instance's dir or address is refused.
	other := t.TempDir()
	b, _ := os.ReadFile(filepath.Join(dir, "redis.pid"))
	_ = os.WriteFile(filepath.Join(other, "redis.pid"), b, 0o600)
	if _, err := adoptProcess(ctx, other, addr); err == nil {
		t.Fatal("adopted a process running in another dir")
	}
	if _, err := adoptProcess(ctx, dir, fmt.Sprintf("%s:%d", host, port/10)); err == nil {
		t.Fatal("adopted a process on another port (prefix)")
	}
	// The adopted watcher sees the exit.
	p.stop(context.Background(), killSig, time.Second)
	select {
	case <-ap.exited:
	case <-time.After(5 * time.Second):
		t.Fatal("adopted process exit not seen")
	}
}

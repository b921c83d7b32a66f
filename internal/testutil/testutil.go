// Package testutil has helpers for tests that run real processes: free
// loopback addresses, waiting on conditions, and killing leftovers.
package testutil

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// LoopbackHosts returns n free-looking loopback IPs 127.X.Y.1..n, random per
// call, so parallel tests never fight over ports; ports are checked free.
func LoopbackHosts(t testing.TB, n int, ports ...int) []string {
	t.Helper()
	for try := 0; try < 50; try++ {
		x, y := 1+rand.IntN(250), 1+rand.IntN(250)
		var hosts []string
		ok := true
		for i := 1; i <= n && ok; i++ {
			h := fmt.Sprintf("127.%d.%d.%d", x, y, i)
			for _, p := range ports {
				ln, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(p)))
				if err != nil {
					ok = false
					break
				}
				ln.Close()
			}
			hosts = append(hosts, h)
		}
		if ok {
			return hosts
		}
	}
	t.Fatal("no free loopback hosts")
	return nil
}

// FreePort returns a port that was free on host a moment ago.
func FreePort(t testing.TB, host string) int {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// WaitFor polls cond until it returns nil or the timeout passes.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Ctx returns a context cancelled at the end of the test.
func Ctx(t testing.TB, timeout time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// Logger returns a logger for nodes under test: silent unless MARINA_TEST_LOG is set.
func Logger() *slog.Logger {
	if os.Getenv("MARINA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// RaftLog is where nodes under test write hashicorp/raft's log.
func RaftLog() io.Writer {
	if os.Getenv("MARINA_TEST_LOG") != "" {
		return os.Stderr
	}
	return io.Discard
}

// KillPidfiles kills every process named by a redis.pid under dir: the
// safety net that keeps a failed test from leaking redis-servers.
func KillPidfiles(dir string) {
	_ = filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || info.Name() != "redis.pid" {
			return nil
		}
		b, _ := os.ReadFile(path)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			if cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.Contains(string(cmd), "redis-server") {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		return nil
	})
}

// Alive reports whether pid runs (and is not a zombie).
func Alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

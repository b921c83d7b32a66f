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
	"strconv"
	"testing"
	"time"

	"github.com/marina-redis/marina/internal/procs"
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

// KillPidfiles kills the redis-servers started under dir: the safety net
// that keeps a failed test from leaking them.
func KillPidfiles(dir string) { procs.KillInstances(dir) }

// Alive reports whether pid runs (and is not a zombie).
func Alive(pid int) bool { return procs.Alive(pid) }

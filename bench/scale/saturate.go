package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/marina-redis/marina/internal/api"
)

// saturation is what happened to the control plane while the host's CPUs
// were saturated by the proxy benchmark's load and busy loops.
type saturation struct {
	window             time.Duration
	changes, elections int
	noLeader           int
	killed             int
	rps                string
}

// saturate runs redis-benchmark (-P 16, 50 clients) through db's endpoint
// on the first node, and one busy loop per CPU at the data plane's own
// priority, for d, while the leader watch goes on polling; it returns the
// leader changes, elections and kills in the window.
func saturate(ctx context.Context, d time.Duration, db api.DB, w *leaderWatch, dir string) (saturation, error) {
	s := saturation{window: d}
	if len(db.Endpoints) == 0 {
		return s, fmt.Errorf("database %s has no endpoint", db.Name)
	}
	host, port, err := net.SplitHostPort(db.Endpoints[0])
	if err != nil {
		return s, err
	}
	w.mu.Lock()
	changes0, none0 := w.changes, w.noLeader
	w.mu.Unlock()
	logs0 := countLogs(dir)
	rctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	bench := exec.CommandContext(rctx, "redis-benchmark", "-h", host, "-p", port, "-a", db.Password, "--user", "default",
		"-c", "50", "-P", "16", "-t", "set,get", "-n", "100000000", "-r", "100000", "-q", "-l")
	bench.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out strings.Builder
	bench.Stdout, bench.Stderr = &out, &out
	var spinners []*exec.Cmd
	for range 2 {
		sp := exec.CommandContext(rctx, "sh", "-c", "while :; do :; done")
		sp.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := sp.Start(); err != nil {
			return s, err
		}
		spinners = append(spinners, sp)
	}
	if err := bench.Start(); err != nil {
		return s, fmt.Errorf("redis-benchmark: %w", err)
	}
	<-rctx.Done()
	for _, c := range append(spinners, bench) {
		_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		_ = c.Wait()
	}
	logs1 := countLogs(dir)
	w.mu.Lock()
	s.changes, s.noLeader = w.changes-changes0, w.noLeader-none0
	w.mu.Unlock()
	s.elections, s.killed = logs1.elections-logs0.elections, logs1.killed-logs0.killed
	// -l loops with \r between updates: the last figures of each test.
	last := map[string]string{}
	for _, m := range rpsRE.FindAllStringSubmatch(out.String(), -1) {
		last[m[1]] = m[2]
	}
	s.rps = fmt.Sprintf("SET %s/s, GET %s/s", orDash(last["SET"]), orDash(last["GET"]))
	return s, nil
}

// Progress lines of -l -q: "SET: rps=12345.0 (overall: 12000.1) avg_msec=...".
var rpsRE = regexp.MustCompile(`(SET|GET): rps=[0-9.]+ \(overall: ([0-9.]+)\)`)

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

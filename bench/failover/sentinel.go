package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// sentinelSetup is a master, a replica and three sentinels watching them,
// with down-after-milliseconds set to Marina's down-after.
type sentinelSetup struct {
	b        *bench
	host     string
	servers  map[int]*exec.Cmd // by port
	ports    []int
	sentPort []int
}

func freePort(host string) int {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func (s *sentinelSetup) startServer(port int, replicaOf int) error {
	dir := filepath.Join(s.b.dir, "sentinel", strconv.Itoa(port))
	_ = os.MkdirAll(dir, 0o700)
	args := []string{"--port", strconv.Itoa(port), "--bind", s.host, "--dir", dir, "--save", "", "--appendonly", "no",
		"--repl-diskless-sync", "no", "--protected-mode", "no", "--logfile", filepath.Join(dir, "redis.log")}
	if replicaOf != 0 {
		args = append(args, "--replicaof", s.host, strconv.Itoa(replicaOf))
	}
	cmd := exec.Command("redis-server", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { _ = cmd.Wait() }()
	s.servers[port] = cmd
	return nil
}

func (b *bench) sentinelTrials(ctx context.Context, trials int) (*stats, error) {
	if _, err := exec.LookPath("redis-sentinel"); err != nil {
		return nil, fmt.Errorf("redis-sentinel not installed (apt-get install redis-sentinel)")
	}
	s := &sentinelSetup{b: b, host: "127.0.0.1", servers: map[int]*exec.Cmd{}}
	defer func() {
		for _, c := range s.servers {
			_ = c.Process.Kill()
		}
	}()
	a, r := freePort(s.host), freePort(s.host)
	s.ports = []int{a, r}
	if err := s.startServer(a, 0); err != nil {
		return nil, err
	}
	time.Sleep(200 * time.Millisecond) // the master listens before its replica starts (not a wait for a condition)
	if err := s.startServer(r, a); err != nil {
		return nil, err
	}
	for i := 0; i < 3; i++ {
		port := freePort(s.host)
		dir := filepath.Join(b.dir, "sentinel", "s"+strconv.Itoa(port))
		_ = os.MkdirAll(dir, 0o700)
		conf := filepath.Join(dir, "sentinel.conf")
		txt := fmt.Sprintf("port %d\nbind %s\ndir %s\nsentinel monitor m %s %d 2\nsentinel down-after-milliseconds m %d\nsentinel failover-timeout m 2000\nsentinel parallel-syncs m 1\n",
			port, s.host, dir, s.host, a, b.downAfter.Milliseconds())
		if err := os.WriteFile(conf, []byte(txt), 0o600); err != nil {
			return nil, err
		}
		cmd := exec.Command("redis-sentinel", conf)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		go func() { _ = cmd.Wait() }()
		b.sentinel = append(b.sentinel, cmd)
		s.sentPort = append(s.sentPort, port)
	}
	st := &stats{name: "sentinel kill -9 master redis"}
	for i := 0; i < trials; i++ {
		if err := s.waitHealthy(ctx, 60*time.Second); err != nil {
			return nil, err
		}
		master, replica := s.roles(ctx)
		start := time.Now()
		_ = s.servers[master].Process.Kill()
		d, _, err := untilWritable(start, "", "", []string{net.JoinHostPort(s.host, strconv.Itoa(replica))}, 60*time.Second)
		if err != nil {
			return nil, err
		}
		st.ds = append(st.ds, d)
		// The old master comes back; sentinel turns it into a replica.
		if err := s.startServer(master, 0); err != nil {
			return nil, err
		}
		// Sentinel refuses a new failover of the same master for twice the
		// failover-timeout: the next trial starts after that.
		time.Sleep(time.Until(start.Add(4500 * time.Millisecond)))
	}
	return st, nil
}

// roles returns the master port as the sentinels report it and the other.
func (s *sentinelSetup) roles(ctx context.Context) (int, int) {
	sc := redis.NewSentinelClient(&redis.Options{Addr: net.JoinHostPort(s.host, strconv.Itoa(s.sentPort[0]))})
	defer sc.Close()
	addr, err := sc.GetMasterAddrByName(ctx, "m").Result()
	if err != nil || len(addr) != 2 {
		return s.ports[0], s.ports[1]
	}
	m, _ := strconv.Atoi(addr[1])
	if m == s.ports[0] {
		return s.ports[0], s.ports[1]
	}
	return s.ports[1], s.ports[0]
}

// waitHealthy waits until every sentinel sees the master, one replica in
// sync and the two other sentinels.
func (s *sentinelSetup) waitHealthy(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if s.healthy(ctx) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("sentinel setup not healthy after %v", limit)
}

func (s *sentinelSetup) healthy(ctx context.Context) bool {
	master, replica := s.roles(ctx)
	for _, p := range s.sentPort {
		sc := redis.NewSentinelClient(&redis.Options{Addr: net.JoinHostPort(s.host, strconv.Itoa(p))})
		reps, err1 := sc.Replicas(ctx, "m").Result()
		sents, err2 := sc.Sentinels(ctx, "m").Result()
		sc.Close()
		if err1 != nil || err2 != nil || len(sents) != 2 || len(reps) != 1 {
			return false
		}
		if flags := fmt.Sprint(reps[0]["flags"]); strings.Contains(flags, "down") || strings.Contains(flags, "disconnected") {
			return false
		}
	}
	rc := redis.NewClient(&redis.Options{Addr: net.JoinHostPort(s.host, strconv.Itoa(replica)), Protocol: 2, DisableIdentity: true})
	defer rc.Close()
	info, err := rc.Info(ctx, "replication").Result()
	return err == nil && strings.Contains(info, "master_link_status:up") && strings.Contains(info, "master_port:"+strconv.Itoa(master))
}

package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/testutil"
)

// sentinelSet is the stack Marina replaces, in the same namespaces set-up:
// on each of 3 hosts a redis-server (a master and two replicas) and a
// redis-sentinel (quorum 2, down-after 1s), as sentinel's documentation
// sets it up, without min-replicas-to-write.
type sentinelSet struct {
	nn    *testutil.Netns
	dir   string
	procs []*exec.Cmd
}

const (
	sentinelDataPort = 6379
	sentinelPort     = 26379
	sentinelPassword = "bench-sentinel-pw"
)

func startSentinel(dir string) (*sentinelSet, error) {
	if _, err := exec.LookPath("redis-sentinel"); err != nil {
		return nil, fmt.Errorf("redis-sentinel not installed (apt-get install redis-sentinel)")
	}
	nn, err := testutil.NewNetns(3)
	if err != nil {
		return nil, err
	}
	s := &sentinelSet{nn: nn, dir: dir}
	for i, h := range nn.Hosts {
		d := filepath.Join(dir, fmt.Sprintf("h%d", i+1))
		if err := os.MkdirAll(d, 0o700); err != nil {
			s.stop()
			return nil, err
		}
		args := []string{"--port", strconv.Itoa(sentinelDataPort), "--bind", h, "--dir", d, "--save", "", "--appendonly", "no",
			"--requirepass", sentinelPassword, "--masterauth", sentinelPassword, "--repl-diskless-sync", "no", "--logfile", filepath.Join(d, "redis.log")}
		if i > 0 {
			args = append(args, "--replicaof", nn.Hosts[0], strconv.Itoa(sentinelDataPort))
		}
		if err := s.run(i, append([]string{"redis-server"}, args...)...); err != nil {
			return nil, err
		}
	}
	for i, h := range nn.Hosts {
		d := filepath.Join(dir, fmt.Sprintf("s%d", i+1))
		_ = os.MkdirAll(d, 0o700)
		conf := filepath.Join(d, "sentinel.conf")
		txt := fmt.Sprintf("port %d\nbind %s\ndir %s\nsentinel monitor m %s %d 2\nsentinel auth-pass m %s\nsentinel down-after-milliseconds m 1000\nsentinel failover-timeout m 2000\nsentinel parallel-syncs m 1\n",
			sentinelPort, h, d, nn.Hosts[0], sentinelDataPort, sentinelPassword)
		if err := os.WriteFile(conf, []byte(txt), 0o600); err != nil {
			s.stop()
			return nil, err
		}
		if err := s.run(i, "redis-sentinel", conf); err != nil {
			return nil, err
		}
	}
	if _, err := s.master(context.Background(), 1); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// settled waits until every sentinel knows the two others and two
// replicas: before that a partition may find no quorum to fail over with,
// which would flatter sentinel (no failover, nothing lost).
func (s *sentinelSet) settled(ctx context.Context) error {
	return waitFor(60*time.Second, func() error {
		for i, h := range s.nn.Hosts {
			c := redis.NewSentinelClient(&redis.Options{Addr: net.JoinHostPort(h, strconv.Itoa(sentinelPort)),
				DialTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond})
			others, err1 := c.Sentinels(ctx, "m").Result()
			replicas, err2 := c.Replicas(ctx, "m").Result()
			c.Close()
			if err1 != nil || err2 != nil {
				return fmt.Errorf("sentinel %d: %v %v", i+1, err1, err2)
			}
			up := 0
			for _, r := range replicas {
				if r["flags"] == "slave" {
					up++
				}
			}
			if len(others) != 2 || up != 2 {
				return fmt.Errorf("sentinel %d knows %d sentinels, %d healthy replicas", i+1, len(others), up)
			}
		}
		return nil
	})
}

func (s *sentinelSet) run(i int, argv ...string) error {
	cmd := exec.Command("ip", append([]string{"netns", "exec", s.nn.Names[i]}, argv...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		s.stop()
		return err
	}
	go func() { _ = cmd.Wait() }()
	s.procs = append(s.procs, cmd)
	return nil
}

func (s *sentinelSet) stop() {
	for _, p := range s.procs {
		_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
	}
	s.procs = nil
	if s.nn != nil {
		s.nn.Close()
		s.nn = nil
	}
}

// master asks host i's sentinel for the master's address.
func (s *sentinelSet) master(ctx context.Context, i int) (string, error) {
	c := redis.NewSentinelClient(&redis.Options{Addr: net.JoinHostPort(s.nn.Hosts[i], strconv.Itoa(sentinelPort)),
		DialTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond})
	defer c.Close()
	var addr string
	err := waitFor(30*time.Second, func() error {
		a, err := c.GetMasterAddrByName(ctx, "m").Result()
		if err != nil {
			return err
		}
		addr = net.JoinHostPort(a[0], a[1])
		return nil
	})
	return addr, err
}

// partition cuts the master's host off for cutFor, like Marina's rounds:
// a client on the majority side follows the sentinels, one on the cut-off
// side writes to the old master.
func (s *sentinelSet) partition(cutFor time.Duration) (round, error) {
	ctx := context.Background()
	res := round{cut: cutFor, promoted: -1}
	if err := s.settled(ctx); err != nil {
		return res, err
	}
	addr, err := s.master(ctx, 1)
	if err != nil {
		return res, err
	}
	host, _, _ := net.SplitHostPort(addr)
	i := -1
	for k, h := range s.nn.Hosts {
		if h == host {
			i = k
		}
	}
	if i < 0 {
		return res, fmt.Errorf("master %s on no host", addr)
	}
	maj := (i + 1) % 3
	majW := &testutil.Writer{Prefix: fmt.Sprintf("s%d:maj:", time.Now().UnixNano()), Discover: func(ctx context.Context) (string, string, error) {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		a, err := s.master(qctx, maj)
		return a, sentinelPassword, err
	}}
	wctx, stopW := context.WithCancel(ctx)
	wdone := make(chan struct{})
	go func() { majW.Run(wctx); close(wdone) }()
	defer func() { stopW(); <-wdone }()
	cw, err := testutil.StartNSWriter(s.nn.Names[i], addr, sentinelPassword, fmt.Sprintf("s%d:cut:", time.Now().UnixNano()), "")
	if err != nil {
		return res, err
	}
	defer cw.Stop()
	if err := waitFor(10*time.Second, func() error {
		if len(majW.Acks()) < 50 || len(cw.Acks()) < 50 {
			return fmt.Errorf("writes not flowing")
		}
		return nil
	}); err != nil {
		return res, err
	}
	cutAt := time.Now()
	if err := s.nn.Cut(i); err != nil {
		return res, err
	}
	time.Sleep(cutFor) // the partition's length
	if err := s.nn.Heal(i); err != nil {
		return res, err
	}
	healAt := time.Now()
	// The sentinels turn the old master into a replica of the new one.
	var now string
	if err := waitFor(60*time.Second, func() error {
		a, err := s.master(ctx, maj)
		if err != nil {
			return err
		}
		c := redis.NewClient(&redis.Options{Addr: addr, Password: sentinelPassword, DialTimeout: 300 * time.Millisecond})
		defer c.Close()
		role, err := c.Do(ctx, "ROLE").Slice()
		if err != nil || len(role) < 1 || (a != addr && role[0] != "slave") {
			return fmt.Errorf("old master not reconfigured yet")
		}
		if a != addr && (len(role) < 4 || role[3] != "connected") {
			return fmt.Errorf("old master not in sync yet")
		}
		now = a
		return nil
	}); err != nil {
		return res, err
	}
	n := len(majW.Acks())
	_ = waitFor(10*time.Second, func() error {
		if len(majW.Acks()) < n+50 {
			return fmt.Errorf("no writes after the heal")
		}
		return nil
	})
	stopW()
	<-wdone
	cw.Stop()
	majAcks, cutAcks := majW.Acks(), cw.Acks()
	majLost, err := testutil.Lost(ctx, majAcks, now, sentinelPassword, "")
	if err != nil {
		return res, err
	}
	cutLost, err := testutil.Lost(ctx, cutAcks, now, sentinelPassword, "")
	if err != nil {
		return res, err
	}
	analyze(&res, cutAt, healAt, majAcks, majLost, [][]testutil.Ack{cutAcks}, [][]testutil.Ack{cutLost})
	return res, nil
}

// Command failover measures failover on a 3-node Marina cluster and on
// redis-sentinel in the same run: the time from a fault until the new master
// accepts writes (kill -9 master, SIGSTOP master, kill -9 whole node), the
// write pause of planned switchovers, and acknowledged writes lost. It
// prints figures; it asserts nothing.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/api"
	"github.com/marina-redis/marina/internal/client"
	"github.com/marina-redis/marina/internal/testutil"
)

const token = "bench-token-0123456789abcdef"

func main() {
	bin := flag.String("marina", "bin/marina", "marina binary")
	trials := flag.Int("trials", 20, "trials of kill -9 and SIGSTOP (and switchovers)")
	nodeTrials := flag.Int("node-trials", 5, "trials of kill -9 of a whole node")
	downAfter := flag.Duration("down-after", time.Second, "down-after for Marina and sentinel")
	flag.Parse()
	redis.SetLogger(quiet{})
	b := &bench{bin: *bin, downAfter: *downAfter}
	if err := b.run(*trials, *nodeTrials); err != nil {
		fmt.Fprintln(os.Stderr, "bench/failover:", err)
		b.stop()
		os.Exit(1)
	}
	b.stop()
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

type bench struct {
	bin       string
	downAfter time.Duration
	dir       string
	hosts     []string
	procs     []*exec.Cmd
	sentinel  []*exec.Cmd
}

func freeHosts() []string {
	for x := 200; x < 250; x++ {
		var hosts []string
		ok := true
		for i := 1; i <= 3 && ok; i++ {
			h := fmt.Sprintf("127.%d.77.%d", x, i)
			for _, p := range []int{7000, 7001, 7100} {
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
	return nil
}

// caFile is the cluster CA as the first node wrote it.
func (b *bench) caFile() string { return filepath.Join(b.dir, "n1", "tls", "ca.pem") }

func (b *bench) startNode(i int) error {
	ndir := filepath.Join(b.dir, fmt.Sprintf("n%d", i+1))
	args := []string{"server", "--id", fmt.Sprintf("n%d", i+1), "--data", ndir, "--bind", b.hosts[i], "--http-port", "7000",
		"--raft-port", "7001", "--redis-ports", "7100-7999", "--memory", "4GiB", "--down-after", b.downAfter.String(), "--log-level", "warn"}
	if i > 0 {
		args = append(args, "--join", b.hosts[0]+":7000", "--cacert", b.caFile())
	}
	_ = os.MkdirAll(ndir, 0o700)
	logf, err := os.OpenFile(filepath.Join(ndir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(b.bin, args...)
	cmd.Env = append(os.Environ(), "MARINA_TOKEN="+token)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { _ = cmd.Wait() }()
	b.procs[i] = cmd
	return nil
}

func (b *bench) killNode(i int) {
	if p := b.procs[i]; p != nil {
		_ = p.Process.Kill()
		b.procs[i] = nil
	}
	testutil.KillPidfiles(filepath.Join(b.dir, fmt.Sprintf("n%d", i+1)))
}

func (b *bench) stop() {
	for i := range b.procs {
		b.killNode(i)
	}
	for _, s := range b.sentinel {
		_ = s.Process.Kill()
	}
	if b.dir != "" {
		testutil.KillPidfiles(b.dir)
		if os.Getenv("BENCH_KEEP") == "" {
			os.RemoveAll(b.dir)
		} else {
			fmt.Println("kept", b.dir)
		}
	}
}

func (b *bench) client(ctx context.Context) *client.Client {
	for i, h := range b.hosts {
		if b.procs[i] == nil {
			continue
		}
		c := client.New(h+":7000", token, client.CAFile(b.caFile()))
		sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		st, err := c.Status(sctx)
		cancel()
		if err == nil && st.Leader != "" {
			return c
		}
	}
	return client.New(b.hosts[0]+":7000", token, client.CAFile(b.caFile()))
}

func (b *bench) waitUp(ctx context.Context, n int) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		st, err := b.client(ctx).Status(ctx)
		if err == nil && st.NodesUp == n {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("cluster not up")
}

// waitBack waits until node i, restarted, reports to the leader again.
func (b *bench) waitBack(ctx context.Context, i int) error {
	since := time.Now()
	id := fmt.Sprintf("n%d", i+1)
	deadline := since.Add(60 * time.Second)
	for time.Now().Before(deadline) {
		nodes, err := b.client(ctx).Nodes(ctx)
		if err == nil {
			for _, n := range nodes {
				if n.ID == id && n.Status == "up" && n.LastSeen != nil && n.LastSeen.After(since) && n.Running == n.Instances {
					return nil
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("node %s not back", id)
}

func (b *bench) waitReady(ctx context.Context, name string) (*api.DB, error) {
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		db, err := b.client(ctx).GetDB(ctx, name)
		if err == nil && db.Status == api.DBReady {
			return db, nil
		}
		if err == nil {
			last = fmt.Sprintf("%s: %+v", db.Status, db.Shards)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, fmt.Errorf("%s not ready: %s", name, last)
}

func pidOf(dir string, in api.Instance) int {
	b, _ := os.ReadFile(filepath.Join(dir, in.Node, "instances", in.ID, "redis.pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// rc connects to a redis-server: over TLS trusting caFile when set
// (Marina's, --redis-tls), in plaintext else (sentinel's).
func rc(addr, pw, caFile string, timeout time.Duration) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, Password: pw, Protocol: 2, DisableIdentity: true, MaxRetries: -1, PoolSize: 1,
		DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout, TLSConfig: testutil.TLSWith(caFile, addr)})
}

// untilWritable polls the candidates with SET until one accepts; it returns
// the time that took from start.
func untilWritable(start time.Time, pw, caFile string, addrs []string, limit time.Duration) (time.Duration, string, error) {
	clients := make([]*redis.Client, len(addrs))
	for i, a := range addrs {
		clients[i] = rc(a, pw, caFile, 100*time.Millisecond)
		defer clients[i].Close()
	}
	for time.Since(start) < limit {
		for i, c := range clients {
			if c.Set(context.Background(), "bench:probe", "1", 0).Err() == nil {
				return time.Since(start), addrs[i], nil
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	return 0, "", fmt.Errorf("no new master after %v", limit)
}

type stats struct {
	name  string
	ds    []time.Duration
	lost  int
	acked int
}

func (s *stats) String() string {
	ds := append([]time.Duration(nil), s.ds...)
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	if len(ds) == 0 {
		return s.name + ": no trials"
	}
	pct := func(p float64) time.Duration {
		i := int(p*float64(len(ds)) + 0.5)
		return ds[min(max(i-1, 0), len(ds)-1)].Round(time.Millisecond)
	}
	out := fmt.Sprintf("%-34s n=%-3d p50=%-7v p99=%-7v max=%-7v", s.name, len(ds), pct(0.5), pct(0.99), ds[len(ds)-1].Round(time.Millisecond))
	if s.acked > 0 {
		out += fmt.Sprintf(" acked=%d lost=%d", s.acked, s.lost)
	}
	return out
}

func (s *stats) p50() time.Duration {
	ds := append([]time.Duration(nil), s.ds...)
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2]
}

// trial creates a fresh 1x1 database (so flap damping never applies),
// runs a writer, injects the fault and measures until a replica takes writes.
func (b *bench) trial(ctx context.Context, name string, fault func(db *api.DB) error, s *stats) error {
	if _, err := b.client(ctx).CreateDB(ctx, api.CreateDBRequest{Name: name, Memory: 16 << 20, Replicas: 1}); err != nil {
		return err
	}
	db, err := b.waitReady(ctx, name)
	if err != nil {
		return err
	}
	w := &testutil.Writer{Prefix: "w:", Discover: func(ctx context.Context) (string, string, error) {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		d, err := b.client(qctx).GetDB(qctx, name)
		if err != nil {
			return "", "", err
		}
		return d.Shards[0].Master.Addr, d.Password, nil
	}, CAFile: b.caFile()}
	wctx, stopW := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { w.Run(wctx); close(done) }()
	for len(w.Acks()) < 200 {
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	if err := fault(db); err != nil {
		stopW()
		return err
	}
	d, _, err := untilWritable(start, db.Password, b.caFile(), []string{db.Shards[0].Replicas[0].Addr}, 30*time.Second)
	if err != nil {
		stopW()
		return err
	}
	s.ds = append(s.ds, d)
	time.Sleep(300 * time.Millisecond) // the writer finds the new master (not a wait for a condition)
	stopW()
	<-done
	cur, err := b.client(ctx).GetDB(ctx, name)
	if err != nil {
		return err
	}
	r, err := w.Check(ctx, cur.Shards[0].Master.Addr, cur.Password)
	if err != nil {
		return err
	}
	s.acked += r.Acked
	s.lost += len(r.Lost)
	if len(r.Lost) > 0 && os.Getenv("BENCH_DEBUG") != "" {
		fmt.Printf("  %s: lost %d, first %v last %v after the fault, from %s (master was %s, replica %s)\n", name, len(r.Lost),
			r.Lost[0].At.Sub(start), r.Lost[len(r.Lost)-1].At.Sub(start), r.Lost[0].Addr, db.Shards[0].Master.Addr, db.Shards[0].Replicas[0].Addr)
	}
	return nil
}

func (b *bench) run(trials, nodeTrials int) error {
	ctx := context.Background()
	var err error
	if b.dir, err = os.MkdirTemp("", "marina-failover-bench-"); err != nil {
		return err
	}
	if b.hosts = freeHosts(); b.hosts == nil {
		return fmt.Errorf("no free loopback addresses")
	}
	b.procs = make([]*exec.Cmd, 3)
	for i := range b.hosts {
		if err := b.startNode(i); err != nil {
			return err
		}
		if i == 0 {
			time.Sleep(500 * time.Millisecond) // the bootstrap node first (joins retry anyway)
		}
	}
	if err := b.waitUp(ctx, 3); err != nil {
		return err
	}
	fmt.Printf("failover benchmark: 3 marina nodes and 3 redis-sentinels on one host, down-after %v for both\n", b.downAfter)
	fmt.Println("time = from the fault until the new master accepts a write")

	kill := &stats{name: "marina kill -9 master redis"}
	for i := 0; i < trials; i++ {
		if err := b.trial(ctx, fmt.Sprintf("k%d", i), func(db *api.DB) error {
			return syscall.Kill(pidOf(b.dir, db.Shards[0].Master), syscall.SIGKILL)
		}, kill); err != nil {
			return err
		}
	}
	fmt.Println(kill)

	stop := &stats{name: "marina SIGSTOP master redis"}
	for i := 0; i < trials; i++ {
		var pid int
		if err := b.trial(ctx, fmt.Sprintf("s%d", i), func(db *api.DB) error {
			pid = pidOf(b.dir, db.Shards[0].Master)
			return syscall.Kill(pid, syscall.SIGSTOP)
		}, stop); err != nil {
			return err
		}
		_ = syscall.Kill(pid, syscall.SIGCONT)
	}
	fmt.Println(stop)

	node := &stats{name: "marina kill -9 whole node"}
	for i := 0; i < nodeTrials; i++ {
		var victim int
		if err := b.trial(ctx, fmt.Sprintf("n%d", i), func(db *api.DB) error {
			victim, _ = strconv.Atoi(strings.TrimPrefix(db.Shards[0].Master.Node, "n"))
			victim--
			b.killNode(victim)
			return nil
		}, node); err != nil {
			return err
		}
		if err := b.startNode(victim); err != nil {
			return err
		}
		if err := b.waitBack(ctx, victim); err != nil {
			return err
		}
	}
	fmt.Println(node)

	sw := &stats{name: "marina planned switchover pause"}
	if _, err := b.client(ctx).CreateDB(ctx, api.CreateDBRequest{Name: "sw", Memory: 16 << 20, Replicas: 1}); err != nil {
		return err
	}
	if _, err := b.waitReady(ctx, "sw"); err != nil {
		return err
	}
	w := &testutil.Writer{Prefix: "sw:", Discover: func(ctx context.Context) (string, string, error) {
		d, err := b.client(ctx).GetDB(ctx, "sw")
		if err != nil {
			return "", "", err
		}
		return d.Shards[0].Master.Addr, d.Password, nil
	}, CAFile: b.caFile()}
	wctx, stopW := context.WithCancel(ctx)
	defer stopW()
	done := make(chan struct{})
	go func() { w.Run(wctx); close(done) }()
	for i := 0; i < trials; i++ {
		if _, err := b.waitReady(ctx, "sw"); err != nil {
			return err
		}
		res, err := b.client(ctx).Switchover(ctx, "sw", 0)
		if err != nil {
			return err
		}
		sw.ds = append(sw.ds, res[0].Pause)
	}
	stopW()
	<-done
	cur, _ := b.waitReady(ctx, "sw")
	r, err := w.Check(ctx, cur.Shards[0].Master.Addr, cur.Password)
	if err != nil {
		return err
	}
	sw.acked, sw.lost = r.Acked, len(r.Lost)
	fmt.Println(sw)

	sent, err := b.sentinelTrials(ctx, trials)
	if err != nil {
		return err
	}
	fmt.Println(sent)
	fmt.Printf("ratio sentinel / marina, kill -9 master p50: %.1fx\n", float64(sent.p50())/float64(kill.p50()))
	return nil
}

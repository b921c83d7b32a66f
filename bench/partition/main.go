// Command partition measures what a network partition of a master's node
// costs, on a 3-node Marina cluster and on redis-sentinel in the same run,
// each host in its own network namespace joined by a bridge: the master's
// host is cut off (its bridge port down) for 10 s (some rounds 30 s), then
// healed, while clients write on both sides and every acknowledged key is
// read back afterwards. It prints figures; it asserts nothing. Needs root.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
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
	if testutil.WriterChild() {
		return // a writer inside a namespace (see testutil.StartNSWriter)
	}
	bin := flag.String("marina", "bin/marina", "marina binary")
	rounds := flag.Int("rounds", 20, "partitions with durability async; half of them the master's node leads")
	long := flag.Int("long", 2, "of those, how many last -long-cut instead of -cut")
	cut := flag.Duration("cut", 10*time.Second, "partition length")
	longCut := flag.Duration("long-cut", 30*time.Second, "length of the long partitions")
	replicated := flag.Int("replicated", 10, "partitions with durability replicated")
	sentinels := flag.Int("sentinel", 5, "partitions of a redis-sentinel setup with the same down-after")
	flag.Parse()
	redis.SetLogger(quiet{})
	if err := run(*bin, *rounds, *long, *cut, *longCut, *replicated, *sentinels); err != nil {
		fmt.Fprintln(os.Stderr, "bench/partition:", err)
		os.Exit(1)
	}
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

// round is what one partition did.
type round struct {
	leader      bool
	cut         time.Duration
	lostCutOff  int           // acknowledged on the cut-off side, lost
	ackedCutOff int           // acknowledged on the cut-off side
	lastLost    time.Duration // after the cut, of the latest lost ack on the cut-off side (-1: none)
	afterHeal   int           // lost acks acknowledged after the heal (any side)
	lostMaj     int
	ackedMaj    int
	lastLostMaj time.Duration // after the cut, of the latest lost majority-side ack
	unavailable time.Duration // longest gap between the majority writer's acks
	apiMax      time.Duration // longest API read answer on the majority side during the cut
	apiWrite    time.Duration // a change sent to a majority node at the cut, until answered
	promoted    time.Duration
}

func run(bin string, rounds, long int, cut, longCut time.Duration, replicated, sentinels int) error {
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("ip (iproute2) needed for network namespaces")
	}
	dir, err := os.MkdirTemp("", "marina-bench-partition-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	m, err := startMarina(bin, filepath.Join(dir, "marina"))
	if err != nil {
		return err
	}
	defer m.stop()
	fmt.Printf("Marina: 3 nodes in network namespaces, lease 800ms, down-after 1s; partitions of %v (%d of %v)\n", cut, long, longCut)
	var async, repl []round
	for r := 0; r < rounds+replicated; r++ {
		durability := "async"
		if r >= rounds {
			durability = "replicated"
		}
		d := cut
		if r < rounds && r >= rounds-long {
			d = longCut
		}
		res, err := m.partition(fmt.Sprintf("p%d", r), r%2 == 0, d, durability)
		if err != nil {
			return fmt.Errorf("round %d: %w", r, err)
		}
		fmt.Printf("  %-10s leader=%-5v cut=%-4v cut-off side lost %5d of %5d (last %v after the cut, %d after the heal); majority lost %d of %d, unavailable %v; promoted %v; API read max %v, write %v\n",
			durability, res.leader, res.cut, res.lostCutOff, res.ackedCutOff, ms(res.lastLost), res.afterHeal, res.lostMaj, res.ackedMaj,
			ms(res.unavailable), ms(res.promoted), ms(res.apiMax), ms(res.apiWrite))
		if durability == "async" {
			async = append(async, res)
		} else {
			repl = append(repl, res)
		}
	}
	m.stop()
	var sent []round
	if sentinels > 0 {
		s, err := startSentinel(filepath.Join(dir, "sentinel"))
		if err != nil {
			return err
		}
		defer s.stop()
		for r := 0; r < sentinels; r++ {
			res, err := s.partition(cut)
			if err != nil {
				return fmt.Errorf("sentinel round %d: %w", r, err)
			}
			fmt.Printf("  sentinel   cut=%-4v cut-off side lost %5d of %5d (last %v after the cut, %d after the heal); majority unavailable %v\n",
				res.cut, res.lostCutOff, res.ackedCutOff, ms(res.lastLost), res.afterHeal, ms(res.unavailable))
			sent = append(sent, res)
		}
		s.stop()
	}
	report(async, repl, sent)
	return nil
}

func ms(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	return d.Round(time.Millisecond).String()
}

// pct returns p50, p99 and max of ds (rank p*n rounded, 1-based).
func pct(ds []time.Duration) (p50, p99, mx time.Duration) {
	if len(ds) == 0 {
		return -1, -1, -1
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(p float64) time.Duration {
		i := int(p*float64(len(s)) + 0.5)
		return s[min(max(i-1, 0), len(s)-1)]
	}
	return at(0.5), at(0.99), s[len(s)-1]
}

func line(name string, ds []time.Duration) {
	p50, p99, mx := pct(ds)
	fmt.Printf("  %-58s n=%-3d p50=%-8s p99=%-8s max=%s\n", name, len(ds), ms(p50), ms(p99), ms(mx))
}

// counts prints p50, p99 and max of a per-round count.
func counts(name string, rs []round, f func(round) int) {
	var ns []int
	for _, r := range rs {
		ns = append(ns, f(r))
	}
	if len(ns) == 0 {
		return
	}
	sort.Ints(ns)
	at := func(p float64) int { return ns[min(max(int(p*float64(len(ns))+0.5)-1, 0), len(ns)-1)] }
	fmt.Printf("  %-58s n=%-3d p50=%-8d p99=%-8d max=%d\n", name, len(ns), at(0.5), at(0.99), ns[len(ns)-1])
}

func report(async, repl, sent []round) {
	pick := func(rs []round, f func(round) (time.Duration, bool)) []time.Duration {
		var out []time.Duration
		for _, r := range rs {
			if d, ok := f(r); ok {
				out = append(out, d)
			}
		}
		return out
	}
	sum := func(rs []round, f func(round) int) int {
		n := 0
		for _, r := range rs {
			n += f(r)
		}
		return n
	}
	fmt.Println()
	fmt.Println("Marina, durability async (target: last lost write acknowledged < 1s after the cut, none after the heal):")
	for _, c := range []struct {
		name string
		keep func(round) bool
	}{{"all", func(round) bool { return true }}, {"master's node leads", func(r round) bool { return r.leader }},
		{"master's node follows", func(r round) bool { return !r.leader }}} {
		var rs []round
		for _, r := range async {
			if c.keep(r) {
				rs = append(rs, r)
			}
		}
		line("cut-off side: last lost write acknowledged after the cut ("+c.name+")", pick(rs, func(r round) (time.Duration, bool) { return r.lastLost, r.lastLost >= 0 }))
		line("majority side: writes unavailable ("+c.name+")", pick(rs, func(r round) (time.Duration, bool) { return r.unavailable, true }))
	}
	counts("cut-off side: acknowledged writes lost per partition", async, func(r round) int { return r.lostCutOff })
	counts("majority side: acknowledged writes lost per partition", async, func(r round) int { return r.lostMaj })
	line("majority side: last lost write acknowledged after the cut", pick(async, func(r round) (time.Duration, bool) {
		return r.lastLostMaj, r.lastLostMaj > -time.Hour && r.lostMaj > 0
	}))
	line("promotion after the cut", pick(async, func(r round) (time.Duration, bool) { return r.promoted, r.promoted >= 0 }))
	line("longest API read answer on the majority side during the cut", pick(append(append([]round(nil), async...), repl...),
		func(r round) (time.Duration, bool) { return r.apiMax, true }))
	line("a change sent to a majority node at the cut, answered after", pick(append(append([]round(nil), async...), repl...),
		func(r round) (time.Duration, bool) { return r.apiWrite, true }))
	fmt.Printf("  acknowledged writes lost: cut-off side %d of %d, majority side %d of %d; acknowledged after the heal and lost: %d\n",
		sum(async, func(r round) int { return r.lostCutOff }), sum(async, func(r round) int { return r.ackedCutOff }),
		sum(async, func(r round) int { return r.lostMaj }), sum(async, func(r round) int { return r.ackedMaj }),
		sum(async, func(r round) int { return r.afterHeal }))
	if len(repl) > 0 {
		fmt.Println("Marina, durability replicated (target: 0 lost through endpoints):")
		fmt.Printf("  acknowledged through endpoints and lost: cut-off side %d of %d, majority side %d of %d\n",
			sum(repl, func(r round) int { return r.lostCutOff }), sum(repl, func(r round) int { return r.ackedCutOff }),
			sum(repl, func(r round) int { return r.lostMaj }), sum(repl, func(r round) int { return r.ackedMaj }))
		line("majority side: writes unavailable", pick(repl, func(r round) (time.Duration, bool) { return r.unavailable, true }))
	}
	if len(sent) > 0 {
		fmt.Println("redis-sentinel (3 sentinels, quorum 2, same down-after, no min-replicas-to-write), same partitions:")
		line("cut-off side: last lost write acknowledged after the cut", pick(sent, func(r round) (time.Duration, bool) { return r.lastLost, r.lastLost >= 0 }))
		line("majority side: writes unavailable", pick(sent, func(r round) (time.Duration, bool) { return r.unavailable, true }))
		fmt.Printf("  acknowledged writes lost: cut-off side %d of %d\n",
			sum(sent, func(r round) int { return r.lostCutOff }), sum(sent, func(r round) int { return r.ackedCutOff }))
		m50, _, _ := pct(pick(async, func(r round) (time.Duration, bool) { return r.lastLost, r.lastLost >= 0 }))
		s50, _, _ := pct(pick(sent, func(r round) (time.Duration, bool) { return r.lastLost, r.lastLost >= 0 }))
		if m50 > 0 && s50 > 0 {
			fmt.Printf("  loss window (p50 of the last lost ack after the cut): sentinel / Marina = %.1fx\n", float64(s50)/float64(m50))
		}
	}
}

// analyze fills a round from the writers' acks and what the master has.
func analyze(res *round, cutAt, healAt time.Time, majority []testutil.Ack, lostMaj []testutil.Ack, cutOff [][]testutil.Ack, lostCutOff [][]testutil.Ack) {
	res.ackedMaj, res.lostMaj = len(majority), len(lostMaj)
	res.lastLostMaj = -time.Hour
	for _, a := range lostMaj {
		res.lastLostMaj = max(res.lastLostMaj, a.At.Sub(cutAt))
	}
	for k := 1; k < len(majority); k++ {
		res.unavailable = max(res.unavailable, majority[k].At.Sub(majority[k-1].At))
	}
	res.lastLost = -1
	for i := range cutOff {
		res.ackedCutOff += len(cutOff[i])
		res.lostCutOff += len(lostCutOff[i])
		for _, a := range lostCutOff[i] {
			res.lastLost = max(res.lastLost, a.At.Sub(cutAt))
		}
	}
	for _, l := range append(append([][]testutil.Ack(nil), lostCutOff...), lostMaj) {
		for _, a := range l {
			if !a.At.Before(healAt) {
				res.afterHeal++
			}
		}
	}
}

// marina is the 3-node cluster.
type marina struct {
	nn    *testutil.Netns
	procs []*exec.Cmd
	dir   string
}

func startMarina(bin, dir string) (*marina, error) {
	bin, err := filepath.Abs(bin) // ip netns exec runs it elsewhere
	if err != nil {
		return nil, err
	}
	nn, err := testutil.NewNetns(3)
	if err != nil {
		return nil, err
	}
	m := &marina{nn: nn, dir: dir}
	for i, h := range nn.Hosts {
		ndir := filepath.Join(dir, fmt.Sprintf("n%d", i+1))
		if err := os.MkdirAll(ndir, 0o700); err != nil {
			m.stop()
			return nil, err
		}
		args := []string{"netns", "exec", nn.Names[i], bin, "server", "--id", fmt.Sprintf("n%d", i+1), "--data", ndir, "--bind", h,
			"--http-port", "7000", "--raft-port", "7001", "--redis-ports", "7100-7999", "--memory", "2GiB", "--log-level", "warn",
			"--flap-max", "1000", "--heal-after", "1h"}
		if i > 0 {
			args = append(args, "--join", nn.Hosts[0]+":7000", "--cacert", m.caFile())
		}
		logf, err := os.OpenFile(filepath.Join(ndir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			m.stop()
			return nil, err
		}
		cmd := exec.Command("ip", args...)
		cmd.Env = append(os.Environ(), "MARINA_TOKEN="+token)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		err = cmd.Start()
		logf.Close()
		if err != nil {
			m.stop()
			return nil, err
		}
		go func() { _ = cmd.Wait() }()
		m.procs = append(m.procs, cmd)
		if i == 0 {
			if err := waitFor(30*time.Second, func() error { _, err := m.client(0).Status(context.Background()); return err }); err != nil {
				b, _ := os.ReadFile(filepath.Join(ndir, "server.log"))
				m.stop()
				return nil, fmt.Errorf("%w; n1's log: %s", err, strings.TrimSpace(string(b)))
			}
		}
	}
	err = waitFor(60*time.Second, func() error {
		st, err := m.client(0).Status(context.Background())
		if err == nil && st.NodesUp != 3 {
			err = fmt.Errorf("%d nodes up", st.NodesUp)
		}
		return err
	})
	if err != nil {
		b, _ := os.ReadFile(filepath.Join(dir, "n1", "server.log"))
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		err = fmt.Errorf("%w; n1's log ends: %s", err, strings.Join(lines[max(0, len(lines)-5):], " | "))
		m.stop()
	}
	return m, err
}

func (m *marina) stop() {
	for _, p := range m.procs {
		_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
	}
	m.procs = nil
	testutil.KillPidfiles(m.dir)
	if m.nn != nil {
		m.nn.Close()
		m.nn = nil
	}
}

func (m *marina) client(i int) *client.Client {
	return client.New(m.nn.Hosts[i]+":7000", token, client.CAFile(m.caFile()))
}

// caFile is the cluster CA as the first node wrote it.
func (m *marina) caFile() string { return filepath.Join(m.dir, "n1", "tls", "ca.pem") }

// any returns a client of a node that knows a leader.
func (m *marina) any() *client.Client {
	for i := range m.nn.Hosts {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		st, err := m.client(i).Status(ctx)
		cancel()
		if err == nil && st.Leader != "" {
			return m.client(i)
		}
	}
	return m.client(0)
}

func (m *marina) index(id string) int {
	var i int
	fmt.Sscanf(id, "n%d", &i)
	return i - 1
}

func waitFor(limit time.Duration, f func() error) error {
	deadline := time.Now().Add(limit)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("after %v: %w", limit, err)
}

func endpointOn(db *api.DB, host string) string {
	for _, e := range db.Endpoints {
		if strings.HasPrefix(e, host+":") {
			return e
		}
	}
	return ""
}

// partition runs one round on a fresh database.
func (m *marina) partition(name string, leader bool, cutFor time.Duration, durability string) (round, error) {
	ctx := context.Background()
	res := round{leader: leader, cut: cutFor, promoted: -1}
	if _, err := m.any().CreateDB(ctx, api.CreateDBRequest{Name: name, Memory: 16 << 20, Replicas: 2, Durability: durability}); err != nil {
		return res, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		_ = m.any().DeleteDB(dctx, name)
	}()
	var db *api.DB
	if err := waitFor(60*time.Second, func() error {
		var err error
		if db, err = m.any().GetDB(ctx, name); err == nil && db.Status != api.DBReady {
			err = fmt.Errorf("status %s", db.Status)
		}
		return err
	}); err != nil {
		return res, err
	}
	i := m.index(db.Shards[0].Master.Node)
	want := i
	if !leader {
		want = (i + 1) % 3
	}
	if err := waitFor(30*time.Second, func() error {
		st, err := m.any().Status(ctx)
		if err != nil || st.Leader == fmt.Sprintf("n%d", want+1) {
			return err
		}
		return m.any().Lead(ctx, fmt.Sprintf("n%d", want+1))
	}); err != nil {
		return res, err
	}
	maj := (i + 1) % 3
	start := func(ns, addr, prefix, caFile string) (*testutil.NSWriter, error) {
		return testutil.StartNSWriter(ns, addr, db.Password, name+prefix, caFile)
	}
	majW, err := start("", endpointOn(db, m.nn.Hosts[maj]), ":maj:", "")
	if err != nil {
		return res, err
	}
	defer majW.Stop()
	cutOff := []*testutil.NSWriter{}
	targets := []string{endpointOn(db, m.nn.Hosts[i])}
	if durability != "replicated" {
		targets = append(targets, db.Shards[0].Master.Addr) // straight to the redis-server
	}
	for k, addr := range targets {
		ca := ""
		if k > 0 {
			ca = m.caFile() // straight to the redis-server: TLS only
		}
		w, err := start(m.nn.Names[i], addr, fmt.Sprintf(":cut%d:", k), ca)
		if err != nil {
			return res, err
		}
		defer w.Stop()
		cutOff = append(cutOff, w)
	}
	for _, w := range append([]*testutil.NSWriter{majW}, cutOff...) {
		if err := waitFor(10*time.Second, func() error {
			if n := len(w.Acks()); n < 50 {
				return fmt.Errorf("%d acks", n)
			}
			return nil
		}); err != nil {
			return res, err
		}
	}
	// Probes of the majority side's API during the cut.
	probeCtx, stopProbe := context.WithCancel(ctx)
	defer stopProbe()
	probed := make(chan struct{}, 2)
	go func() {
		defer func() { probed <- struct{}{} }()
		for probeCtx.Err() == nil {
			t0 := time.Now()
			qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			_, _ = m.client(maj).GetDB(qctx, name)
			cancel()
			res.apiMax = max(res.apiMax, time.Since(t0))
			select {
			case <-probeCtx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	cutAt := time.Now()
	if err := m.nn.Cut(i); err != nil {
		return res, err
	}
	go func() {
		defer func() { probed <- struct{}{} }()
		cl := m.client(maj)
		cl.RetryFor = 20 * time.Second
		t0 := time.Now()
		qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_ = cl.SetZonePriority(qctx, "bench-probe", 100)
		res.apiWrite = time.Since(t0)
	}()
	time.Sleep(cutFor) // the partition's length
	if err := m.nn.Heal(i); err != nil {
		return res, err
	}
	healAt := time.Now()
	stopProbe()
	<-probed
	<-probed
	var master api.Instance
	if err := waitFor(60*time.Second, func() error {
		got, err := m.any().GetDB(ctx, name)
		if err != nil {
			return err
		}
		if got.Status != api.DBReady {
			return fmt.Errorf("status %s", got.Status)
		}
		for _, r := range got.Shards[0].Replicas {
			if !r.LinkUp {
				return fmt.Errorf("replica %s not linked", r.ID)
			}
		}
		master = got.Shards[0].Master
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
	majW.Stop()
	var cutAcks, cutLost [][]testutil.Ack
	for _, w := range cutOff {
		w.Stop()
		acks := w.Acks()
		lost, err := testutil.Lost(ctx, acks, master.Addr, db.Password, m.caFile())
		if err != nil {
			return res, err
		}
		cutAcks, cutLost = append(cutAcks, acks), append(cutLost, lost)
	}
	majAcks := majW.Acks()
	majLost, err := testutil.Lost(ctx, majAcks, master.Addr, db.Password, m.caFile())
	if err != nil {
		return res, err
	}
	analyze(&res, cutAt, healAt, majAcks, majLost, cutAcks, cutLost)
	if evs, err := m.any().Events(ctx, name); err == nil {
		for _, e := range evs {
			if e.Type == "failover" && e.Time.After(cutAt) {
				res.promoted = e.Time.Sub(cutAt)
			}
		}
	}
	return res, nil
}

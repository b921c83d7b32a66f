// Command scale measures how Marina's control plane holds with many
// databases on a 3-node `marina up`: it creates --dbs databases (1 shard,
// 1 replica, 16 MiB) one after another through the API while it polls the
// Raft leader every 0.5 s, waits until every instance serves and every
// replica is in sync, and then measures the leader process at rest (CPU,
// allocations per second). It prints figures beside their targets; it
// asserts nothing, and exits non-zero only when it cannot run.
//
// First, the control plane alone (controlplane.go): the FSM and the
// topology view fed with --cp-dbs databases on --cp-nodes nodes, without
// redis-servers: apply latency, snapshot and restore, memory per database,
// the cost of one state read. --control-plane-only stops there.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/api"
	"github.com/marina-redis/marina/internal/client"
	"github.com/marina-redis/marina/internal/testutil"
)

func main() {
	var o options
	flag.StringVar(&o.bin, "marina", "bin/marina", "marina binary")
	flag.IntVar(&o.dbs, "dbs", 300, "databases to create, one after another")
	flag.StringVar(&o.dbMemory, "db-memory", "16MiB", "memory of each database")
	flag.StringVar(&o.nodeMemory, "node-memory", "8GiB", "memory each node offers (marina up --memory)")
	flag.DurationVar(&o.poll, "poll", 500*time.Millisecond, "how often the leader is polled")
	flag.DurationVar(&o.retryFor, "retry-for", time.Minute, "how long an API call is retried while there is no leader")
	flag.DurationVar(&o.readyTimeout, "ready-timeout", 10*time.Minute, "how long to wait for every instance to serve and sync")
	flag.DurationVar(&o.settle, "settle", 5*time.Second, "wait before the at-rest window, once everything is ready")
	flag.DurationVar(&o.rest, "rest", 30*time.Second, "at-rest window over which the leader's CPU and allocations are measured")
	flag.DurationVar(&o.saturate, "saturate", 30*time.Second, "then the host's CPUs saturated this long (redis-benchmark through an endpoint, busy loops): leader changes counted; 0 skips it")
	cpDBs := flag.Int("cp-dbs", 10000, "databases fed to the control plane alone")
	cpNodes := flag.Int("cp-nodes", 100, "nodes of the control plane alone")
	cpOnly := flag.Bool("control-plane-only", false, "measure the control plane alone, start no cluster")
	flag.Parse()
	if *cpDBs > 0 {
		if err := controlPlane(*cpDBs, *cpNodes); err != nil {
			fmt.Fprintln(os.Stderr, "bench/scale: control plane:", err)
			os.Exit(1)
		}
		if *cpOnly {
			return
		}
	}
	redis.SetLogger(quiet{})
	// Ctrl-C (or SIGTERM) cancels the run; everything started is stopped
	// and removed before exiting.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, o)
	switch {
	case err != nil && ctx.Err() != nil:
		fmt.Fprintln(os.Stderr, "bench/scale: interrupted; cluster stopped and removed")
		os.Exit(130)
	case err != nil:
		fmt.Fprintln(os.Stderr, "bench/scale:", err)
		os.Exit(1)
	}
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

type options struct {
	bin                  string
	dbs                  int
	dbMemory, nodeMemory string
	poll, retryFor       time.Duration
	readyTimeout         time.Duration
	settle, rest         time.Duration
	saturate             time.Duration
}

// Port layout of the cluster under a base port B (marina up's, with the
// endpoints moved so that more than 190 databases fit): HTTP B, Raft B+1,
// Sentinel B+2, redis-servers B+200..B+999, endpoints B+1000..B+1999.
const (
	span        = 2000
	proxyOffset = 1000
	maxDBs      = span - proxyOffset
)

// freeBase finds a base port whose HTTP, Raft and Sentinel ports are free on
// the three loopback hosts (as bench/provision does, with a wider span).
func freeBase() int {
	for p := 20000; p+span < 65000; p += span {
		ok := true
		for i := 1; i <= 3 && ok; i++ {
			for _, q := range []int{p, p + 1, p + 2, p + proxyOffset} {
				ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:%d", i, q))
				if err != nil {
					ok = false
					break
				}
				ln.Close()
			}
		}
		if ok {
			return p
		}
	}
	return 0
}

// cluster is a `marina up` this benchmark started.
type cluster struct {
	dir  string // marina up --dir
	cmd  *exec.Cmd
	done chan struct{}
	env  map[string]string
}

func startCluster(ctx context.Context, bin, dir, nodeMemory string) (*cluster, error) {
	base := freeBase()
	if base == 0 {
		return nil, errors.New("no free base port")
	}
	cl := &cluster{dir: filepath.Join(dir, "up"), done: make(chan struct{}), env: map[string]string{}}
	cmd := exec.Command(bin, "up", "--nodes", "3", "--dir", cl.dir, "--base-port", strconv.Itoa(base),
		"--proxy-ports", fmt.Sprintf("%d-%d", base+proxyOffset, base+span-1), "--memory", nodeMemory)
	// Its own process group, so that Ctrl-C reaches only this benchmark,
	// which stops the cluster in order; Pdeathsig stops it if we are killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	cl.cmd = cmd
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_ = cmd.Wait()
		close(cl.done)
	}()
	// Whatever it prints later is read and dropped, so that it never blocks.
	defer func() {
		go func() {
			for range lines {
			}
		}()
	}()
	for len(cl.env) < 3 {
		select {
		case l, ok := <-lines:
			if !ok {
				return cl, fmt.Errorf("marina up exited before it printed MARINA_ADDR, MARINA_TOKEN and MARINA_CACERT")
			}
			if k, v, ok := strings.Cut(l, "="); ok && strings.HasPrefix(k, "MARINA_") {
				cl.env[k] = v
			}
		case <-ctx.Done():
			return cl, ctx.Err()
		case <-time.After(2 * time.Minute):
			return cl, errors.New("marina up not ready after 2m")
		}
	}
	return cl, nil
}

// stop ends `marina up` (which stops its nodes and their redis-servers),
// kills whatever is left, and removes the directory.
func (cl *cluster) stop(keep bool) {
	if cl.cmd != nil && cl.cmd.Process != nil {
		_ = cl.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-cl.done:
		case <-time.After(45 * time.Second):
			_ = syscall.Kill(-cl.cmd.Process.Pid, syscall.SIGKILL)
		}
	}
	// Nodes and redis-servers that outlived marina up.
	for _, pid := range nodePids(cl.dir) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	testutil.KillPidfiles(cl.dir)
}

func (cl *cluster) client() *client.Client {
	return client.New(cl.env["MARINA_ADDR"], cl.env["MARINA_TOKEN"], client.CAFile(cl.env["MARINA_CACERT"]))
}

// nodePids maps node ids to the pids of the `marina server` processes of
// the cluster in dir.
func nodePidMap(dir string) map[string]int {
	out := map[string]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "--data" && filepath.Dir(args[i+1]) == dir && len(args) > 1 && args[1] == "server" {
				out[filepath.Base(args[i+1])] = pid
			}
		}
	}
	return out
}

func nodePids(dir string) []int {
	var pids []int
	for _, p := range nodePidMap(dir) {
		pids = append(pids, p)
	}
	return pids
}

// cpuTicks is a process's user+system CPU time in clock ticks (1/100 s),
// from /proc/PID/stat (as in bench/proxy).
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return -1
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

// rssMiB is a process's resident memory.
func rssMiB(pid int) float64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// leaderWatch polls the leader every interval and counts what it saw.
type leaderWatch struct {
	c        *client.Client
	interval time.Duration
	paused   atomic.Bool

	mu            sync.Mutex
	polls         int
	noLeader      int
	failed        int // no answer within 2s
	changes       int
	leader        string
	history       []string // "n1", then each change with its time
	longestNone   time.Duration
	noneSince     time.Time
	start         time.Time
	localAnswered int
}

func (w *leaderWatch) run(ctx context.Context) {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if w.paused.Load() {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := w.c.Status(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		w.record(st, err)
	}
}

func (w *leaderWatch) record(st *api.Status, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	w.polls++
	leader := ""
	switch {
	case err != nil:
		w.failed++
	case st.Leader == "":
		w.noLeader++
	default:
		leader = st.Leader
	}
	if leader == "" {
		if w.noneSince.IsZero() {
			w.noneSince = now
		}
		return
	}
	if !w.noneSince.IsZero() {
		w.longestNone = max(w.longestNone, now.Sub(w.noneSince))
		w.noneSince = time.Time{}
	}
	if leader != w.leader {
		if w.leader != "" {
			w.changes++
		}
		w.leader = leader
		w.history = append(w.history, fmt.Sprintf("%s@%v", leader, now.Sub(w.start).Round(100*time.Millisecond)))
	}
}

func (w *leaderWatch) current() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.leader
}

// logCounts counts lines of the nodes' logs: redis-servers started and
// killed, and Raft elections (hashicorp/raft logs them at warn level).
type logCounts struct {
	starts, killed, configRestarts, elections int
}

func countLogs(dir string) logCounts {
	var c logCounts
	files, _ := filepath.Glob(filepath.Join(dir, "n*", "server.log"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s := string(b)
		c.starts += strings.Count(s, `msg="started redis-server"`)
		c.killed += strings.Count(s, "killing unresponsive redis-server")
		c.configRestarts += strings.Count(s, "restarting redis-server to apply config")
		c.elections += strings.Count(s, "heartbeat timeout reached, starting election") + strings.Count(s, "Election timeout reached, restarting election")
	}
	return c
}

// pct is the nearest-rank percentile of sorted durations.
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := int(p*float64(len(ds)) + 0.5)
	return ds[min(max(i-1, 0), len(ds)-1)]
}

func p50p99(ds []time.Duration) string {
	ds = append([]time.Duration(nil), ds...)
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	if len(ds) == 0 {
		return "no samples"
	}
	r := func(d time.Duration) time.Duration {
		if d < 10*time.Millisecond {
			return d.Round(10 * time.Microsecond)
		}
		return d.Round(time.Millisecond)
	}
	return fmt.Sprintf("%v / %v (max %v, n=%d)", r(pct(ds, 0.5)), r(pct(ds, 0.99)), r(ds[len(ds)-1]), len(ds))
}

// metricsClient reads a node's Prometheus /metrics (HTTPS, bearer token).
type metricsClient struct {
	token, ca string
}

func (m metricsClient) get(ctx context.Context, addr string) (map[string]float64, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	// As client.New does: a TLS client sends no IP address as the server
	// name, so the check is told which address it verifies.
	tc := client.CAFile(m.ca)
	verify := tc.VerifyConnection
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		cs.ServerName = host
		return verify(cs)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, "GET", "https://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+m.token)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/metrics: %s", addr, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 64<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' || strings.Contains(l, "{") {
			continue
		}
		if name, v, ok := strings.Cut(l, " "); ok {
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				out[name] = f
			}
		}
	}
	return out, sc.Err()
}

// instanceReady asks a redis-server directly (over TLS with the cluster
// CA) whether it serves in its role: a master with its replicas
// connected, a replica with its link up and no sync in progress.
func instanceReady(ctx context.Context, ca, pw string, in api.Instance, replicas int) error {
	r := redis.NewClient(&redis.Options{Addr: in.Addr, Password: pw, Protocol: 2, DisableIdentity: true, MaxRetries: -1, PoolSize: 1,
		DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, TLSConfig: testutil.TLSWith(ca, in.Addr)})
	defer r.Close()
	info, err := r.Info(ctx, "replication").Result()
	if err != nil {
		return err
	}
	field := func(k string) string {
		for _, l := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(l, k+":"); ok {
				return v
			}
		}
		return ""
	}
	if in.Role == "master" {
		if field("role") != "master" || field("connected_slaves") != strconv.Itoa(replicas) {
			return fmt.Errorf("role %s, %s replicas connected", field("role"), field("connected_slaves"))
		}
		return nil
	}
	if field("role") != "slave" || field("master_link_status") != "up" || field("master_sync_in_progress") != "0" {
		return fmt.Errorf("role %s, link %s, sync in progress %s", field("role"), field("master_link_status"), field("master_sync_in_progress"))
	}
	return nil
}

// row is one line of the result table.
type row struct{ what, value, target string }

func run(ctx context.Context, o options) error {
	if o.dbs < 1 || o.dbs > maxDBs {
		return fmt.Errorf("--dbs %d: must be 1..%d", o.dbs, maxDBs)
	}
	dbMem, err := api.ParseSize(o.dbMemory)
	if err != nil {
		return fmt.Errorf("--db-memory: %v", err)
	}
	dir, err := os.MkdirTemp("", "marina-bench-scale-")
	if err != nil {
		return err
	}
	keep := os.Getenv("BENCH_KEEP") != ""
	defer func() {
		if keep {
			fmt.Println("kept", dir)
			return
		}
		os.RemoveAll(dir)
	}()
	cl, err := startCluster(ctx, o.bin, dir, o.nodeMemory)
	if cl != nil {
		defer cl.stop(keep)
	}
	if err != nil {
		return err
	}
	base := countLogs(cl.dir) // what starting the cluster logged

	var retries atomic.Int64
	c := cl.client()
	c.RetryFor = o.retryFor
	c.OnRetry = func(msg string) {
		n := retries.Add(1)
		fmt.Fprintf(os.Stderr, "bench/scale: retry %d: %s\n", n, msg)
	}
	w := &leaderWatch{c: cl.client(), interval: o.poll, start: time.Now()}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go w.run(wctx)

	fmt.Printf("marina scale benchmark: 3-node marina up, %d databases (1 shard, 1 replica, %s) created one after another through the API;\n", o.dbs, o.dbMemory)
	fmt.Printf("the leader polled every %v throughout (paused during the at-rest window), API calls retried for %v while there is no leader\n", o.poll, o.retryFor)

	// Create, and show each database right after.
	var creates, shows []time.Duration
	var createFailed []string
	createErrApplied := 0 // creates answered with an error, applied all the same
	start := time.Now()
	for i := 0; i < o.dbs; i++ {
		name := fmt.Sprintf("scale-%04d", i)
		t0 := time.Now()
		_, err := c.CreateDB(ctx, api.CreateDBRequest{Name: name, Memory: api.Size(dbMem), Shards: 1, Replicas: 1})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		took := time.Since(t0)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench/scale: create %s: %v\n", name, err)
			// An answer lost to a leader change ("may or may not have been
			// applied"): the database may exist all the same.
			if _, gerr := c.GetDB(ctx, name); gerr != nil {
				createFailed = append(createFailed, fmt.Sprintf("%s: %v", name, err))
				continue
			}
			createErrApplied++
			fmt.Fprintf(os.Stderr, "bench/scale: %s exists: the create was applied\n", name)
		}
		creates = append(creates, took)
		t0 = time.Now()
		if _, err := c.GetDB(ctx, name); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fmt.Fprintf(os.Stderr, "bench/scale: show %s: %v\n", name, err)
		} else {
			shows = append(shows, time.Since(t0))
		}
		if (i+1)%50 == 0 || i+1 == o.dbs {
			fmt.Printf("  %d created in %v (leader %s, %d retries)\n", i+1, time.Since(start).Round(100*time.Millisecond), w.current(), retries.Load())
		}
	}
	if len(creates) == 0 {
		return fmt.Errorf("no database could be created: %s", createFailed[0])
	}
	createdIn := time.Since(start)

	// Until the API says every database is ready, then ask every
	// redis-server itself.
	deadline := time.Now().Add(o.readyTimeout)
	var dbs []api.DB
	var ready, total int
	for {
		list, err := c.ListDBs(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil {
			dbs, ready = list, 0
			for _, db := range list {
				if db.Status == api.DBReady {
					ready++
				}
			}
			if ready == len(list) {
				break
			}
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	apiReadyIn := time.Since(start)
	serving := 0
	var notServing []string
	for {
		serving, total, notServing = 0, 0, nil
		for _, db := range dbs {
			for _, sh := range db.Shards {
				for _, in := range append([]api.Instance{sh.Master}, sh.Replicas...) {
					total++
					if err := instanceReady(ctx, cl.env["MARINA_CACERT"], db.Password, in, len(sh.Replicas)); err != nil {
						notServing = append(notServing, fmt.Sprintf("%s %s %s: %v", db.Name, in.Role, in.Addr, err))
					} else {
						serving++
					}
				}
			}
		}
		if serving == total || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	allReadyIn := time.Since(start)
	for i, s := range notServing {
		if i == 5 {
			fmt.Printf("  ... and %d more not serving or not in sync\n", len(notServing)-5)
			break
		}
		fmt.Println("  not serving or not in sync:", s)
	}

	// At rest: no API calls, the leader's process measured over the window.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(o.settle):
	}
	st, err := c.Status(ctx)
	if err != nil {
		return fmt.Errorf("status before the at-rest window: %w", err)
	}
	leaderID, leaderAddr := st.Leader, ""
	for _, n := range st.Nodes {
		if n.ID == leaderID {
			leaderAddr = n.HTTPAddr
		}
	}
	pids := nodePidMap(cl.dir)
	leaderPid := pids[leaderID]
	if leaderID == "" || leaderAddr == "" || leaderPid == 0 {
		return fmt.Errorf("no leader to measure at rest (leader %q at %q, pids %v)", leaderID, leaderAddr, pids)
	}
	w.paused.Store(true)
	mc := metricsClient{token: cl.env["MARINA_TOKEN"], ca: cl.env["MARINA_CACERT"]}
	// Two scrapes back to back: their difference is what one scrape costs,
	// taken off the figure (the window ends with another scrape).
	m0, err := mc.get(ctx, leaderAddr)
	if err != nil {
		return err
	}
	m1, err := mc.get(ctx, leaderAddr)
	if err != nil {
		return err
	}
	ticks0 := map[string]int64{}
	for id, pid := range pids {
		ticks0[id] = cpuTicks(pid)
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(o.rest):
	}
	window := time.Since(t0)
	cpu := map[string]float64{}
	for id, pid := range pids {
		t1 := cpuTicks(pid)
		if t1 < 0 || ticks0[id] < 0 {
			return fmt.Errorf("node %s (pid %d) exited during the at-rest window", id, pid)
		}
		cpu[id] = float64(t1-ticks0[id]) / 100 / window.Seconds() * 100
	}
	m2, err := mc.get(ctx, leaderAddr)
	if err != nil {
		return err
	}
	w.paused.Store(false)
	scrapeMallocs := m1["go_memstats_mallocs_total"] - m0["go_memstats_mallocs_total"]
	scrapeBytes := m1["go_memstats_alloc_bytes_total"] - m0["go_memstats_alloc_bytes_total"]
	mallocs := (m2["go_memstats_mallocs_total"] - m1["go_memstats_mallocs_total"] - scrapeMallocs) / window.Seconds()
	allocBytes := (m2["go_memstats_alloc_bytes_total"] - m1["go_memstats_alloc_bytes_total"] - scrapeBytes) / window.Seconds()
	leaderRSS := rssMiB(leaderPid)

	var sat saturation
	if o.saturate > 0 && len(dbs) > 0 {
		fmt.Printf("  saturating the CPUs for %v (redis-benchmark -P 16 through %s's endpoint, busy loops)\n", o.saturate, dbs[0].Name)
		if sat, err = saturate(ctx, o.saturate, dbs[0], w, cl.dir); err != nil {
			return fmt.Errorf("saturation: %w", err)
		}
	}

	// One more poll after the window, then the counts.
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	st2, err := w.c.Status(pctx)
	cancel()
	w.record(st2, err)
	stopWatch()
	evs, err := c.Events(ctx, "")
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	evTypes := map[string]int{}
	killedEvents := 0
	for _, e := range evs {
		evTypes[e.Type]++
		if e.Type == "fence" && strings.HasPrefix(e.Reason, "killed") {
			killedEvents++
		}
	}
	logs := countLogs(cl.dir)
	instances := 0
	for _, db := range dbs {
		for _, sh := range db.Shards {
			instances += 1 + len(sh.Replicas)
		}
	}

	w.mu.Lock()
	if !w.noneSince.IsZero() {
		w.longestNone = max(w.longestNone, time.Since(w.noneSince))
	}
	var followers []string
	for _, id := range []string{"n1", "n2", "n3"} {
		if id != leaderID {
			followers = append(followers, fmt.Sprintf("%s %.2f%%", id, cpu[id]))
		}
	}
	var evList []string
	for t, n := range evTypes {
		evList = append(evList, fmt.Sprintf("%s %d", t, n))
	}
	sort.Strings(evList)
	if len(evList) == 0 {
		evList = []string{"none"}
	}
	rows := []row{
		{"Raft leader changes (polls)", fmt.Sprintf("%d  (%s)", w.changes, strings.Join(w.history, " → ")), "0"},
		{"polls without a leader / unanswered", fmt.Sprintf("%d / %d of %d (longest without %v)", w.noLeader, w.failed, w.polls, w.longestNone.Round(100*time.Millisecond)), "0"},
		{"elections started (node logs)", strconv.Itoa(logs.elections - base.elections), "0"},
		{"API retries (no leader)", strconv.FormatInt(retries.Load(), 10), "0"},
		{"db create failed / error but applied", fmt.Sprintf("%d / %d of %d", len(createFailed), createErrApplied, o.dbs), "0"},
		{"db create p50 / p99", p50p99(creates), ""},
		{"db show p50 / p99", p50p99(shows), ""},
		{"created (sequential API calls) in", createdIn.Round(100 * time.Millisecond).String(), ""},
		{"databases ready (API)", fmt.Sprintf("%d of %d, after %v", ready, len(dbs), apiReadyIn.Round(100*time.Millisecond)), "all"},
		{"instances serving and in sync (INFO)", fmt.Sprintf("%d of %d, after %v", serving, total, allReadyIn.Round(100*time.Millisecond)), "all"},
		{"redis-servers killed (fence events / logs)", fmt.Sprintf("%d / %d", killedEvents, logs.killed-base.killed), "0"},
		{"redis-server restarts (starts - instances)", fmt.Sprintf("%d  (%d starts, %d instances, %d config restarts)",
			logs.starts-base.starts-instances, logs.starts-base.starts, instances, logs.configRestarts-base.configRestarts), "0"},
		{"events", strings.Join(evList, ", "), ""},
		{fmt.Sprintf("leader %s CPU at rest (%v)", leaderID, window.Round(time.Second)), fmt.Sprintf("%.2f%% of one core", cpu[leaderID]), "< 2%"},
		{"leader allocations at rest", fmt.Sprintf("%.0f/s, %.1f KiB/s (one /metrics scrape: %.0f allocations)", mallocs, allocBytes/1024, scrapeMallocs), ""},
		{"leader memory", fmt.Sprintf("RSS %.0f MiB, heap in use %.0f MiB, %.0f goroutines", leaderRSS, m2["go_memstats_heap_inuse_bytes"]/(1<<20), m2["go_goroutines"]), ""},
		{"followers CPU at rest", strings.Join(followers, ", "), ""},
	}
	if sat.window > 0 {
		rows = append(rows,
			row{fmt.Sprintf("CPUs saturated (%v): leader changes", sat.window), fmt.Sprintf("%d (elections %d, polls without a leader %d)", sat.changes, sat.elections, sat.noLeader), "0"},
			row{"  redis-servers killed meanwhile", strconv.Itoa(sat.killed), "0"},
			row{"  load through the endpoint", sat.rps, ""})
	}
	w.mu.Unlock()
	fmt.Println()
	fmt.Printf("%-44s %-60s %s\n", "figure", "value", "target")
	for _, r := range rows {
		fmt.Printf("%-44s %-60s %s\n", r.what, r.value, r.target)
	}
	return nil
}

// Command proxy benchmarks the Marina proxy against twemproxy (nutcracker)
// and a direct redis-server, on the same machine and the same backends, in
// one run: redis-benchmark GET, SET and MSET (10 keys) with -c 50, -P 1 and
// -P 16, random keys; and the memory of 1000 idle client connections.
// It prints figures and ratios; it asserts nothing.
package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/marina-redis/marina/internal/pki"
	"github.com/marina-redis/marina/internal/proxy"
	"github.com/marina-redis/marina/internal/redisconf"
	"github.com/marina-redis/marina/internal/slots"
	"github.com/marina-redis/marina/internal/state"
)

const (
	pw     = "bench-password-1"
	secret = "bench-secret-1"
	host   = "127.0.0.1"
)

func main() {
	bin := flag.String("marina", "bin/marina", "marina binary")
	shards := flag.Int("shards", 2, "backend redis-servers (shards)")
	requests := flag.Int("n", 200000, "requests per redis-benchmark run")
	tests := flag.String("tests", "get,set,mset", "redis-benchmark tests to run, comma-separated")
	pipelines := flag.String("P", "1,16", "pipeline depths, comma-separated")
	flag.IntVar(&rounds, "rounds", 5, "interleaved runs per figure; the median is printed")
	hold := flag.Bool("hold", false, "set up backends, twemproxy and the Marina proxy, print their ports and wait for Ctrl-C (for profiling)")
	flag.Parse()
	holdOpen = *hold
	var pls []int
	for _, f := range strings.Split(*pipelines, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "bench/proxy: bad -P %q: want comma-separated depths like 1,16\n", *pipelines)
			os.Exit(2)
		}
		pls = append(pls, n)
	}
	if err := run(*bin, *shards, *requests, strings.Split(*tests, ","), pls); err != nil {
		fmt.Fprintln(os.Stderr, "bench/proxy:", err)
		os.Exit(1)
	}
}

// holdOpen: -hold, keep the set-up running instead of benchmarking.
var holdOpen bool

// rounds: runs per figure (-rounds).
var rounds int

type proc struct{ cmd *exec.Cmd }

func (p *proc) stop() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
		}
	}
}

func freePort() int {
	ln, err := net.Listen("tcp", host+":0")
	if err != nil {
		return 0
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitPort(addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s not listening", addr)
}

func start(name string, args ...string) (*proc, error) {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &proc{cmd: cmd}, nil
}

type result struct {
	rps, p50, p99 float64
	// cpu: the server's CPU time per request (user+system), microseconds.
	// Unlike requests/s it hardly depends on what else the machine runs.
	cpu float64
}

// benchmark runs redis-benchmark for one test and returns its figures.
// cpuTicks is a process's user+system CPU time in clock ticks (1/100 s).
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

func benchmark(port, pid int, test string, pipeline, n int, tlsArgs ...string) (result, error) {
	t0 := cpuTicks(pid)
	args := []string{"-h", host, "-p", strconv.Itoa(port), "-a", pw, "-c", "50", "-n", strconv.Itoa(n), "-r", "100000",
		"-P", strconv.Itoa(pipeline), "-t", test, "--csv", "-d", "32"}
	args = append(args, tlsArgs...)
	out, err := exec.Command("redis-benchmark", args...).Output()
	if err != nil {
		return result{}, fmt.Errorf("redis-benchmark %s: %v", test, err)
	}
	recs, err := csv.NewReader(strings.NewReader(string(out))).ReadAll()
	if err != nil || len(recs) < 2 {
		return result{}, fmt.Errorf("redis-benchmark output %q", out)
	}
	head, row := recs[0], recs[1]
	get := func(col string) float64 {
		for i, h := range head {
			if h == col && i < len(row) {
				v, _ := strconv.ParseFloat(row[i], 64)
				return v
			}
		}
		return 0
	}
	return result{rps: get("rps"), p50: get("p50_latency_ms"), p99: get("p99_latency_ms"),
		cpu: float64(cpuTicks(pid)-t0) * 10000 / float64(n)}, nil
}

func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// idleMemory opens 1000 authenticated idle connections and returns the
// growth of the process's resident memory.
func idleMemory(pid, port int) (int64, error) {
	before := rss(pid)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 1000; i++ {
		c, err := net.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return 0, err
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n*1\r\n$4\r\nPING\r\n", len(pw), pw)
		r := bufio.NewReader(c)
		for k := 0; k < 2; k++ {
			if _, err := r.ReadString('\n'); err != nil {
				return 0, err
			}
		}
	}
	time.Sleep(500 * time.Millisecond) // let the server settle (a measurement pause, not a wait for a condition)
	return rss(pid) - before, nil
}

func run(bin string, nshards, n int, tests []string, pipelines []int) error {
	for _, tool := range []string{"redis-server", "redis-benchmark", "nutcracker"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not installed (apt-get install redis-server redis-tools nutcracker)", tool)
		}
	}
	dir, err := os.MkdirTemp("", "marina-proxy-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var procs []*proc
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	caFile, certFile, keyFile, err := benchCerts(dir)
	if err != nil {
		return err
	}
	// Backends configured exactly as Marina configures them, plus a TLS
	// port with the same certificate (the internal side of the TLS cost).
	var backends, tlsBackends []string
	for i := 0; i < nshards; i++ {
		port := freePort()
		d := filepath.Join(dir, fmt.Sprintf("r%d", i))
		_ = os.MkdirAll(d, 0o700)
		c := redisconf.Config{Port: port, Bind: host, Dir: d, MaxMemory: 1 << 30, Policy: "allkeys-lru", Persistence: state.PersistNone, Password: pw, Secret: secret}
		tlsPort := freePort()
		conf := c.Render() + fmt.Sprintf("tls-port %d\ntls-cert-file %s\ntls-key-file %s\ntls-ca-cert-file %s\ntls-auth-clients optional\n",
			tlsPort, certFile, keyFile, caFile)
		if err := os.WriteFile(filepath.Join(d, "redis.conf"), []byte(conf), 0o600); err != nil {
			return err
		}
		tlsBackends = append(tlsBackends, net.JoinHostPort(host, strconv.Itoa(tlsPort)))
		p, err := start("redis-server", filepath.Join(d, "redis.conf"))
		if err != nil {
			return err
		}
		procs = append(procs, p)
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		if err := waitPort(addr); err != nil {
			return err
		}
		backends = append(backends, addr)
	}
	// twemproxy: ketama over the same backends.
	twPort := freePort()
	var servers strings.Builder
	for i, b := range backends {
		fmt.Fprintf(&servers, "   - %s:1 s%d\n", b, i)
	}
	twConf := fmt.Sprintf("bench:\n  listen: %s:%d\n  hash: fnv1a_64\n  distribution: ketama\n  redis: true\n  redis_auth: %s\n  auto_eject_hosts: false\n  timeout: 2000\n  server_connections: 1\n  servers:\n%s",
		host, twPort, pw, servers.String())
	if err := os.WriteFile(filepath.Join(dir, "nutcracker.yml"), []byte(twConf), 0o600); err != nil {
		return err
	}
	tw, err := start("nutcracker", "-c", filepath.Join(dir, "nutcracker.yml"), "-o", filepath.Join(dir, "nutcracker.log"), "-s", strconv.Itoa(freePort()))
	if err != nil {
		return err
	}
	procs = append(procs, tw)
	// Marina's proxy, in its own process like on a node.
	mPort := freePort()
	ranges := slots.Split(nshards)
	route := proxy.Route{Name: "bench", Addr: net.JoinHostPort(host, strconv.Itoa(mPort)), Password: pw, Secret: redisconf.ProxySecret(secret), MaxRequest: 512 << 20}
	for i, b := range backends {
		route.Shards = append(route.Shards, proxy.ShardRoute{Index: i, SlotStart: ranges[i].Start, SlotEnd: ranges[i].End, Master: b})
	}
	rb, _ := json.Marshal(route)
	if err := os.WriteFile(filepath.Join(dir, "route.json"), rb, 0o600); err != nil {
		return err
	}
	mp, err := start(bin, "proxy", filepath.Join(dir, "route.json"))
	if err != nil {
		return err
	}
	procs = append(procs, mp)
	// The same proxy with TLS to its clients (the cluster CA's kind of
	// certificate: ECDSA P-256), in a process of its own.
	tPort := freePort()
	route.Addr = net.JoinHostPort(host, strconv.Itoa(tPort))
	rb, _ = json.Marshal(route)
	if err := os.WriteFile(filepath.Join(dir, "route-tls.json"), rb, 0o600); err != nil {
		return err
	}
	tp, err := start(bin, "proxy", "--tls-cert", certFile, "--tls-key", keyFile, filepath.Join(dir, "route-tls.json"))
	if err != nil {
		return err
	}
	procs = append(procs, tp)
	// And with TLS to the redis-servers (their TLS ports).
	bPort := freePort()
	broute := route
	broute.Addr, broute.Shards = net.JoinHostPort(host, strconv.Itoa(bPort)), nil
	for i, b := range tlsBackends {
		broute.Shards = append(broute.Shards, proxy.ShardRoute{Index: i, SlotStart: ranges[i].Start, SlotEnd: ranges[i].End, Master: b})
	}
	rb, _ = json.Marshal(broute)
	if err := os.WriteFile(filepath.Join(dir, "route-btls.json"), rb, 0o600); err != nil {
		return err
	}
	bp, err := start(bin, "proxy", "--backend-ca", caFile, filepath.Join(dir, "route-btls.json"))
	if err != nil {
		return err
	}
	procs = append(procs, bp)
	for _, port := range []int{twPort, mPort, tPort, bPort} {
		if err := waitPort(net.JoinHostPort(host, strconv.Itoa(port))); err != nil {
			return err
		}
	}
	_ = context.Background()
	if holdOpen {
		fmt.Printf("backends %v, twemproxy 127.0.0.1:%d, marina 127.0.0.1:%d (pid %d), password %s; Ctrl-C ends\n", backends, twPort, mPort, mp.cmd.Process.Pid, pw)
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		return nil
	}
	// Idle connections first, on fresh processes: after the load runs a Go
	// process is still returning memory to the system, which hides the growth.
	twMem, err := idleMemory(tw.cmd.Process.Pid, twPort)
	if err != nil {
		return err
	}
	mMem, err := idleMemory(mp.cmd.Process.Pid, mPort)
	if err != nil {
		return err
	}
	fmt.Printf("memory per 1000 idle client connections (resident set growth): twemproxy %d KiB, marina %d KiB\n", twMem>>10, mMem>>10)

	fmt.Printf("proxy benchmark: redis-benchmark -c 50 -n %d -r 100000 -d 32, %d shards (redis-server %s), one host, median of %d runs\n", n, nshards, redisVersion(), rounds)
	fmt.Println("m/tw: Marina's requests/s over twemproxy's; cpu us/req: the proxy process's CPU time per request (lower is better)")
	fmt.Printf("%-6s %-3s %11s %11s %11s %6s   %-13s %-13s %-13s  %-17s\n", "test", "-P", "direct rps", "twem rps", "marina rps", "m/tw",
		"p50/p99 dir", "p50/p99 twem", "p50/p99 mar", "cpu us/req tw/m")
	for _, test := range tests {
		for _, pl := range pipelines {
			// The median of several runs each, interleaved, against the noise
			// of a shared two-core machine.
			var runs [3][]result
			for round := 0; round < rounds; round++ {
				for i, port := range []int{portOf(backends[0]), twPort, mPort} {
					r, err := benchmark(port, []int{procs[0].cmd.Process.Pid, tw.cmd.Process.Pid, mp.cmd.Process.Pid}[i], test, pl, n)
					if err != nil {
						return err
					}
					runs[i] = append(runs[i], r)
				}
			}
			var rs [3]result
			for i := range runs {
				rs[i] = median(runs[i])
			}
			fmt.Printf("%-6s %-3d %11.0f %11.0f %11.0f %5.2fx   %-13s %-13s %-13s  %-17s\n", test, pl, rs[0].rps, rs[1].rps, rs[2].rps, rs[2].rps/rs[1].rps,
				fmt.Sprintf("%.3f/%.3f", rs[0].p50, rs[0].p99), fmt.Sprintf("%.3f/%.3f", rs[1].p50, rs[1].p99), fmt.Sprintf("%.3f/%.3f", rs[2].p50, rs[2].p99),
				fmt.Sprintf("%.2f / %.2f", rs[1].cpu, rs[2].cpu))
		}
	}

	// What TLS to the clients costs: the same proxy, plaintext and TLS; and,
	// for reference, what it costs a redis-server itself (its TLS port) on
	// this machine, where redis-benchmark's own TLS work shares the cores.
	fmt.Println()
	fmt.Println("TLS, client side: Marina's endpoint in plaintext and in TLS (redis-benchmark --tls), same run; cost = 1 - tls/plain;")
	fmt.Println("  direct: one redis-server's own plaintext and TLS ports, the machine's floor for TLS with this client")
	fmt.Printf("%-6s %-3s %11s %11s %7s   %11s %11s %7s   %-13s %-13s  %-17s\n", "test", "-P", "plain rps", "tls rps", "cost",
		"direct pl", "direct tls", "cost", "p50/p99 plain", "p50/p99 tls", "cpu us/req pl/tls")
	tlsArgs := []string{"--tls", "--cacert", caFile}
	for _, test := range []string{"get", "set"} {
		for _, pl := range pipelines {
			var runs [4][]result
			for round := 0; round < rounds; round++ {
				for i, b := range []struct {
					port, pid int
					tls       bool
				}{{mPort, mp.cmd.Process.Pid, false}, {tPort, tp.cmd.Process.Pid, true},
					{portOf(backends[0]), procs[0].cmd.Process.Pid, false}, {portOf(tlsBackends[0]), procs[0].cmd.Process.Pid, true}} {
					var extra []string
					if b.tls {
						extra = tlsArgs
					}
					r, err := benchmark(b.port, b.pid, test, pl, n, extra...)
					if err != nil {
						return err
					}
					runs[i] = append(runs[i], r)
				}
			}
			pr, tr, dp, dt := median(runs[0]), median(runs[1]), median(runs[2]), median(runs[3])
			fmt.Printf("%-6s %-3d %11.0f %11.0f %6.0f%%   %11.0f %11.0f %6.0f%%   %-13s %-13s  %-17s\n", test, pl, pr.rps, tr.rps, 100*(1-tr.rps/pr.rps),
				dp.rps, dt.rps, 100*(1-dt.rps/dp.rps),
				fmt.Sprintf("%.3f/%.3f", pr.p50, pr.p99), fmt.Sprintf("%.3f/%.3f", tr.p50, tr.p99), fmt.Sprintf("%.2f / %.2f", pr.cpu, tr.cpu))
		}
	}
	fmt.Println()
	fmt.Println("TLS, internal side: Marina's endpoint (plaintext to clients) reaching the redis-servers in plaintext and over TLS (--redis-tls), same run")
	fmt.Printf("%-6s %-3s %11s %11s %7s   %-13s %-13s  %-17s\n", "test", "-P", "plain rps", "tls rps", "cost", "p50/p99 plain", "p50/p99 tls", "cpu us/req pl/tls")
	for _, test := range []string{"get", "set"} {
		for _, pl := range pipelines {
			var runs [2][]result
			for round := 0; round < rounds; round++ {
				r, err := benchmark(mPort, mp.cmd.Process.Pid, test, pl, n)
				if err != nil {
					return err
				}
				runs[0] = append(runs[0], r)
				if r, err = benchmark(bPort, bp.cmd.Process.Pid, test, pl, n); err != nil {
					return err
				}
				runs[1] = append(runs[1], r)
			}
			pr, tr := median(runs[0]), median(runs[1])
			fmt.Printf("%-6s %-3d %11.0f %11.0f %6.0f%%   %-13s %-13s  %-17s\n", test, pl, pr.rps, tr.rps, 100*(1-tr.rps/pr.rps),
				fmt.Sprintf("%.3f/%.3f", pr.p50, pr.p99), fmt.Sprintf("%.3f/%.3f", tr.p50, tr.p99), fmt.Sprintf("%.2f / %.2f", pr.cpu, tr.cpu))
		}
	}
	return nil
}

// benchCerts writes a CA and a server certificate for host, as the
// cluster CA would issue them.
func benchCerts(dir string) (caFile, certFile, keyFile string, err error) {
	ca, err := pki.NewCA("bench", time.Now())
	if err != nil {
		return "", "", "", err
	}
	key, keyPEM, err := pki.NewKey()
	if err != nil {
		return "", "", "", err
	}
	csr, err := pki.NewCSR(key, "bench")
	if err != nil {
		return "", "", "", err
	}
	cert, err := ca.SignNode(csr, "bench", []net.IP{net.ParseIP(host)}, time.Now(), time.Hour)
	if err != nil {
		return "", "", "", err
	}
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for f, b := range map[string][]byte{caFile: ca.CertPEM, certFile: cert, keyFile: keyPEM} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			return "", "", "", err
		}
	}
	return caFile, certFile, keyFile, nil
}

func median(rs []result) result {
	pick := func(f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		sort.Float64s(v)
		return v[len(v)/2]
	}
	return result{rps: pick(func(r result) float64 { return r.rps }), p50: pick(func(r result) float64 { return r.p50 }),
		p99: pick(func(r result) float64 { return r.p99 }), cpu: pick(func(r result) float64 { return r.cpu })}
}

func portOf(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

func redisVersion() string {
	out, _ := exec.Command("redis-server", "--version").Output()
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, "v=") {
			return f[2:]
		}
	}
	return "?"
}

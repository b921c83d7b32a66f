// Package up runs a whole local Marina cluster on loopback: one `marina
// server` process per node on 127.0.0.1, 127.0.0.2, ... in one command.
package up

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/marina-redis/marina/internal/client"
	"github.com/marina-redis/marina/internal/controller"
	"github.com/marina-redis/marina/internal/procs"
	"github.com/marina-redis/marina/internal/server"
)

// Options configure a local cluster.
type Options struct {
	Nodes    int
	Dir      string
	BasePort int // HTTP port; Raft is BasePort+1, Sentinel protocol +2, endpoints +10..+199, redis-servers +200..+999
	// ProxyPorts ("FROM-TO") replaces the endpoints' range BasePort+10..+199
	// (one port per database: 190 databases), e.g. for more databases.
	ProxyPorts  string
	Memory      int64 // per node; default: the host's safe share split across nodes
	RedisServer string
	Binary      string // the marina binary; default: this executable
	Out         io.Writer
	Log         io.Writer
}

// layout is saved in DIR/up.json so a second `marina up` brings the same
// cluster back with its state.
type layout struct {
	Nodes    int    `json:"nodes"`
	BasePort int    `json:"base_port"`
	Token    string `json:"token"`
	// ProxyPorts: the endpoints' range when not the default one.
	ProxyPorts string `json:"proxy_ports,omitempty"`
}

func host(i int) string { return fmt.Sprintf("127.0.0.%d", i+1) }

// Run starts the cluster, prints MARINA_ADDR and MARINA_TOKEN once it is
// ready, and on ctx's end stops every node and every redis-server.
func Run(ctx context.Context, o Options) error {
	if o.Nodes < 1 || o.Nodes > 9 {
		return fmt.Errorf("--nodes %d: must be 1..9", o.Nodes)
	}
	if o.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		o.Binary = exe
	}
	if _, err := exec.LookPath(o.RedisServer); err != nil {
		return fmt.Errorf("redis-server not found (%s): install it with apt-get install redis-server", o.RedisServer)
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	lay := layout{Nodes: o.Nodes, BasePort: o.BasePort, Token: controller.RandomSecret(24), ProxyPorts: o.ProxyPorts}
	layPath := filepath.Join(dir, "up.json")
	if b, err := os.ReadFile(layPath); err == nil {
		var old layout
		if err := json.Unmarshal(b, &old); err != nil {
			return fmt.Errorf("%s: %v (remove the directory to start afresh)", layPath, err)
		}
		if old.Nodes != o.Nodes || old.BasePort != o.BasePort {
			return fmt.Errorf("%s holds a %d-node cluster on port %d: use the same --nodes and --base-port, or another --dir", dir, old.Nodes, old.BasePort)
		}
		if o.ProxyPorts != "" && o.ProxyPorts != old.ProxyPorts {
			return fmt.Errorf("%s holds a cluster with endpoints on %s: use the same --proxy-ports (or none), or another --dir", dir, proxyPorts(old))
		}
		lay = old
	}
	if lay.ProxyPorts != "" {
		if _, _, err := server.ParsePortRange(lay.ProxyPorts); err != nil {
			return fmt.Errorf("--proxy-ports: %v", err)
		}
	}
	for i := 0; i < o.Nodes; i++ {
		for _, p := range []int{o.BasePort, o.BasePort + 1, o.BasePort + 2} {
			ln, err := net.Listen("tcp", net.JoinHostPort(host(i), strconv.Itoa(p)))
			if err != nil {
				return fmt.Errorf("port %s:%d is busy (another marina up?): pick another --base-port", host(i), p)
			}
			ln.Close()
		}
	}
	b, _ := json.MarshalIndent(lay, "", "  ")
	if err := os.WriteFile(layPath, b, 0o600); err != nil {
		return err
	}
	if o.Memory == 0 {
		o.Memory = server.DefaultMemory() / int64(o.Nodes)
	}

	caFile := filepath.Join(dir, "n1", "tls", "ca.pem")
	procs := make([]*exec.Cmd, o.Nodes)
	exited := make(chan int, o.Nodes)
	defer func() { stopAll(procs, dir) }()
	for i := 0; i < o.Nodes; i++ {
		ndir := filepath.Join(dir, fmt.Sprintf("n%d", i+1))
		if err := os.MkdirAll(ndir, 0o700); err != nil {
			return err
		}
		logf, err := os.OpenFile(filepath.Join(ndir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		args := []string{"server", "--id", fmt.Sprintf("n%d", i+1), "--data", ndir, "--bind", host(i),
			"--http-port", strconv.Itoa(o.BasePort), "--raft-port", strconv.Itoa(o.BasePort + 1),
			"--redis-ports", fmt.Sprintf("%d-%d", o.BasePort+200, o.BasePort+999),
			"--proxy-ports", proxyPorts(lay),
			"--sentinel-port", strconv.Itoa(o.BasePort + 2),
			"--memory", strconv.FormatInt(o.Memory, 10), "--redis-server", o.RedisServer, "--stop-instances-on-exit"}
		if i > 0 {
			// The others join once the first has created the cluster CA,
			// and check the member they join with it.
			if err := waitFile(ctx, caFile, exited); err != nil {
				return err
			}
			args = append(args, "--join", net.JoinHostPort(host(0), strconv.Itoa(o.BasePort)), "--cacert", caFile)
		}
		cmd := exec.Command(o.Binary, args...)
		// The token goes by environment, not argv, so ps does not show it.
		cmd.Env = append(cleanEnv(), "MARINA_TOKEN="+lay.Token)
		cmd.Stdout, cmd.Stderr = logf, logf
		// Own process group: the terminal's Ctrl-C reaches only `up`, which
		// stops the nodes in order. Pdeathsig stops them if `up` is killed.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
		if err := cmd.Start(); err != nil {
			logf.Close()
			return fmt.Errorf("start node %d: %w", i+1, err)
		}
		logf.Close()
		procs[i] = cmd
		go func(i int) {
			_ = cmd.Wait()
			exited <- i
		}(i)
	}
	addr := "https://" + net.JoinHostPort(host(0), strconv.Itoa(o.BasePort))
	if err := waitFile(ctx, caFile, exited); err != nil {
		return err
	}
	if err := waitReady(ctx, client.New(addr, lay.Token, client.CAFile(caFile)), o.Nodes, exited, dir); err != nil {
		return err
	}
	env := fmt.Sprintf("MARINA_ADDR=%s\nMARINA_TOKEN=%s\nMARINA_CACERT=%s\n", addr, lay.Token, caFile)
	if err := os.WriteFile(filepath.Join(dir, "env"), []byte(env), 0o600); err != nil {
		return err
	}
	fmt.Fprint(o.Out, env)
	fmt.Fprintf(o.Log, "marina up: %d nodes ready (logs in %s/n*/server.log); Ctrl-C stops them and their redis-servers\n", o.Nodes, dir)
	sentinels := make([]string, o.Nodes)
	for i := range sentinels {
		sentinels[i] = net.JoinHostPort(host(i), strconv.Itoa(o.BasePort+2))
	}
	fmt.Fprintf(o.Log, "marina up: Redis Sentinel protocol on %s (master name = database name)\n", strings.Join(sentinels, ","))
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(o.Log, "marina up: stopping")
			return nil
		case i := <-exited:
			fmt.Fprintf(o.Log, "marina up: node n%d exited unexpectedly: %s\n", i+1, tail(filepath.Join(dir, fmt.Sprintf("n%d", i+1), "server.log")))
		}
	}
}

// proxyPorts is the endpoints' range of a local cluster.
func proxyPorts(l layout) string {
	if l.ProxyPorts != "" {
		return l.ProxyPorts
	}
	return fmt.Sprintf("%d-%d", l.BasePort+10, l.BasePort+199)
}

// cleanEnv drops MARINA_* variables meant for the client, so a node is
// configured only by the flags above.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MARINA_") {
			out = append(out, kv)
		}
	}
	return out
}

// waitFile waits until the first node has written path (its CA).
func waitFile(ctx context.Context, path string, exited <-chan int) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case i := <-exited:
			return fmt.Errorf("node n%d exited during start: %s", i+1, tail(filepath.Join(filepath.Dir(filepath.Dir(path)), "server.log")))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the first node wrote no CA (%s) in 60s", path)
		}
	}
}

func waitReady(ctx context.Context, c *client.Client, n int, exited <-chan int, dir string) error {
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for {
		select {
		case i := <-exited:
			return fmt.Errorf("node n%d exited during start: %s", i+1, tail(filepath.Join(dir, fmt.Sprintf("n%d", i+1), "server.log")))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := c.Status(rctx)
		cancel()
		switch {
		case err != nil:
			last = err
		case st.Leader == "" || st.NodesUp < n || len(st.Nodes) < n:
			last = fmt.Errorf("%d of %d nodes up, leader %q", st.NodesUp, n, st.Leader)
		default:
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster not ready after 60s: %v (logs in %s)", last, dir)
		}
	}
}

// stopAll sends SIGTERM to every node (each stops its redis-servers), waits,
// then kills what is left, redis-servers included.
func stopAll(nodes []*exec.Cmd, dir string) {
	for _, p := range nodes {
		if p != nil && p.Process != nil {
			_ = p.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, p := range nodes {
		if p == nil || p.Process == nil {
			continue
		}
		for procs.Alive(p.Process.Pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if procs.Alive(p.Process.Pid) {
			_ = p.Process.Kill()
		}
	}
	procs.KillInstances(dir)
}

func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 3 {
			lines = lines[1:]
		}
	}
	if len(lines) == 0 {
		return errors.New("no log output").Error()
	}
	return strings.Join(lines, " | ")
}

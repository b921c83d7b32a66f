// Package faulttest runs Marina nodes as separate processes and breaks them
// for real: kill -9, SIGSTOP, and network partitions between network
// namespaces the tests create. It holds the harness; the tests are beside it.
package faulttest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/marina-redis/marina/internal/api"
	"github.com/marina-redis/marina/internal/client"
	"github.com/marina-redis/marina/internal/testutil"
)

const token = "fault-test-token-0123456789"

// node is one `marina server` process.
type node struct {
	id   string
	host string
	ns   string // network namespace, "" for the host's
	dir  string
	args []string
	cmd  *exec.Cmd
	done chan struct{}
}

// cluster is N node processes.
type cluster struct {
	t     *testing.T
	bin   string
	nodes []*node
	net   *netns // nil on loopback
}

type options struct {
	n        int
	netns    bool
	extra    []string // extra server flags for every node
	memory   string
	noVerify bool
}

// marinaBin is the binary under test, built once by TestMain.
var marinaBin string

func newCluster(t *testing.T, o options) *cluster {
	t.Helper()
	if o.memory == "" {
		o.memory = "512MiB"
	}
	c := &cluster{t: t, bin: marinaBin}
	var hosts []string
	if o.netns {
		c.net = newNetns(t, o.n)
		hosts = c.net.hosts
	} else {
		hosts = testutil.LoopbackHosts(t, o.n, 7000, 7001, 7100)
	}
	root := t.TempDir()
	t.Cleanup(func() {
		if t.Failed() {
			c.dumpLogs()
		}
		for _, n := range c.nodes {
			c.killAll(n)
		}
	})
	for i, h := range hosts {
		n := &node{id: fmt.Sprintf("n%d", i+1), host: h, dir: filepath.Join(root, fmt.Sprintf("n%d", i+1))}
		if c.net != nil {
			n.ns = c.net.names[i]
		}
		n.args = []string{"server", "--id", n.id, "--data", n.dir, "--bind", h, "--http-port", "7000", "--raft-port", "7001",
			"--redis-ports", "7100-7199", "--memory", o.memory, "--raft-timeout", "500ms", "--node-down-after", "3s", "--log-level", "debug"}
		if i > 0 {
			n.args = append(n.args, "--join", h0(hosts)+":7000", "--cacert", filepath.Join(root, "n1", "tls", "ca.pem"))
		}
		n.args = append(n.args, o.extra...)
		c.nodes = append(c.nodes, n)
	}
	for i := range c.nodes {
		c.start(i)
		if i == 0 {
			c.waitAPI(0)
		}
	}
	c.waitUp(o.n)
	return c
}

func h0(hosts []string) string { return hosts[0] }

// start launches node i (again).
func (c *cluster) start(i int) {
	n := c.nodes[i]
	if err := os.MkdirAll(n.dir, 0o700); err != nil {
		c.t.Fatal(err)
	}
	logf, err := os.OpenFile(filepath.Join(n.dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	var cmd *exec.Cmd
	if n.ns != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", n.ns, c.bin}, n.args...)...)
	} else {
		cmd = exec.Command(c.bin, n.args...)
	}
	cmd.Env = append(os.Environ(), "MARINA_TOKEN="+token)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	logf.Close()
	n.cmd = cmd
	n.done = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(n.done)
	}()
}

// caFile is the cluster CA bundle as the first node keeps it.
func (c *cluster) caFile() string { return filepath.Join(c.nodes[0].dir, "tls", "ca.pem") }

func (c *cluster) client(i int) *client.Client {
	return client.New(c.nodes[i].host+":7000", token, client.CAFile(c.caFile()))
}

// anyClient returns a client of a node whose API answers.
func (c *cluster) anyClient(ctx context.Context) *client.Client {
	for i := range c.nodes {
		if c.alive(i) {
			cl := c.client(i)
			sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			st, err := cl.Status(sctx)
			cancel()
			if err == nil && st.Leader != "" {
				return cl
			}
		}
	}
	return c.client(0)
}

func (c *cluster) alive(i int) bool {
	n := c.nodes[i]
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

func (c *cluster) waitAPI(i int) {
	testutil.WaitFor(c.t, 30*time.Second, "node API", func() error {
		if !c.alive(i) {
			return fmt.Errorf("node %d exited: %s", i+1, c.logTail(i))
		}
		_, err := c.client(i).Status(context.Background())
		return err
	})
}

func (c *cluster) waitUp(n int) {
	testutil.WaitFor(c.t, 60*time.Second, "nodes up", func() error {
		st, err := c.anyClient(context.Background()).Status(context.Background())
		if err != nil {
			return err
		}
		if st.NodesUp != n {
			return fmt.Errorf("%d of %d nodes up", st.NodesUp, n)
		}
		return nil
	})
}

// dumpLogs copies the nodes' logs where a failed test can be looked into.
func (c *cluster) dumpLogs() {
	dir, err := os.MkdirTemp("", "marina-fault-logs-")
	if err != nil {
		return
	}
	for _, n := range c.nodes {
		b, _ := os.ReadFile(filepath.Join(n.dir, "server.log"))
		_ = os.WriteFile(filepath.Join(dir, n.id+".log"), b, 0o600)
	}
	c.t.Logf("node logs in %s", dir)
}

func (c *cluster) logTail(i int) string {
	b, _ := os.ReadFile(filepath.Join(c.nodes[i].dir, "server.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-5):], "\n")
}

// killServer kill -9s node i's marina server only; its redis-servers live on.
func (c *cluster) killServer(i int) {
	n := c.nodes[i]
	if n.cmd != nil && c.alive(i) {
		_ = n.cmd.Process.Kill()
		<-n.done
	}
}

// killAll kill -9s a node's marina server and every redis-server it runs.
func (c *cluster) killAll(n *node) {
	if n.cmd != nil {
		_ = n.cmd.Process.Kill()
		select {
		case <-n.done:
		case <-time.After(5 * time.Second):
		}
	}
	testutil.KillPidfiles(n.dir)
}

// redisPid returns the pid of an instance's redis-server.
func (c *cluster) redisPid(in api.Instance) int {
	for _, n := range c.nodes {
		if n.id != in.Node {
			continue
		}
		b, err := os.ReadFile(filepath.Join(n.dir, "instances", in.ID, "redis.pid"))
		if err != nil {
			return 0
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return pid
	}
	return 0
}

func (c *cluster) index(id string) int {
	for i, n := range c.nodes {
		if n.id == id {
			return i
		}
	}
	c.t.Fatalf("no node %s", id)
	return -1
}

func (c *cluster) leaderIndex(ctx context.Context) int {
	st, err := c.anyClient(ctx).Status(ctx)
	if err != nil || st.Leader == "" {
		return -1
	}
	return c.index(st.Leader)
}

// netns is the test's view of testutil.Netns: failures end the test.
type netns struct {
	t *testing.T
	*testutil.Netns
	names, hosts []string
}

func newNetns(t *testing.T, n int) *netns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root (CI runs as root)")
	}
	nn, err := testutil.NewNetns(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nn.Close)
	return &netns{t: t, Netns: nn, names: nn.Names, hosts: nn.Hosts}
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// cut isolates host i from every other host and from the test.
func (nn *netns) cut(i int) {
	if err := nn.Cut(i); err != nil {
		nn.t.Fatal(err)
	}
}

// heal reconnects host i.
func (nn *netns) heal(i int) {
	if err := nn.Heal(i); err != nil {
		nn.t.Fatal(err)
	}
}

package server

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/marina-redis/marina/internal/api"
	"github.com/marina-redis/marina/internal/client"
	"github.com/marina-redis/marina/internal/hooks"
	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/testutil"
)

// hookDocs reads the documents an exec hook appended to path.
func hookDocs(path string) ([]hooks.Document, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []hooks.Document
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var d hooks.Document
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			return nil, fmt.Errorf("%s: %q: %v", path, sc.Text(), err)
		}
		out = append(out, d)
	}
	return out, sc.Err()
}

// waitDoc waits until the hook wrote a document of kind for db that
// satisfies ok, and returns it.
func waitDoc(t *testing.T, path, db, kind string, ok func(hooks.Document) error) hooks.Document {
	t.Helper()
	var found hooks.Document
	testutil.WaitFor(t, 20*time.Second, fmt.Sprintf("%s document of %s in %s", kind, db, filepath.Base(path)), func() error {
		docs, err := hookDocs(path)
		if err != nil {
			return err
		}
		last := fmt.Errorf("none among %d documents", len(docs))
		for _, d := range docs {
			if d.Name != db || d.Kind != kind {
				continue
			}
			if last = ok(d); last == nil {
				found = d
				return nil
			}
		}
		return last
	})
	return found
}

// backendServers returns the addresses of the servers of one backend of an
// HAProxy file, with " backup" appended for backups.
func backendServers(cfg, backend string) []string {
	var out []string
	in := false
	for _, line := range strings.Split(cfg, "\n") {
		if strings.HasPrefix(line, "backend ") {
			in = line == "backend "+backend
			continue
		}
		f := strings.Fields(line)
		if in && len(f) >= 3 && f[0] == "server" {
			s := f[2]
			if strings.HasSuffix(line, " backup") {
				s += " backup"
			}
			out = append(out, s)
		}
	}
	return out
}

func waitBackend(t *testing.T, file, backend string, want ...string) {
	t.Helper()
	testutil.WaitFor(t, 20*time.Second, fmt.Sprintf("%s in %s", backend, filepath.Base(file)), func() error {
		b, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		if got := backendServers(string(b), backend); fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("servers %v, want %v", got, want)
		}
		return nil
	})
}

// TestHooks: an exec hook and the HAProxy writer on every node of a 3-node
// cluster follow a database through create, a kill -9 failover and delete;
// node 3's exec hook always fails, which is an event and holds up nothing.
func TestHooks(t *testing.T) {
	dir := t.TempDir()
	docs := func(i int) string { return filepath.Join(dir, fmt.Sprintf("n%d.docs", i+1)) }
	haCfg := func(i int) string { return filepath.Join(dir, fmt.Sprintf("n%d-haproxy.cfg", i+1)) }
	reloads := func(i int) string { return filepath.Join(dir, fmt.Sprintf("n%d.reloads", i+1)) }
	haPid := filepath.Join(dir, "haproxy.pid")
	tc := newTestClusterWith(t, 3, 256<<20, func(i int, c *Config) {
		c.DownAfter = time.Second
		c.HookExec, c.HookTimeout, c.HookRetries = "cat >> "+docs(i), 10*time.Second, 3
		if i == 2 {
			c.HookExec, c.HookRetries = `cat > /dev/null; echo "dns update refused for $MARINA_DB" >&2; exit 2`, 1
		}
		c.HAProxyConfig, c.HAProxyReload = haCfg(i), fmt.Sprintf(`echo "$MARINA_EVENT" >> %s`, reloads(i))
		if i == 0 {
			// Node 1's reload also reloads a real HAProxy once the test started one.
			c.HAProxyReload += fmt.Sprintf(`; if [ -s %s ]; then kill -USR2 "$(cat %s)"; fi`, haPid, haPid)
		}
	})
	ctx := testutil.Ctx(t, 3*time.Minute)
	c := tc.client(0)
	// Every node wrote its (empty) HAProxy file: its hooks watch the state.
	testutil.WaitFor(t, 20*time.Second, "hooks started", func() error {
		for i := range tc.nodes {
			if _, err := os.Stat(reloads(i)); err != nil {
				return err
			}
		}
		return nil
	})

	if _, err := c.CreateDB(ctx, api.CreateDBRequest{Name: "hk", Memory: 16 << 20, Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	db := tc.waitReady(c, "hk")
	old, replica := db.Shards[0].Master, db.Shards[0].Replicas[0]
	var created hooks.Document
	for i := 0; i < 2; i++ {
		created = waitDoc(t, docs(i), "hk", hooks.KindCreate, func(d hooks.Document) error {
			if d.Topology == nil || len(d.Shards) != 1 || d.Shards[0].Master.Addr != old.Addr || d.Shards[0].Master.ID != old.ID ||
				len(d.Shards[0].Replicas) != 1 || d.Shards[0].Replicas[0].Addr != replica.Addr {
				return fmt.Errorf("document %+v", d)
			}
			if fmt.Sprint(d.Endpoints) != fmt.Sprint(db.Endpoints) || len(d.Endpoints) != 3 || d.Node != tc.cfgs[i].ID {
				return fmt.Errorf("endpoints %v (api: %v), node %s", d.Endpoints, db.Endpoints, d.Node)
			}
			return nil
		})
	}
	for i := range tc.nodes {
		waitBackend(t, haCfg(i), "hk-write", old.Addr)
		waitBackend(t, haCfg(i), "hk-read", replica.Addr, old.Addr+" backup")
	}
	checkHAProxyFile(t, haCfg(0))
	ha := startHAProxy(t, dir, tc.cfgs[0].Bind, haCfg(0), haPid)

	// Node 3's failing hook is a cluster event, through its own API.
	waitEvent := func(what string, match func(e string) bool) {
		t.Helper()
		testutil.WaitFor(t, 20*time.Second, what, func() error {
			evs, err := c.Events(ctx, "hk")
			if err != nil {
				return err
			}
			var seen []string
			for _, e := range evs {
				s := e.Type + " " + e.Node + " " + e.Reason
				if match(s) {
					return nil
				}
				seen = append(seen, s)
			}
			return fmt.Errorf("events %q", seen)
		})
	}
	waitEvent("hook-failed event for create", func(e string) bool {
		return strings.HasPrefix(e, "hook-failed n3 ") && strings.Contains(e, "create") && strings.Contains(e, "dns update refused for hk")
	})

	// Nodes report only their own hook-* events, for members, validated.
	for _, e := range []state.Event{{Type: "failover", Node: "n1", DB: "hk"}, {Type: "hook-failed", Node: "nobody"},
		{Type: "hook-failed", Node: "n1", DB: "Bad Name"}, {Type: "hook-failed", Node: "n1", Reason: strings.Repeat("x", 3000)}} {
		var ae *client.Error
		if err := tc.client(1).RecordEvent(ctx, e); !errors.As(err, &ae) || ae.Code != http.StatusBadRequest {
			t.Fatalf("event %+v: %v, want 400", e, err)
		}
	}

	// kill -9 the master: a failover document with the new master.
	start := time.Now()
	if err := syscall.Kill(pidOf(tc, old), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	db = waitNewMaster(t, tc, c, "hk", 0, old.ID)
	nm := db.Shards[0].Master
	t.Logf("new master %s serving after %v", nm.ID, time.Since(start))
	for i := 0; i < 2; i++ {
		d := waitDoc(t, docs(i), "hk", hooks.KindFailover, func(d hooks.Document) error {
			if d.Shards[0].Master.ID != nm.ID || d.Shards[0].Master.Addr != nm.Addr || d.Shards[0].Epoch <= created.Shards[0].Epoch {
				return fmt.Errorf("failover document: master %+v epoch %d", d.Shards[0].Master, d.Shards[0].Epoch)
			}
			return nil
		})
		t.Logf("node %d: failover document after %v", i+1, d.Time.Sub(start).Round(time.Millisecond))
	}
	for i := range tc.nodes {
		waitBackend(t, haCfg(i), "hk-write", nm.Addr)
	}
	checkHAProxyFile(t, haCfg(0))
	waitEvent("failover event", func(e string) bool { return strings.HasPrefix(e, "failover ") })
	waitEvent("hook-failed event for the failover", func(e string) bool {
		return strings.HasPrefix(e, "hook-failed n3 ") && strings.Contains(e, "failover")
	})
	if ha != nil {
		// The reload made the running HAProxy send writes to the new master.
		ha.waitServer(t, "hk-write", nm.ID)
		ha.write(t, ctx, db.Password, nm.Addr)
	}

	if err := c.DeleteDB(ctx, "hk"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		waitDoc(t, docs(i), "hk", hooks.KindDelete, func(d hooks.Document) error {
			if d.Topology != nil {
				return fmt.Errorf("delete document with a topology: %+v", d)
			}
			return nil
		})
	}
	for i := range tc.nodes {
		testutil.WaitFor(t, 20*time.Second, "backends removed", func() error {
			b, err := os.ReadFile(haCfg(i))
			if err != nil || strings.Contains(string(b), "backend hk-") {
				return fmt.Errorf("file still has hk backends (%v)", err)
			}
			return nil
		})
	}
}

// haproxyFrontends is a main configuration that loads the hook's file after
// it, as docs/hooks.md shows: frontends for the hk backends and a stats socket.
func haproxyFrontends(sock, host string, write, read int) string {
	return fmt.Sprintf(`global
    stats socket %s mode 600 level admin
defaults
    mode tcp
    timeout client 1h
    timeout connect 2s
    timeout server 1h
frontend hk-write
    bind %s
    default_backend hk-write
frontend hk-read
    bind %s
    default_backend hk-read
`, sock, net.JoinHostPort(host, fmt.Sprint(write)), net.JoinHostPort(host, fmt.Sprint(read)))
}

// checkHAProxyFile validates the hook's file with haproxy -c, when haproxy
// is installed (scripts/deps.sh installs it).
func checkHAProxyFile(t *testing.T, file string) {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Log("haproxy not installed: HAProxy file not validated")
		return
	}
	main := filepath.Join(t.TempDir(), "main.cfg")
	if err := os.WriteFile(main, []byte(haproxyFrontends(filepath.Join(filepath.Dir(main), "s.sock"), "127.0.0.1", 1, 2)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-c", "-f", main, "-f", file).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c -f %s -f %s: %v\n%s", main, file, err, out)
	}
}

// liveHAProxy is a real HAProxy (master-worker, reloaded with SIGUSR2 by the
// node's reload command) running the hook's file.
type liveHAProxy struct {
	sock       string
	host       string
	writePort  int
	readPort   int
	cmd        *exec.Cmd
	stderrPath string
}

func startHAProxy(t *testing.T, dir, host, file, pidFile string) *liveHAProxy {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Log("haproxy not installed: no live HAProxy check")
		return nil
	}
	h := &liveHAProxy{sock: filepath.Join(dir, "haproxy.sock"), host: host, writePort: testutil.FreePort(t, host), readPort: testutil.FreePort(t, host),
		stderrPath: filepath.Join(dir, "haproxy.log")}
	main := filepath.Join(dir, "haproxy-main.cfg")
	if err := os.WriteFile(main, []byte(haproxyFrontends(h.sock, host, h.writePort, h.readPort)), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(h.stderrPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	// -W: master-worker, so SIGUSR2 reloads; -db: foreground; -p: master pid.
	h.cmd = exec.Command(bin, "-W", "-db", "-p", pidFile, "-f", main, "-f", file)
	h.cmd.Stdout, h.cmd.Stderr = logf, logf
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = os.Remove(pidFile) // no more reloads
		_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
		_ = h.cmd.Wait()
	})
	testutil.WaitFor(t, 10*time.Second, "haproxy pid file", func() error {
		b, err := os.ReadFile(pidFile)
		if err != nil || len(strings.TrimSpace(string(b))) == 0 {
			return fmt.Errorf("no pid yet (%v)", err)
		}
		return nil
	})
	return h
}

// stat returns HAProxy's "show stat" rows: proxy/server -> status and check status.
func (h *liveHAProxy) stat() (map[string]string, error) {
	conn, err := net.DialTimeout("unix", h.sock, time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(conn, "show stat\n"); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		return nil, err
	}
	r := csv.NewReader(strings.NewReader(strings.TrimPrefix(string(b), "# ")))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) < 1 {
		return nil, fmt.Errorf("show stat: %v", err)
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	out := map[string]string{}
	for _, row := range rows[1:] {
		if len(row) > col["check_status"] {
			out[row[col["pxname"]]+"/"+row[col["svname"]]] = row[col["status"]] + " " + row[col["check_status"]]
		}
	}
	return out, nil
}

// waitServer waits until HAProxy's health check (AUTH as marina-proxy, PING,
// role:master) passes for server in backend.
func (h *liveHAProxy) waitServer(t *testing.T, backend, server string) {
	t.Helper()
	testutil.WaitFor(t, 20*time.Second, "haproxy "+backend+"/"+server+" up", func() error {
		st, err := h.stat()
		if err != nil {
			return err
		}
		if s := st[backend+"/"+server]; s != "UP L7OK" {
			log, _ := os.ReadFile(h.stderrPath)
			return fmt.Errorf("%s/%s: %q (all: %v)\n%s", backend, server, s, st, log)
		}
		return nil
	})
}

// write sets a key through HAProxy's write frontend and reads it on master.
func (h *liveHAProxy) write(t *testing.T, ctx context.Context, password, master string) {
	t.Helper()
	via := rc(net.JoinHostPort(h.host, fmt.Sprint(h.writePort)), "", password)
	defer via.Close()
	testutil.WaitFor(t, 10*time.Second, "write through haproxy", func() error {
		return via.Set(ctx, "via-haproxy", "1", 0).Err()
	})
	direct := rc(master, "", password)
	defer direct.Close()
	if v, err := direct.Get(ctx, "via-haproxy").Result(); err != nil || v != "1" {
		t.Fatalf("key written through haproxy not on the master %s: %q %v", master, v, err)
	}
}

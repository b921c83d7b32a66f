package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/testutil"
)

func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "marina")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// upBase finds a base port free on 127.0.0.1-3 for HTTP, Raft, Sentinel
// and the first endpoint. It stays below Linux's ephemeral range (32768 and up):
// there another test's outgoing connection may hold a port on 127.0.0.1.
func upBase(t *testing.T) int {
	start := os.Getpid() % 400
	for k := 0; k < 400; k++ {
		p := 20000 + ((start+k*37)%400)*25
		ok := true
		for i := 1; i <= 3 && ok; i++ {
			for _, q := range []int{p, p + 1, p + 2, p + 10, p + 100} {
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
	t.Fatal("no free base port")
	return 0
}

type result struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, bin string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, o.String(), e.String()}
}

func TestUpAndCLI(t *testing.T) {
	bin := build(t)
	dir := filepath.Join(t.TempDir(), "up")
	base := upBase(t)
	up := exec.Command(bin, "up", "--nodes", "3", "--dir", dir, "--base-port", strconv.Itoa(base), "--memory", "512MiB")
	up.Env = os.Environ()
	stdout, err := up.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var upErr bytes.Buffer
	up.Stderr = &upErr
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = up.Process.Kill()
		testutil.KillPidfiles(dir)
	})
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	vals := map[string]string{}
	timeout := time.After(90 * time.Second)
	for len(vals) < 3 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("marina up exited: %s", upErr.String())
			}
			if k, v, ok := strings.Cut(l, "="); ok {
				vals[k] = v
			}
		case <-timeout:
			t.Fatalf("marina up not ready: %s", upErr.String())
		}
	}
	if vals["MARINA_ADDR"] != fmt.Sprintf("https://127.0.0.1:%d", base) || len(vals["MARINA_TOKEN"]) < 20 ||
		vals["MARINA_CACERT"] != filepath.Join(dir, "n1", "tls", "ca.pem") {
		t.Fatalf("printed %v", vals)
	}
	envFile, err := os.ReadFile(filepath.Join(dir, "env"))
	if err != nil || !strings.Contains(string(envFile), "MARINA_TOKEN="+vals["MARINA_TOKEN"]) {
		t.Fatalf("env file: %q %v", envFile, err)
	}
	env := []string{"MARINA_ADDR=" + vals["MARINA_ADDR"], "MARINA_TOKEN=" + vals["MARINA_TOKEN"], "MARINA_CACERT=" + vals["MARINA_CACERT"]}

	r := runCLI(t, bin, env, "db", "create", "shop", "--memory", "32MiB", "--shards", "2", "--replicas", "1", "--eviction", "allkeys-lru")
	if r.code != 0 {
		t.Fatalf("db create: %d %s", r.code, r.stderr)
	}
	var show struct {
		Name      string   `json:"name"`
		Password  string   `json:"password"`
		Endpoints []string `json:"endpoints"`
		Shards    []struct {
			Master   struct{ Node, Addr string }   `json:"master"`
			Replicas []struct{ Node, Addr string } `json:"replicas"`
		} `json:"shards"`
	}
	r = runCLI(t, bin, env, "db", "show", "shop", "-o", "json")
	if r.code != 0 {
		t.Fatalf("db show: %s", r.stderr)
	}
	if err := json.Unmarshal([]byte(r.stdout), &show); err != nil {
		t.Fatalf("show json: %v\n%s", err, r.stdout)
	}
	if show.Name != "shop" || show.Password == "" || len(show.Shards) != 2 || len(show.Endpoints) != 3 {
		t.Fatalf("show: %+v", show)
	}
	// The endpoint on every node serves the (sharded) database.
	for i, ep := range show.Endpoints {
		e := redis.NewClient(&redis.Options{Addr: ep, Password: show.Password, Protocol: 2, DisableIdentity: true})
		testutil.WaitFor(t, 10*time.Second, "endpoint "+ep, func() error { return e.Set(context.Background(), fmt.Sprintf("ep%d", i), i, 0).Err() })
		if n, err := e.Exists(context.Background(), "ep0", fmt.Sprintf("ep%d", i)).Result(); err != nil || n < 1 {
			t.Fatalf("endpoint %s: %d %v", ep, n, err)
		}
		e.Close()
	}
	ctx := context.Background()
	for _, sh := range show.Shards {
		if sh.Master.Node == "" || len(sh.Replicas) != 1 || sh.Replicas[0].Node == sh.Master.Node {
			t.Fatalf("shard: %+v", sh)
		}
		// The redis-servers speak TLS only (--redis-tls, the default).
		m := redis.NewClient(&redis.Options{Addr: sh.Master.Addr, Password: show.Password, Protocol: 2, DisableIdentity: true,
			TLSConfig: testutil.TLSWith(vals["MARINA_CACERT"], sh.Master.Addr)})
		testutil.WaitFor(t, 10*time.Second, "master serving", func() error { return m.Set(ctx, "hello", "world", 0).Err() })
		rep := redis.NewClient(&redis.Options{Addr: sh.Replicas[0].Addr, Password: show.Password, Protocol: 2, DisableIdentity: true,
			TLSConfig: testutil.TLSWith(vals["MARINA_CACERT"], sh.Replicas[0].Addr)})
		testutil.WaitFor(t, 10*time.Second, "replica has the write", func() error {
			v, err := rep.Get(ctx, "hello").Result()
			if err != nil || v != "world" {
				return fmt.Errorf("%q %v", v, err)
			}
			return nil
		})
		m.Close()
		rep.Close()
	}
	// redis-cli, as in the README's quickstart.
	if _, err := exec.LookPath("redis-cli"); err == nil {
		host, port, _ := net.SplitHostPort(show.Shards[0].Master.Addr)
		out, err := exec.Command("redis-cli", "--tls", "--cacert", vals["MARINA_CACERT"], "-h", host, "-p", port, "--no-auth-warning", "-a", show.Password, "PING").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "PONG" {
			t.Fatalf("redis-cli: %s %v", out, err)
		}
	}

	r = runCLI(t, bin, env, "node", "list", "-o", "json")
	var nodes []map[string]any
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &nodes) != nil || len(nodes) != 3 {
		t.Fatalf("node list: %d %s %s", r.code, r.stdout, r.stderr)
	}
	for _, cmd := range [][]string{{"status"}, {"node", "list"}, {"db", "list"}, {"db", "show", "shop"}, {"status", "-o", "json"}, {"db", "list", "-o", "json"}} {
		if r := runCLI(t, bin, env, cmd...); r.code != 0 || r.stdout == "" {
			t.Fatalf("%v: %d %s", cmd, r.code, r.stderr)
		}
	}
	if r := runCLI(t, bin, env, "db", "list"); !strings.Contains(r.stdout, "shop") {
		t.Fatalf("db list: %s", r.stdout)
	}
	r = runCLI(t, bin, env, "db", "update", "shop", "--memory", "48MiB")
	if r.code != 0 || !strings.Contains(r.stdout, "48 MiB") {
		t.Fatalf("db update: %d %s %s", r.code, r.stdout, r.stderr)
	}

	// marina check: Nagios exit codes, exactly one status line on stdout.
	testutil.WaitFor(t, 20*time.Second, "marina check OK", func() error {
		r := runCLI(t, bin, env, "check")
		if r.code != 0 || !strings.HasPrefix(r.stdout, "MARINA OK - 3/3 nodes up, 1 database, 2/2 shards with a master | ") || strings.Count(r.stdout, "\n") != 1 {
			return fmt.Errorf("code %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
		}
		return nil
	})
	for _, unk := range []struct {
		env  []string
		args []string
		line string
	}{
		{env, []string{"check", "--db", "nope"}, "MARINA UNKNOWN - database nope not found"},
		{[]string{"MARINA_ADDR=" + vals["MARINA_ADDR"], "MARINA_TOKEN=wrong", "MARINA_CACERT=" + vals["MARINA_CACERT"]}, []string{"check"}, "MARINA UNKNOWN - missing or wrong API token"},
		// The CLI checks the server: without the cluster CA it does not
		// trust it, and sends no token.
		{[]string{"MARINA_ADDR=" + vals["MARINA_ADDR"], "MARINA_TOKEN=" + vals["MARINA_TOKEN"]}, []string{"check"}, "MARINA UNKNOWN - cannot reach " + vals["MARINA_ADDR"] + ": tls: failed to verify certificate: x509: certificate signed by unknown authority"},
		{[]string{"MARINA_ADDR=http://127.0.0.1:1", "MARINA_TOKEN=x"}, []string{"check"}, "MARINA UNKNOWN - cannot reach http://127.0.0.1:1"},
		{env, []string{"check", "--bogus"}, "MARINA UNKNOWN - unknown flag: --bogus"},
	} {
		r := runCLI(t, bin, unk.env, unk.args...)
		if r.code != 3 || !strings.HasPrefix(r.stdout, unk.line) || strings.Count(r.stdout, "\n") != 1 {
			t.Errorf("%v: code %d stdout %q stderr %q, want 3 and %q", unk.args, r.code, r.stdout, r.stderr, unk.line)
		}
	}

	// Bad input: non-zero exit and one readable line.
	for _, bad := range []struct {
		env  []string
		args []string
		msg  string
	}{
		{env, []string{"db", "create", "x", "--memory", "lots"}, "invalid size"},
		{env, []string{"db", "create", "x"}, "--memory is required"},
		{env, []string{"db", "create", "x", "--memory", "32MiB", "--replicas", "4"}, "does not fit"},
		{env, []string{"db", "create", "x", "--memory", "32MiB", "--shards", "0"}, "--shards 0: must be 1..256"},
		{env, []string{"db", "show", "nope"}, "not found"},
		{env, []string{"db", "update", "shop"}, "nothing to change"},
		{[]string{"MARINA_ADDR=" + vals["MARINA_ADDR"], "MARINA_TOKEN=wrong", "MARINA_CACERT=" + vals["MARINA_CACERT"]}, []string{"db", "list"}, "wrong API token"},
		{env, []string{"db", "list", "-o", "yaml"}, "use table or json"},
		{nil, []string{"server", "--data", t.TempDir(), "--bind", "0.0.0.0"}, "must be this node's IP"},
	} {
		r := runCLI(t, bin, bad.env, bad.args...)
		if r.code == 0 || !strings.HasPrefix(r.stderr, "marina: ") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(r.stderr, bad.msg) {
			t.Errorf("%v: code %d stderr %q, want one line with %q", bad.args, r.code, r.stderr, bad.msg)
		}
	}
	if r := runCLI(t, bin, env, "db", "list"); strings.Contains(r.stdout, "\nx ") {
		t.Fatal("refused create left a database")
	}

	// Ctrl-C stops every node and every redis-server.
	var pids []int
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Name() == "redis.pid" {
			b, _ := os.ReadFile(p)
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	if len(pids) != 4 {
		t.Fatalf("expected 4 redis pidfiles, found %d", len(pids))
	}
	if err := up.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- up.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("marina up exit: %v\n%s", err, upErr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("marina up did not stop")
	}
	for _, pid := range pids {
		if testutil.Alive(pid) {
			t.Errorf("redis-server %d still running after marina up stopped", pid)
		}
	}
	out, _ := exec.Command("pgrep", "-f", "--", "--data "+dir).Output()
	if len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("marina server processes left: %s", out)
	}
}

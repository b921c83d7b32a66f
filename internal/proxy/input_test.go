package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/marina-redis/marina/internal/testutil"
)

// rawConn is a client that writes raw protocol bytes.
func rawConn(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

// Before AUTH a client gets Redis's own small limits (10 arguments of
// 16 KiB), on every engine: the attack was one request of 512 MiB per
// connection, before any password.
func TestUnauthenticatedRequestsAreSmall(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	b := backend(t, host)
	onEngines(t, host, func(t *testing.T, e *endpoint) {
		d, _ := e.start(t, b)
		for _, c := range []struct{ in, want string }{
			{"*11\r\n", "-ERR Protocol error: unauthenticated multibulk length"},
			{"*2\r\n$3\r\nGET\r\n$16385\r\n", "-ERR Protocol error: unauthenticated bulk length"},
			{"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", "-NOAUTH"},
		} {
			conn, rd := e.raw(t, d.Addr())
			if _, err := conn.Write([]byte(c.in)); err != nil {
				t.Fatal(err)
			}
			line, err := rd.ReadString('\n')
			if err != nil || !strings.HasPrefix(line, c.want) {
				t.Errorf("%q: %q %v, want %q", c.in, line, err, c.want)
			}
		}
		// Logged in, the same request is fine.
		conn, rd := e.raw(t, d.Addr())
		big := strings.Repeat("v", 20000)
		fmt.Fprintf(conn, "*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n%s\r\n", len(testPW), testPW, len(big), big)
		for _, want := range []string{"+OK", "+OK"} {
			if line, err := rd.ReadString('\n'); err != nil || !strings.HasPrefix(line, want) {
				t.Fatalf("after AUTH: %q %v", line, err)
			}
		}
	})
}

// loggedIn is a raw client of addr that has sent AUTH with the password.
func loggedIn(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, rd := rawConn(t, addr)
	fmt.Fprintf(conn, "*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(testPW), testPW)
	if line, err := rd.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
		t.Fatalf("AUTH: %q %v", line, err)
	}
	return conn, rd
}

// The node's budget for incomplete client input: two clients each
// sending the start of a large request; the one that would exceed the
// budget is refused and closed, the other goes on, and the budget is
// free again once they are gone. The event loop charges the budget (doc.go),
// so on the loop only.
func TestInputBudget(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	d, _ := startProxy(t, host, backend(t, host))
	budget := &Budget{Max: 1 << 20}
	r := d.topo.Load().route
	r.Input, r.MaxRequest = budget, 8<<20
	d.Update(r)
	login := func() (net.Conn, *bufio.Reader) { return loggedIn(t, d.Addr()) }
	part := strings.Repeat("x", 600<<10)
	first, frd := login()
	fmt.Fprintf(first, "*3\r\n$3\r\nSET\r\n$1\r\na\r\n$%d\r\n%s", len(part)+len(part)/2, part)
	testutil.WaitFor(t, 5*time.Second, "the first request charged", func() error {
		if budget.Used() < 600<<10 {
			return fmt.Errorf("used %d", budget.Used())
		}
		return nil
	})
	second, srd := login()
	fmt.Fprintf(second, "*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$%d\r\n%s", 2*len(part), part)
	line, err := srd.ReadString('\n')
	if err != nil || !strings.Contains(line, "proxy-input-budget") {
		t.Fatalf("second client: %q %v", line, err)
	}
	if _, err := srd.ReadString('\n'); err == nil {
		t.Fatal("second client not closed")
	}
	// The first completes its request.
	fmt.Fprintf(first, "%s\r\n", part[:len(part)/2])
	if line, err := frd.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
		t.Fatalf("first client: %q %v", line, err)
	}
	first.Close()
	testutil.WaitFor(t, 5*time.Second, "the budget free again", func() error {
		if u := budget.Used(); u != 0 {
			return fmt.Errorf("used %d", u)
		}
		return nil
	})
}

// A large request arriving in small pieces is answered correctly (it is
// followed by the resumable scanner, then parsed once).
func TestRequestInPieces(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	onEngines(t, host, func(t *testing.T, e *endpoint) {
		d, px := e.start(t, backend(t, host))
		r := d.topo.Load().route
		r.MaxRequest = 64 << 20
		d.Update(r)
		conn, rd := e.raw(t, d.Addr())
		var b strings.Builder
		fmt.Fprintf(&b, "*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(testPW), testPW)
		const n = 100000
		fmt.Fprintf(&b, "*%d\r\n$4\r\nMSET\r\n", 2*n+1)
		for i := 0; i < n; i++ {
			k, v := fmt.Sprintf("key:%d", i), fmt.Sprint(i)
			fmt.Fprintf(&b, "$%d\r\n%s\r\n$%d\r\n%s\r\n", len(k), k, len(v), v)
		}
		in := b.String()
		for len(in) > 0 {
			m := min(len(in), 1000)
			if _, err := conn.Write([]byte(in[:m])); err != nil {
				all, _ := io.ReadAll(rd)
				t.Fatalf("%v (answered %q)", err, all)
			}
			in = in[m:]
		}
		for i := 0; i < 2; i++ {
			if line, err := rd.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
				t.Fatalf("reply %d: %q %v", i, line, err)
			}
		}
		if v, err := px.Get(context.Background(), "key:99999").Result(); err != nil || v != "99999" {
			t.Fatalf("GET: %q %v", v, err)
		}
	})
}

// The event loop never waits on a backend for the command table: while
// it is being learned from a stopped master (SIGSTOP), a client's GET
// waits, and another client's PING is answered before it (the attack: a
// first GET through a new endpoint stalled every client for a second,
// once a second).
func TestCommandTableOffTheLoop(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	addr := backend(t, host)
	pid := redisPid(t, addr)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(pid, syscall.SIGCONT)
	d, _ := startProxy(t, host, addr)
	login := func() (net.Conn, *bufio.Reader) { return loggedIn(t, d.Addr()) }
	getter, grd := login()
	fmt.Fprintf(getter, "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
	got := make(chan string, 1)
	go func() {
		line, _ := grd.ReadString('\n')
		got <- line
	}()
	testutil.WaitFor(t, 5*time.Second, "the table being fetched", func() error {
		if !d.fetching.Load() {
			return fmt.Errorf("not fetching")
		}
		return nil
	})
	pinger, prd := login()
	fmt.Fprintf(pinger, "*1\r\n$4\r\nPING\r\n")
	if line, err := prd.ReadString('\n'); err != nil || line != "+PONG\r\n" {
		t.Fatalf("PING: %q %v", line, err)
	}
	select {
	case line := <-got:
		t.Fatalf("the GET was answered (%q) before the master came back", line)
	default:
	}
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	select {
	case line := <-got:
		if line != "$-1\r\n" {
			t.Fatalf("GET after the master came back: %q", line)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the GET was never answered")
	}
}

// redisPid is the pid of the redis-server listening on addr.
func redisPid(t *testing.T, addr string) int {
	t.Helper()
	cl := direct(addr)
	defer cl.Close()
	info, err := cl.Info(context.Background(), "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "process_id:"); ok {
			var pid int
			fmt.Sscan(v, &pid)
			return pid
		}
	}
	t.Fatal("no process_id")
	return 0
}

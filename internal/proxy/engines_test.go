package proxy

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/slots"
	"github.com/marina-redis/marina/internal/testutil"
)

// engineCase is one way an endpoint is served. The comparison suite (the
// tests that call onEngines) runs every case on each: the engines must
// not differ in what a client sees.
type engineCase struct {
	name   string
	engine string // Route.Engine
	tls    bool   // clients speak TLS to the endpoint
}

var engineCases = []engineCase{
	{"loop", "loop", false},
	{"loop+tls", "loop", true},
	{"goroutine", "goroutine", false},
	{"goroutine+tls", "goroutine", true},
}

// endpoint starts proxies and their clients for one engine case.
type endpoint struct {
	engineCase
	host string
	cert tls.Certificate
	pool *x509.CertPool
}

// onEngines runs f as a subtest for every engine case, on host.
func onEngines(t *testing.T, host string, f func(t *testing.T, e *endpoint)) {
	t.Helper()
	for _, c := range engineCases {
		t.Run(c.name, func(t *testing.T) {
			e := &endpoint{engineCase: c, host: host}
			if c.tls {
				e.cert, e.pool = selfSigned(t, host)
			}
			f(t, e)
		})
	}
}

// listen starts r on the case's engine (closed at the end of the test).
func (e *endpoint) listen(t *testing.T, r Route) *DB {
	t.Helper()
	r.Engine = e.engine
	if e.tls {
		r.TLS = &tls.Config{Certificates: []tls.Certificate{e.cert}, MinVersion: tls.VersionTLS12}
	}
	d, err := Listen(r, testutil.Logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	if got := d.eng.name(); got != e.engine {
		t.Fatalf("engine %q serves, want %q", got, e.engine)
	}
	return d
}

// start is startProxy on the case's engine.
func (e *endpoint) start(t *testing.T, shards ...string) (*DB, *redis.Client) {
	t.Helper()
	d := e.listen(t, testRoute(e.host, shards...))
	cl := redis.NewClient(e.options(&redis.Options{Addr: d.Addr(), Password: testPW, Protocol: 2, DisableIdentity: true, MaxRetries: -1}))
	t.Cleanup(func() { cl.Close() })
	return d, cl
}

// slowMachine bounds a test client's reads: generous, since the tests
// share a small machine (and -race) and assert answers, not timings.
const slowMachine = 30 * time.Second

// options adds the case's TLS settings to o, and a read timeout for a
// loaded machine unless o has one.
func (e *endpoint) options(o *redis.Options) *redis.Options {
	if o.ReadTimeout == 0 {
		o.ReadTimeout = slowMachine
	}
	if e.tls {
		o.TLSConfig = e.clientTLS()
	}
	return o
}

// clientTLS is a TLS client's configuration for the case's endpoints.
func (e *endpoint) clientTLS() *tls.Config {
	return &tls.Config{RootCAs: e.pool, MinVersion: tls.VersionTLS12}
}

// client is a go-redis client of d (closed at the end of the test).
func (e *endpoint) client(t *testing.T, d *DB) *redis.Client {
	cl := redis.NewClient(e.options(&redis.Options{Addr: d.Addr(), Password: testPW, Protocol: 2, DisableIdentity: true}))
	t.Cleanup(func() { cl.Close() })
	return cl
}

// dial is a raw connection to addr (TLS for a TLS case).
func (e *endpoint) dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	var err error
	if e.tls {
		c, err = tls.Dial("tcp", addr, e.clientTLS())
	} else {
		c, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testRoute is a database over shards, the slots split evenly.
func testRoute(host string, shards ...string) Route {
	ranges := slots.Split(len(shards))
	var sr []ShardRoute
	for i, a := range shards {
		sr = append(sr, ShardRoute{Index: i, SlotStart: ranges[i].Start, SlotEnd: ranges[i].End, Master: a})
	}
	return Route{Name: "t", Addr: host + ":0", Password: testPW, Secret: proxySecret, Shards: sr, MaxRequest: 1 << 20}
}

// raw is a raw client of addr with a deadline, and its reader.
func (e *endpoint) raw(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c := e.dial(t, addr)
	_ = c.SetDeadline(time.Now().Add(slowMachine))
	return c, bufio.NewReader(c)
}

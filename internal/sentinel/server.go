// Package sentinel answers the Redis Sentinel protocol on every node, so
// sentinel-aware clients (go-redis FailoverClient, redis-py Sentinel,
// Jedis, Lettuce) find the master of a Marina database directly: the
// database name (or NAME-i for shard i) is the master name, the address is
// the redis-server the local desired state says is master, and a master
// change in the state is published on +switch-master. The node's FSM is
// the only source; there is no sentinel-to-sentinel gossip or voting, Raft
// already agreed on the state.
package sentinel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/marina-redis/marina/internal/resp"
	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/timing"
)

// Source is the local desired state.
type Source = state.Source

// Config configures a node's sentinel endpoint.
type Config struct {
	Addr   string // host:port to listen on
	NodeID string
	Src    Source
	// HashToken hashes a password the way the state keeps the API token
	// (api.HashToken), so the token can be checked without storing it.
	HashToken  func(string) string
	DownAfter  time.Duration // shown as down-after-milliseconds
	MaxClients int           // default 10000
	Log        *slog.Logger
	// TLS, when set, makes the port speak TLS (with --redis-tls: clients
	// then use one TLS configuration for the sentinels and the servers).
	TLS *tls.Config
}

const (
	defaultMaxClients = 10000
	maxRequest        = 64 << 10 // sentinel commands are small
	writeTimeout      = 2 * time.Second
	// maxOutput bounds what a subscribed connection may have queued and
	// not yet written: a client further behind is disconnected (it
	// reconnects and asks again), like Redis's client-output-buffer-limit
	// for pub/sub, instead of holding up the other subscribers.
	maxOutput = 1 << 20
	// redisVersion is what HELLO and INFO report: clients read it to pick
	// command forms; the commands here are those of Redis 7.
	redisVersion = "7.2.0"
	// ChannelSwitch is where master changes are published.
	ChannelSwitch = "+switch-master"
)

// Server is a running sentinel endpoint.
type Server struct {
	cfg Config
	env Env
	ln  net.Listener
	log *slog.Logger

	mu     sync.Mutex
	conns  map[*conn]struct{}
	closed bool
	nextID int64
	once   sync.Once

	// Scopes of the passwords of logged-in connections, for scSt only: a
	// command does not loop over every database to check its password.
	scMu   sync.Mutex
	scSt   *state.State
	scopes map[string]scoped
}

type scoped struct {
	sc Scope
	ok bool
}

// Listen binds the endpoint; Serve then answers on it.
func Listen(cfg Config) (*Server, error) {
	if cfg.Src == nil {
		return nil, errors.New("sentinel: no state source")
	}
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = defaultMaxClients
	}
	if cfg.DownAfter <= 0 {
		cfg.DownAfter = timing.Defaults().DownAfter
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("sentinel listener: %w", err)
	}
	if cfg.TLS != nil {
		ln = tls.NewListener(ln, cfg.TLS)
	}
	return &Server{cfg: cfg, env: Env{Self: cfg.NodeID, DownAfter: cfg.DownAfter}, ln: ln,
		log: cfg.Log.With("component", "sentinel"), conns: map[*conn]struct{}{}}, nil
}

// Addr is the address the endpoint listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops accepting and closes every connection; Serve then returns.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		err = s.ln.Close()
		s.mu.Lock()
		s.closed = true
		for c := range s.conns {
			_ = c.nc.Close()
		}
		s.mu.Unlock()
	})
	return err
}

// Serve answers clients and publishes master switches until ctx ends or
// Close is called, then waits for its goroutines.
func (s *Server) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		_ = s.Close()
	}()
	go func() {
		defer wg.Done()
		s.watch(ctx)
	}()
	s.log.Info("sentinel endpoint listening", "addr", s.Addr())
	delay := 5 * time.Millisecond
	for {
		nc, aerr := s.ln.Accept()
		if aerr != nil {
			if ctx.Err() != nil || errors.Is(aerr, net.ErrClosed) {
				break
			}
			// Out of file descriptors and the like: back off, keep serving.
			s.log.Warn("sentinel accept", "err", aerr)
			select {
			case <-ctx.Done():
			case <-time.After(delay):
			}
			delay = min(delay*2, time.Second)
			continue
		}
		delay = 5 * time.Millisecond
		c, ok := s.add(nc)
		if !ok {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.serve()
		}()
	}
	cancel()
	_ = s.Close()
	wg.Wait()
	return nil
}

func (s *Server) add(nc net.Conn) (*conn, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = nc.Close()
		return nil, false
	}
	if len(s.conns) >= s.cfg.MaxClients {
		_ = nc.SetWriteDeadline(time.Now().Add(writeTimeout))
		_, _ = nc.Write(resp.AppendError(nil, "ERR max number of clients reached"))
		_ = nc.Close()
		return nil, false
	}
	s.nextID++
	c := &conn{s: s, nc: nc, id: s.nextID}
	s.conns[c] = struct{}{}
	return c, true
}

func (s *Server) remove(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	_ = c.nc.Close()
}

// state returns the local state: shared, read it only.
func (s *Server) state() *state.State { return s.cfg.Src.State() }

// stateCh also returns the channel closed at the state's next change.
func (s *Server) stateCh() (*state.State, <-chan struct{}) {
	ch := s.cfg.Src.Changed() // first: a change after it is seen as a change
	return s.cfg.Src.State(), ch
}

// scope maps a logged-in connection's password to what it may see in st,
// once per state and password.
func (s *Server) scope(st *state.State, password string) (Scope, bool) {
	s.scMu.Lock()
	defer s.scMu.Unlock()
	if s.scSt != st {
		s.scSt, s.scopes = st, map[string]scoped{}
	}
	r, ok := s.scopes[password]
	if !ok {
		r.sc, r.ok = Authenticate(st, password, s.cfg.HashToken)
		s.scopes[password] = r
	}
	return r.sc, r.ok
}

// watch publishes +switch-master for every shard whose master changes in
// the local state.
func (s *Server) watch(ctx context.Context) {
	var last map[ShardKey]string
	for {
		st, changed := s.stateCh()
		var sw []Switch
		sw, last = Switches(last, Masters(st))
		var msgs []message
		for _, w := range sw {
			for _, name := range NamesOf(st, st.DBs[w.DB], w.Shard) {
				msgs = append(msgs, message{db: w.DB, channel: ChannelSwitch, payload: w.Payload(name), name: name, from: w.Old, to: w.New})
			}
		}
		if len(msgs) > 0 {
			n := s.publish(st, msgs)
			for i, m := range msgs {
				s.log.Info("master switched", "name", m.name, "from", m.from, "to", m.to, "subscribers", n[i])
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// message is one published message, about database db.
type message struct {
	db, channel, payload string
	name, from, to       string // for the log
}

// publish queues the messages of one state for the subscribers allowed to
// see their databases, and returns how many subscribers got each. It never
// waits for a client: each subscribed connection's writer goroutine writes
// its queue.
func (s *Server) publish(st *state.State, msgs []message) []int {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	// Each password's scope once for all the messages and connections.
	scopes := map[string]scoped{}
	scope := func(password string) (Scope, bool) {
		r, ok := scopes[password]
		if !ok {
			r.sc, r.ok = Authenticate(st, password, s.cfg.HashToken)
			scopes[password] = r
		}
		return r.sc, r.ok
	}
	n := make([]int, len(msgs))
	for _, c := range conns {
		c.deliver(msgs, scope, n)
	}
	return n
}

// conn is one client connection. mu guards its state and is never held
// while writing to the client. Until the connection first subscribes, its
// reader goroutine writes the replies itself; from then on every reply and
// published message goes through a bounded queue (out) that a writer
// goroutine of its own writes, in the order queued, so a publisher never
// waits for a client.
type conn struct {
	s  *Server
	nc net.Conn
	id int64

	mu       sync.Mutex
	authed   bool
	password string // kept to re-derive the scope: a changed password or deleted database ends access
	name     string
	subs     map[string]bool
	psubs    map[string]bool
	buf      []byte
	wake     chan struct{} // capacity 1; nil until the writer started

	writerDone chan struct{} // closed when the writer returned
	outMu      sync.Mutex    // after mu when both are held
	out        []byte        // queued, not yet written
	outClosed  bool          // no more output: the connection ends or broke
}

func (c *conn) serve() {
	defer func() {
		c.mu.Lock()
		started := c.wake != nil
		c.mu.Unlock()
		if started {
			// The writer writes what is queued (QUIT's +OK) and returns.
			c.outMu.Lock()
			c.outClosed = true
			c.outMu.Unlock()
			c.kick()
			<-c.writerDone
		}
		c.s.remove(c)
	}()
	r := resp.NewReader(c.nc, 16<<10)
	r.MaxSize = maxRequest
	for {
		args, err := r.ReadCommand()
		if err != nil {
			var pe *resp.ProtocolError
			if errors.As(err, &pe) {
				c.mu.Lock()
				c.reply(resp.AppendError(nil, "ERR "+pe.Error()))
			}
			return
		}
		if len(args) == 0 {
			continue
		}
		if quit := c.exec(args); quit {
			return
		}
	}
}

// write sends b; a client that does not read within writeTimeout is cut off.
// Only one goroutine writes: the reader until the writer started, then the
// writer.
func (c *conn) write(b []byte) bool {
	_ = c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := c.nc.Write(b); err != nil {
		_ = c.nc.Close()
		return false
	}
	return true
}

// reply sends the reply b of the reader goroutine, called with mu held,
// which it releases: queued once the writer runs, written directly before
// (no publisher writes to a connection that never subscribed). False: the
// connection is done.
func (c *conn) reply(b []byte) bool {
	if c.wake != nil {
		ok := c.queue(b)
		c.mu.Unlock()
		return ok
	}
	c.mu.Unlock()
	return c.write(b)
}

// startWriter starts the connection's writer goroutine; serve stops it.
// Called by the reader goroutine with mu held.
func (c *conn) startWriter() {
	c.wake = make(chan struct{}, 1)
	c.writerDone = make(chan struct{})
	go c.writeLoop()
}

func (c *conn) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// queue appends b to the output; false when the connection is done, or
// closed now because the client fell maxOutput behind. Called with mu held
// (replies and messages are queued in the order the state changed).
func (c *conn) queue(b []byte) bool {
	c.outMu.Lock()
	if c.outClosed {
		c.outMu.Unlock()
		return false
	}
	if len(c.out)+len(b) > maxOutput {
		queued := len(c.out)
		c.outClosed, c.out = true, nil
		c.outMu.Unlock()
		c.s.log.Warn("sentinel client too slow, disconnected: it does not read what it subscribed to",
			"client", c.id, "addr", c.nc.RemoteAddr().String(), "queued_bytes", queued)
		_ = c.nc.Close()
		c.kick()
		return false
	}
	c.out = append(c.out, b...)
	c.outMu.Unlock()
	c.kick()
	return true
}

// writeLoop writes the queued output until the connection ends (serve
// closes the output) or a write fails.
func (c *conn) writeLoop() {
	defer close(c.writerDone)
	var spare []byte
	for {
		<-c.wake
		c.outMu.Lock()
		b, closed := c.out, c.outClosed
		c.out = spare[:0]
		c.outMu.Unlock()
		if len(b) > 0 && !c.write(b) {
			c.outMu.Lock()
			c.outClosed, c.out = true, nil
			c.outMu.Unlock()
			return
		}
		if closed {
			return
		}
		spare = nil
		if cap(b) <= 64<<10 {
			spare = b // two buffers take turns; a large one is let go
		}
	}
}

func (c *conn) subscribed() int { return len(c.subs) + len(c.psubs) }

// deliver queues the published messages the connection subscribes to (by
// channel or pattern) and may see, adding one to n[i] for each message i it
// got.
func (c *conn) deliver(msgs []message, scope func(password string) (Scope, bool), n []int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.wake == nil || c.subscribed() == 0 || !c.authed {
		return
	}
	sc, ok := scope(c.password)
	if !ok {
		return
	}
	var b []byte
	var got []int
	for i, m := range msgs {
		if !sc.Allows(m.db) {
			continue
		}
		before := len(b)
		if c.subs[m.channel] {
			b = appendStrings(b, "message", m.channel, m.payload)
		}
		for p := range c.psubs {
			if Match(p, m.channel) {
				b = appendStrings(b, "pmessage", p, m.channel, m.payload)
			}
		}
		if len(b) > before {
			got = append(got, i)
		}
	}
	if len(b) > 0 && c.queue(b) {
		for _, i := range got {
			n[i]++
		}
	}
}

// exec runs one command and sends its reply; quit ends the connection.
func (c *conn) exec(args [][]byte) (quit bool) {
	c.mu.Lock()
	c.buf = c.buf[:0]
	out, quit := c.dispatch(args, c.buf)
	c.buf = out
	if c.wake == nil && c.subscribed() > 0 {
		// Subscribed: from this reply on, everything goes through the
		// queue, so no message can overtake the SUBSCRIBE reply.
		c.startWriter()
	}
	return !c.reply(out) || quit
}

func lower(b []byte) string { return strings.ToLower(string(b)) }

func errArity(dst []byte, cmd string) []byte {
	return resp.AppendError(dst, fmt.Sprintf("ERR wrong number of arguments for '%s' command", cmd))
}

const (
	errNoAuth    = "NOAUTH Authentication required."
	errWrongPass = "WRONGPASS invalid username-password pair or user is disabled."
	errNoMaster  = "ERR No such master with that name"
)

func (c *conn) dispatch(args [][]byte, dst []byte) ([]byte, bool) {
	cmd := lower(args[0])
	if c.subscribed() > 0 {
		switch cmd {
		case "subscribe", "psubscribe", "unsubscribe", "punsubscribe", "ping", "quit", "reset":
		default:
			return resp.AppendError(dst, fmt.Sprintf("ERR Can't execute '%s': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context", cmd)), false
		}
	}
	// Allowed before authentication.
	switch cmd {
	case "ping":
		return c.ping(args, dst), false
	case "auth":
		return c.auth(args, dst), false
	case "hello":
		return c.hello(args, dst), false
	case "quit":
		return append(dst, resp.OK...), true
	case "reset":
		// As Redis's RESET (which needs no login either): no
		// subscriptions, no name, and back to unauthenticated, since
		// authentication is always required here.
		if len(args) != 1 {
			return errArity(dst, cmd), false
		}
		c.subs, c.psubs, c.name = nil, nil, ""
		c.authed, c.password = false, ""
		return resp.AppendSimple(dst, "RESET"), false
	}
	st := c.s.state()
	sc, ok := c.s.scope(st, c.password)
	if !c.authed || !ok {
		return resp.AppendError(dst, errNoAuth), false
	}
	switch cmd {
	case "client":
		return c.client(args, dst), false
	case "info":
		return c.info(st, sc, args, dst), false
	case "role":
		if len(args) != 1 {
			return errArity(dst, cmd), false
		}
		entries := Entries(st, sc)
		dst = resp.AppendArrayHeader(dst, 2)
		dst = resp.AppendBulk(dst, []byte("sentinel"))
		dst = resp.AppendArrayHeader(dst, len(entries))
		for _, e := range entries {
			dst = resp.AppendBulk(dst, []byte(e.Name))
		}
		return dst, false
	case "sentinel":
		return c.sentinel(st, sc, args, dst), false
	case "subscribe", "psubscribe":
		return c.subscribe(cmd, args, dst), false
	case "unsubscribe", "punsubscribe":
		return c.unsubscribe(cmd, args, dst), false
	}
	return resp.AppendError(dst, unknown(args)), false
}

// unknown is Redis's message for an unknown command.
func unknown(args [][]byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "ERR unknown command '%s', with args beginning with: ", clip(args[0]))
	for i, a := range args[1:] {
		if i == 8 {
			break
		}
		fmt.Fprintf(&b, "'%s' ", clip(a))
	}
	return b.String()
}

func clip(b []byte) string {
	if len(b) > 128 {
		b = b[:128]
	}
	return string(b)
}

func (c *conn) ping(args [][]byte, dst []byte) []byte {
	if len(args) > 2 {
		return errArity(dst, "ping")
	}
	if c.subscribed() > 0 {
		msg := []byte{}
		if len(args) == 2 {
			msg = args[1]
		}
		dst = resp.AppendArrayHeader(dst, 2)
		dst = resp.AppendBulk(dst, []byte("pong"))
		return resp.AppendBulk(dst, msg)
	}
	if len(args) == 2 {
		return resp.AppendBulk(dst, args[1])
	}
	return resp.AppendSimple(dst, "PONG")
}

// login checks a username and password; only the default user exists.
func (c *conn) login(user, password string) bool {
	if user != "default" {
		return false
	}
	if _, ok := Authenticate(c.s.state(), password, c.s.cfg.HashToken); !ok {
		return false
	}
	c.authed, c.password = true, password
	return true
}

func (c *conn) auth(args [][]byte, dst []byte) []byte {
	var ok bool
	switch len(args) {
	case 2:
		ok = c.login("default", string(args[1]))
	case 3:
		ok = c.login(string(args[1]), string(args[2]))
	default:
		return errArity(dst, "auth")
	}
	if !ok {
		return resp.AppendError(dst, errWrongPass)
	}
	return append(dst, resp.OK...)
}

// hello speaks RESP2 only: HELLO 3 gets NOPROTO, on which clients (go-redis
// v9 asks for 3 by default) fall back to AUTH and RESP2, as with a Redis 5.
func (c *conn) hello(args [][]byte, dst []byte) []byte {
	if len(args) >= 2 {
		v, err := strconv.Atoi(string(args[1]))
		if err != nil || v < 1 {
			return resp.AppendError(dst, "ERR Protocol version is not an integer or out of range")
		}
		if v != 2 {
			return resp.AppendError(dst, "NOPROTO sorry, this protocol version is not supported.")
		}
	}
	var name string
	setName := false
	for i := 2; i < len(args); i++ {
		switch lower(args[i]) {
		case "auth":
			if i+2 >= len(args) {
				return resp.AppendError(dst, fmt.Sprintf("ERR Syntax error in HELLO option '%s'", clip(args[i])))
			}
			if !c.login(string(args[i+1]), string(args[i+2])) {
				return resp.AppendError(dst, errWrongPass)
			}
			i += 2
		case "setname":
			if i+1 >= len(args) {
				return resp.AppendError(dst, fmt.Sprintf("ERR Syntax error in HELLO option '%s'", clip(args[i])))
			}
			name, setName = string(args[i+1]), true
			i++
		default:
			return resp.AppendError(dst, fmt.Sprintf("ERR Syntax error in HELLO option '%s'", clip(args[i])))
		}
	}
	if !c.authed {
		return resp.AppendError(dst, "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
	}
	if setName {
		if !validName(name) {
			return resp.AppendError(dst, "ERR Client names cannot contain spaces, newlines or special characters.")
		}
		c.name = name
	}
	dst = resp.AppendArrayHeader(dst, 14)
	dst = appendFlat(dst, "server", "redis", "version", redisVersion)
	dst = resp.AppendBulk(dst, []byte("proto"))
	dst = resp.AppendInt(dst, 2)
	dst = resp.AppendBulk(dst, []byte("id"))
	dst = resp.AppendInt(dst, c.id)
	dst = appendFlat(dst, "mode", "sentinel", "role", "master", "modules")
	return resp.AppendArrayHeader(dst, 0)
}

func validName(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '!' || s[i] > '~' {
			return false
		}
	}
	return true
}

func (c *conn) client(args [][]byte, dst []byte) []byte {
	if len(args) < 2 {
		return errArity(dst, "client")
	}
	sub := lower(args[1])
	switch sub {
	case "setname":
		if len(args) != 3 {
			return errArity(dst, "client|setname")
		}
		if !validName(string(args[2])) {
			return resp.AppendError(dst, "ERR Client names cannot contain spaces, newlines or special characters.")
		}
		c.name = string(args[2])
		return append(dst, resp.OK...)
	case "setinfo":
		if len(args) != 4 {
			return errArity(dst, "client|setinfo")
		}
		return append(dst, resp.OK...) // library name and version: accepted, not kept
	case "getname":
		if c.name == "" {
			return append(dst, resp.Null...)
		}
		return resp.AppendBulk(dst, []byte(c.name))
	case "id":
		return resp.AppendInt(dst, c.id)
	}
	return resp.AppendError(dst, fmt.Sprintf("ERR unknown subcommand '%s'. Try CLIENT SETNAME, SETINFO, GETNAME or ID.", clip(args[1])))
}

func (c *conn) info(st *state.State, sc Scope, args [][]byte, dst []byte) []byte {
	if len(args) > 2 {
		return resp.AppendError(dst, "ERR syntax error")
	}
	section := "default"
	if len(args) == 2 {
		section = lower(args[1])
	}
	var b strings.Builder
	all := section == "default" || section == "all" || section == "everything"
	if all || section == "server" {
		fmt.Fprintf(&b, "# Server\r\nredis_version:%s\r\nredis_mode:sentinel\r\nrun_id:%s\r\ntcp_port:%s\r\n",
			redisVersion, RunID("sentinel/"+c.s.env.Self), portOf(c.s.Addr()))
	}
	if all || section == "sentinel" {
		if b.Len() > 0 {
			b.WriteString("\r\n")
		}
		b.WriteString(InfoSentinel(st, c.s.env, sc))
	}
	return resp.AppendBulk(dst, []byte(b.String()))
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// lookup resolves a master name within the connection's scope; names
// outside it are as unknown as names that do not exist.
func lookup(st *state.State, sc Scope, name string) (*state.Database, int, bool) {
	db, shard, ok := Resolve(st, name)
	if !ok || !sc.Allows(db.Name) {
		return nil, 0, false
	}
	return db, shard, true
}

func (c *conn) sentinel(st *state.State, sc Scope, args [][]byte, dst []byte) []byte {
	if len(args) < 2 {
		return errArity(dst, "sentinel")
	}
	sub := lower(args[1])
	need := func(n int) bool { return len(args) == n }
	env := c.s.env
	switch sub {
	case "get-master-addr-by-name":
		if !need(3) {
			return errArity(dst, "sentinel|"+sub)
		}
		db, shard, ok := lookup(st, sc, string(args[2]))
		if !ok {
			return append(dst, "*-1\r\n"...)
		}
		host, port, ok := MasterAddr(st, db, shard)
		if !ok {
			// Failing over: no master yet. Clients retry (go-redis asks
			// the other sentinels, then backs off).
			return append(dst, "*-1\r\n"...)
		}
		return appendStrings(dst, host, itoa(port))
	case "masters":
		if !need(2) {
			return errArity(dst, "sentinel|"+sub)
		}
		entries := Entries(st, sc)
		dst = resp.AppendArrayHeader(dst, len(entries))
		for _, e := range entries {
			dst = appendStrings(dst, MasterFields(st, env, e.Name, e.DB, e.Shard)...)
		}
		return dst
	case "master", "replicas", "slaves", "sentinels", "ckquorum":
		if !need(3) {
			return errArity(dst, "sentinel|"+sub)
		}
		name := string(args[2])
		db, shard, ok := lookup(st, sc, name)
		if !ok {
			return resp.AppendError(dst, errNoMaster)
		}
		var rows [][]string
		switch sub {
		case "master":
			return appendStrings(dst, MasterFields(st, env, name, db, shard)...)
		case "ckquorum":
			n := len(Others(st, env.Self)) + 1
			return resp.AppendSimple(dst, fmt.Sprintf("OK %d usable Sentinels. Quorum and failover authorization can be reached", n))
		case "sentinels":
			rows = SentinelFields(st, env)
		default:
			rows = ReplicaFields(st, env, db, shard)
		}
		dst = resp.AppendArrayHeader(dst, len(rows))
		for _, r := range rows {
			dst = appendStrings(dst, r...)
		}
		return dst
	case "myid":
		if !need(2) {
			return errArity(dst, "sentinel|"+sub)
		}
		return resp.AppendBulk(dst, []byte(RunID("sentinel/"+env.Self)))
	case "failover":
		return resp.AppendError(dst, "ERR Marina fails masters over by itself; for a planned switchover run: marina db failover DB [--shard N]")
	case "monitor", "remove", "set", "reset", "flushconfig", "config", "is-master-down-by-addr",
		"simulate-failure", "debug", "info-cache", "pending-scripts":
		return resp.AppendError(dst, fmt.Sprintf("ERR SENTINEL %s is not supported: Marina manages its databases itself (use the marina CLI)", strings.ToUpper(sub)))
	}
	return resp.AppendError(dst, fmt.Sprintf("ERR Unknown sentinel subcommand '%s'", clip(args[1])))
}

func (c *conn) subscribe(cmd string, args [][]byte, dst []byte) []byte {
	if len(args) < 2 {
		return errArity(dst, cmd)
	}
	set := &c.subs
	if cmd == "psubscribe" {
		set = &c.psubs
	}
	if *set == nil {
		*set = map[string]bool{}
	}
	for _, a := range args[1:] {
		(*set)[string(a)] = true
		dst = resp.AppendArrayHeader(dst, 3)
		dst = resp.AppendBulk(dst, []byte(cmd))
		dst = resp.AppendBulk(dst, a)
		dst = resp.AppendInt(dst, int64(c.subscribed()))
	}
	return dst
}

func (c *conn) unsubscribe(cmd string, args [][]byte, dst []byte) []byte {
	set := c.subs
	if cmd == "punsubscribe" {
		set = c.psubs
	}
	names := make([]string, 0, len(args))
	for _, a := range args[1:] {
		names = append(names, string(a))
	}
	if len(names) == 0 {
		for k := range set {
			names = append(names, k)
		}
	}
	if len(names) == 0 {
		// Nothing to leave: Redis answers with a null channel.
		dst = resp.AppendArrayHeader(dst, 3)
		dst = resp.AppendBulk(dst, []byte(cmd))
		dst = append(dst, resp.Null...)
		return resp.AppendInt(dst, int64(c.subscribed()))
	}
	for _, n := range names {
		delete(set, n)
		dst = resp.AppendArrayHeader(dst, 3)
		dst = resp.AppendBulk(dst, []byte(cmd))
		dst = resp.AppendBulk(dst, []byte(n))
		dst = resp.AppendInt(dst, int64(c.subscribed()))
	}
	return dst
}

// appendStrings appends an array of bulk strings.
func appendStrings(dst []byte, ss ...string) []byte {
	dst = resp.AppendArrayHeader(dst, len(ss))
	return appendFlat(dst, ss...)
}

// appendFlat appends bulk strings without an array header.
func appendFlat(dst []byte, ss ...string) []byte {
	for _, s := range ss {
		dst = resp.AppendBulk(dst, []byte(s))
	}
	return dst
}

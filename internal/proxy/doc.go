// Package proxy serves every database's endpoint on every node: the Redis
// protocol, pipelined, sharded over the 16384 hash slots, with multi-key
// commands split and merged, many clients multiplexed over a few backend
// connections, per-database AUTH, and topology changes applied live.
//
// The package has two halves. What a command means is decided by a
// client's session, which never touches a socket; how bytes move is an
// engine's business, which never decides what a command means. An engine
// reads a command, calls session.dispatch, sends the backend requests the
// session queued and writes the answers in order. (session_test.go
// dispatches on a session with no engine and no socket at all.)
//
// What a command means:
//
//   - session.go: the per-client session (login, name, transaction, pin,
//     answers owed in order), backend requests and how they are queued.
//   - dispatch.go: dispatch, the classification of one command: answered
//     by the proxy, refused, pinned, split, fanned out or routed by key.
//   - route.go: Route and ShardRoute (what the proxy is told), the routing
//     snapshot (slot to shard) and where a command goes: master, replica
//     for reads, TRYAGAIN while failing over, READONLY while fenced.
//   - conncmds.go: commands the proxy answers itself: AUTH, HELLO, QUIT,
//     PING, ECHO, SELECT, CLIENT.
//   - txn.go: MULTI/EXEC queued by the proxy on a sharded database.
//   - multikey.go: MGET/MSET/DEL/EXISTS... split per shard and merged;
//     DBSIZE, KEYS, SCRIPT... fanned out; SCAN over every shard.
//   - commands.go: the command table (learned from a backend's COMMAND)
//     and key positions; the denied commands.
//   - durability.go: the WAIT after writes (durability replicated).
//
// How bytes move:
//
//   - proxy.go: DB (one database's proxy): Listen, Update, Close; the
//     engine interface, the DB's only view of an engine.
//   - loop_linux.go: the event loop engine (default on Linux): one epoll
//     loop owns the endpoint's client and backend sockets; its passes.
//   - loop_client_linux.go: the loop's clients: accept, read, cut commands
//     out of the input, dispatch, the input budget.
//   - loop_backend_linux.go: the loop's backend connections.
//   - loop_tunnel_linux.go: the loop's pinned connections.
//   - loop_tls_linux.go: TLS clients driven by the loop.
//   - loop_bridge_linux.go: the loop's bridge to redis-servers that speak
//     TLS only.
//   - engine_conn.go: the goroutine-per-connection engine (portable; the
//     only one elsewhere than Linux; Route.Engine = "goroutine" forces it).
//   - backend.go: shared, multiplexed backend connections over net.Conn
//     (the goroutine engine's; the command table's fetch on both).
//   - loop_other.go: stand-ins for the loop where there is no epoll.
//
// Around them: manager.go (routes from the cluster state, one DB per
// database), lag.go (which replicas may serve reads), stats.go (counters,
// latency histogram, slow log).
//
// Both engines serve every feature the same way (the tests run one
// comparison suite on each, plaintext and TLS): the commands, pinned
// connections on single-shard databases, durability replicated, fencing,
// read/write split, TLS to clients and to redis-servers, client limits,
// latency and the slow log. What differs is how each protects itself:
// only the loop serves an endpoint with several threads (Route.Loops),
// charges the node's Budget for buffered input, stops reading a client
// that does not read its answers, fails a backend silent for 10 s, does
// not dial a failed backend again for a second (the goroutine engine dials
// at each command, up to its 1 s timeout), and applies the idle timeout to
// pinned connections. The goroutine engine serves where there is no epoll,
// or when a Route asks for it; production on Linux runs the loop.
package proxy

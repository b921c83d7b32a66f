package proxy

import (
	"strings"

	"github.com/marina-redis/marina/internal/slots"
)

// names maps the common spellings of command names to lower case, so the
// hot path does not allocate to look a command up. Never written after init.
var names = func() map[string]string {
	m := map[string]string{}
	for _, n := range []string{"get", "set", "mget", "mset", "del", "incr", "decr", "exists", "expire", "ttl", "hget", "hset",
		"hgetall", "lpush", "rpush", "lpop", "rpop", "lrange", "sadd", "smembers", "zadd", "zrange", "ping", "echo", "auth",
		"select", "client", "quit", "hello", "unlink", "touch", "dbsize", "scan", "keys", "info", "setex", "incrby", "eval", "evalsha"} {
		m[n] = n
		m[strings.ToUpper(n)] = n
	}
	return m
}()

func cmdName(b []byte) string {
	if n, ok := names[string(b)]; ok {
		return n
	}
	return lower(b)
}

func eq(a []byte, s string) bool { return strings.EqualFold(string(a), s) }

// dispatch decides what one command means and queues its answer: one the
// proxy gives itself, or backend requests (send) and how to merge their
// replies. It is the whole of the proxy's command semantics; engines call
// it once per command and know nothing of commands.
func (c *session) dispatch(args [][]byte) {
	t := c.d.topo.Load()
	name := cmdName(args[0])
	switch name {
	case "auth":
		c.auth(t, args)
		return
	case "quit":
		c.quitCmd()
		return
	case "hello":
		c.hello(t, args)
		return
	}
	if !c.authed {
		c.errorf("NOAUTH Authentication required.")
		return
	}
	if c.txn != nil {
		// Inside a queued transaction every command is queued, PING included.
		tab, err := c.table()
		if err != nil {
			c.errorf("ERR proxy: %v", err)
			return
		}
		ci, base := tab.lookupName(name, args)
		switch {
		case ci == nil:
			c.txn.aborted = true
			c.errorf("ERR unknown command '%s'", trunc(args[0]))
		case !ci.arityOK(len(args)):
			c.txn.aborted = true
			c.errorf("ERR wrong number of arguments for '%s' command", ci.name)
		case denied[base]:
			c.txn.aborted = true
			c.errorf("ERR command '%s' is not allowed through the Marina proxy", base)
		default:
			c.queueTxn(t, ci, base, args)
		}
		return
	}
	// Answered by the proxy itself (conncmds.go).
	switch name {
	case "ping":
		c.ping(args)
		return
	case "echo":
		c.echo(args)
		return
	case "select":
		c.selectDB(args)
		return
	case "client":
		c.clientCmd(args)
		return
	}
	tab, err := c.table()
	if err != nil {
		c.errorf("ERR proxy: %v", err)
		return
	}
	ci, base := tab.lookupName(name, args)
	c.writing = ci != nil && (ci.write || base == "eval" || base == "evalsha" || base == "fcall")
	c.reading = ci != nil && ci.readonly && !c.writing
	if ci == nil {
		c.errorf("ERR unknown command '%s', with args beginning with: %s", trunc(args[0]), argsPreview(args[1:]))
		return
	}
	if !ci.arityOK(len(args)) {
		c.errorf("ERR wrong number of arguments for '%s' command", ci.name)
		return
	}
	if denied[base] {
		c.errorf("ERR command '%s' is not allowed through the Marina proxy", base)
		return
	}
	if base == "copy" {
		for _, a := range args[3:] {
			if eq(a, "db") {
				c.errorf("ERR COPY to another database is not allowed: a Marina database has one keyspace")
				return
			}
		}
	}
	if len(t.route.Shards) > 1 && (c.txn != nil || base == "multi") {
		if c.queueTxn(t, ci, base, args) {
			return
		}
	}
	if ci.blocking || ci.pubsub || base == "multi" || base == "exec" || base == "discard" || base == "watch" || base == "unwatch" {
		// These hold a backend connection to themselves; the shared,
		// multiplexed ones cannot carry them. On a single-shard database the
		// client gets a pinned connection of its own.
		if t.route.Replicated {
			c.errorf("ERR '%s' is not available with durability replicated: its writes could not be confirmed by the proxy", base)
			return
		}
		if len(t.route.Shards) == 1 {
			if c.master(t, 0) == "" {
				return
			}
			c.pin = copyCmd(args)
			return
		}
		c.errorf("ERR '%s' needs a pinned connection, which the Marina proxy offers on single-shard databases only", base)
		return
	}
	shards := t.route.Shards
	switch base {
	case "mget":
		c.splitKeys(t, args, 1, "mget")
		return
	case "mset":
		c.splitKeys(t, args, 2, "mset")
		return
	case "del", "unlink", "exists", "touch":
		c.splitKeys(t, args, 1, base)
		return
	case "dbsize":
		c.fanout(t, args, sumInts)
		return
	case "flushdb", "flushall":
		c.fanout(t, args, allOK)
		return
	case "keys":
		if len(shards) > 1 {
			c.fanout(t, args, concatArrays)
			return
		}
	case "scan":
		if len(shards) > 1 {
			c.scan(t, args)
			return
		}
	case "randomkey":
		if len(shards) > 1 {
			c.fanout(t, args, firstNonNull)
			return
		}
	case "script":
		// Scripts must exist on every shard for EVALSHA to work on any key.
		if len(shards) > 1 && len(args) >= 2 {
			switch lower(args[1]) {
			case "load":
				c.fanout(t, args, sameReply)
				return
			case "flush":
				c.fanout(t, args, allOK)
				return
			case "exists":
				c.fanout(t, args, sameReply) // loaded everywhere or nowhere, through the proxy
				return
			}
		}
	}
	var keys []int
	var one [1]int
	if ci.first > 0 && ci.last == ci.first && !ci.movable {
		one[0] = ci.first // single-key commands: no allocation
		keys = one[:]
	} else {
		var err error
		if keys, err = ci.keyPositions(args); err != nil {
			c.errorf("ERR %v", err)
			return
		}
	}
	shard := 0
	if len(shards) > 1 {
		if len(keys) == 0 {
			switch base {
			case "info", "time", "command", "lolwut", "memory":
				// Server-wide answers: shard 0 speaks for the database.
				c.toShard(t, 0, c.forwardable(args))
			default:
				c.errorf("ERR '%s' has no key to route by on a sharded database", base)
			}
			return
		}
		s0 := slots.Of(args[keys[0]])
		for _, k := range keys[1:] {
			if slots.Of(args[k]) != s0 {
				c.errorf("CROSSSLOT Keys in request don't hash to the same slot")
				return
			}
		}
		shard = int(t.slotMap[s0])
	}
	c.toShard(t, shard, c.forwardable(args))
}

func trunc(b []byte) string {
	if len(b) > 64 {
		b = b[:64]
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' {
			return ' '
		}
		return r
	}, string(b))
}

func argsPreview(args [][]byte) string {
	var parts []string
	for i, a := range args {
		if i == 3 {
			break
		}
		parts = append(parts, "'"+trunc(a)+"'")
	}
	return strings.Join(parts, " ")
}

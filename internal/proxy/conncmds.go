package proxy

import (
	"bytes"
	"crypto/subtle"

	"github.com/marina-redis/marina/internal/resp"
)

// The commands the proxy answers itself: they act on the client's
// connection (login, protocol, name, database), which the proxy owns; the
// backend connections are shared between clients and never see them.

func (c *session) quitCmd() {
	c.answer(resp.OK)
	c.quit = true
}

func (c *session) ping(args [][]byte) {
	switch len(args) {
	case 1:
		c.answer([]byte("+PONG\r\n"))
	case 2:
		c.answer(resp.AppendBulk(nil, args[1]))
	default:
		c.errorf("ERR wrong number of arguments for 'ping' command")
	}
}

func (c *session) echo(args [][]byte) {
	if len(args) != 2 {
		c.errorf("ERR wrong number of arguments for 'echo' command")
		return
	}
	c.answer(resp.AppendBulk(nil, args[1]))
}

// selectDB: a Marina database has one keyspace, database 0.
func (c *session) selectDB(args [][]byte) {
	if len(args) != 2 {
		c.errorf("ERR wrong number of arguments for 'select' command")
	} else if string(args[1]) != "0" {
		c.errorf("ERR DB index is out of range")
	} else {
		c.answer(resp.OK)
	}
}

func (c *session) auth(t *topology, args [][]byte) {
	var user, pw []byte
	switch len(args) {
	case 2:
		pw = args[1]
	case 3:
		user, pw = args[1], args[2]
	default:
		c.errorf("ERR wrong number of arguments for 'auth' command")
		return
	}
	if c.checkPassword(t, user, pw) {
		c.authed = true
		c.answer(resp.OK)
		return
	}
	// As in Redis, a failed AUTH leaves the connection's login as it was.
	c.errorf("WRONGPASS invalid username-password pair or user is disabled.")
}

func (c *session) checkPassword(t *topology, user, pw []byte) bool {
	if user != nil && !eq(user, "default") {
		return false
	}
	want := t.route.Password
	return want != "" && subtle.ConstantTimeCompare(pw, []byte(want)) == 1
}

func (c *session) hello(t *topology, args [][]byte) {
	proto := "2"
	if len(args) >= 2 {
		proto = string(args[1])
	}
	if proto != "2" && proto != "3" {
		c.errorf("NOPROTO unsupported protocol version")
		return
	}
	// Options are checked here, whatever happens next: AUTH must be right.
	authed := c.authed
	for i := 2; i < len(args); i++ {
		switch {
		case eq(args[i], "auth") && i+2 < len(args):
			if !c.checkPassword(t, args[i+1], args[i+2]) {
				c.errorf("WRONGPASS invalid username-password pair or user is disabled.")
				return
			}
			authed = true
			i += 2
		case eq(args[i], "setname") && i+1 < len(args):
			i++
		default:
			c.errorf("ERR Syntax error in HELLO option '%s'", trunc(args[i]))
			return
		}
	}
	if !authed {
		c.errorf("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
		return
	}
	c.authed = true
	for i := 2; i < len(args); i++ {
		if eq(args[i], "setname") {
			c.name = string(args[i+1])
		}
	}
	if proto == "3" {
		if len(t.route.Shards) != 1 || t.route.Shards[0].Master == "" || t.route.Replicated {
			c.errorf("NOPROTO RESP3 goes through the Marina proxy on single-shard databases without replicated durability only")
			return
		}
		// RESP3 passes through on a pinned connection (already logged in;
		// the forwarded HELLO carries no credentials).
		fwd := [][]byte{args[0], args[1]}
		c.pin = copyCmd(fwd)
		return
	}
	out := resp.AppendArrayHeader(nil, 14)
	kv := func(k, v string) {
		out = resp.AppendBulk(out, []byte(k))
		out = resp.AppendBulk(out, []byte(v))
	}
	kv("server", "redis")
	kv("version", "7.0.0")
	out = resp.AppendBulk(out, []byte("proto"))
	out = resp.AppendInt(out, 2)
	out = resp.AppendBulk(out, []byte("id"))
	out = resp.AppendInt(out, int64(c.id))
	kv("mode", "standalone")
	kv("role", "master")
	out = resp.AppendBulk(out, []byte("modules"))
	out = resp.AppendArrayHeader(out, 0)
	c.answer(out)
}

func (c *session) clientCmd(args [][]byte) {
	if len(args) < 2 {
		c.errorf("ERR wrong number of arguments for 'client' command")
		return
	}
	switch lower(args[1]) {
	case "setname":
		if len(args) != 3 || bytes.ContainsAny(args[2], " \n") {
			c.errorf("ERR Client names cannot contain spaces, newlines or special characters.")
			return
		}
		c.name = string(args[2])
		c.answer(resp.OK)
	case "getname":
		if c.name == "" {
			c.answer(resp.Null)
		} else {
			c.answer(resp.AppendBulk(nil, []byte(c.name)))
		}
	case "id":
		c.answer(resp.AppendInt(nil, int64(c.id)))
	case "setinfo":
		c.answer(resp.OK)
	default:
		c.errorf("ERR CLIENT %s is not supported by the Marina proxy", trunc(args[1]))
	}
}

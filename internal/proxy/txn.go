package proxy

import (
	"github.com/marina-redis/marina/internal/resp"
	"github.com/marina-redis/marina/internal/slots"
)

// txn is a transaction the proxy queues on a sharded database.
type txn struct {
	cmds    [][]byte
	slot    int // -1 until a keyed command sets it
	aborted bool
}

// queueTxn handles MULTI...EXEC on a sharded database: the proxy queues
// the commands (all keys in one slot) and sends MULTI, them and EXEC in one
// piece to that slot's shard. It returns false for commands it does not
// take (outside a transaction).
func (c *session) queueTxn(t *topology, ci *cmdInfo, base string, args [][]byte) bool {
	switch base {
	case "multi":
		if c.txn != nil {
			c.errorf("ERR MULTI calls can not be nested")
			return true
		}
		c.txn = &txn{slot: -1}
		c.answer(resp.OK)
		return true
	case "discard":
		c.txn = nil
		c.answer(resp.OK)
		return true
	case "watch":
		c.txn.aborted = true
		c.errorf("ERR WATCH inside MULTI is not allowed")
		return true
	case "exec":
		tx := c.txn
		c.txn = nil
		c.writing = true
		if tx.aborted {
			c.errorf("EXECABORT Transaction discarded because of previous errors.")
			return true
		}
		if len(tx.cmds) == 0 {
			c.answer(resp.AppendArrayHeader(nil, 0))
			return true
		}
		shard := 0
		if tx.slot >= 0 {
			shard = int(t.slotMap[tx.slot])
		}
		m := c.masterFor(t, shard, true) // a transaction may write: the node's fence applies
		if m == "" {
			return true
		}
		reqs := []*request{c.send(m, resp.AppendCommand(nil, []byte("MULTI")))}
		for _, cmd := range tx.cmds {
			reqs = append(reqs, c.send(m, cmd))
		}
		reqs = append(reqs, c.send(m, resp.AppendCommand(nil, []byte("EXEC"))))
		c.pend = append(c.pend, pending{reqs: reqs, merge: func(reqs []*request) []byte {
			for _, r := range reqs {
				if r.err != nil {
					return replyOf(r)
				}
			}
			return reqs[len(reqs)-1].reply // EXEC's answer; a queueing error makes it EXECABORT
		}})
		return true
	}
	switch base {
	case "client", "select", "hello", "auth", "reset", "quit", "wait", "waitaof", "unwatch":
		// They would act on the connection the proxy shares between clients.
		c.txn.aborted = true
		c.errorf("ERR '%s' is not allowed in a transaction through the Marina proxy", base)
		return true
	}
	if ci.blocking || ci.pubsub {
		c.txn.aborted = true
		c.errorf("ERR '%s' is not allowed in a transaction through the Marina proxy", base)
		return true
	}
	keys, err := ci.keyPositions(args)
	if err != nil {
		c.txn.aborted = true
		c.errorf("ERR %v", err)
		return true
	}
	for _, k := range keys {
		s := slots.Of(args[k])
		if c.txn.slot == -1 {
			c.txn.slot = s
		} else if s != c.txn.slot {
			c.txn.aborted = true
			c.errorf("CROSSSLOT Keys in request don't hash to the same slot")
			return true
		}
	}
	c.txn.cmds = append(c.txn.cmds, copyCmd(args))
	c.answer([]byte("+QUEUED\r\n"))
	return true
}

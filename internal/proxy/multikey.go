package proxy

import (
	"bytes"
	"strconv"

	"github.com/marina-redis/marina/internal/resp"
	"github.com/marina-redis/marina/internal/slots"
)

// splitKeys sends a multi-key command per shard (keys grouped, order kept)
// and merges the answers. stride is 1 for keys, 2 for key/value pairs.
func (c *session) splitKeys(t *topology, args [][]byte, stride int, op string) {
	if (len(args)-1)%stride != 0 {
		c.errorf("ERR wrong number of arguments for '%s' command", op)
		return
	}
	shards := t.route.Shards
	if len(shards) == 1 {
		c.toShard(t, 0, copyCmd(args))
		return
	}
	n := (len(args) - 1) / stride
	// Slot of each key once; then, per shard in first-seen order, how many
	// keys and how many bytes its sub-command takes.
	keyShard := make([]uint16, n)
	var partOf [slotsMaxShards]int16
	for i := range partOf[:len(shards)] {
		partOf[i] = -1
	}
	type part struct {
		shard, keys, size int
		pos               []int32 // MGET: where each key's value goes
	}
	var parts []part
	for k := 0; k < n; k++ {
		sh := t.slotMap[slots.Of(args[1+k*stride])]
		keyShard[k] = sh
		p := partOf[sh]
		if p < 0 {
			p = int16(len(parts))
			partOf[sh] = p
			parts = append(parts, part{shard: int(sh), size: 16 + len(args[0]) + 16})
		}
		parts[p].keys++
		for a := 0; a < stride; a++ {
			parts[p].size += len(args[1+k*stride+a]) + 16
		}
	}
	for _, p := range parts {
		if c.master(t, p.shard) == "" {
			return
		}
	}
	cmds := make([][]byte, len(parts))
	for i := range parts {
		b := make([]byte, 0, parts[i].size)
		b = resp.AppendArrayHeader(b, 1+parts[i].keys*stride)
		cmds[i] = resp.AppendBulk(b, args[0])
		if op == "mget" {
			parts[i].pos = make([]int32, 0, parts[i].keys)
		}
	}
	for k := 0; k < n; k++ {
		p := partOf[keyShard[k]]
		for a := 0; a < stride; a++ {
			cmds[p] = resp.AppendBulk(cmds[p], args[1+k*stride+a])
		}
		if op == "mget" {
			parts[p].pos = append(parts[p].pos, int32(k))
		}
	}
	reqs := make([]*request, len(parts))
	for i, p := range parts {
		reqs[i] = c.send(shards[p.shard].Master, cmds[i])
	}
	c.pend = append(c.pend, pending{reqs: reqs, merge: func(reqs []*request) []byte {
		for _, r := range reqs {
			if r.err != nil || resp.IsError(r.reply) {
				return replyOf(r)
			}
		}
		switch op {
		case "mget":
			vals := make([][]byte, n)
			size := 16
			for i := range parts {
				els, err := resp.Elements(reqs[i].reply)
				if err != nil || len(els) != len(parts[i].pos) {
					return resp.AppendError(nil, "ERR proxy: bad MGET reply from shard")
				}
				for j, e := range els {
					vals[parts[i].pos[j]] = e
					size += len(e)
				}
			}
			out := resp.AppendArrayHeader(make([]byte, 0, size), n)
			for _, v := range vals {
				out = append(out, v...)
			}
			return out
		case "mset":
			return resp.OK
		default:
			return sumInts(reqs)
		}
	}})
}

// slotsMaxShards bounds the shard count (state.MaxShards).
const slotsMaxShards = 256

// fanout sends a command to every shard's master and merges.
func (c *session) fanout(t *topology, args [][]byte, merge func([]*request) []byte) {
	var reqs []*request
	for i, sh := range t.route.Shards {
		if c.master(t, i) == "" {
			return
		}
		reqs = append(reqs, c.send(sh.Master, copyCmd(args)))
	}
	c.pend = append(c.pend, pending{reqs: reqs, merge: merge})
}

func firstErr(reqs []*request) []byte {
	for _, r := range reqs {
		if r.err != nil || resp.IsError(r.reply) {
			return replyOf(r)
		}
	}
	return nil
}

func sumInts(reqs []*request) []byte {
	if e := firstErr(reqs); e != nil {
		return e
	}
	var sum int64
	for _, r := range reqs {
		n, ok := resp.Int(r.reply)
		if !ok {
			return resp.AppendError(nil, "ERR proxy: expected an integer reply")
		}
		sum += n
	}
	return resp.AppendInt(nil, sum)
}

func allOK(reqs []*request) []byte {
	if e := firstErr(reqs); e != nil {
		return e
	}
	return resp.OK
}

func concatArrays(reqs []*request) []byte {
	if e := firstErr(reqs); e != nil {
		return e
	}
	var all [][]byte
	for _, r := range reqs {
		els, err := resp.Elements(r.reply)
		if err != nil {
			return resp.AppendError(nil, "ERR proxy: expected an array reply")
		}
		all = append(all, els...)
	}
	out := resp.AppendArrayHeader(nil, len(all))
	for _, e := range all {
		out = append(out, e...)
	}
	return out
}

// sameReply returns the replies when they agree (SCRIPT LOAD's sha).
func sameReply(reqs []*request) []byte {
	if e := firstErr(reqs); e != nil {
		return e
	}
	for _, r := range reqs[1:] {
		if !bytes.Equal(r.reply, reqs[0].reply) {
			return resp.AppendError(nil, "ERR proxy: shards answered differently")
		}
	}
	return reqs[0].reply
}

func firstNonNull(reqs []*request) []byte {
	if e := firstErr(reqs); e != nil {
		return e
	}
	for _, r := range reqs {
		if !bytes.Equal(r.reply, resp.Null) {
			return r.reply
		}
	}
	return resp.Null
}

// scan walks the shards one after the other. The cursor the client sees is
// the shard's cursor shifted left by 8 bits plus the shard index (at most
// 256 shards).
func (c *session) scan(t *topology, args [][]byte) {
	cur, err := strconv.ParseUint(string(args[1]), 10, 64)
	if err != nil {
		c.errorf("ERR invalid cursor")
		return
	}
	shards := t.route.Shards
	idx := int(cur & 0xff)
	if idx >= len(shards) {
		c.errorf("ERR invalid cursor")
		return
	}
	sub := append([][]byte{args[0], []byte(strconv.FormatUint(cur>>8, 10))}, args[2:]...)
	if c.master(t, idx) == "" {
		return
	}
	r := c.send(shards[idx].Master, copyCmd(sub))
	n := len(shards)
	c.pend = append(c.pend, pending{reqs: []*request{r}, merge: func(reqs []*request) []byte {
		if e := firstErr(reqs); e != nil {
			return e
		}
		els, err := resp.Elements(reqs[0].reply)
		if err != nil || len(els) != 2 {
			return resp.AppendError(nil, "ERR proxy: bad SCAN reply")
		}
		cb, _ := resp.BulkBytes(els[0])
		next, _ := strconv.ParseUint(string(cb), 10, 64)
		var out uint64
		switch {
		case next != 0:
			out = next<<8 | uint64(idx)
		case idx+1 < n:
			out = uint64(idx + 1)
		default:
			out = 0
		}
		b := resp.AppendArrayHeader(nil, 2)
		b = resp.AppendBulk(b, []byte(strconv.FormatUint(out, 10)))
		return append(b, els[1]...)
	}})
}

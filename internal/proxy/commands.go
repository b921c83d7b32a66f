package proxy

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/marina-redis/marina/internal/redisconf"
	"github.com/marina-redis/marina/internal/resp"
)

// cmdInfo is what routing needs to know of a command, from COMMAND.
type cmdInfo struct {
	name              string
	arity             int
	first, last, step int
	readonly, write   bool
	movable           bool
	blocking          bool
	pubsub            bool
}

// cmdTable maps lower-case names ("get", and "object|encoding" for
// subcommands) to their info. It is learned from a backend's COMMAND reply,
// so it always matches the Redis version behind the proxy.
type cmdTable map[string]*cmdInfo

func parseCommandTable(raw []byte) (cmdTable, error) {
	entries, err := resp.Elements(raw)
	if err != nil {
		return nil, fmt.Errorf("COMMAND reply: %w", err)
	}
	t := cmdTable{}
	for _, e := range entries {
		if err := t.add(e); err != nil {
			return nil, err
		}
	}
	if t["get"] == nil || t["mget"] == nil {
		return nil, fmt.Errorf("COMMAND reply lacks basic commands")
	}
	return t, nil
}

func (t cmdTable) add(entry []byte) error {
	f, err := resp.Elements(entry)
	if err != nil || len(f) < 6 {
		return fmt.Errorf("COMMAND entry: %v", err)
	}
	name, ok := resp.BulkBytes(f[0])
	if !ok {
		if len(f[0]) > 1 && f[0][0] == '+' {
			name = f[0][1 : len(f[0])-2]
		} else {
			return fmt.Errorf("COMMAND entry without a name")
		}
	}
	ci := &cmdInfo{name: strings.ToLower(string(name))}
	a, _ := resp.Int(f[1])
	first, _ := resp.Int(f[3])
	last, _ := resp.Int(f[4])
	step, _ := resp.Int(f[5])
	ci.arity, ci.first, ci.last, ci.step = int(a), int(first), int(last), int(step)
	if flags, err := resp.Elements(f[2]); err == nil {
		for _, fl := range flags {
			switch strings.Trim(string(fl), "+\r\n") {
			case "readonly":
				ci.readonly = true
			case "write":
				ci.write = true
			case "movablekeys":
				ci.movable = true
			case "blocking":
				ci.blocking = true
			case "pubsub":
				ci.pubsub = true
			}
		}
	}
	t[ci.name] = ci
	// Redis 7: element 10 lists subcommands, each a full entry.
	if len(f) >= 10 {
		if subs, err := resp.Elements(f[9]); err == nil {
			for _, s := range subs {
				if err := t.add(s); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func lower(b []byte) string {
	for _, c := range b {
		if c >= 'A' && c <= 'Z' {
			return strings.ToLower(string(b))
		}
	}
	return string(b)
}

// lookupName finds the command (or its subcommand) of args, whose name in
// lower case is name.
func (t cmdTable) lookupName(name string, args [][]byte) (*cmdInfo, string) {
	ci := t[name]
	if ci != nil && len(args) > 1 && ci.first == 0 {
		// Only container commands (no key of their own) have subcommands.
		if sub := t[name+"|"+lower(args[1])]; sub != nil {
			return sub, name
		}
	}
	return ci, name
}

// arityOK checks the argument count against COMMAND's arity.
func (ci *cmdInfo) arityOK(n int) bool {
	if ci.arity >= 0 {
		return n == ci.arity
	}
	return n >= -ci.arity
}

// keyPositions returns the indexes of args that are keys.
func (ci *cmdInfo) keyPositions(args [][]byte) ([]int, error) {
	base := strings.SplitN(ci.name, "|", 2)[0]
	switch base {
	case "eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro":
		return numkeysAt(args, 2, 3)
	case "zunion", "zinter", "zdiff", "sintercard", "zintercard", "lmpop", "zmpop":
		return numkeysAt(args, 1, 2)
	case "zunionstore", "zinterstore", "zdiffstore":
		ks, err := numkeysAt(args, 2, 3)
		return append([]int{1}, ks...), err
	case "blmpop", "bzmpop":
		return numkeysAt(args, 2, 3)
	case "xread", "xreadgroup":
		for i := 1; i < len(args); i++ {
			if strings.EqualFold(string(args[i]), "streams") {
				rest := len(args) - i - 1
				if rest%2 != 0 || rest == 0 {
					return nil, fmt.Errorf("Unbalanced '%s' list of streams", base)
				}
				var out []int
				for k := 0; k < rest/2; k++ {
					out = append(out, i+1+k)
				}
				return out, nil
			}
		}
		return nil, fmt.Errorf("syntax error")
	}
	if ci.first <= 0 {
		return nil, nil
	}
	last := ci.last
	if last < 0 {
		last = len(args) + last
	}
	step := max(ci.step, 1)
	var out []int
	for i := ci.first; i <= last && i < len(args); i += step {
		out = append(out, i)
	}
	return out, nil
}

func numkeysAt(args [][]byte, at, from int) ([]int, error) {
	if len(args) <= at {
		return nil, fmt.Errorf("wrong number of arguments")
	}
	n, err := strconv.Atoi(string(args[at]))
	if err != nil || n < 0 || from+n > len(args) {
		return nil, fmt.Errorf("Number of keys can't be greater than number of args")
	}
	out := make([]int, n)
	for i := range out {
		out[i] = from + i
	}
	return out, nil
}

// denied are commands a database's clients may not run through the proxy:
// they would reconfigure or stop a server Marina manages, or take over the
// shared backend connection.
var denied = deniedSet()

// deniedSet is the database users' denied commands (redisconf, also in
// their ACL) plus those that would act on the connection the proxy shares
// between clients.
func deniedSet() map[string]bool {
	m := map[string]bool{"reset": true, "wait": true, "waitaof": true}
	for _, c := range redisconf.DeniedCommands {
		m[c] = true
	}
	return m
}

var crlf = []byte("\r\n")

// The command table is learned once per endpoint from a backend, off the
// event loop: ensureTable starts it in the background (the loop parks the
// clients that need it), table fetches it in line (the goroutine engine).

// ensureTable makes sure the command table is known or being learned in
// the background, and says whether a client should wait for it (false:
// it is known, or no backend answered a moment ago and the command gets
// that error at once).
func (d *DB) ensureTable() bool {
	if d.cmds.Load() != nil {
		return false
	}
	if last := d.tableFailed.Load(); last != 0 && time.Since(time.Unix(0, last)) < time.Second {
		return false
	}
	if d.fetching.CompareAndSwap(false, true) {
		go func() {
			_, err := d.table(d.ctx)
			if err != nil {
				d.log.Warn("command table", "err", err)
			}
			d.fetching.Store(false)
			d.eng.wake()
		}()
	}
	return true
}

// needsTable says whether dispatching a command looks it up in the
// command table (the proxy answers the others itself; see dispatch).
func needsTable(name []byte) bool {
	switch strings.ToLower(string(name)) {
	case "auth", "hello", "quit", "ping", "echo", "select", "client":
		return false
	}
	return true
}

// table is the command table for dispatch. A session never fetches it
// itself: its engine has it learned before dispatching a command that
// needs it (needsTableFirst), and gets this error when no backend answered.
func (c *session) table() (cmdTable, error) {
	if t := c.d.cmds.Load(); t != nil {
		return *t, nil
	}
	return nil, errors.New("no backend answered COMMAND a moment ago; retry shortly")
}

// table returns the command table, learned from a backend on first use.
func (d *DB) table(ctx context.Context) (cmdTable, error) {
	if t := d.cmds.Load(); t != nil {
		return *t, nil
	}
	if last := d.tableFailed.Load(); last != 0 && time.Since(time.Unix(0, last)) < time.Second {
		return nil, errors.New("no backend answered COMMAND a moment ago; retry shortly")
	}
	topo := d.topo.Load()
	var lastErr error
	for _, sh := range topo.route.Shards {
		for _, addr := range append([]string{sh.Master}, sh.Replicas...) {
			if addr == "" {
				continue
			}
			raw, err := d.roundTrip(ctx, addr, 0, resp.AppendCommand(nil, []byte("COMMAND")))
			if err == nil {
				var t cmdTable
				if t, err = parseCommandTable(raw); err == nil {
					d.cmds.Store(&t)
					return t, nil
				}
			}
			lastErr = err
		}
	}
	d.tableFailed.Store(time.Now().UnixNano())
	return nil, fmt.Errorf("no backend answered COMMAND: %v", lastErr)
}

func (d *DB) roundTrip(ctx context.Context, addr string, id uint64, cmd []byte) ([]byte, error) {
	c, err := d.pool(addr).get(ctx, id)
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	r := &request{cmd: cmd, done: wg.Done}
	c.send([]*request{r})
	wg.Wait()
	return r.reply, r.err
}

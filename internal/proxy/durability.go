package proxy

import (
	"strconv"
	"time"

	"github.com/marina-redis/marina/internal/resp"
)

// Durability replicated: an engine appends one WAIT after each batch of
// writes it sends to a backend connection, and answers those writes only
// as that WAIT says. Both engines do it; these are the parts they share.

// noReplicas is the answer to a write no replica confirmed in time.
const noReplicas = "NOREPLICAS the write was not confirmed by a replica in time (durability: replicated); it may or may not have been applied"

// waitCommand is the WAIT that follows a batch of writes.
func waitCommand(r *Route) []byte {
	timeout := r.WaitTimeout
	if timeout <= 0 {
		timeout = time.Second
	}
	return resp.AppendCommand(nil, []byte("WAIT"), []byte("1"), []byte(strconv.FormatInt(timeout.Milliseconds(), 10)))
}

// settleWrites applies the answer of the WAIT w to the writes it held:
// each that succeeded but is not confirmed by a replica gets NOREPLICAS
// instead. It returns how many did (errors, for the counters).
func settleWrites(w *request) int {
	n, ok := resp.Int(w.reply)
	confirmed := ok && n >= 1 && w.err == nil
	refused := 0
	for _, r := range w.waits {
		if !confirmed && r.err == nil && !resp.IsError(r.reply) {
			r.reply = resp.AppendError(nil, noReplicas)
			refused++
		}
	}
	return refused
}

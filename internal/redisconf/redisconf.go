// Package redisconf renders the redis.conf of one Marina-managed instance and
// says which settings can be changed on a running server with CONFIG SET.
package redisconf

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/marina-redis/marina/internal/state"
)

// InternalUser is the ACL user Marina's agents and leader log in as: all
// commands but the replication handshake's SYNC and PSYNC.
const InternalUser = "marina"

// InternalRules are the internal user's rules after its password.
const InternalRules = "~* &* +@all -sync -psync"

// ReplUser is the ACL user replicas log in to their master as: the
// handshake's commands only. The fence turns it off (ReplRules), so a
// fenced server is no sync source: a replica's AUTH fails and Redis tries
// again at its next replication cron, a second later. (The fence used to
// deny PSYNC instead; a replica refused PSYNC falls back to SYNC and,
// refused again, reconnects at once: the replicas of fenced masters then
// spun in that loop, hundreds of handshakes a second that starved a
// loaded host, whose control plane then lost its leader, which fenced
// more masters.)
const ReplUser = "marina-repl"

// ReplSecret is the marina-repl user's password, derived from the
// database's internal secret as ProxySecret is.
func ReplSecret(secret string) string { return derive(secret, ReplUser) }

// ReplRules are the replication user's rules after its password: on or
// off by the fence, the handshake's commands only. SYNC, the pre-PSYNC
// protocol, is never allowed: a link that falls back to it counts its
// offset from -1 for its whole life, one byte behind the master, so WAIT
// (and durability replicated) never sees the replica catch up.
func ReplRules(fenced bool) []string {
	onOff := "on"
	if fenced {
		onOff = "off"
	}
	return []string{onOff, "-@all", "+ping", "+replconf", "+psync"}
}

// ProxyUser is the ACL user of the proxy's backend connections: all data
// commands, nothing that reconfigures or stops the server, switches
// databases or resets the connection.
const ProxyUser = "marina-proxy"

// ProxySecret is the marina-proxy user's password, derived from the
// database's internal secret (HMAC-SHA256): the proxy, and the HAProxy
// file that holds it, can log in for data commands only, and knowing it
// reveals nothing of the internal user's secret.
func ProxySecret(secret string) string { return derive(secret, ProxyUser) }

func derive(secret, user string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(user))
	return hex.EncodeToString(m.Sum(nil))
}

// ClientRules restrict the database's own users (default, marina-proxy):
// a client, through the proxy or directly, runs data commands only.
// ROLE stays: client libraries ask it to check they talk to a master.
var ClientRules = "-@admin +role -select -" + strings.Join(DeniedCommands, " -")

// DeniedCommands are refused to a database's clients by the proxy and by
// the ACL of the database's users alike: one list, so a client the proxy
// relays raw (after BLPOP, SUBSCRIBE, MULTI on a single-shard database)
// meets the same refusals. Administration, replication and cluster
// commands, and moving data out of the database.
var DeniedCommands = []string{
	"config", "shutdown", "replicaof", "slaveof", "debug", "acl", "sync", "psync", "failover", "module", "cluster",
	"bgrewriteaof", "save", "bgsave", "monitor", "migrate", "restore-asking", "readonly", "readwrite", "asking", "latency",
	"lastsave", "swapdb", "move", "replconf", "pfdebug", "pfselftest", "function",
}

// Config is everything that goes into one instance's redis.conf.
type Config struct {
	Port        int
	Bind        string
	Dir         string
	MaxMemory   int64
	Policy      string
	Persistence string
	Password    string // the database's client password (default user)
	Secret      string // the internal user's password
	ReplicaOf   string // host:port of the master, empty for a master
	// Fenced makes a master refuse writes (min-replicas-to-write set out of
	// reach) and replication syncs (the replication user is off):
	// demoted masters, masters whose agent lost the leader, and replicas.
	Fenced bool
	// Epoch is the shard's epoch the fence decision was taken in, recorded
	// on the server (FenceEpochKey) so that no writer of an older epoch
	// can undo it: see internal/redisctl.
	Epoch uint64
	// TLS, when set, makes the server speak only TLS on Port (no plaintext
	// port at all), replicate over TLS, and present the node's certificate.
	TLS *TLSFiles
	// Socket, when set, is a Unix socket (mode 0700, in the instance's own
	// 0700 directory) for this node's agent and collectors: their traffic
	// never leaves the host, and a reconnection under load costs no TLS
	// handshake. Clients still log in as the internal user.
	Socket string
}

// SocketPath is the Unix socket of the instance whose directory is dir,
// "" when the path would be too long for a socket address.
func SocketPath(dir string) string {
	p := filepath.Join(dir, "redis.sock")
	if len(p) > 100 { // sun_path holds 108 bytes on Linux, fewer elsewhere
		return ""
	}
	return p
}

// TLSFiles are the node's certificate, key and CA bundle (PEM files),
// shared by its redis-servers.
type TLSFiles struct {
	Cert, Key, CA string
}

// Reload is the command that has a running server load the files again
// (after a renewal or a CA rotation): setting a tls-* parameter makes
// Redis read them anew.
func (t *TLSFiles) Reload() []any {
	return []any{"CONFIG", "SET", "tls-cert-file", t.Cert, "tls-key-file", t.Key, "tls-ca-cert-file", t.CA}
}

// FenceReplicas is min-replicas-to-write (FenceKey) on a fenced instance:
// no master has that many replicas, so every write gets -NOREPLICAS.
const (
	FenceKey      = "min-replicas-to-write"
	FenceReplicas = "10000"
)

// FenceEpochKey records on the server the shard epoch of the fence
// decision it carries (internal/redisctl orders writers by it). Redis reads
// min-replicas-max-lag only to count "good" replicas against
// min-replicas-to-write: with the fence off (0) it is ignored, with the
// fence on (FenceReplicas) no count can reach the bar, so the value is
// Marina's to use. It must not be 0 (that would disable the fence's check).
const FenceEpochKey = "min-replicas-max-lag"

// fenceEpochBase is added to the epoch in FenceEpochKey: a smaller value
// (Redis's default 10, a server from before the epoch was recorded) says
// that no epoch is recorded.
const fenceEpochBase = 1 << 30

// maxFenceEpoch is the largest epoch FenceEpochKey can hold (an int).
const maxFenceEpoch = 1<<31 - 1 - fenceEpochBase

// FenceEpochValue is FenceEpochKey's value for a decision of epoch.
func FenceEpochValue(epoch uint64) string {
	return strconv.FormatUint(fenceEpochBase+min(epoch, maxFenceEpoch), 10)
}

// ParseFenceEpoch reads FenceEpochKey's value: the epoch, and whether one
// is recorded at all.
func ParseFenceEpoch(v string) (uint64, bool) {
	n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
	if err != nil || n < fenceEpochBase {
		return 0, false
	}
	return n - fenceEpochBase, true
}

// FenceValue is FenceKey's value for a fenced or writable instance.
func FenceValue(fenced bool) string {
	if fenced {
		return FenceReplicas
	}
	return "0"
}

// Hz is the server's cron frequency (Redis's hz): Redis's default, 10,
// where keys expire (the cron reclaims expired keys, each run allowed a
// share of its period: at hz 1 one run could take 250 ms), and 1
// elsewhere. An idle redis-server at hz 10 costs 0.2% of a core in its
// cron alone, 0.04% at hz 1: 600 of them on a 2-core host took 60% of
// it from the control plane and the busy databases. Nothing Marina
// relies on runs slower at hz 1: replication's cron (the fence's count
// of good replicas, acknowledgements, timeouts) runs once a second at
// any hz, and dynamic-hz still raises it for servers with many clients.
// volatile is how many keys with a TTL the server holds.
func Hz(volatile int64) int {
	if volatile > 0 {
		return HzExpiring
	}
	return HzIdle
}

// The two cron frequencies of Hz.
const (
	HzExpiring = 10
	HzIdle     = 1
)

// rdbSave is Redis's default snapshot schedule.
const rdbSave = "3600 1 300 100 60 10000"

// Live returns the settings that CONFIG SET can change on a running server,
// with the values CONFIG GET reports for them. The fence (FenceKey,
// FenceEpochKey and the replication user) is not among them: on a running
// server it has one owner, internal/redisctl, and only a fresh start reads
// it from the rendered config.
func (c Config) Live() map[string]string {
	appendonly, save := "no", ""
	switch c.Persistence {
	case state.PersistAOF:
		appendonly = "yes"
	case state.PersistRDB:
		save = rdbSave
	}
	return map[string]string{
		"maxmemory":        strconv.FormatInt(c.MaxMemory, 10),
		"maxmemory-policy": c.Policy,
		"appendonly":       appendonly,
		"save":             save,
		"requirepass":      c.Password,
		"masteruser":       ReplUser,
		"masterauth":       ReplSecret(c.Secret),
	}
}

// Render returns the redis.conf text.
func (c Config) Render() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# Written by marina on every change; edits here are overwritten.")
	if t := c.TLS; t != nil {
		// Every byte between hosts encrypted: no plaintext listener (Redis
		// binds both ports to the same addresses), replication over TLS.
		// Client certificates are optional: the database's clients
		// authenticate with its password, replicas present the node's.
		w("port 0")
		w("tls-port %d", c.Port)
		w("tls-cert-file %s", t.Cert)
		w("tls-key-file %s", t.Key)
		w("tls-ca-cert-file %s", t.CA)
		w("tls-auth-clients optional")
		w("tls-replication yes")
	} else {
		w("port %d", c.Port)
	}
	w("bind %s", c.Bind)
	if c.Socket != "" {
		w("unixsocket %s", c.Socket)
		w("unixsocketperm 700")
	}
	w("protected-mode yes")
	w("daemonize no")
	w("dir %s", c.Dir)
	w("pidfile %s/redis.pid", c.Dir)
	w("logfile %s/redis.log", c.Dir)
	w("dbfilename dump.rdb")
	w("appenddirname appendonlydir")
	live := c.Live()
	w("maxmemory %s", live["maxmemory"])
	w("maxmemory-policy %s", live["maxmemory-policy"])
	w("appendonly %s", live["appendonly"])
	w("appendfsync everysec")
	w("save %q", live["save"])
	// Until the agent sees its keyspace (Hz): a server that loads keys
	// with a TTL is raised within one converge pass.
	w("hz %d", HzIdle)
	// The client password with the client rules from the first reply on:
	// rules applied later (by converge) would leave a window, and none at
	// all while a server loads, in which the password is a superuser's.
	// (Not requirepass: a later default user line would reset it.)
	w("user default on >%s ~* &* +@all %s", c.Password, ClientRules)
	w("%s %s", FenceKey, FenceValue(c.Fenced))
	w("%s %s", FenceEpochKey, FenceEpochValue(c.Epoch))
	// The internal user survives client password changes, so replication and
	// the agent never lock themselves out.
	w("user %s on >%s %s", InternalUser, c.Secret, InternalRules)
	w("user %s >%s %s", ReplUser, ReplSecret(c.Secret), strings.Join(ReplRules(c.Fenced), " "))
	w("user %s on >%s ~* &* +@all %s -reset", ProxyUser, ProxySecret(c.Secret), ClientRules)
	w("masteruser %s", live["masteruser"])
	w("masterauth %s", live["masterauth"])
	// Disk-based full syncs: after a diskless one, Redis 7.0 starts the
	// command stream only at the replica's next periodic ACK, so a replica
	// shows "link up" yet receives nothing for up to a second, and a
	// failover in that second would lose every write of it.
	w("repl-diskless-sync no")
	w("replica-announce-ip %s", c.Bind)
	w("replica-read-only yes")
	if c.ReplicaOf != "" {
		host, port, _ := net.SplitHostPort(c.ReplicaOf)
		w("replicaof %s %s", host, port)
	}
	return b.String()
}

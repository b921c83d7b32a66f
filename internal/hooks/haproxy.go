package hooks

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/marina-redis/marina/internal/redisconf"
)

// BackendName is the name of a shard's HAProxy backend; role is "write" or
// "read". Single-shard databases leave the shard out (NAME-write); sharded
// ones separate it with '_', which database names cannot contain, so that no
// two databases' backends can ever share a name ("a" shard 0 is a_0-write,
// a database named "a-0" has a-0-write).
func BackendName(db string, shards, shard int, role string) string {
	if shards == 1 {
		return db + "-" + role
	}
	return db + "_" + strconv.Itoa(shard) + "-" + role
}

// RenderHAProxy returns an HAProxy configuration with, per database and
// shard, a write backend holding the master and a read backend holding the
// replicas with the master as a backup. Health checks log in as the
// marina-proxy user (data commands only, the database's internal secret,
// unchanged by client password changes) and ask INFO replication: the write
// backend accepts only a server that says role:master, the read backend a
// master or a replica whose link to its master is up. The output depends
// only on the topologies, so an unchanged topology is an unchanged file.
//
// With caFile, the redis-servers speak TLS only (--redis-tls): HAProxy
// reaches and checks them over TLS, verifying them against the cluster CA
// bundle at caFile.
func RenderHAProxy(node string, topos []Topology, caFile string) string {
	ssl := ""
	if caFile != "" {
		ssl = " ssl verify required ca-file " + caFile
	}
	topos = append([]Topology(nil), topos...)
	sort.Slice(topos, func(i, j int) bool { return topos[i].Name < topos[j].Name })
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# Written by marina on node %s at every topology change; edits here are overwritten.", node)
	w("# It holds only backends: load it after your own configuration, e.g.")
	w("#   haproxy -f /etc/haproxy/haproxy.cfg -f THIS_FILE")
	w("# and point frontends at NAME-write / NAME-read (sharded: NAME_SHARD-write / NAME_SHARD-read).")
	w("# It contains the databases' internal secrets: keep it private (mode 0600).")
	for _, t := range topos {
		for _, sh := range t.Shards {
			w("")
			w("backend %s", BackendName(t.Name, len(t.Shards), sh.Index, "write"))
			header(w, redisconf.ProxySecret(t.Secret), caFile != "")
			w("    tcp-check expect string role:master")
			checkEnd(w)
			if sh.Master.ID != "" {
				// A master marked down (demoted, dead) drops its clients, so
				// none keeps writing to it after a failover.
				w("    server %s %s check inter 1s fall 2 rise 1 on-marked-down shutdown-sessions%s", sh.Master.ID, sh.Master.Addr, ssl)
			}
			w("")
			w("backend %s", BackendName(t.Name, len(t.Shards), sh.Index, "read"))
			w("    balance roundrobin")
			header(w, redisconf.ProxySecret(t.Secret), caFile != "")
			w("    tcp-check expect rstring (role:master|master_link_status:up)")
			checkEnd(w)
			for _, r := range sh.Replicas {
				w("    server %s %s check inter 1s fall 2 rise 1%s", r.ID, r.Addr, ssl)
			}
			if sh.Master.ID != "" {
				w("    server %s %s check inter 1s fall 2 rise 1 backup%s", sh.Master.ID, sh.Master.Addr, ssl)
			}
		}
	}
	return b.String()
}

// header writes a backend's mode, timeouts and the start of its check:
// AUTH as the proxy user, PING, INFO replication.
func header(w func(string, ...any), secret string, ssl bool) {
	w("    mode tcp")
	w("    timeout connect 2s")
	w("    timeout check 2s")
	// Redis clients keep pooled connections idle and block in BLPOP and
	// friends: an hour, as the frontend's timeout client should be.
	w("    timeout server 1h")
	w("    option tcp-check")
	if ssl {
		w("    tcp-check connect ssl")
	} else {
		w("    tcp-check connect")
	}
	// The secret is hex (redisconf.ProxySecret): nothing to escape.
	w(`    tcp-check send AUTH\ %s\ %s\r\n`, redisconf.ProxyUser, secret)
	w("    tcp-check expect string +OK")
	w(`    tcp-check send PING\r\n`)
	w("    tcp-check expect string +PONG")
	w(`    tcp-check send info\ replication\r\n`)
}

func checkEnd(w func(string, ...any)) {
	w(`    tcp-check send QUIT\r\n`)
	w("    tcp-check expect string +OK")
}

// writeAtomic replaces path with data (mode 0600) through a temporary file
// and a rename, so HAProxy never reads half a file. It reports whether the
// content changed.
func writeAtomic(path string, data []byte) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return false, err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return false, err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return false, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return false, err
	}
	if err := f.Close(); err != nil {
		return false, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return false, err
	}
	ok = true
	return true, nil
}

// haproxyWriter renders the file, writes it when it changed and runs the
// reload command.
type haproxyWriter struct {
	node, path, reload, caFile string
	exec                       *Exec
	// needReload: the file changed and HAProxy has not been reloaded since
	// (or the node just started: HAProxy may hold an older file).
	needReload bool
}

// apply writes the configuration for topos and reloads HAProxy when needed;
// it reports whether the file changed.
func (h *haproxyWriter) apply(ctx context.Context, topos []Topology) (bool, error) {
	changed, err := writeAtomic(h.path, []byte(RenderHAProxy(h.node, topos, h.caFile)))
	if err != nil {
		return false, fmt.Errorf("write %s: %w", h.path, err)
	}
	h.needReload = h.needReload || changed
	if h.reload == "" || !h.needReload {
		return changed, nil
	}
	res, err := h.exec.Run(ctx, "haproxy-reload", h.reload, nil, []string{"MARINA_EVENT=reload", "MARINA_HAPROXY_CONFIG=" + h.path}, nil)
	if err != nil {
		return changed, fmt.Errorf("reload %q: %w%s", h.reload, err, res.stderrSuffix())
	}
	h.needReload = false
	return changed, nil
}

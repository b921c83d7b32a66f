// Package doctor checks the host settings redis-server needs (overcommit,
// transparent huge pages, open-files limits, listen backlog, the installed
// redis-server) and says how to fix each. Evaluate is pure: it takes the raw
// values the readers found and returns the checks, so it is table-tested;
// Read does the I/O under a root directory, so tests point it at a temp dir.
package doctor

import (
	"fmt"
	"strconv"
	"strings"
)

// Check statuses.
const (
	OK   = "ok"
	Warn = "warn"
)

// Check names, stable for the console and scripts.
const (
	NameOvercommit = "vm.overcommit_memory"
	NameTHP        = "transparent_hugepage"
	NameNoFile     = "open_files"
	NameFileMax    = "fs.file-max"
	NameSomaxconn  = "net.core.somaxconn"
	NameRedis      = "redis-server"
)

// What redis-server needs. redisconf renders neither maxclients nor
// tcp-backlog, so Redis's defaults apply.
const (
	RedisMaxClients = 10000
	// RedisReservedFDs: redis-server wants maxclients + 32 descriptors
	// (CONFIG_MIN_RESERVED_FDS: logs, persistence, listeners, cluster bus).
	RedisReservedFDs = 32
	RedisTCPBacklog  = 511
	// ProxyReservedFDs covers the marina process's own descriptors beyond
	// endpoint clients: backends, Raft, HTTP, the data directory.
	ProxyReservedFDs = 1024
	MinRedisMajor    = 7
	MinRedisMinor    = 0
	// DefaultNrOpen is the kernel's default fs.nr_open, the most open
	// files a process may have (its RLIMIT_NOFILE cannot go higher):
	// assumed when fs.nr_open cannot be read.
	DefaultNrOpen = 1048576
	// MaxNrOpen is the most fs.nr_open can be raised to on 64-bit Linux
	// (sysctl_nr_open_max).
	MaxNrOpen = 2147483584
)

// Check is one setting: its status, what was found, what is wanted and
// the command that fixes it.
type Check struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Value  string `json:"value"`
	Want   string `json:"want"`
	Fix    string `json:"fix,omitempty"`
}

// Report is one host's checks: GET /v1/local/doctor and
// GET /v1/nodes/ID/doctor answer with it.
type Report struct {
	Node   string  `json:"node,omitempty"`
	Checks []Check `json:"checks"`
}

// OK says whether every check passed.
func (r Report) OK() bool {
	for _, c := range r.Checks {
		if c.Status != OK {
			return false
		}
	}
	return true
}

// Raw is a value as read: the file's content (or command's output), or
// the error reading it.
type Raw struct {
	Text string
	Err  error
	// Missing: the file does not exist (e.g. a kernel without THP).
	Missing bool
}

// Facts are the raw values read on a host.
type Facts struct {
	Overcommit Raw // /proc/sys/vm/overcommit_memory
	THP        Raw // /sys/kernel/mm/transparent_hugepage/enabled
	Limits     Raw // /proc/self/limits
	NrOpen     Raw // /proc/sys/fs/nr_open: caps the open-files limit
	FileMax    Raw // /proc/sys/fs/file-max
	Somaxconn  Raw // /proc/sys/net/core/somaxconn
	// Redis is the output of `redis-server --version`; RedisPath the
	// binary found (empty when not found).
	Redis     Raw
	RedisPath string
}

// Needs is what this host runs (or will run): it sets the open-files
// targets. Zero values mean "a single instance, no endpoints".
type Needs struct {
	Instances       int // redis-servers placed on this host
	ProxyEndpoints  int // database endpoints this host's marina serves
	ProxyMaxClients int // --proxy-max-clients (10000 by default)
}

// redisFDs is what one redis-server process needs.
const redisFDs = RedisMaxClients + RedisReservedFDs

// processFDs is the per-process limit both marina (proxy) and each
// redis-server need: they inherit the same hard limit.
func (n Needs) processFDs() int64 {
	need := int64(redisFDs)
	if p := n.proxyFDs(); p > need {
		need = p
	}
	return need
}

func (n Needs) proxyFDs() int64 {
	if n.ProxyEndpoints <= 0 {
		return 0
	}
	maxc := n.ProxyMaxClients
	if maxc <= 0 {
		maxc = 10000
	}
	return int64(n.ProxyEndpoints)*int64(maxc) + ProxyReservedFDs
}

// hostFDs is what the whole host needs open at most.
func (n Needs) hostFDs() int64 {
	inst := n.Instances
	if inst < 1 {
		inst = 1
	}
	return int64(inst)*redisFDs + n.proxyFDs()
}

const sysctlFile = "/etc/sysctl.d/60-marina.conf"

// Evaluate turns the facts into checks, in a fixed order.
// A passing check carries no fix.
func Evaluate(f Facts, n Needs) []Check {
	out := []Check{
		overcommit(f.Overcommit),
		thp(f.THP),
		nofile(f.Limits, f.NrOpen, n),
		fileMax(f.FileMax, n),
		somaxconn(f.Somaxconn),
		redisServer(f.Redis, f.RedisPath),
	}
	for i := range out {
		if out[i].Status == OK {
			out[i].Fix = ""
		}
	}
	return out
}

func unreadable(c Check, r Raw) Check {
	c.Status, c.Value = Warn, "unreadable: "+oneLine(r.Err.Error())
	return c
}

func sysctlFix(key, val string) string {
	return fmt.Sprintf("sysctl -w %s=%s && echo '%s = %s' >> %s", key, val, key, val, sysctlFile)
}

func overcommit(r Raw) Check {
	c := Check{Name: NameOvercommit, Want: "1",
		Fix: sysctlFix("vm.overcommit_memory", "1") + " (background saves and replica syncs fork; without it the fork can fail under memory pressure)"}
	if r.Err != nil || r.Missing {
		return unreadable(c, errOf(r, "/proc/sys/vm/overcommit_memory"))
	}
	c.Value = strings.TrimSpace(r.Text)
	c.Status = statusIf(c.Value == "1")
	return c
}

func thp(r Raw) Check {
	c := Check{Name: NameTHP, Want: "never or madvise",
		Fix: "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled, and transparent_hugepage=madvise on the kernel command line to keep it (huge pages make forks slow and copy-on-write costly)"}
	if r.Missing {
		c.Status, c.Value = OK, "not available (kernel without THP)"
		return c
	}
	if r.Err != nil {
		return unreadable(c, r)
	}
	// "always [madvise] never": the bracketed word is the active mode.
	text := strings.TrimSpace(r.Text)
	c.Value = text
	if i := strings.IndexByte(text, '['); i >= 0 {
		if j := strings.IndexByte(text[i:], ']'); j > 0 {
			c.Value = text[i+1 : i+j]
		}
	}
	c.Status = statusIf(c.Value == "never" || c.Value == "madvise")
	return c
}

// ParseLimit reads one line of /proc/PID/limits ("Max open files") and
// returns soft and hard; -1 stands for unlimited.
func ParseLimit(limits, name string) (soft, hard int64, err error) {
	for _, line := range strings.Split(limits, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok {
			continue
		}
		fs := strings.Fields(rest)
		if len(fs) < 2 {
			break
		}
		if soft, err = parseLimitValue(fs[0]); err != nil {
			return 0, 0, err
		}
		if hard, err = parseLimitValue(fs[1]); err != nil {
			return 0, 0, err
		}
		return soft, hard, nil
	}
	return 0, 0, fmt.Errorf("no %q line in limits", name)
}

func parseLimitValue(s string) (int64, error) {
	if s == "unlimited" {
		return -1, nil
	}
	return strconv.ParseInt(s, 10, 64)
}

func limitString(v int64) string {
	if v < 0 {
		return "unlimited"
	}
	return strconv.FormatInt(v, 10)
}

// nrOpen reads fs.nr_open; assumed says it could not be, and
// DefaultNrOpen is taken instead.
func nrOpen(r Raw) (v int64, assumed bool) {
	if r.Err == nil && !r.Missing {
		if v, err := strconv.ParseInt(strings.TrimSpace(r.Text), 10, 64); err == nil && v > 0 {
			return v, false
		}
	}
	return DefaultNrOpen, true
}

func limitNOFILE(v int64) string {
	return fmt.Sprintf("LimitNOFILE=%d in marina's systemd unit (or 'nofile %d' in /etc/security/limits.conf), then restart marina server", v, v)
}

// nofile checks the hard open-files limit against what a redis-server and
// the proxy need. No limit can exceed fs.nr_open (the kernel refuses it: a
// unit with a higher LimitNOFILE does not start), so a need above it is
// told to lower --proxy-max-clients or to raise fs.nr_open first.
func nofile(r, nr Raw, n Needs) Check {
	need := n.processFDs()
	maxc := n.ProxyMaxClients
	if maxc <= 0 {
		maxc = 10000
	}
	why := fmt.Sprintf("redis-server: maxclients %d + %d", RedisMaxClients, RedisReservedFDs)
	if p := n.proxyFDs(); p > 0 {
		why += fmt.Sprintf("; proxy: %d endpoints x %d clients + %d", n.ProxyEndpoints, maxc, ProxyReservedFDs)
	}
	c := Check{Name: NameNoFile, Want: fmt.Sprintf("hard >= %d (%s)", need, why), Fix: limitNOFILE(need)}
	limit, assumed := nrOpen(nr)
	soft, hard, err := int64(0), int64(0), error(nil)
	if r.Err == nil && !r.Missing {
		soft, hard, err = ParseLimit(r.Text, "Max open files")
	}
	if need > limit {
		// The target is capped at fs.nr_open; the rest needs a choice.
		src := "fs.nr_open"
		if assumed {
			src = "fs.nr_open (unreadable: the kernel's default)"
		}
		c.Want += fmt.Sprintf(", more than %s %d", src, limit)
		var ways []string
		if k := (limit - ProxyReservedFDs) / int64(max(n.ProxyEndpoints, 1)); n.ProxyEndpoints > 0 && k >= 1 && redisFDs <= limit {
			ways = append(ways, fmt.Sprintf("lower --proxy-max-clients to %d or less (%d endpoints x %d + %d fits)", k, n.ProxyEndpoints, k, ProxyReservedFDs))
		}
		if need <= MaxNrOpen {
			ways = append(ways, fmt.Sprintf("raise fs.nr_open first (%s), then set LimitNOFILE=%d", sysctlFix("fs.nr_open", strconv.FormatInt(need, 10)), need))
		}
		if len(ways) == 0 {
			ways = append(ways, "neither a lower --proxy-max-clients nor a higher fs.nr_open alone fits: lower the one and raise the other, or serve fewer endpoints from this host")
		}
		capped := fmt.Sprintf("%s (%d) is the most open files the kernel lets a process have (a higher LimitNOFILE stops the unit from starting), less than the %d needed: %s",
			src, limit, need, strings.Join(ways, ", or "))
		if r.Err == nil && !r.Missing && err == nil && (hard < 0 || hard >= limit) {
			c.Fix = capped
		} else {
			c.Fix = limitNOFILE(limit) + ". " + capped
		}
	}
	if r.Err != nil || r.Missing {
		return unreadable(c, errOf(r, "/proc/self/limits"))
	}
	if err != nil {
		return unreadable(c, Raw{Err: err})
	}
	// Only the hard limit matters: Go raises marina's soft limit to it,
	// and redis-server raises its own (it cannot go past the hard one).
	c.Value = fmt.Sprintf("soft %s, hard %s", limitString(soft), limitString(hard))
	c.Status = statusIf(hard < 0 || hard >= need)
	return c
}

func fileMax(r Raw, n Needs) Check {
	need := n.hostFDs()
	inst := max(n.Instances, 1)
	why := fmt.Sprintf("redis-servers: %d x %d", inst, redisFDs)
	if p := n.proxyFDs(); p > 0 {
		why += fmt.Sprintf("; proxy: %d", p)
	}
	c := Check{Name: NameFileMax, Want: fmt.Sprintf(">= %d (%s)", need, why),
		Fix: sysctlFix("fs.file-max", strconv.FormatInt(need, 10))}
	if r.Err != nil || r.Missing {
		return unreadable(c, errOf(r, "/proc/sys/fs/file-max"))
	}
	c.Value = strings.TrimSpace(r.Text)
	v, err := strconv.ParseInt(c.Value, 10, 64)
	if err != nil {
		c.Status = Warn
		return c
	}
	c.Status = statusIf(v >= need)
	return c
}

func somaxconn(r Raw) Check {
	c := Check{Name: NameSomaxconn, Want: fmt.Sprintf(">= %d (redis tcp-backlog)", RedisTCPBacklog),
		Fix: sysctlFix("net.core.somaxconn", "1024") + " (the kernel caps redis's listen backlog at this value)"}
	if r.Err != nil || r.Missing {
		return unreadable(c, errOf(r, "/proc/sys/net/core/somaxconn"))
	}
	c.Value = strings.TrimSpace(r.Text)
	v, err := strconv.Atoi(c.Value)
	c.Status = statusIf(err == nil && v >= RedisTCPBacklog)
	return c
}

// ParseRedisVersion reads `redis-server --version` output
// ("Redis server v=7.0.15 sha=...") and returns "7.0.15", major and minor.
func ParseRedisVersion(out string) (string, int, int, error) {
	i := strings.Index(out, "v=")
	if i < 0 {
		return "", 0, 0, fmt.Errorf("unexpected --version output %q", oneLine(out))
	}
	ver := out[i+2:]
	if j := strings.IndexAny(ver, " \t\n"); j >= 0 {
		ver = ver[:j]
	}
	var major, minor int
	if _, err := fmt.Sscanf(ver, "%d.%d", &major, &minor); err != nil {
		return "", 0, 0, fmt.Errorf("unexpected --version output %q", oneLine(out))
	}
	return ver, major, minor, nil
}

func redisServer(r Raw, path string) Check {
	c := Check{Name: NameRedis, Want: fmt.Sprintf(">= %d.%d", MinRedisMajor, MinRedisMinor),
		Fix: "apt-get install redis-server (Debian 12 / Ubuntu 24.04 ship 7.x), or pass --redis-server PATH of a 7.x build"}
	if path == "" {
		c.Status, c.Value = Warn, "not found"
		if r.Err != nil {
			c.Value = "not found: " + oneLine(r.Err.Error())
		}
		return c
	}
	if r.Err != nil {
		c.Status, c.Value = Warn, fmt.Sprintf("%s --version failed: %s", path, oneLine(r.Err.Error()))
		return c
	}
	ver, major, minor, err := ParseRedisVersion(r.Text)
	if err != nil {
		c.Status, c.Value = Warn, fmt.Sprintf("%s: %v", path, err)
		return c
	}
	c.Value = fmt.Sprintf("%s (%s)", ver, path)
	c.Status = statusIf(major > MinRedisMajor || (major == MinRedisMajor && minor >= MinRedisMinor))
	return c
}

func statusIf(ok bool) string {
	if ok {
		return OK
	}
	return Warn
}

// errOf gives a missing file an error that names it.
func errOf(r Raw, path string) Raw {
	if r.Err == nil {
		r.Err = fmt.Errorf("%s does not exist", path)
	}
	return r
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

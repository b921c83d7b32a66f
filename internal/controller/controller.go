// Package controller holds the leader's side of the control plane: it turns
// API requests into placement decisions written to the Raft log, admits new
// members, collects agent reports and marks silent nodes down.
package controller

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/agent"
	"github.com/marina-redis/marina/internal/cluster"
	"github.com/marina-redis/marina/internal/redisconf"
	"github.com/marina-redis/marina/internal/scheduler"
	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/timing"
)

// Kind classifies errors for the API.
type Kind int

// Error kinds.
const (
	Invalid Kind = iota + 1
	NotFound
	Conflict
	Unavailable
	// NotLeader: this node does not lead (any more) and applied nothing;
	// the request may be sent to the leader as it is.
	NotLeader
)

// Error is a user-facing error with a kind.
type Error struct {
	Kind Kind
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

func errf(k Kind, format string, args ...any) error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// Report is what a node's agent sends the leader at every heartbeat.
type Report struct {
	Node      state.Node     `json:"node"`
	Instances []agent.Status `json:"instances"`
	Probes    []agent.Probe  `json:"probes,omitempty"`
	Fences    []agent.Fence  `json:"fences,omitempty"`
	Cert      CertStatus     `json:"cert"`
	Received  time.Time      `json:"received"`
}

// Controller runs on every node and acts when its node leads.
type Controller struct {
	cl        *cluster.Cluster
	fsm       *state.FSM
	log       *slog.Logger
	downAfter time.Duration
	// certLifetime: node certificates this leader issues (0: pki's default).
	certLifetime time.Duration

	opMu sync.Mutex // one placement decision at a time: read, decide, commit

	mu       sync.Mutex
	reports  map[string]Report
	leaderAt time.Time

	foCfg timing.Timing // failover, lease and heal timing, defaults filled
	fo    failoverState
	// redisDialer reaches redis-servers (fencing a silent node's masters).
	redisDialer *redisconf.Dialer
	kick        chan struct{}
}

// SetTiming sets the failover, lease and heal timing (zero fields take
// timing's defaults); call before Run.
func (c *Controller) SetTiming(t timing.Timing) {
	c.foCfg = t.WithDefaults()
}

func (c *Controller) kickNow() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// New returns a controller. downAfter is how long a node may miss
// heartbeats before it is marked down.
func New(cl *cluster.Cluster, fsm *state.FSM, downAfter time.Duration, log *slog.Logger) *Controller {
	if downAfter == 0 {
		downAfter = timing.Defaults().NodeDownAfter
	}
	c := &Controller{cl: cl, fsm: fsm, downAfter: downAfter, log: log.With("component", "controller"), reports: map[string]Report{},
		kick: make(chan struct{}, 1), fo: failoverState{noted: map[string]bool{}, clients: map[string]*redis.Client{},
			retryAt: map[string]time.Time{}, silent: map[string]fenceTarget{}}}
	c.foCfg = timing.Defaults()
	return c
}

// caughtUp makes sure the state decisions are taken from holds every
// change an earlier leader committed (cluster.CaughtUp).
func (c *Controller) caughtUp(ctx context.Context) error {
	if c.cl == nil {
		return nil // tests of decisions without Raft
	}
	if err := c.cl.CaughtUp(ctx); err != nil {
		if errors.Is(err, cluster.ErrNotLeader) {
			return errf(NotLeader, "this node is not the leader (any more); nothing was changed")
		}
		return errf(Unavailable, "catching up with the log before deciding: %v; nothing was changed", err)
	}
	return nil
}

func (c *Controller) apply(ctx context.Context, cmd state.Command) (uint64, error) {
	idx, err := c.cl.Apply(ctx, cmd)
	var ae *state.ApplyError
	switch {
	case err == nil:
		return idx, nil
	case errors.As(err, &ae):
		return idx, errf(Conflict, "%s", ae.Msg)
	case errors.Is(err, cluster.ErrNotLeader):
		return 0, errf(NotLeader, "this node is not the leader (any more); nothing was changed")
	case errors.Is(err, cluster.ErrLeadershipLost):
		return 0, errf(Unavailable, "leadership changed while the change was being committed: it may or may not have been applied; check before retrying")
	default:
		return 0, errf(Unavailable, "raft: %v", err)
	}
}

// SetRedisDialer sets how the leader reaches redis-servers (nil: plaintext).
func (c *Controller) SetRedisDialer(d *redisconf.Dialer) { c.redisDialer = d }

// RandomSecret returns n random bytes, URL-safe encoded.
func RandomSecret(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func instanceID(db string, shard int) string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%s", db, shard, hex.EncodeToString(b))
}

// CreateDB validates, places and commits a new database atomically: either
// the whole placement is in the log or nothing is.
func (c *Controller) CreateDB(ctx context.Context, spec state.Spec) (*state.Database, uint64, error) {
	spec.Defaults()
	if err := spec.Validate(); err != nil {
		return nil, 0, errf(Invalid, "%v", err)
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	if err := c.caughtUp(ctx); err != nil {
		return nil, 0, err
	}
	st := c.fsm.State()
	if _, ok := st.DBs[spec.Name]; ok {
		return nil, 0, errf(Conflict, "database %s already exists", spec.Name)
	}
	shards, err := scheduler.Place(scheduler.View(st), spec, func(i int) string { return instanceID(spec.Name, i) })
	if err != nil {
		return nil, 0, errf(Conflict, "%v", err)
	}
	port, err := scheduler.ProxyPort(st)
	if err != nil {
		return nil, 0, errf(Conflict, "database %s does not fit: %v", spec.Name, err)
	}
	if spec.Password == "" {
		spec.Password = RandomSecret(18)
	}
	now := time.Now().UTC()
	db := &state.Database{Spec: spec, Secret: RandomSecret(24), ProxyPort: port, Shards: shards, CreatedAt: now, UpdatedAt: now}
	idx, err := c.apply(ctx, &state.CreateDB{DB: db})
	if err != nil {
		return nil, 0, err
	}
	c.log.Info("database created", "db", spec.Name, "shards", spec.Shards, "replicas", spec.Replicas)
	return db, idx, nil
}

// Update is a partial change of a database spec; nil fields stay.
type Update struct {
	Memory      *int64
	Shards      *int
	Replicas    *int
	Persistence *string
	Eviction    *string
	Password    *string
	Owner       *string
	Labels      map[string]string
	Durability  *string
	ReadFrom    *string
}

// UpdateDB applies a spec change: the agents then apply it live where Redis
// allows and by restart otherwise.
func (c *Controller) UpdateDB(ctx context.Context, name string, u Update) (*state.Database, uint64, error) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	if err := c.caughtUp(ctx); err != nil {
		return nil, 0, err
	}
	st := c.fsm.State()
	old, ok := st.DBs[name]
	if !ok {
		return nil, 0, errf(NotFound, "database %s not found", name)
	}
	for _, sh := range old.Shards {
		if sh.Pending != nil {
			return nil, 0, errf(Conflict, "database %s: shard %d is failing over; retry when it is done", name, sh.Index)
		}
	}
	spec := old.Spec
	if u.Memory != nil {
		spec.Memory = *u.Memory
	}
	if u.Shards != nil {
		spec.Shards = *u.Shards
	}
	if u.Replicas != nil {
		spec.Replicas = *u.Replicas
	}
	if u.Persistence != nil {
		spec.Persistence = *u.Persistence
	}
	if u.Eviction != nil {
		spec.Eviction = *u.Eviction
	}
	if u.Password != nil {
		if *u.Password == "" {
			return nil, 0, errf(Invalid, "invalid password: must not be empty")
		}
		spec.Password = *u.Password
	}
	if u.Owner != nil {
		spec.Owner = *u.Owner
	}
	if u.Labels != nil {
		spec.Labels = u.Labels
	}
	if u.Durability != nil {
		spec.Durability = *u.Durability
	}
	if u.ReadFrom != nil {
		spec.ReadFrom = *u.ReadFrom
	}
	if err := spec.Validate(); err != nil {
		return nil, 0, errf(Invalid, "%v", err)
	}
	if spec.Shards != old.Spec.Shards {
		return nil, 0, errf(Invalid, "changing the number of shards (%d to %d) is not supported: create a new database and migrate", old.Spec.Shards, spec.Shards)
	}
	shards, err := scheduler.Update(scheduler.View(st), old, spec, func(i int) string { return instanceID(name, i) })
	if err != nil {
		return nil, 0, errf(Conflict, "%v", err)
	}
	db := old.Clone()
	db.Spec = spec
	db.Shards = shards
	db.UpdatedAt = time.Now().UTC()
	idx, err := c.apply(ctx, &state.UpdateDB{DB: db, Reason: specChanges(old.Spec, spec)})
	if err != nil {
		return nil, 0, err
	}
	c.log.Info("database updated", "db", name)
	return db, idx, nil
}

// DeleteDB removes a database; agents stop its instances and delete their data.
func (c *Controller) DeleteDB(ctx context.Context, name string) (uint64, error) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	if _, ok := c.fsm.State().DBs[name]; !ok {
		return 0, errf(NotFound, "database %s not found", name)
	}
	idx, err := c.apply(ctx, &state.DeleteDB{Name: name, Time: time.Now().UTC()})
	if err == nil {
		c.log.Info("database deleted", "db", name)
	}
	return idx, err
}

// SetToken stores the API token hash at bootstrap.
func (c *Controller) SetToken(ctx context.Context, hash string) error {
	_, err := c.apply(ctx, &state.SetToken{TokenHash: hash})
	return err
}

// Join admits a node into the Raft configuration.
func (c *Controller) Join(ctx context.Context, n state.Node) error {
	if n.ID == "" || n.RaftAddr == "" || n.HTTPAddr == "" {
		return errf(Invalid, "join needs id, raft_addr and http_addr")
	}
	if err := state.ValidateNodeID(n.ID); err != nil {
		return errf(Invalid, "%v", err)
	}
	st := c.fsm.State()
	for _, other := range st.Nodes {
		if other.ID != n.ID && (other.RaftAddr == n.RaftAddr || other.HTTPAddr == n.HTTPAddr) {
			return errf(Conflict, "node %s already uses address %s / %s", other.ID, other.RaftAddr, other.HTTPAddr)
		}
	}
	if err := sameIdentity(st, n); err != nil {
		return err
	}
	if _, err := c.cl.AddMember(ctx, n.ID, n.RaftAddr); err != nil {
		if errors.Is(err, cluster.ErrNotLeader) || errors.Is(err, cluster.ErrLeadershipLost) {
			return errf(NotLeader, "leadership changed during join; retry")
		}
		return errf(Unavailable, "add member: %v", err)
	}
	return c.upsertNode(ctx, n)
}

func (c *Controller) upsertNode(ctx context.Context, n state.Node) error {
	st := c.fsm.State()
	if old, ok := st.Nodes[n.ID]; ok {
		same := *old
		same.Addr, same.RaftAddr, same.HTTPAddr, same.Memory, same.Zone, same.PortMin, same.PortMax, same.ProxyMin, same.ProxyMax =
			n.Addr, n.RaftAddr, n.HTTPAddr, n.Memory, n.Zone, n.PortMin, n.PortMax, n.ProxyMin, n.ProxyMax
		same.SentinelAddr = n.SentinelAddr // a restart with another --sentinel-port is advertised
		if same == *old {
			return nil
		}
	} else {
		n.JoinedAt = time.Now().UTC()
	}
	_, err := c.apply(ctx, &state.UpsertNode{Node: &n})
	return err
}

// sameIdentity refuses a node id that exists with other addresses: a
// cloned host or a changed --bind would otherwise take over the instances
// placed on the node, and replicas would resync from its empty masters.
func sameIdentity(st *state.State, n state.Node) error {
	old, ok := st.Nodes[n.ID]
	if !ok || (old.Addr == n.Addr && old.RaftAddr == n.RaftAddr && old.HTTPAddr == n.HTTPAddr) {
		return nil
	}
	return errf(Conflict, "node id %s is already registered at %s (raft %s, http %s): a node cannot change address; use another --id",
		n.ID, old.Addr, old.RaftAddr, old.HTTPAddr)
}

// Ack is the leader's answer to a heartbeat: the agent's lease. LeaseAge
// is how long before the leader answered a quorum last confirmed it (the
// agent's lease counts from when it sent the report, minus this); Index is
// the commit index then: the agent acts on the lease only once its local
// state has applied that far, so it never lifts a fence on the word of a
// state older than the leader's (a demotion it has not seen yet).
type Ack struct {
	Leader   string        `json:"leader"`
	LeaseAge time.Duration `json:"lease_age_ns"`
	Index    uint64        `json:"index"`
}

// Heartbeat records a node's report; it registers the node, refreshes its
// advertised facts and brings a down node back up. Only Raft members may
// report, and never under another address than the one they joined with.
// The ack is given only while a quorum confirms this node as the leader.
func (c *Controller) Heartbeat(ctx context.Context, r Report) (Ack, error) {
	if err := c.Register(ctx, r); err != nil {
		return Ack{}, err
	}
	age, commit, err := c.cl.LeaderProof()
	if err != nil {
		return Ack{}, errf(Unavailable, "not a confirmed leader right now: %v", err)
	}
	return Ack{Leader: c.cl.LeaderID(), LeaseAge: age, Index: commit}, nil
}

// Register records a report without answering for the lease (the
// bootstrap registers its own node before any quorum check has run).
func (c *Controller) Register(ctx context.Context, r Report) error {
	if !c.cl.IsLeader() {
		return errf(NotLeader, "not the leader")
	}
	if err := state.ValidateNodeID(r.Node.ID); err != nil {
		return errf(Invalid, "%v", err)
	}
	st := c.fsm.State()
	if _, known := st.Nodes[r.Node.ID]; !known {
		members, err := c.cl.Members()
		if err != nil {
			return errf(Unavailable, "raft configuration: %v", err)
		}
		member := false
		for _, m := range members {
			member = member || (m.ID == r.Node.ID && m.Addr == r.Node.RaftAddr)
		}
		if !member {
			return errf(Conflict, "node %s is not a member of this cluster: join it first", r.Node.ID)
		}
	}
	if err := sameIdentity(st, r.Node); err != nil {
		return err
	}
	r.Received = time.Now()
	c.mu.Lock()
	c.reports[r.Node.ID] = r
	c.mu.Unlock()
	c.kickNow()
	if err := c.upsertNode(ctx, r.Node); err != nil {
		return err
	}
	for _, f := range r.Fences {
		if c.noted("fence/" + f.ID) {
			continue
		}
		e := state.Event{Type: "fence", DB: f.DB, Shard: f.Shard, Node: r.Node.ID, Instance: f.Instance, Reason: f.Reason, Time: f.At}
		if _, err := c.apply(ctx, &state.AddEvent{Event: &e}); err != nil {
			return err
		}
		c.note("fence/" + f.ID)
	}
	if n, ok := c.fsm.State().Nodes[r.Node.ID]; ok && n.Status == state.NodeDown {
		if _, err := c.apply(ctx, &state.SetNodeStatus{NodeID: n.ID, Status: state.NodeUp}); err != nil {
			return err
		}
		c.log.Info("node up", "node", n.ID)
	}
	return nil
}

// Reports returns the latest report of every node, as seen by this leader.
func (c *Controller) Reports() map[string]Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]Report, len(c.reports))
	for k, v := range c.reports {
		out[k] = v
	}
	return out
}

// Run drives the leader's loops while this node leads: failover on every
// report and every 50ms, nodes marked down when they miss heartbeats.
func (c *Controller) Run(ctx context.Context) {
	// Drains and heals wait on switchovers and placements: their own loop,
	// so failovers never wait behind them.
	mdone := make(chan struct{})
	go func() {
		defer close(mdone)
		mt := time.NewTicker(200 * time.Millisecond)
		defer mt.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-mt.C:
			}
			if c.cl.IsLeader() {
				c.maintenancePass(ctx, c.foCfg.HealAfter)
			}
		}
	}()
	defer func() { <-mdone }()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	defer c.closeClients()
	wasLeader := false
	var lastDownCheck time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.kick:
		}
		leader := c.cl.IsLeader()
		if leader && !wasLeader {
			// A new leader has no reports yet: give every node a full period.
			c.mu.Lock()
			c.leaderAt = time.Now()
			c.reports = map[string]Report{}
			c.mu.Unlock()
		}
		wasLeader = leader
		if !leader {
			continue
		}
		c.failoverPass(ctx)
		if time.Since(lastDownCheck) < 200*time.Millisecond {
			continue
		}
		lastDownCheck = time.Now()
		for _, id := range DownNodes(c.fsm.State(), c.Reports(), c.leaderAt, time.Now(), c.downAfter) {
			if _, err := c.apply(ctx, &state.SetNodeStatus{NodeID: id, Status: state.NodeDown, Time: time.Now().UTC()}); err != nil {
				c.log.Warn("mark node down", "node", id, "err", err)
				continue
			}
			c.log.Warn("node down: missed heartbeats", "node", id, "down_after", c.downAfter)
		}
	}
}

// DownNodes returns the up nodes whose last report is older than downAfter
// (counting from leaderSince when there is none).
func DownNodes(st *state.State, reports map[string]Report, leaderSince, now time.Time, downAfter time.Duration) []string {
	var out []string
	for _, id := range st.NodeIDs() {
		n := st.Nodes[id]
		if n.Status == state.NodeDown {
			continue
		}
		last := leaderSince
		if r, ok := reports[id]; ok && r.Received.After(last) {
			last = r.Received
		}
		if now.Sub(last) > downAfter {
			out = append(out, id)
		}
	}
	return out
}

// specChanges says in words what an update changes (never the password).
func specChanges(a, b state.Spec) string {
	var out []string
	add := func(name, from, to string) {
		if from != to {
			out = append(out, fmt.Sprintf("%s %s -> %s", name, from, to))
		}
	}
	add("memory", humanize.IBytes(uint64(a.Memory)), humanize.IBytes(uint64(b.Memory)))
	add("replicas", strconv.Itoa(a.Replicas), strconv.Itoa(b.Replicas))
	add("persistence", a.Persistence, b.Persistence)
	add("eviction", a.Eviction, b.Eviction)
	add("durability", a.Durability, b.Durability)
	add("read_from", a.ReadFrom, b.ReadFrom)
	add("owner", a.Owner, b.Owner)
	if a.Password != b.Password {
		out = append(out, "password changed")
	}
	if fmt.Sprint(a.Labels) != fmt.Sprint(b.Labels) {
		out = append(out, "labels changed")
	}
	if len(out) == 0 {
		return "no change"
	}
	return strings.Join(out, ", ")
}

// TransferLeadership hands the Raft leadership to a voting node and
// returns once it leads (or with why not).
func (c *Controller) TransferLeadership(ctx context.Context, id string) error {
	members, err := c.cl.Members()
	if err != nil {
		return errf(Unavailable, "raft configuration: %v", err)
	}
	for _, m := range members {
		if m.ID != id {
			continue
		}
		if !m.Voter {
			return errf(Invalid, "node %s does not vote in Raft, so it cannot lead", id)
		}
		if m.Leader {
			return nil
		}
		if err := c.cl.TransferTo(id, m.Addr); err != nil {
			if errors.Is(err, cluster.ErrNotLeader) {
				return errf(NotLeader, "this node does not lead (any more)")
			}
			return errf(Unavailable, "leadership transfer to %s: %v", id, err)
		}
		return nil
	}
	return errf(NotFound, "node %s is not a member of the cluster", id)
}

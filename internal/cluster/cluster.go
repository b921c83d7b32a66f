// Package cluster wraps hashicorp/raft: it opens the log (raft-boltdb) and
// snapshots in the data dir, bootstraps or joins, and adds members as voters
// (up to MaxVoters) or non-voters.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/marina-redis/marina/internal/pki"
	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/timing"
)

// MaxVoters is how many nodes vote; the rest receive the log as non-voters.
const MaxVoters = 5

// ErrNotLeader is returned for leader-only operations on a follower: the
// command was not applied, so it may be sent to the leader as it is.
var ErrNotLeader = errors.New("not the leader")

// ErrLeadershipLost is returned when leadership ended while a command was
// in flight: it may or may not be committed by the next leader.
var ErrLeadershipLost = errors.New("leadership lost while the change was in flight")

// Config configures the Raft member of a node.
type Config struct {
	ID       string
	DataDir  string
	RaftAddr string // host:port, bound and advertised
	// ElectionTimeout bounds how long a lost leader goes unnoticed.
	ElectionTimeout time.Duration
	LogOutput       io.Writer
	Logger          *slog.Logger
	// Identity is the node's certificate: Raft speaks only mutual TLS.
	Identity *pki.Identity
}

// Cluster is one node's Raft member.
type Cluster struct {
	cfg   Config
	Raft  *raft.Raft
	fsm   *state.FSM
	trans *raft.NetworkTransport
	store *raftboltdb.BoltStore
	log   *slog.Logger
	// verified is when the last leadership check that a quorum answered
	// began (unix ns, 0: none in this term); see LeaderProof.
	verified   atomic.Int64
	stopVerify context.CancelFunc
	verifyDone sync.WaitGroup
	// caughtUp is the term in which a barrier last completed (CaughtUp).
	caughtUp atomic.Value
}

// CaughtUp waits until this leader has applied every entry committed before
// its term (a Raft barrier, once per term), so a decision taken from its
// state (a placement, a port) cannot miss the last changes of the leader
// before it: after a leadership change, the next create would otherwise
// pick the port an earlier one just took, and be refused.
func (c *Cluster) CaughtUp(ctx context.Context) error {
	if !c.IsLeader() {
		return ErrNotLeader
	}
	term := c.Raft.Stats()["term"]
	if t, _ := c.caughtUp.Load().(string); t == term {
		return nil
	}
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	if err := c.Raft.Barrier(timeout).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return fmt.Errorf("%w: %v", ErrNotLeader, err)
		}
		return err
	}
	c.caughtUp.Store(term)
	return nil
}

// Open starts Raft with the stores in cfg.DataDir/raft.
func Open(cfg Config, fsm *state.FSM) (*Cluster, error) {
	if cfg.ElectionTimeout == 0 {
		cfg.ElectionTimeout = timing.Defaults().ElectionTimeout
	}
	if cfg.LogOutput == nil {
		cfg.LogOutput = os.Stderr
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	dir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.HeartbeatTimeout = cfg.ElectionTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	// A leader steps down once it has not heard from a quorum for this
	// long. At half the timeout, answers slowed by a saturated host (500 ms
	// on a 2-core host with 600 redis-servers) made leaders step down
	// before any follower would have called an election. Nothing safety
	// relies on it: the agents' leases follow VerifyLeader round trips.
	rc.LeaderLeaseTimeout = cfg.ElectionTimeout
	rc.CommitTimeout = 20 * time.Millisecond
	rc.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: cfg.LogOutput})

	if cfg.Identity == nil {
		return nil, errors.New("raft: no TLS identity")
	}
	log := cfg.Logger.With("component", "cluster")
	stream, err := newTLSStream(cfg.RaftAddr, cfg.Identity, log.Warn)
	if err != nil {
		return nil, fmt.Errorf("raft transport on %s: %w", cfg.RaftAddr, err)
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: stream, MaxPool: 4, Timeout: 5 * time.Second,
		Logger: hclog.New(&hclog.LoggerOptions{Name: "raft-net", Level: hclog.Warn, Output: cfg.LogOutput})})
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		trans.Close()
		return nil, fmt.Errorf("raft store: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStore(dir, 2, cfg.LogOutput)
	if err != nil {
		trans.Close()
		store.Close()
		return nil, fmt.Errorf("snapshot store: %w", err)
	}
	r, err := raft.NewRaft(rc, fsm, store, store, snaps, trans)
	if err != nil {
		trans.Close()
		store.Close()
		return nil, fmt.Errorf("raft: %w", err)
	}
	stream.raft.Store(r)
	c := &Cluster{cfg: cfg, Raft: r, fsm: fsm, trans: trans, store: store, log: log}
	vctx, cancel := context.WithCancel(context.Background())
	c.stopVerify = cancel
	c.verifyDone.Add(1)
	go func() {
		defer c.verifyDone.Done()
		c.verifyLoop(vctx)
	}()
	return c, nil
}

// verifyInterval paces the leader's quorum checks behind LeaderProof.
const verifyInterval = 50 * time.Millisecond

// verifyLoop checks, while this node leads, that a quorum still follows it,
// and records when each successful check began. A partitioned leader's
// check blocks until it steps down, so the proof ages from the cut on.
func (c *Cluster) verifyLoop(ctx context.Context) {
	t := time.NewTicker(verifyInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !c.IsLeader() {
			c.verified.Store(0)
			continue
		}
		start := time.Now()
		if err := c.Raft.VerifyLeader().Error(); err != nil {
			c.verified.Store(0)
			continue
		}
		c.verified.Store(start.UnixNano())
	}
}

// ErrNoProof is returned by LeaderProof when this node cannot prove that
// it leads: it is a follower, or no quorum answered it lately.
var ErrNoProof = errors.New("not a verified leader")

// LeaderProof says how long ago a quorum last confirmed this node as the
// leader (measured from when that check began) and the log's commit index
// now. A node that heard from this leader at time T may act as if it held
// the leader's word up to T minus the age: no other leader can have been
// elected before that instant, since a quorum still followed this one.
func (c *Cluster) LeaderProof() (age time.Duration, commit uint64, err error) {
	v := c.verified.Load()
	if v == 0 || !c.IsLeader() {
		return 0, 0, ErrNoProof
	}
	return time.Since(time.Unix(0, v)), c.Raft.CommitIndex(), nil
}

// HasState reports whether this node was part of a cluster before.
func (c *Cluster) HasState() bool {
	last, err := c.store.LastIndex()
	return err == nil && last > 0
}

// Bootstrap makes this node a one-member cluster.
func (c *Cluster) Bootstrap() error {
	f := c.Raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
		ID: raft.ServerID(c.cfg.ID), Address: raft.ServerAddress(c.cfg.RaftAddr), Suffrage: raft.Voter,
	}}})
	if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return err
	}
	return nil
}

// IsLeader reports whether this node leads.
func (c *Cluster) IsLeader() bool { return c.Raft.State() == raft.Leader }

// LeaderID returns the current leader's id, or "".
func (c *Cluster) LeaderID() string {
	_, id := c.Raft.LeaderWithID()
	return string(id)
}

// WaitLeader blocks until some node leads.
func (c *Cluster) WaitLeader(ctx context.Context) error {
	for c.LeaderID() == "" {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// Apply commits a command through the log. Leader only; the returned index
// lets a follower wait until it has applied the change too.
func (c *Cluster) Apply(ctx context.Context, cmd state.Command) (uint64, error) {
	if !c.IsLeader() {
		return 0, ErrNotLeader
	}
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	if err := ctx.Err(); err != nil || timeout <= 0 {
		return 0, fmt.Errorf("apply: %w", context.DeadlineExceeded)
	}
	f := c.Raft.Apply(state.Encode(cmd), timeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return 0, fmt.Errorf("%w: %v", ErrNotLeader, err)
		}
		if errors.Is(err, raft.ErrLeadershipLost) {
			return 0, fmt.Errorf("%w: %v", ErrLeadershipLost, err)
		}
		return 0, err
	}
	if resp, ok := f.Response().(error); ok && resp != nil {
		return f.Index(), resp
	}
	return f.Index(), nil
}

// Member is one server of the Raft configuration.
type Member struct {
	ID     string `json:"id"`
	Addr   string `json:"addr"`
	Voter  bool   `json:"voter"`
	Leader bool   `json:"leader"`
}

// Members lists the Raft configuration.
func (c *Cluster) Members() ([]Member, error) {
	f := c.Raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	leader := c.LeaderID()
	var out []Member
	for _, s := range f.Configuration().Servers {
		out = append(out, Member{ID: string(s.ID), Addr: string(s.Address), Voter: s.Suffrage == raft.Voter, Leader: string(s.ID) == leader})
	}
	return out, nil
}

// AddMember adds a node: as a voter while there are fewer than MaxVoters,
// else as a non-voter. Re-adding a known member is a no-op, so joins retry
// safely; a known id at a new address is replaced.
func (c *Cluster) AddMember(ctx context.Context, id, addr string) (voter bool, err error) {
	if !c.IsLeader() {
		return false, ErrNotLeader
	}
	members, err := c.Members()
	if err != nil {
		return false, err
	}
	voters := 0
	for _, m := range members {
		if m.ID == id {
			if m.Addr == addr {
				return m.Voter, nil
			}
			if err := c.Raft.RemoveServer(raft.ServerID(id), 0, 0).Error(); err != nil {
				return false, err
			}
			continue
		}
		if m.Voter {
			voters++
		}
	}
	timeout := 10 * time.Second
	if voters < MaxVoters {
		err = c.Raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeout).Error()
		voter = true
	} else {
		err = c.Raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeout).Error()
	}
	if err != nil {
		return false, err
	}
	c.log.Info("member added", "id", id, "addr", addr, "voter", voter)
	return voter, nil
}

// TransferTo hands the leadership to a voter (this node must lead).
func (c *Cluster) TransferTo(id, addr string) error {
	if !c.IsLeader() {
		return ErrNotLeader
	}
	return c.Raft.LeadershipTransferToServer(raft.ServerID(id), raft.ServerAddress(addr)).Error()
}

// Close shuts Raft down and closes its stores.
func (c *Cluster) Close() error {
	c.stopVerify()
	err := c.Raft.Shutdown().Error() // also ends a leadership check in flight
	c.verifyDone.Wait()
	c.trans.Close()
	c.store.Close()
	return err
}

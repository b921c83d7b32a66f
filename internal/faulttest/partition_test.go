package faulttest

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marina-redis/marina/internal/api"
	"github.com/marina-redis/marina/internal/testutil"
)

// The master's node is cut off from everyone (its bridge port down) while
// three clients write: one through the database's endpoint on a majority
// node, one inside the cut-off namespace straight to the old master, one
// there through that node's own endpoint. Never two writable masters: no
// write the old master acknowledged after the promotion, or after the heal,
// is lost; the majority loses nothing; the API on the majority side answers
// throughout. With durability replicated nothing acknowledged through an
// endpoint is lost at all.
func TestPartition(t *testing.T) {
	c := newCluster(t, options{n: 3, netns: true, extra: fastFlags})
	cases := []struct {
		name       string
		leader     bool // the master's node is the Raft leader
		cutFor     time.Duration
		durability string
	}{
		{"master node leads, 10s", true, 10 * time.Second, "async"},
		{"master node follows, 10s", false, 10 * time.Second, "async"},
		{"heal during the failover", false, 0, "async"},
		{"durability replicated, master node leads", true, 10 * time.Second, "replicated"},
	}
	for k, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := partitionRun(t, c, fmt.Sprintf("part%d", k), tc.leader, tc.cutFor, tc.durability)
			t.Logf("%s", r)
		})
	}
}

// inFlight bounds how long after the cut an answer sent before it may
// still arrive.
const inFlight = 100 * time.Millisecond

// partitionResult is what one partition did.
type partitionResult struct {
	acked, lost   map[string]int
	lastLost      time.Duration // after the cut, of the latest lost ack
	promoted      time.Duration // after the cut; 0: no failover
	apiMax        time.Duration // longest API read answer on the majority side during the cut
	apiWrite      time.Duration // a write through a majority node during the cut
	majorityGap   time.Duration // longest gap between the majority writer's acks
	fenceErrors   []string
	cutOffLastAck time.Duration // the cut-off side's last acknowledged write during the cut, after the cut
}

func (r partitionResult) String() string {
	return fmt.Sprintf("acked %v lost %v (last lost acknowledged %v after the cut); promoted %v after the cut; majority unavailable %v; API read max %v, write %v; cut-off side's last ack %v after the cut; errors met: %v",
		r.acked, r.lost, r.lastLost.Round(time.Millisecond), r.promoted.Round(time.Millisecond), r.majorityGap.Round(time.Millisecond),
		r.apiMax.Round(time.Millisecond), r.apiWrite.Round(time.Millisecond), r.cutOffLastAck.Round(time.Millisecond), r.fenceErrors)
}

// partitionDB creates a database with two replicas and hands the Raft
// leadership over so that the master's node leads (or does not).
func partitionDB(t *testing.T, c *cluster, name string, leader bool, durability string) *api.DB {
	t.Helper()
	ctx := context.Background()
	db := createDB(t, c, api.CreateDBRequest{Name: name, Memory: 16 << 20, Replicas: 2, Durability: durability})
	m := c.index(db.Shards[0].Master.Node)
	want := m
	if !leader {
		want = (m + 1) % len(c.nodes)
	}
	testutil.WaitFor(t, 30*time.Second, fmt.Sprintf("n%d leads", want+1), func() error {
		if l := c.leaderIndex(ctx); l != want {
			qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := c.anyClient(qctx).Lead(qctx, c.nodes[want].id); err != nil {
				return err
			}
			return fmt.Errorf("n%d leads", l+1)
		}
		return nil
	})
	return db
}

func endpointOn(db *api.DB, host string) string {
	for _, e := range db.Endpoints {
		if strings.HasPrefix(e, host+":") {
			return e
		}
	}
	return ""
}

func partitionRun(t *testing.T, c *cluster, name string, leader bool, cutFor time.Duration, durability string) partitionResult {
	ctx := context.Background()
	db := partitionDB(t, c, name, leader, durability)
	old := db.Shards[0].Master
	i := c.index(old.Node)
	maj := (i + 1) % len(c.nodes)
	t.Logf("master %s on n%d, leader n%d, majority writer through n%d", old.ID, i+1, c.leaderIndex(ctx)+1, maj+1)

	writers := map[string]*testutil.NSWriter{}
	start := func(label, ns, addr, caFile string) {
		w, err := testutil.StartNSWriter(ns, addr, db.Password, label+":", caFile)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Stop)
		writers[label] = w
	}
	start("majority", "", endpointOn(db, c.nodes[maj].host), "")
	start("cutoff-endpoint", c.nodes[i].ns, endpointOn(db, c.nodes[i].host), "")
	if durability != "replicated" {
		// Straight to a redis-server is async whatever the database says.
		start("cutoff-direct", c.nodes[i].ns, old.Addr, c.caFile())
	}
	for label, w := range writers {
		testutil.WaitFor(t, 10*time.Second, label+" writes flowing", func() error {
			if n := len(w.Acks()); n < 50 {
				return fmt.Errorf("%d acks", n)
			}
			return nil
		})
	}

	var res partitionResult
	cut := time.Now()
	c.net.cut(i)
	healed := false
	defer func() {
		if !healed {
			c.net.heal(i)
		}
	}()
	// The majority side's API answers throughout: reads at once (from the
	// leader, or from local state while there is none), a write once a new
	// leader is elected.
	probeCtx, stopProbe := context.WithCancel(ctx)
	var probes sync.WaitGroup
	var apiMu sync.Mutex
	var apiErr error
	fail := func(err error) {
		apiMu.Lock()
		defer apiMu.Unlock()
		if apiErr == nil {
			apiErr = err
		}
	}
	probes.Add(2)
	go func() {
		defer probes.Done()
		cl := c.client(maj)
		for probeCtx.Err() == nil {
			t0 := time.Now()
			qctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			_, err := cl.GetDB(qctx, name)
			cancel()
			if d := time.Since(t0); d > res.apiMax {
				res.apiMax = d
			}
			if err != nil {
				fail(fmt.Errorf("db show on n%d during the cut: %v", maj+1, err))
			}
			select {
			case <-probeCtx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	go func() {
		defer probes.Done()
		cl := c.client(maj)
		cl.RetryFor = 15 * time.Second
		t0 := time.Now()
		qctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		err := cl.SetZonePriority(qctx, "partition-probe", 100)
		res.apiWrite = time.Since(t0)
		if err != nil {
			fail(fmt.Errorf("a write through n%d during the cut: %v", maj+1, err))
		}
	}()
	if cutFor > 0 {
		// The fault's length: the partition lasts this long whatever happens.
		time.Sleep(cutFor)
	} else {
		// Heal as soon as the majority has demoted the old master, before
		// the promotion (which waits out the old node's lease).
		// The gap is a few hundred ms: poll fast, not with WaitFor's pace.
		started := false
		for deadline := time.Now().Add(20 * time.Second); !started && time.Now().Before(deadline); {
			qctx, cancel := context.WithTimeout(ctx, time.Second)
			evs, err := c.client(maj).Events(qctx, name)
			cancel()
			for _, e := range evs {
				started = started || (err == nil && e.Type == "failover-started" && e.Time.After(cut))
			}
			if !started {
				time.Sleep(10 * time.Millisecond)
			}
		}
		if !started {
			t.Fatal("no failover started within 20s of the cut")
		}
	}
	c.net.heal(i)
	healed = true
	heal := time.Now()
	stopProbe()
	probes.Wait()
	if apiErr != nil {
		t.Error(apiErr) // probes done: no race
	}

	// After the heal: one master, every other instance its replica, linked.
	var master api.Instance
	testutil.WaitFor(t, 60*time.Second, "shard settled after the heal", func() error {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		got, err := c.anyClient(qctx).GetDB(qctx, name)
		if err != nil {
			return err
		}
		sh := got.Shards[0]
		if got.Status != api.DBReady || sh.Master.ID == "" {
			return fmt.Errorf("status %s, master %q", got.Status, sh.Master.ID)
		}
		for _, r := range sh.Replicas {
			if !r.LinkUp {
				return fmt.Errorf("replica %s not linked", r.ID)
			}
		}
		out, err := exec.Command("redis-cli", "--tls", "--cacert", c.caFile(), "-h", strings.Split(old.Addr, ":")[0], "-p", strings.Split(old.Addr, ":")[1],
			"--no-auth-warning", "-a", db.Password, "ROLE").CombinedOutput()
		role := strings.Fields(string(out) + " ?")[0]
		if err != nil || (sh.Master.ID == old.ID) != (role == "master") {
			return fmt.Errorf("old master %s answers role %q, state says master %s", old.ID, role, sh.Master.ID)
		}
		master = sh.Master
		return nil
	})
	// Writes go on for a while after the heal: none of them may be lost.
	// (The old master takes none if it is a replica now.)
	for label, w := range writers {
		if label == "cutoff-direct" && master.ID != old.ID {
			continue
		}
		n := len(w.Acks())
		testutil.WaitFor(t, 20*time.Second, label+" writes after the heal", func() error {
			if len(w.Acks()) < n+50 {
				return fmt.Errorf("%d acks since", len(w.Acks())-n)
			}
			return nil
		})
	}
	for _, w := range writers {
		w.Stop()
	}

	var promoted time.Time
	evs, err := c.anyClient(ctx).Events(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Type == "failover" && e.Time.After(cut) {
			promoted = e.Time
		}
	}
	if !promoted.IsZero() {
		res.promoted = promoted.Sub(cut)
	}
	res.acked, res.lost = map[string]int{}, map[string]int{}
	labels := make([]string, 0, len(writers))
	for label := range writers {
		labels = append(labels, label)
	}
	sort.Strings(labels)
	for _, label := range labels {
		w := writers[label]
		acks := w.Acks()
		lost, err := testutil.Lost(ctx, acks, master.Addr, db.Password, c.caFile())
		if err != nil {
			t.Fatal(err)
		}
		res.acked[label], res.lost[label] = len(acks), len(lost)
		for _, e := range w.Errors() {
			res.fenceErrors = append(res.fenceErrors, label+": "+e)
		}
		if label == "majority" {
			for k := 1; k < len(acks); k++ {
				res.majorityGap = max(res.majorityGap, acks[k].At.Sub(acks[k-1].At))
			}
		} else {
			res.cutOffLastAck = max(res.cutOffLastAck, lastAckWithin(w, cut, heal))
		}
		for _, a := range lost {
			res.lastLost = max(res.lastLost, a.At.Sub(cut))
		}
		switch {
		case len(lost) == 0:
		case durability == "replicated":
			t.Errorf("%s lost %d writes acknowledged through an endpoint with durability replicated, e.g. %s at %v after the cut", label, len(lost), lost[0].Key, lost[0].At.Sub(cut))
		case label == "majority":
			// Async: what the old master acknowledged just before the cut
			// and had not sent to a replica yet is lost (replication lag);
			// anything acknowledged later came from the new master.
			for _, a := range lost {
				if a.At.After(cut.Add(inFlight)) {
					t.Errorf("majority writer lost %s, acknowledged %v after the cut", a.Key, a.At.Sub(cut))
					break
				}
			}
		case promoted.IsZero():
			t.Errorf("%s lost %d acknowledged writes without a failover, e.g. %s at %v after the cut", label, len(lost), lost[0].Key, lost[0].At.Sub(cut))
		}
		for _, a := range lost {
			if !promoted.IsZero() && !a.At.Before(promoted) {
				t.Errorf("%s: %s acknowledged by the old master %v after the cut, after the promotion at %v: two writable masters", label, a.Key, a.At.Sub(cut), res.promoted)
				break
			}
			if !a.At.Before(heal) {
				t.Errorf("%s: %s acknowledged %v after the heal and lost", label, a.Key, a.At.Sub(heal))
				break
			}
		}
	}
	if cutFor >= 10*time.Second {
		if promoted.IsZero() {
			t.Errorf("no failover during a %v partition", cutFor)
		}
		refused := false
		for _, e := range res.fenceErrors {
			refused = refused || (strings.HasPrefix(e, "cutoff-endpoint") && strings.Contains(e, "lost contact with the cluster leader"))
		}
		if !refused {
			t.Errorf("the cut-off node's endpoint never refused a write as fenced: %v", res.fenceErrors)
		}
		fenced := false
		for _, e := range evs {
			fenced = fenced || (e.Type == "fence" && e.Node == old.Node && e.Time.After(cut))
		}
		if !fenced {
			t.Errorf("no fence event from %s", old.Node)
		}
	}
	return res
}

// lastAckWithin is when a writer's last acknowledgement between from and
// to came, as an offset from from (0: none).
func lastAckWithin(w *testutil.NSWriter, from, to time.Time) time.Duration {
	var last time.Duration
	for _, a := range w.Acks() {
		if a.At.After(from) && a.At.Before(to) {
			last = max(last, a.At.Sub(from))
		}
	}
	return last
}

package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/redisconf"
	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/testutil"
)

// source is a desired state the test changes by hand.
type source struct {
	mu  sync.Mutex
	st  *state.State
	idx uint64
	ch  chan struct{}
}

func (s *source) State() *state.State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.Clone()
}

func (s *source) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

// Applied: every change the test makes is an applied entry.
func (s *source) Applied() <-chan struct{} { return s.Changed() }

func (s *source) Index() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.idx
}

func (s *source) set(idx uint64, f func(*state.State)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f != nil {
		f(s.st)
	}
	s.idx = idx
	close(s.ch)
	s.ch = make(chan struct{})
}

// The fence on a real redis-server: a master takes writes only while the
// agent holds a lease whose index its state has reached; it is fenced from
// the start, when the lease runs out, after a kill -9 and restart without
// a lease, and once demoted whatever the lease.
func TestFenceFollowsLease(t *testing.T) {
	const id, pw = "fdb-0-abcdef", "fence-password-1"
	a, src, addr, dir := oneMaster(t, "fdb", id, pw, 100*time.Millisecond, 400*time.Millisecond)
	c := redis.NewClient(&redis.Options{Addr: addr, Password: pw, Protocol: 2, DisableIdentity: true, MaxRetries: -1,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 300 * time.Millisecond})
	defer c.Close()
	write := func() error { return c.Set(context.Background(), "k", "v", 0).Err() }
	fenced := func(what string) {
		t.Helper()
		testutil.WaitFor(t, 10*time.Second, what, func() error {
			if err := write(); err == nil || !strings.Contains(err.Error(), "NOREPLICAS") {
				return errors.New("write answered " + errText(err))
			}
			return nil
		})
	}
	writable := func(what string) {
		t.Helper()
		testutil.WaitFor(t, 10*time.Second, what, func() error { return write() })
	}
	conf := func() string {
		b, _ := os.ReadFile(filepath.Join(dir, "instances", id, "redis.conf"))
		return string(b)
	}

	fenced("a master without a lease is fenced from the start")
	if !a.Fenced() {
		t.Fatal("agent says it is not fenced without a lease")
	}
	// A grant from a leader whose state is ahead of ours does not count yet.
	a.Grant(time.Now(), 0, 11)
	fenced("a grant ahead of the local state leaves the fence")
	src.set(11, nil)
	writable("the fence lifts once the state has reached the grant's index")
	// The config follows (the safe way round: it may lag the lifted fence,
	// never a new one).
	testutil.WaitFor(t, 5*time.Second, "writable config written", func() error {
		if !strings.Contains(conf(), redisconf.FenceKey+" 0\n") {
			return errors.New("config still fenced")
		}
		return nil
	})
	// No more grants: the lease runs out.
	fenced("fenced when the lease runs out")
	testutil.WaitFor(t, 5*time.Second, "fenced config written", func() error {
		if !strings.Contains(conf(), redisconf.FenceKey+" "+redisconf.FenceReplicas+"\n") {
			return errors.New("config not fenced")
		}
		return nil
	})
	// kill -9 and a restart without a lease: it comes back fenced.
	pid := a.Statuses()[0].PID
	if err := syscallKill(pid); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "restarted", func() error {
		if st := a.Statuses()[0]; st.PID == 0 || st.PID == pid || st.State != StateRunning {
			return errors.New("not yet")
		}
		return nil
	})
	fenced("restarted without a lease: still fenced")
	// Keep granting; then demote it: fenced whatever the lease.
	stop := make(chan struct{})
	var granting sync.WaitGroup
	granting.Add(1)
	go func() {
		defer granting.Done()
		for {
			a.Grant(time.Now(), 0, src.Index())
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	defer func() { close(stop); granting.Wait() }()
	writable("writable again with a lease")
	src.set(12, func(st *state.State) {
		sh := &st.DBs["fdb"].Shards[0]
		sh.Epoch++
		sh.Instances[0].Role = state.RoleReplica
		sh.Pending = &state.Pending{Since: time.Now(), Old: id, Reason: "test"}
	})
	fenced("a demoted master is fenced with a lease")
	testutil.WaitFor(t, 5*time.Second, "fence reported for the new epoch", func() error {
		if st := a.Statuses()[0]; !st.Fenced || st.Epoch != 2 {
			return errors.New("not yet")
		}
		return nil
	})
}

// oneMaster runs an agent whose state holds one database with one master
// instance on this node; it returns the agent, its state source, the
// master's address and the agent's directory.
func oneMaster(t *testing.T, db, id, pw string, interval, lease time.Duration) (*Agent, *source, string, string) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server not installed")
	}
	host := testutil.LoopbackHosts(t, 1)[0]
	port := testutil.FreePort(t, host)
	src := &source{st: state.New(), idx: 10, ch: make(chan struct{})}
	src.st.Nodes["n1"] = &state.Node{ID: "n1", Addr: host, Status: state.NodeUp, Memory: 1 << 30, PortMin: port, PortMax: port}
	src.st.DBs[db] = &state.Database{Spec: state.Spec{Name: db, Memory: 8 << 20, Shards: 1, Persistence: state.PersistNone,
		Eviction: "noeviction", Password: pw}, Secret: db + "-secret-1",
		Shards: []state.Shard{{Index: 0, SlotEnd: state.NumSlots - 1, Epoch: 1, Instances: []state.Instance{{ID: id, Node: "n1", Port: port, Role: state.RoleMaster}}}}}
	dir := t.TempDir()
	a := New(Config{NodeID: "n1", Dir: filepath.Join(dir, "instances"), RedisServer: "redis-server", StopOnExit: true,
		Interval: interval, Lease: lease, Logger: testutil.Logger()}, src)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; testutil.KillPidfiles(dir) })
	return a, src, host + ":" + itoa(port), dir
}

func errText(err error) string {
	if err == nil {
		return "OK"
	}
	return err.Error()
}

func itoa(n int) string { return strconv.Itoa(n) }

func syscallKill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

// A full disk in the middle of a lease loss: the agent cannot rewrite the
// config with the fence, so it does not restart a killed master from the
// older, unfenced one; once there is room it starts it fenced.
func TestFullDiskKeepsFence(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root (CI runs as root)")
	}
	host := testutil.LoopbackHosts(t, 1)[0]
	port := testutil.FreePort(t, host)
	const id, pw = "ddb-0-abcdef", "disk-password-1"
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	src := &source{st: state.New(), idx: 1, ch: make(chan struct{})}
	src.st.Nodes["n1"] = &state.Node{ID: "n1", Addr: host, Status: state.NodeUp, Memory: 1 << 30, PortMin: port, PortMax: port}
	src.st.DBs["ddb"] = &state.Database{Spec: state.Spec{Name: "ddb", Memory: 8 << 20, Shards: 1, Persistence: state.PersistNone,
		Eviction: "noeviction", Password: pw}, Secret: "disk-secret-1",
		Shards: []state.Shard{{Index: 0, SlotEnd: state.NumSlots - 1, Epoch: 1, Instances: []state.Instance{{ID: id, Node: "n1", Port: port, Role: state.RoleMaster}}}}}
	a := New(Config{NodeID: "n1", Dir: filepath.Join(dir, "instances"), RedisServer: "redis-server", StopOnExit: true,
		Interval: 100 * time.Millisecond, Lease: 400 * time.Millisecond, Logger: testutil.Logger()}, src)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; testutil.KillPidfiles(dir) })
	c := redis.NewClient(&redis.Options{Addr: host + ":" + itoa(port), Password: pw, Protocol: 2, DisableIdentity: true, MaxRetries: -1,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 300 * time.Millisecond})
	defer c.Close()
	stop := make(chan struct{})
	go func() {
		for {
			a.Grant(time.Now(), 0, 1)
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	testutil.WaitFor(t, 10*time.Second, "master writable with a lease", func() error { return c.Set(context.Background(), "k", "v", 0).Err() })
	// Fill the disk, then lose the lease and the process.
	filler := filepath.Join(dir, "filler")
	_ = exec.Command("dd", "if=/dev/zero", "of="+filler, "bs=64k").Run() // stops at ENOSPC
	close(stop)
	testutil.WaitFor(t, 5*time.Second, "fenced without a lease", func() error {
		if err := c.Set(context.Background(), "k", "v", 0).Err(); err == nil || !strings.Contains(err.Error(), "NOREPLICAS") {
			return errors.New("write answered " + errText(err))
		}
		return nil
	})
	pid := a.Statuses()[0].PID
	if err := syscallKill(pid); err != nil {
		t.Fatal(err)
	}
	// The config on disk still says writable: the agent must not start from it.
	testutil.WaitFor(t, 5*time.Second, "the refused start reported", func() error {
		if st := a.Statuses()[0]; st.PID != 0 || !strings.Contains(st.Error, "no space") {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	if err := c.Ping(context.Background()).Err(); err == nil {
		t.Fatal("a redis-server answers although its fenced config could not be written")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "started fenced once there is room", func() error {
		if err := c.Set(context.Background(), "k", "v", 0).Err(); err == nil || !strings.Contains(err.Error(), "NOREPLICAS") {
			return errors.New("write answered " + errText(err))
		}
		return nil
	})
}

// The leader waits FenceMargin after an agent's lease before it promotes
// another master: that must cover a fencer busy at the server when the
// lease ends (an attempt under way, then the one that fences). Here the
// server is busy with a 150 ms script across the end of the lease; by the
// end of the margin the master refuses writes.
func TestFenceMarginCoversABusyFencer(t *testing.T) {
	if fenceBusyMax > FenceMargin {
		t.Fatalf("a fencer may take %v after the lease, more than the margin %v the leader waits", fenceBusyMax, FenceMargin)
	}
	const lease = 400 * time.Millisecond
	const pw = "margin-password-1"
	a, src, addr, _ := oneMaster(t, "mdb", "mdb-0-abcdef", pw, 50*time.Millisecond, lease)
	c := redis.NewClient(&redis.Options{Addr: addr, Password: pw, Protocol: 2, DisableIdentity: true, MaxRetries: -1})
	defer c.Close()
	bg := context.Background()
	var granted time.Time
	testutil.WaitFor(t, 10*time.Second, "writable with a lease", func() error {
		granted = time.Now()
		a.Grant(granted, 0, src.Index())
		return c.Set(bg, "k", "v", 0).Err()
	})
	// Busy from 100 ms before the lease ends to 50 ms after it.
	end := granted.Add(lease)
	busy := make(chan error, 1)
	go func() {
		time.Sleep(time.Until(end.Add(-100 * time.Millisecond)))
		busy <- c.Eval(bg, `local s = redis.call('TIME'); local t0 = s[1]*1000000 + s[2]
			repeat local n = redis.call('TIME') until n[1]*1000000 + n[2] - t0 >= 150000
			return 1`, nil).Err()
	}()
	// The instant the leader may promote another master: the deadline
	// under test, waited for as such.
	time.Sleep(time.Until(end.Add(FenceMargin)))
	err := c.Set(bg, "k", "after", 0).Err()
	if err == nil || !strings.Contains(err.Error(), "NOREPLICAS") {
		t.Fatalf("a write %v after the lease ended: %v, want NOREPLICAS", FenceMargin, errText(err))
	}
	if err := <-busy; err != nil {
		t.Fatalf("busy script: %v", err)
	}
}

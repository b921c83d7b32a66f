package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/redisconf"
	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/testutil"
)

func TestDecideHang(t *testing.T) {
	const probe = 300 * time.Millisecond
	base := hangInput{MayWrite: true, MustFence: true, FailingFor: time.Second, ProbeTimeout: probe, Left: 2 * time.Second}
	window := func(cpu, wait time.Duration, state byte) progress {
		return progress{Known: true, Stopped: state == 'T' || state == 't', Runnable: state == 'R', Window: 400 * time.Millisecond, CPU: cpu, Wait: wait}
	}
	cases := []struct {
		name  string
		mod   func(*hangInput)
		kill  bool
		watch bool
	}{
		{"a master that may take writes is the failover's business", func(in *hangInput) { in.MustFence = false; in.Proc = window(0, 0, 'T') }, false, false},
		{"a replica is never killed for silence", func(in *hangInput) { in.MayWrite = false; in.Proc = window(0, 0, 'T') }, false, false},
		{"answering", func(in *hangInput) { in.FailingFor = 0 }, false, false},
		{"silent for less than a probe timeout: watch", func(in *hangInput) { in.FailingFor = 100 * time.Millisecond }, false, true},
		{"stopped (SIGSTOP): killed at once", func(in *hangInput) { in.Proc = progress{Known: true, Stopped: true} }, true, false},
		{"traced: killed at once", func(in *hangInput) { in.Proc = window(0, 0, 't') }, true, false},
		{"stopped, even when fenced", func(in *hangInput) { in.FenceHeld = true; in.Proc = window(0, 0, 'T') }, true, false},
		{"fenced and starved: left alone", func(in *hangInput) {
			in.FenceHeld = true
			in.Proc = window(time.Millisecond, 300*time.Millisecond, 'R')
		}, false, false},
		{"fenced and blocked: left alone, it refuses what it has queued", func(in *hangInput) { in.FenceHeld = true; in.Proc = window(0, 0, 'D') }, false, false},
		{"starved host: progressing, fence retried", func(in *hangInput) {
			in.Proc, in.AgentLate = window(2*time.Millisecond, 350*time.Millisecond, 'R'), 150*time.Millisecond
		}, false, true},
		{"starved to nothing yet runnable: not hung", func(in *hangInput) { in.Proc = window(0, 0, 'R') }, false, true},
		{"busy with a long command: progressing", func(in *hangInput) { in.Proc = window(390*time.Millisecond, 0, 'R') }, false, true},
		{"blocked: no CPU, not waiting for one", func(in *hangInput) { in.Proc = window(0, 0, 'S') }, true, false},
		{"blocked in the kernel", func(in *hangInput) { in.Proc = window(0, 0, 'D') }, true, false},
		{"window too short to judge", func(in *hangInput) { in.Proc = window(0, 0, 'S'); in.Proc.Window = 50 * time.Millisecond }, false, true},
		{"starved past the deadline: killed (safety first)", func(in *hangInput) {
			in.Proc, in.Left = window(2*time.Millisecond, 350*time.Millisecond, 'R'), 50*time.Millisecond
		}, true, false},
		{"starved, deadline gone long ago", func(in *hangInput) {
			in.Proc, in.Left = window(2*time.Millisecond, 350*time.Millisecond, 'R'), -time.Minute
		}, true, false},
		{"a late agent acts earlier", func(in *hangInput) {
			in.Proc, in.Left, in.AgentLate = window(2*time.Millisecond, 350*time.Millisecond, 'R'), 250*time.Millisecond, 300*time.Millisecond
		}, true, false},
		{"unreadable /proc: taken as hung", func(in *hangInput) { in.Proc = progress{} }, true, false},
	}
	for _, c := range cases {
		in := base
		c.mod(&in)
		v := decideHang(in)
		if v.Kill != c.kill || v.Watch != c.watch {
			t.Errorf("%s: kill %v watch %v (%s), want kill %v watch %v", c.name, v.Kill, v.Watch, v.Reason, c.kill, c.watch)
		}
	}
}

func TestFenceDeadline(t *testing.T) {
	t0 := time.Unix(1000, 0)
	lease := 800 * time.Millisecond
	if got := fenceDeadline(false, t0, t0.Add(time.Hour), lease); !got.Equal(t0.Add(FenceMargin)) {
		t.Errorf("without the lease: %v, want the lease's end + FenceMargin", got.Sub(t0))
	}
	if got := fenceDeadline(true, t0.Add(time.Hour), t0, lease); !got.Equal(t0.Add(lease + FenceMargin)) {
		t.Errorf("with the lease: %v, want lease + FenceMargin from the start of the wait", got.Sub(t0))
	}
	// The kill lands before the leader may promote: the margin the
	// leader waits covers a fencer at work and leaves room for the kill.
	if killLead >= FenceMargin {
		t.Errorf("killLead %v leaves nothing of FenceMargin %v", killLead, FenceMargin)
	}
}

// The inputs of the decision read from a real redis-server: running and
// idle it progresses; stopped it is T; busy with a long script it gets CPU
// time while its probes would fail.
func TestReadProcOnRealRedis(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	dir := t.TempDir()
	c := redisconf.Config{Port: testutil.FreePort(t, host), Bind: host, Dir: dir, MaxMemory: 8 << 20, Policy: "noeviction",
		Persistence: state.PersistNone, Password: "password1", Secret: "secret-123"}
	conf := filepath.Join(dir, "redis.conf")
	if err := os.WriteFile(conf, []byte(c.Render()), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("redis-server", conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT); _ = cmd.Process.Kill(); _ = cmd.Wait() })
	cl := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("%s:%d", host, c.Port), Password: "password1", Protocol: 2, DisableIdentity: true, MaxRetries: -1})
	defer cl.Close()
	ctx := testutil.Ctx(t, 30*time.Second)
	testutil.WaitFor(t, 5*time.Second, "redis up", func() error { return cl.Ping(ctx).Err() })

	// measure samples twice, progressWindow apart (waited for as such).
	measure := func() progress {
		t.Helper()
		a, err := readProc(pid)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * progressWindow)
		b, err := readProc(pid)
		if err != nil {
			t.Fatal(err)
		}
		return progressOf(a, b)
	}
	testutil.WaitFor(t, 5*time.Second, "an idle server makes progress (its cron)", func() error {
		if p := measure(); p.Stopped || p.CPU <= 0 {
			return fmt.Errorf("%+v", p)
		}
		return nil
	})

	// Busy with a 2 s script: no answer, yet CPU time (how much depends
	// on the machine's load: any).
	busy := make(chan error, 1)
	go func() {
		busy <- cl.Eval(context.Background(), `local s = redis.call('TIME'); local t0 = s[1]*1000000 + s[2]
			repeat local n = redis.call('TIME') until n[1]*1000000 + n[2] - t0 >= 2000000
			return 1`, nil).Err()
	}()
	testutil.WaitFor(t, 5*time.Second, "a busy server gets CPU time", func() error {
		p := measure()
		if p.Stopped || p.CPU <= 0 {
			return fmt.Errorf("%+v", p)
		}
		v := decideHang(hangInput{MayWrite: true, MustFence: true, FailingFor: time.Second, ProbeTimeout: 300 * time.Millisecond, Proc: p, Left: time.Second})
		if v.Kill {
			return errors.New("a busy server judged hung: " + v.Reason)
		}
		return nil
	})
	if err := <-busy; err != nil {
		t.Fatal(err)
	}

	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "a stopped server is T and makes no progress", func() error {
		p := measure()
		if !p.Stopped || p.CPU != 0 {
			return fmt.Errorf("%+v", p)
		}
		v := decideHang(hangInput{MayWrite: true, MustFence: true, FailingFor: time.Second, ProbeTimeout: 300 * time.Millisecond, Proc: p, Left: time.Second})
		if !v.Kill {
			return errors.New("a stopped server not judged hung: " + v.Reason)
		}
		return nil
	})
}

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
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marina-redis/marina/internal/procs"
)

// process is a running redis-server, either started by this agent (a child)
// or adopted after an agent restart (found through its pidfile).
type process struct {
	pid     int
	started time.Time
	adopted bool
	exited  chan struct{} // closed when the process has gone
	err     error         // exit status, valid after exited is closed
}

// startProcess runs redis-server as a child in its own process group, so a
// signal to the agent's terminal or group does not reach the data plane.
// It runs at the agent's priority: niced redis-servers (tried: 5, then 10)
// answered probes and fences so late on a saturated host that the agents
// killed them and the leader failed them over (bench/scale at 100
// databases: 131 kills, 70 failovers).
func startProcess(bin, conf string) (*process, error) {
	cmd := exec.Command(bin, conf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &process{pid: cmd.Process.Pid, started: time.Now(), exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// adoptProcess attaches to a redis-server left running by an earlier agent.
// The pid must be a redis-server titled exactly "redis-server ADDR" whose
// working directory is the instance's dir (redis-server chdirs to `dir`),
// so a stale pidfile can never make the agent adopt, or later kill, a
// process of another instance. The pidfd is opened before the checks, so the
// pid cannot be recycled in between. Its watcher stops with ctx (the agent
// leaving the process running); stop() then polls /proc instead.
func adoptProcess(ctx context.Context, dir, addr string) (*process, error) {
	b, err := os.ReadFile(filepath.Join(dir, "redis.pid"))
	if err != nil {
		return nil, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return nil, fmt.Errorf("bad pidfile in %s", dir)
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pid %d not running: %w", pid, err)
	}
	if err := isInstance(pid, dir, addr); err != nil {
		unix.Close(fd)
		return nil, err
	}
	p := &process{pid: pid, started: time.Now(), adopted: true, exited: make(chan struct{})}
	go func() {
		defer unix.Close(fd)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			n, err := unix.Poll(fds, 200)
			if ctx.Err() != nil {
				return
			}
			if err == unix.EINTR || (err == nil && n == 0) {
				continue
			}
			break
		}
		p.err = errors.New("adopted process exited")
		close(p.exited)
	}()
	return p, nil
}

// isInstance checks that pid is the redis-server of the instance in dir.
func isInstance(pid int, dir, addr string) error {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return fmt.Errorf("pid %d not running", pid)
	}
	// The title is "ARGV0 ADDR", ARGV0 being the binary as it was started.
	title := strings.Fields(strings.TrimRight(string(cmdline), "\x00"))
	if len(title) != 2 || filepath.Base(title[0]) != "redis-server" || title[1] != addr {
		return fmt.Errorf("pid %d is %q, not redis-server %s", pid, strings.Join(title, " "), addr)
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return fmt.Errorf("pid %d: %w", pid, err)
	}
	if abs, err := filepath.Abs(dir); err != nil || filepath.Clean(cwd) != abs {
		return fmt.Errorf("pid %d runs in %s, not %s", pid, cwd, dir)
	}
	return nil
}

func (p *process) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends sig and waits for the exit, escalating to SIGKILL at the
// deadline. An adopted process whose watcher has stopped is polled in /proc.
func (p *process) stop(ctx context.Context, sig syscall.Signal, grace time.Duration) {
	if !p.running() {
		return
	}
	_ = syscall.Kill(p.pid, sig)
	if p.wait(ctx, grace) {
		return
	}
	_ = syscall.Kill(p.pid, syscall.SIGKILL)
	p.wait(context.Background(), 5*time.Second)
}

func (p *process) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.exited:
			return true
		case <-tick.C:
			if p.adopted && !procs.Alive(p.pid) {
				return true
			}
		case <-t.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

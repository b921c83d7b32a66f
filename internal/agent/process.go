package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
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
// The pid must still be a redis-server serving port; a pidfd tells the
// agent at once when it exits, as it would for a child.
// The watcher stops with ctx (the agent leaving the process running).
func adoptProcess(ctx context.Context, pidfile string, port int) (*process, error) {
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return nil, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return nil, fmt.Errorf("bad pidfile %s", pidfile)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, fmt.Errorf("pid %d not running", pid)
	}
	// redis-server sets its title to "redis-server host:port".
	if !strings.Contains(string(cmdline), "redis-server") || !strings.Contains(string(cmdline), ":"+strconv.Itoa(port)) {
		return nil, fmt.Errorf("pid %d is not redis-server on port %d", pid, port)
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
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
			if err != nil || n > 0 {
				break
			}
		}
		p.err = errors.New("adopted process exited")
		close(p.exited)
	}()
	return p, nil
}

func (p *process) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends sig and waits for the exit, escalating to SIGKILL at the deadline.
func (p *process) stop(ctx context.Context, sig syscall.Signal, grace time.Duration) {
	if !p.running() {
		return
	}
	_ = syscall.Kill(p.pid, sig)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.exited:
		return
	case <-t.C:
	case <-ctx.Done():
	}
	_ = syscall.Kill(p.pid, syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
	}
}

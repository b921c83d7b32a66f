package agent

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/marina-redis/marina/internal/state"
)

// A redis-server that must take no writes (demoted, or its node lost the
// lease) and does not answer is a danger: once it answers again it serves
// the writes queued in its sockets, perhaps after the leader has promoted
// another master. The agent used to kill it 300 ms into its silence. On a
// loaded host that killed healthy servers by the dozen (64 of 600 on a
// 2-core host with 300 databases): starved of CPU, not hung; each restart
// and full resync added to the load. Now the agent tells the two apart:
//
//   - a hung server makes no progress: it is stopped (SIGSTOP, a tracer:
//     state T or t in /proc/PID/stat), or over a window it got no CPU time
//     and is not waiting for any (blocked in the kernel);
//   - a starved server progresses, slowly: it gets CPU time, or is
//     runnable and waiting for a CPU. (So does a server busy with a long
//     command.)
//
// A hung server is killed at once. A starved or busy one is left to the
// fencer, which keeps trying to fence it, each attempt allowed to wait up
// to the deadline, and is killed only if the fence does not hold by the
// deadline: from the end of the lease plus FenceMargin the leader may
// promote another master without this agent's word (it waits the lease
// plus that margin after it last heard from the node), so the kill comes
// killLead before it, earlier still when the agent's own timers run late.
// With the lease held (a demotion), the leader waits for this agent's
// report of the fence instead: the deadline is then the lease plus the
// margin from when the wait began, for the failover's sake. A server
// whose fence holds in the current epoch is never killed for silence (it
// refuses whatever it has queued), unless it is stopped, as before.
// decideHang is the decision, pure and tested table-driven.

// progressWindow is the shortest window over which a server's lack of
// progress counts.
const progressWindow = 200 * time.Millisecond

// killLead is how long before the fence's deadline the agent kills a
// server whose fence does not hold yet: the kill must land before the
// leader may promote.
const killLead = 100 * time.Millisecond

// procSample is one look at a process in /proc.
type procSample struct {
	at    time.Time
	state byte          // of its main thread: R running or runnable, S, D, T stopped, t traced...
	cpu   time.Duration // its main thread's time on a CPU
	wait  time.Duration // its main thread's time runnable, waiting for a CPU
}

// readProc samples pid's main thread (Redis's event loop): its state from
// /proc/PID/stat, its CPU and run-queue times from /proc/PID/schedstat
// (nanoseconds), or, without schedstat, its CPU time from stat (ticks).
func readProc(pid int) (procSample, error) {
	s := procSample{at: time.Now()}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	i := bytes.LastIndexByte(b, ')') // the command name may hold anything
	if i < 0 {
		return s, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 || len(f[0]) != 1 {
		return s, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	s.state = f[0][0]
	if sb, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid)); err == nil {
		if sf := strings.Fields(string(sb)); len(sf) >= 2 {
			cpu, err1 := strconv.ParseInt(sf[0], 10, 64)
			wait, err2 := strconv.ParseInt(sf[1], 10, 64)
			if err1 == nil && err2 == nil {
				s.cpu, s.wait = time.Duration(cpu), time.Duration(wait)
				return s, nil
			}
		}
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("/proc/%d/stat: cpu times", pid)
	}
	s.cpu = time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ is 100 on Linux
	return s, nil
}

// progress is what a process did between two samples.
type progress struct {
	Known    bool          // /proc could be read
	Stopped  bool          // stopped or traced (T, t) now
	Runnable bool          // running or waiting for a CPU (R) now
	Window   time.Duration // between the two samples
	CPU      time.Duration // time on a CPU within the window
	Wait     time.Duration // time waiting for a CPU within the window (counted when it gets one)
}

func progressOf(base, cur procSample) progress {
	return progress{Known: true, Stopped: cur.state == 'T' || cur.state == 't', Runnable: cur.state == 'R',
		Window: cur.at.Sub(base.at), CPU: cur.cpu - base.cpu, Wait: cur.wait - base.wait}
}

// hangInput is everything decideHang looks at.
type hangInput struct {
	// MayWrite: the server may act as a master (as last seen, or not seen
	// yet) and the desired state gives it nowhere else to replicate from.
	MayWrite bool
	// MustFence: it must take no writes now (mustFence).
	MustFence bool
	// FenceHeld: the fencer has the fence on this process in this epoch.
	FenceHeld bool
	// FailingFor: how long its probes have failed (0: it answers).
	FailingFor   time.Duration
	ProbeTimeout time.Duration
	Proc         progress
	// AgentLate: how late the agent's own timers fired lately.
	AgentLate time.Duration
	// Left: time until the fence's deadline (negative: past it).
	Left time.Duration
}

// hangVerdict: Kill the server now, or Watch it (look again soon).
type hangVerdict struct {
	Kill   bool
	Watch  bool
	Reason string
}

// decideHang is the rule of when the agent kills a server that must take
// no writes (see the comment at the top of this file).
func decideHang(in hangInput) hangVerdict {
	switch {
	case !in.MayWrite || !in.MustFence || in.FailingFor <= 0:
		return hangVerdict{}
	case in.FailingFor < in.ProbeTimeout:
		return hangVerdict{Watch: true, Reason: fmt.Sprintf("not answering for %s only", in.FailingFor.Round(time.Millisecond))}
	case in.Proc.Known && in.Proc.Stopped:
		return hangVerdict{Kill: true, Reason: "hung: the process is stopped (SIGSTOP or a tracer); it would serve queued writes once resumed"}
	case in.FenceHeld:
		return hangVerdict{Reason: "fenced in this epoch: whatever it has queued will be refused"}
	case in.Left <= max(killLead, in.AgentLate):
		return hangVerdict{Kill: true, Reason: fmt.Sprintf("the fence did not hold by its deadline (not answering for %s): the leader may promote another master from then on",
			in.FailingFor.Round(time.Millisecond))}
	case !in.Proc.Known:
		return hangVerdict{Kill: true, Reason: "its progress cannot be read in /proc: taken as hung"}
	case in.Proc.Window < progressWindow:
		return hangVerdict{Watch: true, Reason: "measuring its progress"}
	case in.Proc.CPU <= 0 && !in.Proc.Runnable:
		return hangVerdict{Kill: true, Reason: fmt.Sprintf("hung: no CPU time in %s and not waiting for any", in.Proc.Window.Round(time.Millisecond))}
	default:
		return hangVerdict{Watch: true, Reason: fmt.Sprintf("progressing (%s on a CPU, %s waiting for one in %s; agent timers %s late): a starved host or a busy server, fence retried for %s more",
			in.Proc.CPU.Round(time.Millisecond), in.Proc.Wait.Round(time.Millisecond), in.Proc.Window.Round(time.Millisecond),
			max(in.AgentLate, 0).Round(time.Millisecond), in.Left.Round(time.Millisecond))}
	}
}

// fenceDeadline is when the fence of a server must hold at the latest.
// Without the lease: the lease's end plus FenceMargin, from when the
// leader may promote another master without this agent's word. With it
// (a demotion; the leader waits for this agent's report): as long again
// from since, when the wait began, so the failover does not wait forever.
func fenceDeadline(leaseOK bool, leaseEnd, since time.Time, lease time.Duration) time.Time {
	if !leaseOK {
		return leaseEnd.Add(FenceMargin)
	}
	return since.Add(lease + FenceMargin)
}

// hangWatch follows one process that must take no writes and does not
// answer, from the first look.
type hangWatch struct {
	pid     int
	since   time.Time
	base    procSample
	sampled bool
	late    time.Duration
	said    string
}

// agentLate records how late one of the worker's timers fired.
func (h *hangWatch) agentLate(d time.Duration) { h.late = max(h.late, d) }

// judgeHang gathers decideHang's inputs for the running process.
func (wk *worker) judgeHang(l *life, w want) hangVerdict {
	st := wk.status()
	// An unknown role (no converge since this agent started) may be a master.
	maybeMaster := st.Role == state.RoleMaster || st.Role == ""
	in := hangInput{
		MayWrite:     maybeMaster && (w.role == state.RoleMaster || w.demoted || w.conf.ReplicaOf == ""),
		MustFence:    w.conf.Fenced,
		FenceHeld:    st.Fenced && st.Epoch == w.epoch,
		ProbeTimeout: wk.a.cfg.ProbeTimeout,
	}
	if !st.Healthy && !st.FailingSince.IsZero() {
		in.FailingFor = time.Since(st.FailingSince)
	}
	if !in.MayWrite || !in.MustFence || in.FailingFor <= 0 {
		l.hang = nil
		return hangVerdict{}
	}
	now := time.Now()
	if l.hang == nil || l.hang.pid != l.p.pid {
		l.hang = &hangWatch{pid: l.p.pid, since: now}
	}
	h := l.hang
	cur, err := readProc(h.pid)
	if err == nil {
		if !h.sampled {
			h.base, h.sampled = cur, true
		}
		in.Proc = progressOf(h.base, cur)
	}
	in.AgentLate = h.late
	in.Left = fenceDeadline(wk.a.LeaseOK(), wk.a.leaseEnd(), h.since, wk.a.cfg.Lease).Sub(now)
	v := decideHang(in)
	if in.Proc.Window >= progressWindow {
		h.base = cur // the next window starts here
	}
	if !v.Watch {
		l.hang = nil
	} else if first, _, _ := strings.Cut(v.Reason, " ("); first != h.said {
		h.said = first
		l.log.Info("unresponsive server that must take no writes", "pid", h.pid, "verdict", v.Reason)
	}
	return v
}

// leaseEnd is when the agent's lease ends (or ended).
func (a *Agent) leaseEnd() time.Time { return time.Unix(0, a.until.Load()) }

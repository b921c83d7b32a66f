package hooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Shell runs hook commands.
const Shell = "/bin/sh"

// ErrSuperseded ends the retries of a document a newer one replaced.
var ErrSuperseded = errors.New("superseded by a newer document")

// Exec runs shell commands with a timeout and retries.
type Exec struct {
	Timeout time.Duration // per attempt
	Retries int           // attempts after the first
	Backoff time.Duration // wait before the first retry, doubling up to MaxBackoff
	Log     *slog.Logger
}

// MaxBackoff bounds the wait between attempts.
const MaxBackoff = 30 * time.Second

// Result is the outcome of the last attempt of a command.
type Result struct {
	Exit     int    // -1 when the command did not exit by itself (timeout, signal, not started)
	Stderr   string // its end, trimmed
	Attempts int
	Took     time.Duration // of the last attempt
	failure  error         // why the last attempt failed (nil: exit 0)
}

func (r Result) stderrSuffix() string {
	if r.Stderr == "" {
		return ""
	}
	return ": " + r.Stderr
}

// stderrMax is how much of a command's stderr is kept: its end, where the
// error usually is.
const stderrMax = 512

// Run runs command (the hook called name in logs) with sh -c, stdin, and env
// added to the environment, up to 1+Retries times until it exits 0, waiting
// Backoff (doubling) in between. superseded, when not nil, is asked before
// each retry: a newer document waiting makes this one pointless. Every
// attempt is logged.
func (e *Exec) Run(ctx context.Context, name, command string, stdin []byte, env []string, superseded func() bool) (Result, error) {
	wait := e.Backoff
	var res Result
	for attempt := 1; ; attempt++ {
		res = e.once(ctx, command, stdin, env)
		res.Attempts = attempt
		err := res.failure
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		log := e.Log.With("hook", name, "env", env, "attempt", attempt, "exit", res.Exit, "took", res.Took.Round(time.Millisecond))
		if err == nil {
			log.Info("hook ran")
			return res, nil
		}
		log.Warn("hook failed", "err", err, "stderr", res.Stderr, "cmd", command)
		if attempt > e.Retries {
			return res, fmt.Errorf("%w after %d attempts", err, attempt)
		}
		if superseded != nil && superseded() {
			return res, ErrSuperseded
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(wait):
		}
		if superseded != nil && superseded() {
			return res, ErrSuperseded
		}
		wait = min(wait*2, MaxBackoff)
	}
}

// once runs one attempt. The command gets its own process group, killed as
// a whole at the timeout: `sh -c 'a | b'` leaves no orphan holding the
// pipes open.
func (e *Exec) once(ctx context.Context, command string, stdin []byte, env []string) Result {
	tctx, cancel := context.WithTimeout(ctx, e.Timeout)
	defer cancel()
	cmd := exec.CommandContext(tctx, Shell, "-c", command)
	cmd.Env = append(scrubEnv(os.Environ()), env...)
	cmd.Stdin = bytes.NewReader(stdin)
	stderr := &tail{max: stderrMax}
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A grandchild that escaped the group could hold stderr open forever.
	cmd.WaitDelay = time.Second
	start := time.Now()
	err := cmd.Run()
	res := Result{Exit: -1, Took: time.Since(start), Stderr: stderr.String()}
	if cmd.ProcessState != nil {
		res.Exit = cmd.ProcessState.ExitCode()
	}
	switch {
	case err == nil:
		res.Exit = 0
	case errors.Is(tctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
		res.failure = fmt.Errorf("timed out after %v (killed)", e.Timeout)
	case res.Exit > 0:
		res.failure = fmt.Errorf("exit status %d", res.Exit)
	default:
		res.failure = err
	}
	return res
}

// tail keeps the last max bytes written to it.
type tail struct {
	max int
	buf []byte
	cut bool
}

func (t *tail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
		t.cut = true
	}
	return len(p), nil
}

// String returns the kept output on one line, trimmed.
func (t *tail) String() string {
	s := strings.Join(strings.Fields(strings.ToValidUTF8(string(t.buf), "?")), " ")
	if t.cut && s != "" {
		s = "..." + s
	}
	return s
}

// secretEnv are variables of the server's environment that a hook never
// inherits: the API token would let any hook script act as an operator.
var secretEnv = []string{"MARINA_TOKEN"}

// scrubEnv returns env without the secret variables.
func scrubEnv(env []string) []string {
	out := make([]string, 0, len(env))
next:
	for _, kv := range env {
		for _, name := range secretEnv {
			if strings.HasPrefix(kv, name+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

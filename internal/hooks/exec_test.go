package hooks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/marina-redis/marina/internal/testutil"
)

func testExec(timeout time.Duration, retries int) *Exec {
	return &Exec{Timeout: timeout, Retries: retries, Backoff: 10 * time.Millisecond, Log: testutil.Logger()}
}

func TestExecStdinAndEnv(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	cmd := fmt.Sprintf(`cat > %s; echo "$MARINA_DB $MARINA_EVENT" >> %s`, out, out)
	res, err := testExec(5*time.Second, 0).Run(testutil.Ctx(t, 10*time.Second), "t", cmd, []byte(`{"doc":1}`+"\n"),
		[]string{"MARINA_DB=a", "MARINA_EVENT=create"}, nil)
	if err != nil || res.Exit != 0 || res.Attempts != 1 {
		t.Fatalf("res %+v err %v", res, err)
	}
	b, _ := os.ReadFile(out)
	if string(b) != "{\"doc\":1}\na create\n" {
		t.Fatalf("hook saw %q", b)
	}
}

func TestExecRetries(t *testing.T) {
	dir := t.TempDir()
	count := filepath.Join(dir, "count")
	// Fails twice, then succeeds.
	flaky := fmt.Sprintf(`n=$(cat %[1]s 2>/dev/null || echo 0); n=$((n+1)); echo $n > %[1]s; echo "try $n" >&2; [ $n -ge 3 ]`, count)
	ctx := testutil.Ctx(t, 30*time.Second)
	res, err := testExec(5*time.Second, 3).Run(ctx, "t", flaky, nil, nil, nil)
	if err != nil || res.Attempts != 3 || res.Exit != 0 {
		t.Fatalf("flaky hook: res %+v err %v", res, err)
	}

	// Always fails: 1 + retries attempts, the exit code and the end of stderr.
	if err := os.Remove(count); err != nil {
		t.Fatal(err)
	}
	failing := fmt.Sprintf(`echo x >> %s; printf 'line one\nno such thing\n' >&2; exit 7`, count)
	res, err = testExec(5*time.Second, 2).Run(ctx, "t", failing, nil, nil, nil)
	if err == nil || res.Attempts != 3 || res.Exit != 7 || res.Stderr != "line one no such thing" {
		t.Fatalf("failing hook: res %+v err %v", res, err)
	}
	if !strings.Contains(err.Error(), "exit status 7 after 3 attempts") {
		t.Fatalf("err %v", err)
	}
	if b, _ := os.ReadFile(count); strings.Count(string(b), "x") != 3 {
		t.Fatalf("ran %d times, want 3", strings.Count(string(b), "x"))
	}

	// Long stderr keeps its end.
	res, _ = testExec(5*time.Second, 0).Run(ctx, "t", `i=0; while [ $i -lt 200 ]; do echo "noise $i" >&2; i=$((i+1)); done; echo the-cause >&2; exit 1`, nil, nil, nil)
	if len(res.Stderr) > stderrMax+3 || !strings.HasSuffix(res.Stderr, "the-cause") || !strings.HasPrefix(res.Stderr, "...") {
		t.Fatalf("stderr %q", res.Stderr)
	}
}

// A hook over its timeout is killed with everything it started.
func TestExecTimeoutKills(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	cmd := fmt.Sprintf(`sleep 60 & echo $! > %s; wait`, pidFile)
	start := time.Now()
	res, err := testExec(300*time.Millisecond, 1).Run(testutil.Ctx(t, 30*time.Second), "t", cmd, nil, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "timed out after 300ms") || res.Attempts != 2 || res.Exit != -1 {
		t.Fatalf("res %+v err %v", res, err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %v", d)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "the hook's child killed", func() error {
		if testutil.Alive(pid) {
			return fmt.Errorf("sleep %d still alive", pid)
		}
		return nil
	})
}

func TestExecCancelAndSuperseded(t *testing.T) {
	// A newer document stops the retries of an older one.
	calls := 0
	res, err := testExec(5*time.Second, 5).Run(testutil.Ctx(t, 30*time.Second), "t", "exit 1", nil, nil, func() bool { calls++; return calls > 1 })
	if !errors.Is(err, ErrSuperseded) || res.Attempts != 1 {
		t.Fatalf("res %+v err %v", res, err)
	}
	// Cancelling the context ends a running hook at once.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	_, err = testExec(time.Minute, 3).Run(ctx, "t", "sleep 60", nil, nil, nil)
	if !errors.Is(err, context.Canceled) || time.Since(start) > 10*time.Second {
		t.Fatalf("err %v after %v", err, time.Since(start))
	}
}

// A hook never sees the API token the server was started with (the
// attack: a hook script reading MARINA_TOKEN from its environment).
func TestExecDoesNotLeakToken(t *testing.T) {
	t.Setenv("MARINA_TOKEN", "secret-token-123")
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	cmd := fmt.Sprintf(`echo "${MARINA_TOKEN-unset} $MARINA_DB" > %s`, out)
	if _, err := testExec(5*time.Second, 0).Run(testutil.Ctx(t, 10*time.Second), "t", cmd, nil, []string{"MARINA_DB=a"}, nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); string(b) != "unset a\n" {
		t.Fatalf("hook saw %q", b)
	}
	got := scrubEnv([]string{"PATH=/bin", "MARINA_TOKEN=x", "MARINA_TOKENS=keep", "HOME=/root"})
	if strings.Join(got, " ") != "PATH=/bin MARINA_TOKENS=keep HOME=/root" {
		t.Fatalf("scrubEnv: %v", got)
	}
}

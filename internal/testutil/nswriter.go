package testutil

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// A writer inside a network namespace: the calling binary runs itself
// again under `ip netns exec`, and the child writes sequential SETs to one
// address, printing every acknowledged key with its time, and the first
// time it sees each kind of error. The partition tests and benchmark use it
// for clients on the cut-off side of a partition.

const (
	envAddr   = "MARINA_NSWRITER_ADDR"
	envPass   = "MARINA_NSWRITER_PASSWORD"
	envPrefix = "MARINA_NSWRITER_PREFIX"
	envCA     = "MARINA_NSWRITER_CA"
)

// WriterChild runs the child's part when this process was started as one
// and returns true (the caller then exits); it returns false otherwise.
// Call it first in TestMain or main.
func WriterChild() bool {
	addr := os.Getenv(envAddr)
	if addr == "" {
		return false
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// The parent closes stdin to stop the writer.
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	out := bufio.NewWriterSize(os.Stdout, 1<<20)
	defer out.Flush()
	var c *redis.Client
	seen := map[string]bool{}
	lastFlush := time.Now()
	for seq := 0; ctx.Err() == nil; seq++ {
		if time.Since(lastFlush) > 50*time.Millisecond {
			_ = out.Flush() // the parent watches writes flow
			lastFlush = time.Now()
		}
		if c == nil {
			c = redis.NewClient(&redis.Options{Addr: addr, Password: os.Getenv(envPass), Protocol: 2, DisableIdentity: true, MaxRetries: -1,
				PoolSize: 1, DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond,
				TLSConfig: TLSWith(os.Getenv(envCA), addr)})
		}
		key := fmt.Sprintf("%s%d", os.Getenv(envPrefix), seq)
		wctx, wcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := c.Set(wctx, key, seq, 0).Err()
		wcancel()
		if err == nil {
			fmt.Fprintf(out, "ack %s %d\n", key, time.Now().UnixNano())
			continue
		}
		if ctx.Err() != nil {
			break
		}
		kind := strings.Fields(err.Error() + " ?")[0]
		if !seen[kind] {
			seen[kind] = true
			fmt.Fprintf(out, "err %d %s\n", time.Now().UnixNano(), strings.ReplaceAll(err.Error(), "\n", " "))
		}
		c.Close()
		c = nil
		time.Sleep(5 * time.Millisecond)
	}
	if c != nil {
		c.Close()
	}
	return true
}

// NSWriter is a writer child running in a network namespace.
type NSWriter struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
	mu    sync.Mutex
	acks  []Ack
	errs  []string
	done  chan struct{}
}

// StartNSWriter starts a writer in namespace ns (empty: this one) writing
// keys prefix0, prefix1... to addr (over TLS trusting caFile, if set).
func StartNSWriter(ns, addr, password, prefix, caFile string) (*NSWriter, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var cmd *exec.Cmd
	if ns != "" {
		cmd = exec.Command("ip", "netns", "exec", ns, self)
	} else {
		cmd = exec.Command(self)
	}
	cmd.Env = append(os.Environ(), envAddr+"="+addr, envPass+"="+password, envPrefix+"="+prefix, envCA+"="+caFile)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	w := &NSWriter{cmd: cmd, stdin: stdin, addr: addr, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			f := strings.SplitN(sc.Text(), " ", 3)
			if len(f) < 3 {
				continue
			}
			switch f[0] {
			case "ack":
				ns, _ := strconv.ParseInt(f[2], 10, 64)
				w.mu.Lock()
				w.acks = append(w.acks, Ack{Key: f[1], Addr: addr, At: time.Unix(0, ns)})
				w.mu.Unlock()
			case "err":
				ns, _ := strconv.ParseInt(f[1], 10, 64)
				w.mu.Lock()
				w.errs = append(w.errs, fmt.Sprintf("%s %s", time.Unix(0, ns).Format("15:04:05.000"), f[2]))
				w.mu.Unlock()
			}
		}
		_ = cmd.Wait()
	}()
	return w, nil
}

// Acks returns the acknowledged writes read so far (the child buffers its
// output: all of them once Stop has returned).
func (w *NSWriter) Acks() []Ack {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Ack(nil), w.acks...)
}

// Errors returns the first error of each kind the writer met, with its time.
func (w *NSWriter) Errors() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.errs...)
}

// Stop ends the writer and waits for its last acknowledgements.
func (w *NSWriter) Stop() {
	_ = w.stdin.Close()
	select {
	case <-w.done:
	case <-time.After(10 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.done
	}
}

// Lost returns the acks whose keys the server at addr does not have
// (asked over TLS trusting caFile, if set).
func Lost(ctx context.Context, acks []Ack, addr, password, caFile string) ([]Ack, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, Password: password, Protocol: 2, DisableIdentity: true, TLSConfig: TLSWith(caFile, addr)})
	defer c.Close()
	var lost []Ack
	for i := 0; i < len(acks); i += 500 {
		batch := acks[i:min(i+500, len(acks))]
		keys := make([]string, len(batch))
		for j, a := range batch {
			keys[j] = a.Key
		}
		vals, err := c.MGet(ctx, keys...).Result()
		if err != nil {
			return nil, err
		}
		for j, v := range vals {
			if v == nil {
				lost = append(lost, batch[j])
			}
		}
	}
	return lost, nil
}

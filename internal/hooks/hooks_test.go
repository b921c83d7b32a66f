package hooks

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/testutil"
)

// startRun runs the hooks on src until the test ends, and checks that Run
// returns once its context is cancelled.
func startRun(t *testing.T, cfg Config, src Source) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, cfg, src)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
}

// readDocs reads the documents a hook appended to path, one per line.
func readDocs(path string) ([]Document, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []Document
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var d Document
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			return nil, fmt.Errorf("line %q: %v", line, err)
		}
		out = append(out, d)
	}
	return out, nil
}

type events struct {
	mu  sync.Mutex
	got []state.Event
}

func (e *events) record(_ context.Context, ev state.Event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, ev)
	return nil
}

func (e *events) list() []state.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]state.Event(nil), e.got...)
}

// While a database's hook runs, newer changes replace each other: only the
// latest document runs next.
func TestRunCoalescesPerDatabase(t *testing.T) {
	dir := t.TempDir()
	out, gate := filepath.Join(dir, "docs"), filepath.Join(dir, "gate")
	f, apply := fsmWith(t)
	cmd := fmt.Sprintf(`cat >> %s; while [ ! -f %s ]; do sleep 0.01; done`, out, gate)
	startRun(t, Config{Node: "n1", Exec: cmd, Timeout: time.Minute, Workers: 1, Log: testutil.Logger()}, f)
	testutil.WaitFor(t, 10*time.Second, "sync document", func() error {
		docs, err := readDocs(out)
		if err != nil || len(docs) != 1 || docs[0].Kind != KindSync {
			return fmt.Errorf("docs %+v err %v", docs, err)
		}
		return nil
	})
	// The hook is stuck at the gate: two switchovers queue up behind it.
	apply(&state.Switchover{ShardRef: state.ShardRef{Name: "a", Shard: 0, Epoch: 0}, From: "a-0-aaaaaa", To: "a-0-bbbbbb", Time: t0})
	apply(&state.Switchover{ShardRef: state.ShardRef{Name: "a", Shard: 0, Epoch: 1}, From: "a-0-bbbbbb", To: "a-0-aaaaaa", Time: t0})
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// Another database after them, then a third once those ran: with one
	// worker taking databases in turn, a third document of a would come
	// before c's.
	apply(&state.CreateDB{DB: testDB("b", t0, 6401, []state.Instance{inst("b", 0, "aaaaaa", 3, 7101, state.RoleMaster)})})
	var docs []Document
	waitDoc := func(name string) {
		t.Helper()
		testutil.WaitFor(t, 10*time.Second, "document of "+name, func() error {
			var err error
			docs, err = readDocs(out)
			for _, d := range docs {
				if d.Name == name {
					return nil
				}
			}
			return fmt.Errorf("docs %d err %v", len(docs), err)
		})
	}
	waitDoc("b")
	apply(&state.CreateDB{DB: testDB("c", t0, 6402, []state.Instance{inst("c", 0, "aaaaaa", 3, 7102, state.RoleMaster)})})
	waitDoc("c")
	var a []string
	for _, d := range docs {
		if d.Name == "a" {
			a = append(a, fmt.Sprintf("%s/%d/%s", d.Kind, d.Shards[0].Epoch, d.Shards[0].Master.ID))
		}
	}
	if want := "[sync/0/a-0-aaaaaa switchover/2/a-0-aaaaaa]"; fmt.Sprint(a) != want {
		t.Fatalf("documents of a: %v, want %s", a, want)
	}
	if d := docs[len(docs)-1]; d.Name != "c" || d.Kind != KindCreate || d.Node != "n1" || len(d.Endpoints) != 3 {
		t.Fatalf("document of b: %+v", d)
	}
}

// A hook failing after its retries is a cluster event; the next change
// still runs it.
func TestRunFailureEvent(t *testing.T) {
	dir := t.TempDir()
	count := filepath.Join(dir, "count")
	f, apply := fsmWith(t)
	ev := &events{}
	cmd := fmt.Sprintf(`echo "$MARINA_EVENT" >> %s; echo "no route to dns" >&2; exit 3`, count)
	startRun(t, Config{Node: "n9", Exec: cmd, Timeout: 5 * time.Second, Retries: 1, Backoff: 10 * time.Millisecond,
		Log: testutil.Logger(), Event: ev.record}, f)
	testutil.WaitFor(t, 10*time.Second, "failure event", func() error {
		if len(ev.list()) != 1 {
			return fmt.Errorf("events %+v", ev.list())
		}
		return nil
	})
	e := ev.list()[0]
	if e.Type != EventHookFailed || e.DB != "a" || e.Node != "n9" || !strings.Contains(e.Reason, "exit status 3 after 2 attempts") ||
		!strings.Contains(e.Reason, "no route to dns") || !strings.Contains(e.Reason, "sync") {
		t.Fatalf("event %+v", e)
	}
	apply(&state.DeleteDB{Name: "a"})
	testutil.WaitFor(t, 10*time.Second, "second failure event", func() error {
		if l := ev.list(); len(l) != 2 || !strings.Contains(l[1].Reason, "delete") {
			return fmt.Errorf("events %+v", l)
		}
		return nil
	})
	if b, _ := os.ReadFile(count); string(b) != "sync\nsync\ndelete\ndelete\n" {
		t.Fatalf("hook runs %q", b)
	}
}

func TestRunHAProxy(t *testing.T) {
	dir := t.TempDir()
	cfgFile, reloads := filepath.Join(dir, "marina.cfg"), filepath.Join(dir, "reloads")
	f, apply := fsmWith(t)
	ev := &events{}
	startRun(t, Config{Node: "n1", HAProxyConfig: cfgFile, HAProxyReload: fmt.Sprintf(`echo "$MARINA_EVENT $MARINA_HAPROXY_CONFIG" >> %s`, reloads),
		Timeout: 5 * time.Second, Log: testutil.Logger(), Event: ev.record}, f)
	waitReloads := func(n int, what string) {
		t.Helper()
		testutil.WaitFor(t, 10*time.Second, what, func() error {
			b, _ := os.ReadFile(reloads)
			if got := strings.Count(string(b), "reload "+cfgFile+"\n"); got != n {
				return fmt.Errorf("%d reloads", got)
			}
			return nil
		})
	}
	waitReloads(1, "first write and reload")
	b, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "backend a-write") || !strings.Contains(string(b), "server a-0-aaaaaa 10.0.0.1:7100 check") {
		t.Fatalf("config:\n%s", b)
	}
	if fi, _ := os.Stat(cfgFile); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	// An endpoint change leaves the file alone; a failover rewrites it.
	apply(&state.SetNodeStatus{NodeID: "n3", Status: state.NodeDown, Time: t0})
	apply(&state.Demote{ShardRef: state.ShardRef{Name: "a", Shard: 0, Epoch: 0}, From: "a-0-aaaaaa", Time: t0},
		&state.Promote{ShardRef: state.ShardRef{Name: "a", Shard: 0, Epoch: 1}, To: "a-0-bbbbbb", Time: t0})
	waitReloads(2, "reload after the failover")
	b, _ = os.ReadFile(cfgFile)
	write := string(b)[strings.Index(string(b), "backend a-write"):strings.Index(string(b), "backend a-read")]
	if !strings.Contains(write, "server a-0-bbbbbb 10.0.0.2:7100") || strings.Contains(write, "a-0-aaaaaa") {
		t.Fatalf("write backend after failover:\n%s", write)
	}
	checkHAProxy(t, cfgFile, "a-write", "a-read")
	if l := ev.list(); len(l) != 0 {
		t.Fatalf("events %+v", l)
	}
}

// A failing reload is one event, and is retried at the next change.
func TestRunHAProxyReloadFails(t *testing.T) {
	dir := t.TempDir()
	cfgFile, tries := filepath.Join(dir, "marina.cfg"), filepath.Join(dir, "tries")
	f, apply := fsmWith(t)
	ev := &events{}
	startRun(t, Config{Node: "n1", HAProxyConfig: cfgFile, HAProxyReload: fmt.Sprintf(`echo x >> %s; echo "haproxy not running" >&2; exit 1`, tries),
		Timeout: 5 * time.Second, Backoff: 10 * time.Millisecond, Log: testutil.Logger(), Event: ev.record}, f)
	testutil.WaitFor(t, 10*time.Second, "failure event", func() error {
		if len(ev.list()) != 1 {
			return fmt.Errorf("events %+v", ev.list())
		}
		return nil
	})
	if e := ev.list()[0]; e.Type != EventHookFailed || e.DB != "" || !strings.Contains(e.Reason, "haproxy not running") {
		t.Fatalf("event %+v", e)
	}
	if _, err := os.Stat(cfgFile); err != nil {
		t.Fatalf("file not written before the reload: %v", err)
	}
	apply(&state.DeleteDB{Name: "a"})
	testutil.WaitFor(t, 10*time.Second, "reload tried again", func() error {
		if b, _ := os.ReadFile(tries); strings.Count(string(b), "x") < 2 {
			return fmt.Errorf("%d tries", strings.Count(string(b), "x"))
		}
		return nil
	})
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{HAProxyReload: "true"}, "--haproxy-reload needs --haproxy-config"},
		{Config{HAProxyConfig: filepath.Join(dir, "nope", "x.cfg")}, "does not exist"},
		{Config{HAProxyConfig: dir}, "is a directory"},
		{Config{Exec: "true", Retries: -1}, "--hook-retries -1"},
		{Config{Exec: "true", Timeout: time.Nanosecond}, "--hook-timeout"},
		{Config{Exec: "true", HAProxyConfig: filepath.Join(dir, "ok.cfg"), HAProxyReload: "true", Timeout: time.Second, Retries: 3}, ""},
	} {
		err := c.cfg.Validate()
		if (err == nil) != (c.want == "") || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%+v: err %v, want %q", c.cfg, err, c.want)
		}
	}
}

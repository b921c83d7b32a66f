package server

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/api"
	"github.com/marina-redis/marina/internal/client"
	"github.com/marina-redis/marina/internal/pki"
	"github.com/marina-redis/marina/internal/testutil"
)

// chromium returns the path of a Chromium (or Chrome) binary, or "".
func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// artifactDir is where the test keeps its screenshots: under
// $MARINA_TEST_ARTIFACTS when set, else t.ArtifactDir() (kept with
// `go test -artifacts -outputdir DIR`, a temporary directory otherwise).
func artifactDir(t *testing.T) string {
	if d := os.Getenv("MARINA_TEST_ARTIFACTS"); d != "" {
		d = filepath.Join(d, t.Name())
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.ArtifactDir()
}

// browserTest drives one headless Chromium tab with per-step deadlines.
type browserTest struct {
	t   *testing.T
	ctx context.Context // the tab; steps derive their deadlines from it
	dir string

	mu     sync.Mutex
	jsErrs []string // uncaught exceptions and console.error calls
	logs   []string // everything else the page logged
}

// spki is the base64 SHA-256 of a node certificate's public key, the form
// Chromium's --ignore-certificate-errors-spki-list takes.
func spki(t *testing.T, dataDir string) string {
	b, err := os.ReadFile(filepath.Join(dataDir, "tls", "node.pem"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := pki.ParseCert(b)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// newBrowser starts Chromium (killed in t.Cleanup) with a fresh temporary
// profile: chromedp makes the user-data-dir, kills any process still using
// it when the browser exits, and removes it.
func newBrowser(t *testing.T, path, trustSPKI string) *browserTest {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-proxy-server", true), // loopback only, whatever the environment says
		// The console is HTTPS with the node's certificate from the
		// cluster CA: trust exactly that key, as an operator trusts the CA.
		chromedp.Flag("ignore-certificate-errors-spki-list", trustSPKI),
		chromedp.WindowSize(1440, 1000),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	b := &browserTest{t: t, ctx: ctx, dir: artifactDir(t)}
	done := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		acancel() // waits until the browser has exited and its profile is gone
		<-done
	})
	// The first Do starts the browser; it must not carry a deadline.
	if err := chromedp.Do(ctx); err != nil {
		close(done)
		t.Fatalf("start %s: %v", path, err)
	}
	msgs := chromedp.Console(ctx)
	go func() {
		defer close(done)
		for m, err := range msgs {
			if err != nil {
				return
			}
			line := fmt.Sprintf("%s %s:%d %s", m.Type, m.URL, m.Line+1, m.Text)
			b.mu.Lock()
			if m.IsException() || (m.Type == chromedp.ConsoleError && len(m.Args) > 0) {
				b.jsErrs = append(b.jsErrs, line)
			} else {
				b.logs = append(b.logs, line)
			}
			b.mu.Unlock()
		}
	}()
	return b
}

func (b *browserTest) do(what string, timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.fail("%s: %v", what, err)
	}
}

// text returns an element's visible text.
func (b *browserTest) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible))
	if err != nil {
		b.fail("text of %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

// waitJS waits until a JavaScript expression is true.
func (b *browserTest) waitJS(what string, timeout time.Duration, expr string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout+time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
		b.fail("waiting %v for %s (%s): %v", timeout, what, expr, err)
	}
}

// shot saves a full-page screenshot and logs its path.
func (b *browserTest) shot(name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.fail("screenshot %s: %v", name, err)
	}
	p := filepath.Join(b.dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", p)
	return p
}

// fail ends the test with a screenshot of the page as it is.
func (b *browserTest) fail(format string, args ...any) {
	b.t.Helper()
	msg := fmt.Sprintf(format, args...)
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
		p := filepath.Join(b.dir, "failure.png")
		if os.WriteFile(p, png, 0o644) == nil {
			msg += "\nscreenshot of the page: " + p
		}
	}
	b.mu.Lock()
	for _, l := range append(b.jsErrs, b.logs...) {
		msg += "\nbrowser: " + l
	}
	b.mu.Unlock()
	b.t.Fatal(msg)
}

// checkRoutes checks what the node serves outside the browser: the console
// beside /healthz and /v1, which keep working.
func checkRoutes(t *testing.T, hc *http.Client, base string) {
	t.Helper()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for _, c := range []struct {
		path     string
		code     int
		ctype    string
		location string
	}{
		{"/", http.StatusFound, "", "/ui/"},
		{"/ui/", http.StatusOK, "text/html; charset=utf-8", ""},
		{"/ui/app.js", http.StatusOK, "text/javascript; charset=utf-8", ""},
		{"/ui/style.css", http.StatusOK, "text/css; charset=utf-8", ""},
		{"/ui/nope.js", http.StatusNotFound, "", ""},
		{"/healthz", http.StatusOK, "application/json", ""},
		{"/v1/status", http.StatusUnauthorized, "application/json", ""}, // no token
		{"/v1/nope", http.StatusUnauthorized, "application/json", ""},
	} {
		res, err := hc.Get(base + c.path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != c.code {
			t.Errorf("GET %s: %d, want %d", c.path, res.StatusCode, c.code)
		}
		if c.ctype != "" && res.Header.Get("Content-Type") != c.ctype {
			t.Errorf("GET %s: Content-Type %q, want %q", c.path, res.Header.Get("Content-Type"), c.ctype)
		}
		if c.location != "" && res.Header.Get("Location") != c.location {
			t.Errorf("GET %s: Location %q, want %q", c.path, res.Header.Get("Location"), c.location)
		}
	}
}

// TestConsole drives the web console in headless Chromium against a
// three-node cluster with real redis-servers: login, overview, create
// (invalid and valid), list, database page with live graphs, edit, node
// page, delete, logout and an expired token.
func TestConsole(t *testing.T) {
	tc := newTestClusterWith(t, 3, 256<<20, func(i int, c *Config) { c.StatsInterval = time.Second })
	follower := (tc.leader() + 1) % 3 // the console on a follower: every API call is forwarded
	base := "https://" + tc.nodes[follower].HTTPAddr()
	api0 := tc.client(follower)
	checkRoutes(t, tc.httpClient(), base)

	path := chromium()
	if path == "" {
		t.Skip("chromium is not installed (scripts/deps.sh installs it: apt-get install chromium): skipping the browser part")
	}
	b := newBrowser(t, path, spki(t, tc.cfgs[follower].DataDir))
	ctx := testutil.Ctx(t, 5*time.Minute)

	// Login: a wrong token shows the API's message, the right one gets in.
	b.do("open the console", 20*time.Second, chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#login-token")))
	b.do("submit a wrong token", 10*time.Second,
		chromedp.SendKeys(chromedp.CSS("#login-token"), "not-the-token"),
		chromedp.Click(chromedp.CSS("#login-submit")),
		chromedp.WaitVisible(chromedp.CSS("#login-error")))
	if got := b.text("#login-error"); !strings.Contains(got, "missing or wrong API token") {
		b.fail("login error %q does not show the API's message", got)
	}
	b.do("log in", 10*time.Second,
		chromedp.SetValue(chromedp.CSS("#login-token"), testToken),
		chromedp.Click(chromedp.CSS("#login-submit")),
		chromedp.WaitVisible(chromedp.CSS("#nodes table")))

	// Overview: the three nodes with capacity bars, one leader.
	b.waitJS("three nodes up with capacity bars", 20*time.Second,
		`document.querySelectorAll('#nodes tr[data-node] .bar').length === 3 && document.querySelectorAll('#nodes .badge.up').length === 3 && document.querySelectorAll('#nodes .badge.leader').length === 1`)
	if got := b.text("#totals"); !strings.Contains(got, "3 / 3") {
		b.fail("totals %q: want 3 / 3 nodes up", got)
	}

	// Databases: an invalid spec shows the API's message verbatim and creates nothing.
	b.do("open the create form", 10*time.Second,
		chromedp.Click(chromedp.CSS("#nav-dbs")),
		chromedp.WaitVisible(chromedp.CSS("#create-toggle")),
		chromedp.Click(chromedp.CSS("#create-toggle")),
		chromedp.WaitVisible(chromedp.CSS("#create-form")))
	_, wantErr := api0.CreateDB(ctx, api.CreateDBRequest{Name: "Bad_Name", Memory: 16 << 20, Shards: 2, Replicas: 1})
	var ae *client.Error
	if !errors.As(wantErr, &ae) || ae.Code != http.StatusBadRequest {
		t.Fatalf("API on an invalid name: %v", wantErr)
	}
	fill := func(name string) {
		b.do("fill the create form", 10*time.Second,
			chromedp.SetValue(chromedp.CSS("#create-form [name=name]"), name),
			chromedp.SetValue(chromedp.CSS("#create-form [name=memory]"), "16MiB"),
			chromedp.SetValue(chromedp.CSS("#create-form [name=shards]"), "2"),
			chromedp.SetValue(chromedp.CSS("#create-form [name=replicas]"), "1"),
			chromedp.SetValue(chromedp.CSS("#create-form [name=persistence]"), "aof"),
			chromedp.SetValue(chromedp.CSS("#create-form [name=eviction]"), "allkeys-lru"),
			chromedp.SetValue(chromedp.CSS("#create-form [name=durability]"), "async"),
			chromedp.SetValue(chromedp.CSS("#create-form [name=read_from]"), "master"),
			chromedp.SetValue(chromedp.CSS("#create-form [name=password]"), "console-pass-123"),
			chromedp.SetValue(chromedp.CSS("#create-form [name=owner]"), "team-shop"),
			chromedp.SetValue(chromedp.CSS("#create-form [name=labels]"), "env=test, tier=cache"))
	}
	fill("Bad_Name")
	b.do("submit an invalid database", 10*time.Second,
		chromedp.Click(chromedp.CSS("#create-submit")),
		chromedp.WaitVisible(chromedp.CSS("#create-error")))
	if got := b.text("#create-error"); got != ae.Msg {
		b.fail("create error shows %q, the API said %q", got, ae.Msg)
	}

	// A valid one, with every field of the spec.
	fill("shop")
	b.do("create shop", 20*time.Second,
		chromedp.Click(chromedp.CSS("#create-submit")),
		chromedp.WaitVisible(chromedp.CSS("#create-ok")),
		chromedp.WaitVisible(chromedp.CSS(`#db-table tr[data-db="shop"]`)))
	db, err := api0.GetDB(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	if db.Memory != 16<<20 || db.ShardCount != 2 || db.Replicas != 1 || db.Persistence != "aof" || db.Eviction != "allkeys-lru" ||
		db.Password != "console-pass-123" || db.Owner != "team-shop" || db.Labels["env"] != "test" || db.Labels["tier"] != "cache" {
		t.Fatalf("created through the form: %+v", db)
	}
	// The same name again: 409, shown as the API says it.
	_, wantErr = api0.CreateDB(ctx, api.CreateDBRequest{Name: "shop", Memory: 16 << 20, Shards: 2, Replicas: 1})
	if !errors.As(wantErr, &ae) || ae.Code != http.StatusConflict {
		t.Fatalf("API on a duplicate: %v", wantErr)
	}
	b.do("submit a duplicate", 10*time.Second,
		chromedp.SetValue(chromedp.CSS("#create-form [name=name]"), "shop"),
		chromedp.Click(chromedp.CSS("#create-submit")),
		chromedp.WaitVisible(chromedp.CSS("#create-error")))
	if got := b.text("#create-error"); got != ae.Msg {
		b.fail("duplicate error shows %q, the API said %q", got, ae.Msg)
	}
	db = tc.waitReady(api0, "shop")
	b.waitJS("shop ready in the list", 20*time.Second, `!!document.querySelector('#db-table tr[data-db="shop"] .badge.ready')`)
	b.shot("databases")

	// Keys through the endpoint, so the graphs get operations.
	if len(db.Endpoints) == 0 {
		t.Fatalf("shop has no endpoints: %+v", db)
	}
	var writes, writeErrs atomic.Int64
	var lastErr atomic.Value
	wctx, stopWriter := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rc(db.Endpoints[0], "", db.Password)
		defer r.Close()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-wctx.Done():
				return
			case <-tick.C:
			}
			p := r.Pipeline()
			for j := range 10 {
				k := fmt.Sprintf("user:{%d}", (i*10+j)%1000)
				p.Set(wctx, k, i, 0)
				p.Get(wctx, k)
				p.Get(wctx, "missing:"+k)
			}
			if _, err := p.Exec(wctx); err != nil && !errors.Is(err, redis.Nil) && wctx.Err() == nil {
				writeErrs.Add(1)
				lastErr.Store(err.Error())
				continue
			}
			writes.Add(1)
		}
	}()
	defer func() { stopWriter(); wg.Wait() }()
	testutil.WaitFor(t, 10*time.Second, "writes through the endpoint", func() error {
		if writes.Load() > 0 {
			return nil
		}
		return fmt.Errorf("%d failed pipelines, last %v", writeErrs.Load(), lastErr.Load())
	})

	// The database page: topology, connection strings, graphs filling up.
	b.do("open shop", 10*time.Second,
		chromedp.Click(chromedp.CSS(`#db-table tr[data-db="shop"] a`)),
		chromedp.WaitVisible(chromedp.CSS("#db-topology .shard")))
	b.waitJS("two shards, each with its master and replica", 10*time.Second,
		`document.querySelectorAll('#db-topology .shard').length === 2 && document.querySelectorAll('#db-topology tr[data-role="replica"]').length === 2`)
	host, port, _ := strings.Cut(db.Endpoints[0], ":")
	if got := b.text("#db-connect"); !strings.Contains(got, fmt.Sprintf("redis-cli -h %s -p %s -a '", host, port)) ||
		!strings.Contains(got, fmt.Sprintf("redis://:••••••••@%s:%s", host, port)) {
		b.fail("connection strings: %q", got)
	}
	b.do("show the password", 5*time.Second, chromedp.Click(chromedp.CSS("#toggle-password")))
	if got := b.text("#db-connect"); !strings.Contains(got, "-a 'console-pass-123'") || !strings.Contains(got, "redis://:console-pass-123@") {
		b.fail("connection strings with the password: %q", got)
	}
	b.waitJS("the ops graph shows operations", 60*time.Second,
		`(() => { const e = document.getElementById('chart-ops'); return !!e && +e.dataset.points >= 2 && +e.dataset.max > 0 && !!e.querySelector('path.line'); })()`)
	b.waitJS("memory, clients, hit ratio and latency graphs have points", 30*time.Second,
		`['chart-memory', 'chart-clients', 'chart-hits', 'chart-latency'].every(id => +document.getElementById(id).dataset.points >= 2)`)
	b.waitJS("per-instance ops in the topology", 20*time.Second,
		`[...document.querySelectorAll('#db-topology tr[data-role="master"] td:nth-child(10)')].some(td => td.textContent !== '—')`)
	b.shot("database")

	// The overview again, now with allocated and used memory on every node.
	b.do("open the overview", 10*time.Second, chromedp.Click(chromedp.CSS("#nav-overview")), chromedp.WaitVisible(chromedp.CSS("#nodes table")))
	b.waitJS("capacity bars with allocated and used memory", 20*time.Second,
		`[...document.querySelectorAll('#nodes .bar')].filter(b => parseFloat(b.querySelector('.alloc').style.width) > 0 && parseFloat(b.querySelector('.used').style.width) > 0).length >= 2`)
	if got := b.text("#totals"); !strings.Contains(got, "1 / 1") || !strings.Contains(got, "4 / 4") {
		b.fail("totals %q: want 1 / 1 databases ready, 4 / 4 instances running", got)
	}
	b.shot("overview")
	b.do("back to shop", 10*time.Second, chromedp.Navigate(base+"/ui/#/dbs/shop"), chromedp.WaitVisible(chromedp.CSS("#db-topology .shard")))
	stopWriter()
	wg.Wait()

	// Switchover of shard 0: armed by the first click, run by the second.
	oldMaster := db.Shards[0].Master.ID
	b.do("arm the switchover", 10*time.Second, chromedp.Click(chromedp.CSS(`#db-topology .switchover[data-shard="0"]`)))
	b.waitJS("the switchover armed", 5*time.Second,
		`document.querySelector('#db-topology .switchover[data-shard="0"]').textContent === 'Confirm switchover'`)
	b.do("confirm the switchover", 20*time.Second,
		chromedp.Click(chromedp.CSS(`#db-topology .switchover[data-shard="0"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#db-topology [data-switchover-result="0"]`)))
	if got := b.text(`#db-topology [data-switchover-result="0"]`); !strings.HasPrefix(got, "Switched over: "+oldMaster+" → ") {
		b.fail("switchover result %q", got)
	}
	db = tc.waitReady(api0, "shop")
	if db.Shards[0].Master.ID == oldMaster {
		t.Fatalf("shard 0 master still %s after the switchover", oldMaster)
	}
	b.waitJS("the new master in the topology", 10*time.Second,
		fmt.Sprintf(`document.querySelector('#db-topology .shard[data-shard="0"] tr[data-role="master"]').dataset.instance === %q`, db.Shards[0].Master.ID))

	// Edit: a refused change shows the API's message; an accepted one applies.
	b.do("open the edit form", 10*time.Second, chromedp.Click(chromedp.CSS("#edit-toggle")), chromedp.WaitVisible(chromedp.CSS("#edit-form")))
	tooSmall := api.Size(512 << 10)
	_, wantErr = api0.UpdateDB(ctx, "shop", api.UpdateDBRequest{Memory: &tooSmall})
	if !errors.As(wantErr, &ae) || ae.Code != http.StatusBadRequest {
		t.Fatalf("API on too little memory: %v", wantErr)
	}
	b.do("submit a bad edit", 10*time.Second,
		chromedp.SetValue(chromedp.CSS("#edit-form [name=memory]"), "512kb"),
		chromedp.Click(chromedp.CSS("#edit-submit")),
		chromedp.WaitVisible(chromedp.CSS("#edit-error")))
	if got := b.text("#edit-error"); got != ae.Msg {
		b.fail("edit error shows %q, the API said %q", got, ae.Msg)
	}
	b.do("submit a good edit", 10*time.Second,
		chromedp.SetValue(chromedp.CSS("#edit-form [name=memory]"), "24MiB"),
		chromedp.SetValue(chromedp.CSS("#edit-form [name=eviction]"), "volatile-lru"),
		chromedp.SetValue(chromedp.CSS("#edit-form [name=owner]"), "team-checkout"),
		chromedp.Click(chromedp.CSS("#edit-submit")),
		chromedp.WaitVisible(chromedp.CSS("#edit-ok")))
	db, err = api0.GetDB(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	if db.Memory != 24<<20 || db.Eviction != "volatile-lru" || db.Owner != "team-checkout" || db.Persistence != "aof" || db.Labels["env"] != "test" {
		t.Fatalf("after the edit: %+v", db)
	}

	// A node page: details, capacity, its instances, drain button.
	node := db.Shards[0].Master.Node
	b.do("open node "+node, 10*time.Second,
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#db-topology tr[data-role="master"] a[href="#/nodes/%s"]`, node))),
		chromedp.WaitVisible(chromedp.CSS("#node-capacity .bar")),
		chromedp.WaitVisible(chromedp.CSS("#drain")))
	b.waitJS("the node's instances of shop", 10*time.Second,
		fmt.Sprintf(`!!document.querySelector('#node-instances tr[data-instance="%s"]')`, db.Shards[0].Master.ID))
	b.shot("node")

	// Delete: the button stays disabled until the name is typed.
	b.do("open shop again", 10*time.Second, chromedp.Navigate(base+"/ui/#/dbs/shop"), chromedp.WaitVisible(chromedp.CSS("#delete-toggle")))
	b.do("start deleting", 10*time.Second,
		chromedp.Click(chromedp.CSS("#delete-toggle")),
		chromedp.WaitVisible(chromedp.CSS("#delete-confirm")),
		chromedp.SendKeys(chromedp.CSS("#delete-confirm"), "sho"))
	b.waitJS("delete disabled before the whole name", 5*time.Second, `document.getElementById('delete-submit').disabled`)
	b.do("confirm the delete", 20*time.Second,
		chromedp.SendKeys(chromedp.CSS("#delete-confirm"), "p"),
		chromedp.WaitEnabled(chromedp.CSS("#delete-submit")),
		chromedp.Click(chromedp.CSS("#delete-submit")),
		chromedp.WaitVisible(chromedp.CSS("#flash")))
	if got := b.text("#flash"); got != "Deleted database shop." {
		b.fail("after the delete: %q", got)
	}
	if _, err := api0.GetDB(ctx, "shop"); !errors.As(err, &ae) || ae.Code != http.StatusNotFound {
		t.Fatalf("shop after the delete: %v", err)
	}
	b.waitJS("the list without shop", 10*time.Second, `!!document.getElementById('no-dbs')`)

	// Drain and undrain a node (empty now, so nothing moves).
	b.do("open node n3", 10*time.Second, chromedp.Navigate(base+"/ui/#/nodes/n3"), chromedp.WaitVisible(chromedp.CSS("#drain")))
	b.do("drain n3", 10*time.Second, chromedp.Click(chromedp.CSS("#drain")), chromedp.WaitVisible(chromedp.CSS("#undrain")))
	nodeDraining := func(want bool) {
		testutil.WaitFor(t, 5*time.Second, fmt.Sprintf("n3 draining=%v", want), func() error {
			ns, err := api0.Nodes(ctx)
			if err != nil {
				return err
			}
			for _, n := range ns {
				if n.ID == "n3" && n.Draining == want {
					return nil
				}
			}
			return fmt.Errorf("nodes: %+v", ns)
		})
	}
	nodeDraining(true)
	b.waitJS("n3 shown draining", 10*time.Second, `!!document.querySelector('#node-badges .badge.draining')`)
	b.do("undrain n3", 10*time.Second, chromedp.Click(chromedp.CSS("#undrain")), chromedp.WaitVisible(chromedp.CSS("#drain")))
	nodeDraining(false)

	// Without a leader (the other two nodes stopped): the views go on from
	// this node's own state under a banner that says so, and a change says
	// "no leader, retrying" instead of hanging.
	for i := range tc.nodes {
		if i != follower {
			tc.nodes[i].Stop()
			tc.nodes[i] = nil
		}
	}
	b.do("the overview without a leader", 10*time.Second, chromedp.Navigate(base+"/ui/#/"), chromedp.WaitVisible(chromedp.CSS("#nodes table")))
	b.waitJS("the no-leader banner", 20*time.Second,
		`(() => { const e = document.getElementById('leader-banner'); return !e.hidden && /No leader, retrying: showing no leader reachable/.test(e.textContent); })()`)
	b.do("drain without a leader", 10*time.Second, chromedp.Navigate(base+"/ui/#/nodes/n3"), chromedp.WaitVisible(chromedp.CSS("#drain")),
		chromedp.Click(chromedp.CSS("#drain")))
	b.waitJS("the retry banner", 20*time.Second,
		`(() => { const e = document.getElementById('leader-banner'); return !e.hidden && /No leader, retrying: no leader: the cluster has no quorum/.test(e.textContent); })()`)
	b.shot("no-leader")

	// Logout, then a session whose token the API refuses.
	b.do("log out", 10*time.Second, chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#login-token")))
	b.do("a refused token", 10*time.Second,
		chromedp.Evaluate[chromedp.Void](`sessionStorage.setItem('marina.token', 'expired-token'); location.reload()`),
		chromedp.WaitVisible(chromedp.CSS("#login-error")))
	if got := b.text("#login-error"); !strings.Contains(got, "The API refused the token: missing or wrong API token") {
		b.fail("after a refused token: %q", got)
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range b.logs {
		t.Logf("browser: %s", l)
	}
	if len(b.jsErrs) > 0 {
		t.Fatalf("JavaScript errors in the console:\n%s", strings.Join(b.jsErrs, "\n"))
	}
}

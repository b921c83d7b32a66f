package hooks

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func goldenTopologies() []Topology {
	return []Topology{
		{Name: "sharded", Secret: "s2_-X", Shards: []ShardTopology{
			{Index: 0, Master: Member{ID: "sharded-0-aaaaaa", Addr: "10.0.0.2:7101"}},
			{Index: 1, Master: Member{ID: "sharded-1-bbbbbb", Addr: "10.0.0.3:7101"}, Replicas: []Member{{ID: "sharded-1-cccccc", Addr: "10.0.0.1:7102"}}},
		}},
		{Name: "cache", Secret: "s1", Shards: []ShardTopology{
			{Index: 0, Master: Member{ID: "cache-0-aaaaaa", Addr: "10.0.0.1:7100"},
				Replicas: []Member{{ID: "cache-0-bbbbbb", Addr: "10.0.0.2:7100"}, {ID: "cache-0-cccccc", Addr: "10.0.0.3:7100"}}},
		}},
	}
}

func TestRenderHAProxy(t *testing.T) {
	got := RenderHAProxy("n1", goldenTopologies(), "")
	golden := filepath.Join("testdata", "haproxy.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test -run TestRenderHAProxy -update writes it)", err)
	}
	if got != string(want) {
		t.Fatalf("rendered config differs from %s (-update rewrites it):\n%s", golden, got)
	}
	// Sorted by database, whatever the input order.
	if strings.Index(got, "backend cache-write") > strings.Index(got, "backend sharded_0-write") {
		t.Fatal("databases not sorted")
	}
	checkHAProxy(t, golden, "cache-write", "cache-read", "sharded_0-write", "sharded_1-read")
	// No databases: still a valid file.
	empty := filepath.Join(t.TempDir(), "empty.cfg")
	if err := os.WriteFile(empty, []byte(RenderHAProxy("n1", nil, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	checkHAProxy(t, empty)
}

// checkHAProxy validates a file with haproxy -c when haproxy is installed
// (scripts/deps.sh installs it), loaded after a main configuration with a
// frontend per backend named, as docs/hooks.md tells operators to: haproxy
// refuses a configuration without a listener, and a frontend naming a
// backend the file lacks fails the check.
func checkHAProxy(t *testing.T, file string, backends ...string) {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Log("haproxy not installed: file not validated")
		return
	}
	main := "defaults\n    mode tcp\n    timeout client 1h\n    timeout connect 2s\n    timeout server 1h\n"
	main += "frontend probe\n    bind 127.0.0.1:16379\n    tcp-request connection reject\n"
	for i, b := range backends {
		main += fmt.Sprintf("frontend f%d\n    bind 127.0.0.1:%d\n    default_backend %s\n", i, 16380+i, b)
	}
	mainFile := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(mainFile, []byte(main), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-c", "-f", mainFile, "-f", file).CombinedOutput()
	if err != nil {
		t.Fatalf("haproxy -c -f %s -f %s: %v\n%s", mainFile, file, err, out)
	}
}

func TestBackendNames(t *testing.T) {
	// A sharded "a" and a single-shard "a-0" never share a backend.
	if BackendName("a", 2, 0, "write") == BackendName("a-0", 1, 0, "write") {
		t.Fatal("backend names collide")
	}
	if got := BackendName("cache", 1, 0, "read"); got != "cache-read" {
		t.Fatalf("got %s", got)
	}
}

func TestWriteAtomic(t *testing.T) {
	p := filepath.Join(t.TempDir(), "marina.cfg")
	for i, c := range []struct {
		data    string
		changed bool
	}{{"one\n", true}, {"one\n", false}, {"two\n", true}} {
		changed, err := writeAtomic(p, []byte(c.data))
		if err != nil || changed != c.changed {
			t.Fatalf("write %d: changed %v err %v, want changed %v", i, changed, err, c.changed)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v", fi.Mode())
		}
		if b, _ := os.ReadFile(p); string(b) != c.data {
			t.Fatalf("content %q", b)
		}
	}
	// No temporary file left behind.
	es, _ := os.ReadDir(filepath.Dir(p))
	if len(es) != 1 {
		t.Fatalf("dir holds %d files", len(es))
	}
	if _, err := writeAtomic(filepath.Join(p, "sub"), []byte("x")); err == nil {
		t.Fatal("write under a file succeeded")
	}
}

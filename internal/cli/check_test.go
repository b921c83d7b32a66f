package cli

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marina-redis/marina/internal/doctor"
)

func run(args ...string) (int, string, string) {
	var out, errOut strings.Builder
	code := Main(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// Every way `marina check` can fail before asking a cluster is UNKNOWN
// (3) with one status line on stdout, nothing on stderr.
func TestCheckUnknown(t *testing.T) {
	// A port nothing listens on: taken and released.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	t.Setenv("MARINA_TOKEN", "")
	t.Setenv("MARINA_ADDR", "")
	for _, c := range []struct {
		args []string
		line string
	}{
		{[]string{"check"}, "MARINA UNKNOWN - no API token"},
		{[]string{"check", "--token", "x", "--addr", dead}, "MARINA UNKNOWN - cannot reach https://" + dead},
		{[]string{"check", "--bogus"}, "MARINA UNKNOWN - unknown flag: --bogus"},
		{[]string{"check", "extra"}, `MARINA UNKNOWN - unknown command "extra" for "marina check"`},
		{[]string{"check", "-o", "yaml"}, `MARINA UNKNOWN - -o "yaml": use table or json`},
		{[]string{"check", "--token", "x", "--lag", "lots"}, `MARINA UNKNOWN - --lag: invalid size "lots"`},
		{[]string{"check", "--token", "x", "--memory-percent", "120"}, "MARINA UNKNOWN - --memory-percent 120: must be 0..100"},
		{[]string{"check", "--token", "x", "--timeout", "0s"}, "MARINA UNKNOWN - --timeout 0s: must be positive"},
	} {
		code, out, errOut := run(c.args...)
		if code != 3 || !strings.HasPrefix(out, c.line) || strings.Count(out, "\n") != 1 || errOut != "" {
			t.Errorf("%v: code %d stdout %q stderr %q, want 3 and %q", c.args, code, out, errOut, c.line)
		}
	}
	// Other commands keep their usual failure: stderr, exit 1.
	if code, out, errOut := run("status", "--bogus"); code != 1 || out != "" || !strings.HasPrefix(errOut, "marina: unknown flag") {
		t.Errorf("status --bogus: %d %q %q", code, out, errOut)
	}
}

func writeRoot(t *testing.T, overcommit string) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		doctor.FileOvercommit: overcommit + "\n",
		doctor.FileTHP:        "always madvise [never]\n",
		doctor.FileLimits:     "Limit  Soft Limit  Hard Limit  Units\nMax open files            65536                65536                files\n",
		doctor.FileFileMax:    "9223372036854775807\n",
		doctor.FileSomaxconn:  "4096\n",
	}
	for rel, text := range files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestDoctorExitCodes(t *testing.T) {
	good := writeRoot(t, "1")
	code, out, errOut := run("doctor", "--root", good)
	if code != 0 || errOut != "" || !strings.HasPrefix(out, "CHECK") || strings.Contains(out, "WARN") || strings.Count(out, "\n") != 7 {
		t.Fatalf("good host: %d %q %q", code, out, errOut)
	}
	bad := writeRoot(t, "0")
	code, out, errOut = run("doctor", "--root", bad, "-o", "json")
	var rep doctor.Report
	if code != 1 || errOut != "" || json.Unmarshal([]byte(out), &rep) != nil || len(rep.Checks) != 6 {
		t.Fatalf("bad host: %d %q %q", code, out, errOut)
	}
	if c := rep.Checks[0]; c.Name != doctor.NameOvercommit || c.Status != doctor.Warn || !strings.Contains(c.Fix, "vm.overcommit_memory=1") {
		t.Fatalf("overcommit: %+v", c)
	}
	code, out, _ = run("doctor", "--root", good, "--redis-server", "/nonexistent/redis-server")
	if code != 1 || !strings.Contains(strings.Join(strings.Fields(out), " "), "redis-server WARN not found") {
		t.Fatalf("no redis: %d %q", code, out)
	}
	// The endpoints' clients raise the open-files target past the host's.
	code, out, _ = run("doctor", "--root", good, "--proxy-endpoints", "10")
	if code != 1 || !strings.Contains(out, "LimitNOFILE=101024") {
		t.Fatalf("proxy endpoints: %d %q", code, out)
	}
}

package cli

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/marina-redis/marina/internal/api"
)

// Without a leader the CLI neither hangs nor goes quiet: a change it may
// retry says "no leader, retrying" once and ends with the API's one-line
// error and a non-zero exit; a read answered from a node's own state is
// printed with a warning on stderr.
func TestNoLeaderMessages(t *testing.T) {
	var changes atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Method != http.MethodGet {
			changes.Add(1)
			w.Header().Set("X-Marina-Retry", "safe")
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: "no leader: the cluster has no quorum reachable from node n1 right now; nothing was changed, retry"})
			return
		}
		w.Header().Set("X-Marina-Local-Read", "no leader reachable (no leader known): node n1's copy of the state, applied index 42")
		w.Header().Set("X-Marina-Stale-Ms", "3200")
		_ = json.NewEncoder(w).Encode(api.DB{Name: "orders", Status: api.DBReady, Password: "pw-12345678"})
	}))
	defer srv.Close()
	base := []string{"--addr", srv.URL, "--token", "tok", "--retry-for", "700ms"}

	var out, errOut bytes.Buffer
	code := Main(append(base, "db", "update", "orders", "--memory", "64MiB"), &out, &errOut)
	lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
	if code == 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "marina: no leader, retrying") ||
		!strings.HasPrefix(lines[1], "marina: no leader: the cluster has no quorum") || changes.Load() < 2 {
		t.Errorf("change without a leader: exit %d after %d tries, stderr %q", code, changes.Load(), errOut.String())
	}

	out.Reset()
	errOut.Reset()
	code = Main(append(base, "db", "show", "orders"), &out, &errOut)
	if code != 0 || !strings.Contains(out.String(), "orders") ||
		!strings.Contains(errOut.String(), "warning: no leader reachable") || !strings.Contains(errOut.String(), "3.2s ago") {
		t.Errorf("read without a leader: exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
}

package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/stats"
)

// LocalStats is what a node answers at /v1/local/stats: its own instances.
type LocalStats struct {
	Node     string         `json:"node"`
	Interval float64        `json:"interval_seconds"`
	Series   []stats.Series `json:"series"`
}

// statsRange reads from/to (unix seconds or RFC 3339; default the last hour).
func statsRange(r *http.Request) (time.Time, time.Time, error) {
	now := time.Now()
	to, err := stats.ParseTime(r.URL.Query().Get("to"), now)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("to: %q is neither unix seconds nor RFC 3339", r.URL.Query().Get("to"))
	}
	from, err := stats.ParseTime(r.URL.Query().Get("from"), to.Add(-time.Hour))
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("from: %q is neither unix seconds nor RFC 3339", r.URL.Query().Get("from"))
	}
	if from.After(to) {
		return time.Time{}, time.Time{}, fmt.Errorf("from (%s) is after to (%s)", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	return from, to, nil
}

func (s *Server) localStats(w http.ResponseWriter, r *http.Request) {
	from, to, err := statsRange(r)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "%v", err)
		return
	}
	out := LocalStats{Node: s.NodeID, Series: []stats.Series{}}
	if s.Stats != nil {
		out.Interval = s.Stats.IntervalSeconds()
		out.Series = s.Stats.Local(r.URL.Query().Get("db"), from, to)
	}
	writeJSON(w, http.StatusOK, out)
}

// gather asks each node for its instances' series (this node directly,
// the others over HTTP with the caller's token), in parallel.
func (s *Server) gather(r *http.Request, nodes []state.Node, db string, from, to time.Time) ([]stats.Series, float64, []string) {
	var (
		mu       sync.Mutex
		all      []stats.Series
		missing  []string
		interval float64
		wg       sync.WaitGroup
	)
	q := url.Values{"from": {from.UTC().Format(time.RFC3339)}, "to": {to.UTC().Format(time.RFC3339)}}
	if db != "" {
		q.Set("db", db)
	}
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ls LocalStats
			var err error
			if n.ID == s.NodeID && s.Stats != nil {
				ls = LocalStats{Node: n.ID, Interval: s.Stats.IntervalSeconds(), Series: s.Stats.Local(db, from, to)}
			} else {
				ls, err = fetchLocalStats(r.Context(), n.HTTPAddr, r.Header.Get("Authorization"), q)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				missing = append(missing, n.ID)
				return
			}
			all = append(all, ls.Series...)
			interval = max(interval, ls.Interval)
		}()
	}
	wg.Wait()
	sort.Strings(missing)
	return all, interval, missing
}

func fetchLocalStats(ctx context.Context, addr, auth string, q url.Values) (LocalStats, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/local/stats?"+q.Encode(), nil)
	if err != nil {
		return LocalStats{}, err
	}
	req.Header.Set("Authorization", auth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return LocalStats{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return LocalStats{}, fmt.Errorf("%s: HTTP %d", addr, resp.StatusCode)
	}
	var ls LocalStats
	err = json.NewDecoder(resp.Body).Decode(&ls)
	return ls, err
}

func (s *Server) dbStats(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	st := s.FSM.State()
	db, ok := st.DBs[name]
	if !ok {
		writeErr(w, http.StatusNotFound, "no database %q", name)
		return
	}
	from, to, err := statsRange(r)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "%v", err)
		return
	}
	// Only the nodes that hold one of its instances have figures for it.
	holds := map[string]bool{}
	for _, sh := range db.Shards {
		for _, in := range sh.Instances {
			holds[in.Node] = true
		}
	}
	var nodes []state.Node
	for _, id := range st.NodeIDs() {
		if holds[id] {
			nodes = append(nodes, *st.Nodes[id])
		}
	}
	series, interval, missing := s.gather(r, nodes, name, from, to)
	agg := stats.Aggregate{DB: name, Interval: interval, Missing: missing}
	agg.Points, agg.Instances = stats.Merge(series, time.Duration(interval*float64(time.Second)), true)
	if agg.Instances == nil {
		agg.Instances = []stats.InstanceView{}
	}
	writeJSON(w, http.StatusOK, agg)
}

func (s *Server) nodeStats(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	n, ok := s.FSM.State().Nodes[id]
	if !ok {
		writeErr(w, http.StatusNotFound, "no node %q", id)
		return
	}
	from, to, err := statsRange(r)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "%v", err)
		return
	}
	series, interval, missing := s.gather(r, []state.Node{*n}, "", from, to)
	if len(missing) > 0 {
		writeErr(w, http.StatusBadGateway, "node %s did not answer for its stats", id)
		return
	}
	agg := stats.Aggregate{Node: id, Interval: interval}
	agg.Points, agg.Instances = stats.Merge(series, time.Duration(interval*float64(time.Second)), false)
	if agg.Instances == nil {
		agg.Instances = []stats.InstanceView{}
	}
	writeJSON(w, http.StatusOK, agg)
}

package api

import (
	"context"
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
// Interval is the resolution of the points: the collection interval, or
// stats.CoarseStep for ranges older than the fine history.
type LocalStats struct {
	Node     string         `json:"node"`
	Interval float64        `json:"interval_seconds"`
	Series   []stats.Series `json:"series"`
}

// statsRange reads from/to (unix seconds or RFC 3339; default the last hour)
// and the resolution (res).
func statsRange(r *http.Request) (from, to time.Time, coarse bool, err error) {
	q := r.URL.Query()
	if to, err = stats.ParseTime(q.Get("to"), time.Now()); err != nil {
		return from, to, false, fmt.Errorf("to: %q is neither unix seconds nor RFC 3339", q.Get("to"))
	}
	if from, err = stats.ParseTime(q.Get("from"), to.Add(-time.Hour)); err != nil {
		return from, to, false, fmt.Errorf("from: %q is neither unix seconds nor RFC 3339", q.Get("from"))
	}
	if from.After(to) {
		return from, to, false, fmt.Errorf("from (%s) is after to (%s)", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	coarse, err = resolution(r, from)
	return from, to, coarse, err
}

// resolution reads res=fine|coarse; by default coarse when the range
// reaches further back than the fine history. All nodes of one query
// answer at the same resolution, so their points merge.
func resolution(r *http.Request, from time.Time) (bool, error) {
	switch res := r.URL.Query().Get("res"); res {
	case "":
		return stats.Coarse(from, time.Now()), nil
	case "fine":
		return false, nil
	case "coarse":
		return true, nil
	default:
		return false, fmt.Errorf("res %q: use fine or coarse", res)
	}
}

func (s *Server) local(db string, from, to time.Time, coarse bool) LocalStats {
	out := LocalStats{Node: s.NodeID, Series: []stats.Series{}}
	if s.Stats != nil {
		out.Interval = s.Stats.IntervalSeconds()
		if coarse {
			out.Interval = stats.CoarseStep.Seconds()
		}
		out.Series = s.Stats.Local(db, from, to, coarse)
	}
	return out
}

func (s *Server) localStats(w http.ResponseWriter, r *http.Request) {
	from, to, coarse, err := statsRange(r)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, s.local(r.URL.Query().Get("db"), from, to, coarse))
}

// gather asks each node for its instances' series (this node directly,
// the others over HTTP with the caller's token), in parallel. Nodes that do
// not answer are listed with the reason.
func (s *Server) gather(r *http.Request, nodes []state.Node, db string, from, to time.Time, coarse bool) ([]stats.Series, float64, map[string]error) {
	var (
		mu       sync.Mutex
		all      []stats.Series
		missing  = map[string]error{}
		interval float64
		wg       sync.WaitGroup
	)
	res := "fine"
	if coarse {
		res = "coarse"
	}
	q := url.Values{"from": {from.UTC().Format(time.RFC3339Nano)}, "to": {to.UTC().Format(time.RFC3339Nano)}, "res": {res}}
	if db != "" {
		q.Set("db", db)
	}
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ls LocalStats
			var err error
			if n.ID == s.NodeID {
				ls = s.local(db, from, to, coarse)
			} else {
				ls, err = s.fetchLocalStats(r.Context(), n.HTTPAddr, r.Header.Get("Authorization"), q)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				missing[n.ID] = err
				if s.Log != nil {
					s.Log.Warn("stats: node did not answer", "node", n.ID, "err", err)
				}
				return
			}
			all = append(all, ls.Series...)
			interval = max(interval, ls.Interval)
		}()
	}
	wg.Wait()
	return all, interval, missing
}

func missingIDs(m map[string]error) []string {
	var out []string
	for id := range m {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

func (s *Server) fetchLocalStats(ctx context.Context, addr, auth string, q url.Values) (LocalStats, error) {
	var ls LocalStats
	err := s.fetchLocal(ctx, addr, "/v1/local/stats?"+q.Encode(), auth, 2*time.Second, 64<<20, &ls)
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
	from, to, coarse, err := statsRange(r)
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
	series, interval, missing := s.gather(r, nodes, name, from, to, coarse)
	agg := stats.Aggregate{DB: name, Interval: interval, Missing: missingIDs(missing)}
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
	from, to, coarse, err := statsRange(r)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "%v", err)
		return
	}
	series, interval, missing := s.gather(r, []state.Node{*n}, "", from, to, coarse)
	if err := missing[id]; err != nil {
		writeErr(w, http.StatusBadGateway, "node %s did not answer for its stats: %v", id, err)
		return
	}
	agg := stats.Aggregate{Node: id, Interval: interval}
	agg.Points, agg.Instances = stats.Merge(series, time.Duration(interval*float64(time.Second)), false)
	if agg.Instances == nil {
		agg.Instances = []stats.InstanceView{}
	}
	writeJSON(w, http.StatusOK, agg)
}

// DBLatest is every database's latest complete point, for lists.
type DBLatest struct {
	Interval float64                `json:"interval_seconds"`
	DBs      map[string]stats.Point `json:"dbs"`
	Missing  []string               `json:"missing_nodes,omitempty"`
}

// latestStats answers GET /v1/stats/dbs: one fan-out for all databases'
// current figures, instead of one request per database.
func (s *Server) latestStats(w http.ResponseWriter, r *http.Request) {
	st := s.FSM.State()
	now := time.Now()
	var nodes []state.Node
	for _, id := range st.NodeIDs() {
		nodes = append(nodes, *st.Nodes[id])
	}
	series, interval, missing := s.gather(r, nodes, "", now.Add(-time.Minute), now, false)
	byDB := map[string][]stats.Series{}
	for _, sr := range series {
		byDB[sr.DB] = append(byDB[sr.DB], sr)
	}
	out := DBLatest{Interval: interval, DBs: map[string]stats.Point{}, Missing: missingIDs(missing)}
	for name, ss := range byDB {
		if _, ok := st.DBs[name]; !ok {
			continue
		}
		points, _ := stats.Merge(ss, time.Duration(interval*float64(time.Second)), true)
		// A bucket ending after now is still filling: the one before is whole.
		for i := len(points) - 1; i >= 0; i-- {
			if !points[i].T.After(now) {
				out.DBs[name] = points[i]
				break
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
}

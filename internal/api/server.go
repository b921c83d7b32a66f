// Package api serves Marina's JSON HTTP API under /v1 on every node. Writes
// and reads are forwarded to the Raft leader, which holds the placement lock
// and the agents' reports; if no leader is reachable, reads are answered from
// the local copy of the state.
package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"

	"github.com/marina-redis/marina/internal/cluster"
	"github.com/marina-redis/marina/internal/controller"
	"github.com/marina-redis/marina/internal/doctor"
	"github.com/marina-redis/marina/internal/pki"
	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/stats"
)

// Headers used between nodes.
const (
	headerForwarded = "X-Marina-Forwarded"
	headerIndex     = "X-Marina-Index"
)

// maxBody bounds request bodies.
const maxBody = 1 << 20

// HashToken returns the hash stored in the state for a token.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// Server is the HTTP API of one node.
type Server struct {
	NodeID string
	FSM    *state.FSM
	Raft   *cluster.Cluster
	Ctl    *controller.Controller
	Log    *slog.Logger
	// Proxies returns this node's proxy counters (node-local, not forwarded).
	Proxies func() any
	// Doctor checks this host's settings for redis (node-local).
	Doctor func(context.Context) doctor.Report
	// Stats is this node's INFO collector; Metrics serves /metrics.
	Stats   *stats.Collector
	Metrics http.Handler
	// Console serves the web console on every path outside /v1/ and the
	// other routes (static files, no token: its data comes from /v1).
	Console http.Handler
	// Identity is the node's certificate: node-to-node requests (forwards,
	// stats and doctor fetches) go over mutual TLS with it.
	Identity *pki.Identity
	fwd      *forwarder
}

// Handler returns the API's routes behind authentication and leader routing.
func (s *Server) Handler() http.Handler {
	s.fwd = newForwarder(s.Identity, s.nodeAt)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	v1 := http.NewServeMux()
	v1.HandleFunc("GET /v1/status", s.status)
	v1.HandleFunc("GET /v1/nodes", s.nodes)
	v1.HandleFunc("GET /v1/dbs", s.listDBs)
	v1.HandleFunc("POST /v1/dbs", s.createDB)
	v1.HandleFunc("GET /v1/dbs/{name}", s.getDB)
	v1.HandleFunc("PATCH /v1/dbs/{name}", s.updateDB)
	v1.HandleFunc("DELETE /v1/dbs/{name}", s.deleteDB)
	v1.HandleFunc("GET /v1/events", s.events)
	v1.HandleFunc("GET /v1/local/proxies", func(w http.ResponseWriter, r *http.Request) {
		if s.Proxies == nil {
			writeJSON(w, http.StatusOK, []any{})
			return
		}
		writeJSON(w, http.StatusOK, s.Proxies())
	})
	v1.HandleFunc("GET /v1/local/stats", s.localStats)
	v1.HandleFunc("GET /v1/dbs/{name}/stats", s.dbStats)
	v1.HandleFunc("GET /v1/nodes/{id}/stats", s.nodeStats)
	v1.HandleFunc("GET /v1/stats/dbs", s.latestStats)
	v1.HandleFunc("GET /v1/local/doctor", s.localDoctor)
	v1.HandleFunc("GET /v1/nodes/{id}/doctor", s.nodeDoctor)
	v1.HandleFunc("POST /v1/dbs/{name}/failover", s.switchover)
	v1.HandleFunc("POST /v1/nodes/{id}/drain", s.drain(true))
	v1.HandleFunc("POST /v1/nodes/{id}/undrain", s.drain(false))
	v1.HandleFunc("POST /v1/nodes/{id}/lead", s.lead)
	v1.HandleFunc("PUT /v1/zones/{zone}", s.zone)
	v1.HandleFunc("POST /v1/internal/join", s.join)
	v1.HandleFunc("POST /v1/internal/cert", s.issueCert)
	v1.HandleFunc("GET /v1/ca", s.caStatus)
	v1.HandleFunc("POST /v1/ca/rotate", s.rotateCA)
	v1.HandleFunc("POST /v1/ca/finish", s.finishCA)
	v1.HandleFunc("POST /v1/internal/heartbeat", s.heartbeat)
	v1.HandleFunc("POST /v1/internal/event", s.recordEvent) // a node's own events: failed hooks
	v1.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, http.StatusNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path)
	})
	mux.Handle("/v1/", s.auth(s.toLeader(v1)))
	if s.Metrics != nil {
		// Behind the token too: Prometheus sends it with
		// `authorization: {credentials: TOKEN}` in the scrape config.
		mux.Handle("GET /metrics", s.auth(s.Metrics))
	}
	// This process's Go profiles, for finding where a node's CPU goes
	// (docs/operations.md); behind the token like everything else.
	mux.Handle("GET /debug/pprof/", s.auth(http.HandlerFunc(pprof.Index)))
	mux.Handle("GET /debug/pprof/profile", s.auth(http.HandlerFunc(pprof.Profile)))
	if s.Console != nil {
		mux.Handle("/", s.Console)
	}
	return mux
}

func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want := s.FSM.State().TokenHash
		if want == "" {
			writeErr(w, http.StatusServiceUnavailable, "node %s has not joined a cluster yet", s.NodeID)
			return
		}
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(HashToken(tok)), []byte(want)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="marina"`)
			writeErr(w, http.StatusUnauthorized, "missing or wrong API token (use --token or MARINA_TOKEN)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// leaderHTTP returns the leader's HTTP address, or "" when unknown.
func (s *Server) leaderHTTP() string {
	id := s.Raft.LeaderID()
	if id == "" {
		return ""
	}
	if n, ok := s.FSM.State().Nodes[id]; ok {
		return n.HTTPAddr
	}
	return ""
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeErr(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, ErrorBody{Error: fmt.Sprintf(format, args...)})
}

func writeCtlErr(w http.ResponseWriter, err error) {
	var ce *controller.Error
	if errors.As(err, &ce) {
		code := map[controller.Kind]int{
			controller.Invalid: http.StatusBadRequest, controller.NotFound: http.StatusNotFound,
			controller.Conflict: http.StatusConflict, controller.Unavailable: http.StatusServiceUnavailable,
			controller.NotLeader: http.StatusServiceUnavailable,
		}[ce.Kind]
		if ce.Kind == controller.NotLeader {
			w.Header().Set(headerRetry, "safe")
		}
		writeErr(w, code, "%s", ce.Msg)
		return
	}
	writeErr(w, http.StatusInternalServerError, "%v", err)
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			writeErr(w, http.StatusBadRequest, "request body: empty, expected JSON")
		} else {
			writeErr(w, http.StatusBadRequest, "request body: %v", err)
		}
		return false
	}
	return true
}

func setIndex(w http.ResponseWriter, idx uint64) {
	w.Header().Set(headerIndex, strconv.FormatUint(idx, 10))
}

// observations returns the agents' reports when this node leads (nil else).
func (s *Server) observations() map[string]controller.Report {
	if !s.Raft.IsLeader() {
		return nil
	}
	return s.Ctl.Reports()
}

func (s *Server) createDB(w http.ResponseWriter, r *http.Request) {
	var req CreateDBRequest
	if !decode(w, r, &req) {
		return
	}
	spec := state.Spec{Name: req.Name, Memory: int64(req.Memory), Shards: req.Shards, Replicas: req.Replicas,
		Persistence: req.Persistence, Eviction: req.Eviction, Password: req.Password, Owner: req.Owner, Labels: req.Labels,
		Durability: req.Durability, ReadFrom: req.ReadFrom}
	db, idx, err := s.Ctl.CreateDB(r.Context(), spec)
	if err != nil {
		writeCtlErr(w, err)
		return
	}
	setIndex(w, idx)
	writeJSON(w, http.StatusCreated, dbView(s.FSM.State(), db, s.observations()))
}

func (s *Server) updateDB(w http.ResponseWriter, r *http.Request) {
	var req UpdateDBRequest
	if !decode(w, r, &req) {
		return
	}
	u := controller.Update{Shards: req.Shards, Replicas: req.Replicas, Persistence: req.Persistence,
		Eviction: req.Eviction, Password: req.Password, Owner: req.Owner, Labels: req.Labels, Durability: req.Durability, ReadFrom: req.ReadFrom}
	if req.Memory != nil {
		m := int64(*req.Memory)
		u.Memory = &m
	}
	db, idx, err := s.Ctl.UpdateDB(r.Context(), r.PathValue("name"), u)
	if err != nil {
		writeCtlErr(w, err)
		return
	}
	setIndex(w, idx)
	writeJSON(w, http.StatusOK, dbView(s.FSM.State(), db, s.observations()))
}

func (s *Server) deleteDB(w http.ResponseWriter, r *http.Request) {
	idx, err := s.Ctl.DeleteDB(r.Context(), r.PathValue("name"))
	if err != nil {
		writeCtlErr(w, err)
		return
	}
	setIndex(w, idx)
	writeJSON(w, http.StatusOK, map[string]string{"deleted": r.PathValue("name")})
}

func (s *Server) getDB(w http.ResponseWriter, r *http.Request) {
	st := s.FSM.State()
	db, ok := st.DBs[r.PathValue("name")]
	if !ok {
		writeErr(w, http.StatusNotFound, "database %s not found", r.PathValue("name"))
		return
	}
	writeJSON(w, http.StatusOK, dbView(st, db, s.observations()))
}

func (s *Server) listDBs(w http.ResponseWriter, r *http.Request) {
	st := s.FSM.State()
	obs := s.observations()
	out := []DB{}
	for _, name := range st.DBNames() {
		out = append(out, dbView(st, st.DBs[name], obs))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) nodes(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.nodeViews(s.FSM.State()))
}

func (s *Server) nodeViews(st *state.State) []Node {
	members, _ := s.Raft.Members()
	return nodeViews(st, s.observations(), members, s.Raft.LeaderID())
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st := s.FSM.State()
	obs := s.observations()
	out := Status{Leader: s.Raft.LeaderID(), LeaderAddr: s.leaderHTTP(), ServedBy: s.NodeID, AppliedIndex: s.FSM.Index(),
		Nodes: s.nodeViews(st), DBs: len(st.DBs)}
	for _, n := range out.Nodes {
		if n.Status == state.NodeUp {
			out.NodesUp++
		}
		out.Memory += n.Memory
		out.Allocated += n.Allocated
		out.Instances += n.Instances
		out.InstancesRunning += n.Running
	}
	for _, name := range st.DBNames() {
		if dbView(st, st.DBs[name], obs).Status == DBReady {
			out.DBsReady++
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) join(w http.ResponseWriter, r *http.Request) {
	var n state.Node
	if !decode(w, r, &n) {
		return
	}
	if err := s.Ctl.Join(r.Context(), n); err != nil {
		writeCtlErr(w, err)
		return
	}
	setIndex(w, s.FSM.Index())
	writeJSON(w, http.StatusOK, map[string]string{"joined": n.ID})
}

func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request) {
	var rep controller.Report
	if !decode(w, r, &rep) {
		return
	}
	// A heartbeat keeps a node alive and its masters writable: only the
	// node itself, proven by its certificate, may send it.
	if peer := s.peerNode(r); peer != rep.Node.ID {
		writeErr(w, http.StatusForbidden, "a heartbeat for node %s must come with that node's certificate (got %q)", rep.Node.ID, peer)
		return
	}
	ack, err := s.Ctl.Heartbeat(r.Context(), rep)
	if err != nil {
		writeCtlErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ack)
}

// events lists recent events, oldest first; ?db= filters, ?since= skips ids.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	db := r.URL.Query().Get("db")
	var since uint64
	if v := r.URL.Query().Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeErr(w, http.StatusBadRequest, "since: %q is not an event id", v)
			return
		}
		since = n
	}
	out := s.FSM.Events().Since(since, db)
	if out == nil {
		out = []state.Event{}
	}
	writeJSON(w, http.StatusOK, out)
}

// SwitchoverRequest is the body of POST /v1/dbs/NAME/failover.
type SwitchoverRequest struct {
	Shard *int `json:"shard,omitempty"` // all shards when absent
	// Force ends a blocked automatic failover with the best reachable
	// replica even if its link has been down too long.
	Force bool `json:"force,omitempty"`
}

func (s *Server) switchover(w http.ResponseWriter, r *http.Request) {
	var req SwitchoverRequest
	if r.ContentLength != 0 && !decode(w, r, &req) {
		return
	}
	shard := -1
	if req.Shard != nil {
		if *req.Shard < 0 {
			writeErr(w, http.StatusBadRequest, "shard must be 0 or more")
			return
		}
		shard = *req.Shard
	}
	res, err := s.Ctl.Switchover(r.Context(), r.PathValue("name"), shard, req.Force)
	if err != nil {
		writeCtlErr(w, err)
		return
	}
	setIndex(w, s.FSM.Index())
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) drain(on bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := s.Ctl.SetDraining(r.Context(), r.PathValue("id"), on); err != nil {
			writeCtlErr(w, err)
			return
		}
		setIndex(w, s.FSM.Index())
		writeJSON(w, http.StatusOK, map[string]any{"node": r.PathValue("id"), "draining": on})
	}
}

// ZoneRequest is the body of PUT /v1/zones/ZONE.
type ZoneRequest struct {
	ReplicaPriority int `json:"replica_priority"`
}

func (s *Server) zone(w http.ResponseWriter, r *http.Request) {
	var req ZoneRequest
	if !decode(w, r, &req) {
		return
	}
	if err := s.Ctl.SetZonePriority(r.Context(), r.PathValue("zone"), req.ReplicaPriority); err != nil {
		writeCtlErr(w, err)
		return
	}
	setIndex(w, s.FSM.Index())
	writeJSON(w, http.StatusOK, map[string]any{"zone": r.PathValue("zone"), "replica_priority": req.ReplicaPriority})
}

// lead hands the Raft leadership to a node; it answers once that node leads.
func (s *Server) lead(w http.ResponseWriter, r *http.Request) {
	if err := s.Ctl.TransferLeadership(r.Context(), r.PathValue("id")); err != nil {
		writeCtlErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"leader": r.PathValue("id")})
}

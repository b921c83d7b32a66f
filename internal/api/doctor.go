package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/marina-redis/marina/internal/doctor"
	"github.com/marina-redis/marina/internal/state"
)

// doctorTimeout bounds asking another node for its host report.
const doctorTimeout = 5 * time.Second

// localDoctor answers GET /v1/local/doctor: this host's settings.
func (s *Server) localDoctor(w http.ResponseWriter, r *http.Request) {
	rep := doctor.Report{Checks: []doctor.Check{}}
	if s.Doctor != nil {
		rep = s.Doctor(r.Context())
	}
	rep.Node = s.NodeID
	writeJSON(w, http.StatusOK, rep)
}

// nodeDoctor answers GET /v1/nodes/{id}/doctor from any node: its own
// report directly, another node's fetched from it with the caller's token.
func (s *Server) nodeDoctor(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if id == s.NodeID {
		s.localDoctor(w, r)
		return
	}
	n, ok := s.FSM.State().Nodes[id]
	if !ok {
		writeErr(w, http.StatusNotFound, "node %s not found", id)
		return
	}
	rep, err := s.fetchDoctor(r.Context(), n.HTTPAddr, r.Header.Get("Authorization"))
	if err != nil {
		code := http.StatusBadGateway
		if n.Status == state.NodeDown {
			code = http.StatusServiceUnavailable
		}
		writeErr(w, code, "node %s (%s, %s) did not answer for its doctor report: %v", id, n.HTTPAddr, n.Status, err)
		return
	}
	if rep.Node != id {
		writeErr(w, http.StatusBadGateway, "%s answered as node %q, not %s", n.HTTPAddr, rep.Node, id)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (s *Server) fetchDoctor(ctx context.Context, addr, auth string) (doctor.Report, error) {
	var rep doctor.Report
	if err := s.fetchLocal(ctx, addr, "/v1/local/doctor", auth, doctorTimeout, maxBody, &rep); err != nil {
		return doctor.Report{}, err
	}
	if rep.Checks == nil {
		rep.Checks = []doctor.Check{}
	}
	return rep, nil
}

// fetchLocal GETs another node's node-local endpoint (path with its query)
// with the caller's token and decodes its JSON answer into out.
func (s *Server) fetchLocal(ctx context.Context, addr, path, auth string, timeout time.Duration, limit int64, out any) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", auth)
	resp, err := s.fwd.reads.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var eb ErrorBody
		if json.Unmarshal(body, &eb) == nil && eb.Error != "" {
			return fmt.Errorf("HTTP %d: %s", resp.StatusCode, eb.Error)
		}
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decode: %v", err)
	}
	return nil
}

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
	rep, err := fetchDoctor(r.Context(), n.HTTPAddr, r.Header.Get("Authorization"))
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

func fetchDoctor(ctx context.Context, addr, auth string) (doctor.Report, error) {
	ctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/local/doctor", nil)
	if err != nil {
		return doctor.Report{}, err
	}
	req.Header.Set("Authorization", auth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return doctor.Report{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return doctor.Report{}, err
	}
	if resp.StatusCode != http.StatusOK {
		var eb ErrorBody
		if json.Unmarshal(body, &eb) == nil && eb.Error != "" {
			return doctor.Report{}, fmt.Errorf("HTTP %d: %s", resp.StatusCode, eb.Error)
		}
		return doctor.Report{}, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	var rep doctor.Report
	if err := json.Unmarshal(body, &rep); err != nil {
		return doctor.Report{}, fmt.Errorf("decode: %v", err)
	}
	if rep.Checks == nil {
		rep.Checks = []doctor.Check{}
	}
	return rep, nil
}

package api

import (
	"net/http"

	"github.com/marina-redis/marina/internal/state"
)

// EventRequest is the body of POST /v1/internal/event: a node reports one
// of its own events (a hook that failed), which the leader writes to the log.
type EventRequest struct {
	Type   string `json:"type"`
	DB     string `json:"db,omitempty"`
	Shard  int    `json:"shard,omitempty"`
	Node   string `json:"node"`
	Reason string `json:"reason"`
}

func (s *Server) recordEvent(w http.ResponseWriter, r *http.Request) {
	var req EventRequest
	if !decode(w, r, &req) {
		return
	}
	idx, err := s.Ctl.RecordEvent(r.Context(), state.Event{Type: req.Type, DB: req.DB, Shard: req.Shard, Node: req.Node, Reason: req.Reason})
	if err != nil {
		writeCtlErr(w, err)
		return
	}
	setIndex(w, idx)
	w.WriteHeader(http.StatusNoContent)
}

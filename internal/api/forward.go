package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/marina-redis/marina/internal/pki"
)

// Headers of a forwarded or locally answered request.
const (
	// headerRetry "safe" on a 503 says nothing was applied: the request may
	// be sent again as it is (the CLI does, saying "no leader, retrying").
	headerRetry = "X-Marina-Retry"
	// headerLocal on a read says it was answered from this node's copy of
	// the state because no leader could be reached; headerStaleMs says how
	// long ago this node last heard from a leader (-1: never since it started).
	headerLocal   = "X-Marina-Local-Read"
	headerStaleMs = "X-Marina-Stale-Ms"
)

// Forwarding budgets: how long a read waits for the leader before it is
// answered from the local state, how long a write waits for a leader to
// appear before it is refused (the client retries), how long a connection
// to the leader may take, and how long a forwarded write may run on it.
const (
	readBudget    = 1500 * time.Millisecond
	leaderWait    = 3 * time.Second
	dialTimeout   = 500 * time.Millisecond
	writeResponse = 30 * time.Second
)

// forwarder sends requests to the leader. Reads reuse connections; every
// write dials anew, so a write that could not be delivered is known as such
// (a dial that failed) and is retried with the next leader, while one that
// was delivered and not answered is reported as uncertain, never repeated.
type forwarder struct {
	reads  *http.Client
	writes *http.Client
}

// dialed marks, per request, that its connection was established.
type dialed struct{ ok atomic.Bool }

type dialedKey struct{}

func newForwarder(id *pki.Identity, nodeAt func(addr string) string) *forwarder {
	d := &net.Dialer{Timeout: dialTimeout, KeepAlive: 15 * time.Second}
	// Node to node: mutual TLS, the server checked as the node the state
	// has at that address.
	dialTLS := func(ctx context.Context, _, addr string) (net.Conn, error) {
		if id == nil {
			return nil, pki.ErrNoCertificate
		}
		conn, err := id.DialTLS(ctx, d, addr, nodeAt(addr))
		if err == nil {
			if m, ok := ctx.Value(dialedKey{}).(*dialed); ok {
				m.ok.Store(true)
			}
		}
		return conn, err
	}
	reads := &http.Transport{DialTLSContext: dialTLS, MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}
	writes := &http.Transport{DisableKeepAlives: true, ResponseHeaderTimeout: writeResponse, DialTLSContext: dialTLS}
	return &forwarder{reads: &http.Client{Transport: reads}, writes: &http.Client{Transport: writes}}
}

// toLeader routes /v1 requests: the leader (and /v1/local/) answers
// itself; a follower forwards to the leader. Reads that cannot reach a
// leader within readBudget are answered from the local state, marked as
// such; writes are retried to whichever node leads next until leaderWait
// has passed without one, then refused with a retry-safe 503.
func (s *Server) toLeader(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.Raft.IsLeader() || strings.HasPrefix(r.URL.Path, "/v1/local/") {
			next.ServeHTTP(w, r)
			return
		}
		if r.Header.Get(headerForwarded) != "" {
			// Forwarded by a node that took this one for the leader.
			if r.Method == http.MethodGet {
				s.serveLocal(w, r, next, "forwarded here, but this node does not lead")
				return
			}
			notLeader(w, "node %s is not the leader (any more); nothing was changed", s.NodeID)
			return
		}
		if r.Method == http.MethodGet {
			s.forwardRead(w, r, next)
			return
		}
		s.forwardWrite(w, r, next)
	})
}

// notLeader answers a retry-safe 503.
func notLeader(w http.ResponseWriter, format string, args ...any) {
	w.Header().Set(headerRetry, "safe")
	writeErr(w, http.StatusServiceUnavailable, format, args...)
}

func (s *Server) leaderTarget() (id, addr string) {
	id = s.Raft.LeaderID()
	if id == "" || id == s.NodeID {
		return id, ""
	}
	if n, ok := s.FSM.State().Nodes[id]; ok {
		return id, n.HTTPAddr
	}
	return id, ""
}

func (s *Server) forwardRead(w http.ResponseWriter, r *http.Request, next http.Handler) {
	ctx, cancel := context.WithTimeout(r.Context(), readBudget)
	defer cancel()
	tried := ""
	var last error
	for ctx.Err() == nil {
		id, addr := s.leaderTarget()
		if id == s.NodeID {
			next.ServeHTTP(w, r) // elected meanwhile
			return
		}
		if addr != "" && addr != tried {
			tried = addr
			resp, err := s.send(ctx, s.fwd.reads, r, addr, nil)
			if err == nil {
				defer resp.Body.Close()
				s.relay(w, r, resp)
				return
			}
			last = fmt.Errorf("leader %s: %v", id, err)
		}
		// No leader, or it did not answer: a new one may be elected soon.
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	why := "no leader known"
	if last != nil {
		why = last.Error()
	}
	if r.Context().Err() != nil {
		return
	}
	s.serveLocal(w, r, next, why)
}

// serveLocal answers a read from this node's state, saying so.
func (s *Server) serveLocal(w http.ResponseWriter, r *http.Request, next http.Handler, why string) {
	stale := int64(-1)
	if lc := s.Raft.Raft.LastContact(); !lc.IsZero() {
		stale = time.Since(lc).Milliseconds()
	}
	w.Header().Set(headerLocal, fmt.Sprintf("no leader reachable (%s): node %s's copy of the state, applied index %d", why, s.NodeID, s.FSM.Index()))
	w.Header().Set(headerStaleMs, strconv.FormatInt(stale, 10))
	next.ServeHTTP(w, r)
}

func (s *Server) forwardWrite(w http.ResponseWriter, r *http.Request, next http.Handler) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeErr(w, http.StatusBadRequest, "request body: %v", err)
		return
	}
	deadline := time.Now().Add(leaderWait)
	var last string
	for {
		id, addr := s.leaderTarget()
		switch {
		case id == s.NodeID:
			r.Body = io.NopCloser(bytes.NewReader(body))
			next.ServeHTTP(w, r) // elected meanwhile
			return
		case addr != "":
			mark := &dialed{}
			ctx := context.WithValue(r.Context(), dialedKey{}, mark)
			resp, err := s.send(ctx, s.fwd.writes, r, addr, body)
			if err == nil {
				if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get(headerRetry) == "safe" {
					resp.Body.Close()
					last = fmt.Sprintf("%s answered that it does not lead", id)
					break // leadership is moving: ask again who leads
				}
				defer resp.Body.Close()
				s.relay(w, r, resp)
				return
			}
			if mark.ok.Load() || r.Context().Err() != nil {
				writeErr(w, http.StatusServiceUnavailable, "leader %s did not answer (%v): the change may or may not have been applied; check before retrying", id, err)
				return
			}
			last = fmt.Sprintf("leader %s unreachable: %v", id, err)
		default:
			last = "no leader known"
		}
		if time.Now().After(deadline) {
			notLeader(w, "no leader: the cluster has no quorum reachable from node %s right now (%s); nothing was changed, retry", s.NodeID, last)
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// send forwards r (with body for writes) to the node at addr.
func (s *Server) send(ctx context.Context, c *http.Client, r *http.Request, addr string, body []byte) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	out, err := http.NewRequestWithContext(ctx, r.Method, "https://"+addr+r.URL.RequestURI(), rd)
	if err != nil {
		return nil, err
	}
	out.Header = r.Header.Clone()
	out.Header.Set(headerForwarded, s.NodeID)
	out.Header.Set(headerPeer, s.peerNode(r))
	resp, err := c.Do(out)
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		err = ue.Unwrap() // the cause, without the URL
	}
	return resp, err
}

// relay copies the leader's answer; a change's log index is waited for
// locally so a client sees its own write on the node it asked.
func (s *Server) relay(w http.ResponseWriter, r *http.Request, resp *http.Response) {
	if idx, err := strconv.ParseUint(resp.Header.Get(headerIndex), 10, 64); err == nil && idx > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		_ = s.FSM.WaitIndex(ctx, idx)
		cancel()
	}
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

package api

import (
	"net/http"
	"sort"
	"time"

	"github.com/marina-redis/marina/internal/pki"
	"github.com/marina-redis/marina/internal/state"
)

// headerPeer carries, on a forwarded request, the node whose certificate
// the first hop verified; it is believed only from another node.
const headerPeer = "X-Marina-Peer-Node"

// peerNode is the node that sent r, proven by a certificate: the client's
// own, or, on a request another node forwarded, the one it vouches for.
func (s *Server) peerNode(r *http.Request) string {
	hop := pki.PeerNode(r.TLS)
	if hop == "" {
		return ""
	}
	if r.Header.Get(headerForwarded) != "" {
		return r.Header.Get(headerPeer)
	}
	return hop
}

// nodeAt is the id of the node whose API is at addr ("" if none).
func (s *Server) nodeAt(addr string) string {
	for id, n := range s.FSM.State().Nodes {
		if n.HTTPAddr == addr {
			return id
		}
	}
	return ""
}

// CertRequest asks the cluster CA for a node certificate: at join, and at
// each renewal. Only the request's public key is used.
type CertRequest struct {
	Node state.Node `json:"node"`
	CSR  string     `json:"csr"`
}

// CertResponse is a signed node certificate and every CA to trust.
type CertResponse struct {
	Cert     string `json:"cert"`
	CABundle string `json:"ca_bundle"`
}

// CAStatus is the cluster CA and each node's certificate.
type CAStatus struct {
	Active   CAInfo     `json:"active"`
	Retired  []CAInfo   `json:"retired,omitempty"`
	Rotating bool       `json:"rotating"`
	Nodes    []NodeCert `json:"nodes"`
}

// CAInfo describes one CA certificate.
type CAInfo struct {
	Fingerprint string    `json:"fingerprint"`
	NotAfter    time.Time `json:"not_after"`
}

// NodeCert is a node's certificate as it last reported it.
type NodeCert struct {
	Node     string    `json:"node"`
	Issuer   string    `json:"issuer,omitempty"`
	NotAfter time.Time `json:"not_after,omitempty"`
	// Current: issued by the active CA.
	Current bool `json:"current"`
}

func (s *Server) issueCert(w http.ResponseWriter, r *http.Request) {
	var req CertRequest
	if !decode(w, r, &req) {
		return
	}
	cert, bundle, err := s.Ctl.IssueCert(req.Node, []byte(req.CSR))
	if err != nil {
		writeCtlErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, CertResponse{Cert: string(cert), CABundle: string(bundle)})
}

func (s *Server) caStatus(w http.ResponseWriter, r *http.Request) {
	st := s.FSM.State()
	if st.CA == nil {
		writeErr(w, http.StatusServiceUnavailable, "the cluster has no CA yet")
		return
	}
	info := func(p string) CAInfo {
		c, err := pki.ParseCert([]byte(p))
		if err != nil {
			return CAInfo{}
		}
		return CAInfo{Fingerprint: pki.Fingerprint(c), NotAfter: c.NotAfter}
	}
	out := CAStatus{Active: info(st.CA.CertPEM), Rotating: len(st.CA.Retired) > 0, Nodes: []NodeCert{}}
	for _, p := range st.CA.Retired {
		out.Retired = append(out.Retired, info(p))
	}
	obs := s.observations()
	for id := range st.Nodes {
		nc := NodeCert{Node: id}
		if rep, ok := obs[id]; ok {
			nc.Issuer, nc.NotAfter = rep.Cert.Issuer, rep.Cert.NotAfter
			nc.Current = rep.Cert.Issuer == out.Active.Fingerprint
		}
		out.Nodes = append(out.Nodes, nc)
	}
	sort.Slice(out.Nodes, func(i, j int) bool { return out.Nodes[i].Node < out.Nodes[j].Node })
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) rotateCA(w http.ResponseWriter, r *http.Request) {
	fp, err := s.Ctl.RotateCA(r.Context())
	if err != nil {
		writeCtlErr(w, err)
		return
	}
	setIndex(w, s.FSM.Index())
	writeJSON(w, http.StatusOK, map[string]string{"active": fp})
}

func (s *Server) finishCA(w http.ResponseWriter, r *http.Request) {
	if err := s.Ctl.FinishRotation(r.Context(), r.URL.Query().Get("force") == "true"); err != nil {
		writeCtlErr(w, err)
		return
	}
	setIndex(w, s.FSM.Index())
	writeJSON(w, http.StatusOK, map[string]string{"finished": "true"})
}

package controller

import (
	"context"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/marina-redis/marina/internal/pki"
	"github.com/marina-redis/marina/internal/state"
)

// CertStatus is what a node reports of its certificate.
type CertStatus struct {
	// Issuer is the fingerprint of the CA that signed it.
	Issuer   string    `json:"issuer"`
	NotAfter time.Time `json:"not_after"`
}

// SetCertLifetime sets how long the node certificates this node issues
// (as leader) are valid (default pki.NodeLifetime).
func (c *Controller) SetCertLifetime(d time.Duration) { c.certLifetime = d }

// SetCA commits the cluster's CA (bootstrap).
func (c *Controller) SetCA(ctx context.Context, certPEM, keyPEM []byte) error {
	if _, err := pki.ParseCA(certPEM, keyPEM); err != nil {
		return errf(Invalid, "%v", err)
	}
	if st := c.fsm.State(); st.CA != nil {
		if st.CA.CertPEM == string(certPEM) {
			return nil
		}
		return errf(Conflict, "the cluster has a CA already (rotate it with marina ca rotate)")
	}
	_, err := c.apply(ctx, &state.SetCA{CA: &state.CA{CertPEM: string(certPEM), KeyPEM: string(keyPEM)}, Time: time.Now(), Reason: "cluster CA created"})
	return err
}

// IssueCert signs a node certificate for the key of csrPEM. The node's id
// and address are the certificate's names; a known node must ask with the
// address the cluster has for it.
func (c *Controller) IssueCert(n state.Node, csrPEM []byte) (cert, bundle []byte, err error) {
	if err := state.ValidateNodeID(n.ID); err != nil {
		return nil, nil, errf(Invalid, "%v", err)
	}
	ip := net.ParseIP(n.Addr)
	if ip == nil || ip.IsUnspecified() {
		return nil, nil, errf(Invalid, "node address %q: want the node's IP address", n.Addr)
	}
	st := c.fsm.State()
	if st.CA == nil {
		return nil, nil, errf(Unavailable, "the cluster has no CA yet; retry")
	}
	if old, ok := st.Nodes[n.ID]; ok && old.Addr != n.Addr {
		return nil, nil, errf(Conflict, "node %s has address %s in the cluster, not %s", n.ID, old.Addr, n.Addr)
	}
	ca, err := pki.ParseCA([]byte(st.CA.CertPEM), []byte(st.CA.KeyPEM))
	if err != nil {
		return nil, nil, errf(Unavailable, "cluster CA: %v", err)
	}
	cert, err = ca.SignNode(csrPEM, n.ID, []net.IP{ip}, time.Now(), c.certLifetime)
	if err != nil {
		return nil, nil, errf(Invalid, "%v", err)
	}
	return append(cert, st.CA.CrossPEM...), st.CA.Bundle(), nil
}

// RotateCA creates a new CA that signs from now on; the old one stays
// trusted until FinishRotation, while every node renews its certificate.
func (c *Controller) RotateCA(ctx context.Context) (fingerprint string, err error) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	st := c.fsm.State()
	if st.CA == nil {
		return "", errf(Unavailable, "the cluster has no CA yet")
	}
	old, err := pki.ParseCA([]byte(st.CA.CertPEM), []byte(st.CA.KeyPEM))
	if err != nil {
		return "", errf(Unavailable, "cluster CA: %v", err)
	}
	ca, err := pki.NewCA("marina", time.Now())
	if err != nil {
		return "", err
	}
	cross, err := old.CrossSign(ca.Cert, time.Now())
	if err != nil {
		return "", err
	}
	retired := append([]string{st.CA.CertPEM}, st.CA.Retired...)
	_, err = c.apply(ctx, &state.SetCA{CA: &state.CA{CertPEM: string(ca.CertPEM), KeyPEM: string(ca.KeyPEM), Retired: retired,
		CrossPEM: string(cross)}, Time: time.Now(), Reason: "CA rotation started: new CA " + short(pki.Fingerprint(ca.Cert)) + "; nodes renew their certificates"})
	if err != nil {
		return "", err
	}
	return pki.Fingerprint(ca.Cert), nil
}

// FinishRotation stops trusting retired CAs, once every node reports a
// certificate from the active one (force: even so; a node still on an
// old certificate must then join again).
func (c *Controller) FinishRotation(ctx context.Context, force bool) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	st := c.fsm.State()
	if st.CA == nil {
		return errf(Unavailable, "the cluster has no CA yet")
	}
	if len(st.CA.Retired) == 0 {
		return errf(Conflict, "no CA rotation in progress")
	}
	if !force {
		if lag := c.notRenewed(st); len(lag) > 0 {
			return errf(Conflict, "nodes %s do not hold a certificate of the new CA yet (down, or renewing); retry, or --force to drop them", strings.Join(lag, ", "))
		}
	}
	_, err := c.apply(ctx, &state.SetCA{CA: &state.CA{CertPEM: st.CA.CertPEM, KeyPEM: st.CA.KeyPEM}, Time: time.Now(), Reason: "CA rotation finished: only the new CA is trusted"})
	return err
}

// notRenewed lists nodes whose last report shows a certificate of another CA.
func (c *Controller) notRenewed(st *state.State) []string {
	active, err := pki.ParseCert([]byte(st.CA.CertPEM))
	if err != nil {
		return nil
	}
	want := pki.Fingerprint(active)
	reports := c.Reports()
	var out []string
	for id := range st.Nodes {
		if r, ok := reports[id]; !ok || r.Cert.Issuer != want {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

func short(fp string) string {
	if len(fp) > 16 {
		return fp[:16]
	}
	return fp
}

package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/marina-redis/marina/internal/api"
	"github.com/marina-redis/marina/internal/client"
	"github.com/marina-redis/marina/internal/controller"
	"github.com/marina-redis/marina/internal/pki"
	"github.com/marina-redis/marina/internal/state"
	"github.com/marina-redis/marina/internal/topology"
)

// caKeyFile holds a bootstrapping node's new CA key until the CA is in the
// Raft state (a crash in between must not lose it).
const caKeyFile = "ca-key.pem"

func (n *Node) tlsDir() string { return filepath.Join(n.cfg.DataDir, "tls") }

// bootstrapIdentity creates the cluster CA and this node's certificate.
func (n *Node) bootstrapIdentity() error {
	ca, err := pki.NewCA("marina", time.Now())
	if err != nil {
		return err
	}
	csr, keyPEM, err := pki.NewRequest(n.cfg.ID)
	if err != nil {
		return err
	}
	cert, err := ca.SignNode(csr, n.cfg.ID, []net.IP{net.ParseIP(n.cfg.Bind)}, time.Now(), n.cfg.CertLifetime)
	if err != nil {
		return err
	}
	if err := pki.Save(n.cfg.DataDir, cert, keyPEM, ca.CertPEM); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(n.tlsDir(), caKeyFile), ca.KeyPEM, 0o600); err != nil {
		return err
	}
	return n.id.Set(cert, keyPEM, ca.CertPEM)
}

// commitCA puts a bootstrapped CA into the state, then forgets its file.
func (n *Node) commitCA(ctx context.Context) error {
	path := filepath.Join(n.tlsDir(), caKeyFile)
	keyPEM, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	certPEM, err := os.ReadFile(filepath.Join(n.tlsDir(), pki.CAFile))
	if err != nil {
		return err
	}
	if err := n.Ctl.SetCA(ctx, certPEM, keyPEM); err != nil {
		return fmt.Errorf("commit the cluster CA: %w", err)
	}
	return os.Remove(path)
}

// requestCert gets a certificate for a fresh key from the cluster CA
// through c, and installs it.
func (n *Node) requestCert(ctx context.Context, c *client.Client) error {
	csr, keyPEM, err := pki.NewRequest(n.cfg.ID)
	if err != nil {
		return err
	}
	resp, err := c.Cert(ctx, api.CertRequest{Node: n.self(), CSR: string(csr)})
	if err != nil {
		return err
	}
	if err := n.id.Set([]byte(resp.Cert), keyPEM, []byte(resp.CABundle)); err != nil {
		return fmt.Errorf("certificate from the cluster: %w", err)
	}
	return pki.Save(n.cfg.DataDir, []byte(resp.Cert), keyPEM, []byte(resp.CABundle))
}

// selfClient talks to this node's own API as this node (its answers are
// forwarded to the leader as needed).
func (n *Node) selfClient() *client.Client {
	return client.New(topology.HostPort(n.cfg.Bind, n.cfg.HTTPPort), n.cfg.Token, n.id.ClientTLS(n.cfg.ID))
}

// peerClient talks to another node's API, checked to be that node.
func (n *Node) peerClient(id, addr string) *client.Client {
	return client.New(addr, n.cfg.Token, n.id.ClientTLS(id))
}

// certStatus is what the heartbeat reports of this node's certificate.
func (n *Node) certStatus() controller.CertStatus {
	leaf := n.id.Leaf()
	if leaf == nil {
		return controller.CertStatus{}
	}
	return controller.CertStatus{NotAfter: leaf.NotAfter, Issuer: n.id.Issuer()}
}

// tlsLoop keeps the node's TLS material in step with the cluster: the
// trusted CAs follow the state (a rotation), and the certificate is
// renewed with a third of its life left or once another CA signs.
func (n *Node) tlsLoop(ctx context.Context) {
	retry := time.Time{}
	for {
		st := n.FSM.State()
		changed := n.FSM.Changed()
		var active *x509.Certificate
		if st.CA != nil {
			if bundle := st.CA.Bundle(); string(bundle) != string(n.id.Bundle()) {
				if err := n.id.SetTrust(bundle); err != nil {
					n.log.Error("CA bundle from the state", "err", err)
				} else if err := pki.Save(n.cfg.DataDir, nil, nil, bundle); err != nil {
					n.log.Warn("write CA bundle", "err", err)
				} else {
					n.log.Info("trusted CAs updated", "cas", len(st.CA.Retired)+1)
					n.reloadRedisTLS(ctx)
				}
			}
			active, _ = pki.ParseCert([]byte(st.CA.CertPEM))
			n.savePeers(st)
		}
		// Without the state (a restart applies the log only once a leader
		// is heard, and a node with an expired certificate hears none),
		// the certificate's own dates decide.
		if pki.Expiring(n.id.Leaf(), active, time.Now()) && time.Now().After(retry) {
			err := n.renew(ctx)
			if err != nil {
				n.log.Warn("certificate renewal failed, retrying", "err", err)
				retry = time.Now().Add(5 * time.Second)
			} else {
				n.log.Info("certificate renewed", "not_after", n.id.Leaf().NotAfter)
				n.reloadRedisTLS(ctx)
			}
		}
		wait := time.Minute
		if leaf := n.id.Leaf(); leaf != nil {
			if d := time.Until(pki.RenewAt(leaf)); d < wait {
				wait = max(d, time.Second)
			}
		}
		if !retry.IsZero() && time.Until(retry) < wait {
			wait = max(time.Until(retry), 100*time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-time.After(wait):
		}
	}
}

// reloadRedisTLS has the redis-servers load the renewed files.
func (n *Node) reloadRedisTLS(ctx context.Context) {
	if !n.cfg.RedisTLS {
		return
	}
	if err := n.Agent.ReloadTLS(ctx); err != nil {
		n.log.Warn("redis-servers did not reload the TLS files", "err", err)
	}
}

// peersFile keeps the other members' API addresses, for renew.
const peersFile = "peers.json"

// savePeers records the members' API addresses when they change.
func (n *Node) savePeers(st *state.State) {
	peers := map[string]string{}
	for id, nd := range st.Nodes {
		if id != n.cfg.ID {
			peers[id] = nd.HTTPAddr
		}
	}
	b, _ := json.Marshal(peers) // map keys sorted: same members, same bytes
	if string(b) == n.peersSaved {
		return
	}
	if err := os.WriteFile(filepath.Join(n.tlsDir(), peersFile), b, 0o600); err != nil {
		n.log.Warn("write peers file", "err", err)
		return
	}
	n.peersSaved = string(b)
}

// renew gets a new certificate through this node's own API (forwarded to
// the leader), or else through another member's: a node that was down
// while its certificate expired is refused on Raft, learns no leader, and
// must ask a member directly (with the token: its certificate is void).
func (n *Node) renew(ctx context.Context) error {
	var errs []error
	try := func(c *client.Client) bool {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		err := n.requestCert(rctx, c)
		errs = append(errs, err)
		return err == nil
	}
	if try(n.selfClient()) {
		return nil
	}
	peers := map[string]string{}
	if b, err := os.ReadFile(filepath.Join(n.tlsDir(), peersFile)); err == nil {
		_ = json.Unmarshal(b, &peers)
	}
	ids := make([]string, 0, len(peers))
	for id := range peers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if try(n.peerClient(id, peers[id])) {
			return nil
		}
	}
	return errors.Join(errs...)
}

// operatorCert loads --api-tls-cert/--api-tls-key.
func operatorCert(certFile, keyFile string) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile) // fills c.Leaf
	if err != nil {
		return nil, fmt.Errorf("--api-tls-cert/--api-tls-key: %v", err)
	}
	return &c, nil
}

// sentinelTLS is the Sentinel protocol port's TLS: with --redis-tls the
// servers it names speak TLS only, and clients (go-redis, redis-py) use
// one TLS configuration for the sentinels and the servers.
func (n *Node) sentinelTLS() *tls.Config {
	if !n.cfg.RedisTLS {
		return nil
	}
	return n.id.ServerTLS(false, nil)
}

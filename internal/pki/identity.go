package pki

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// Identity is a node's live TLS material: its certificate and key, and the
// CAs it trusts. Renewal and CA rotation swap them in place; every TLS
// config below reads them at each handshake, so no listener restarts.
type Identity struct {
	cur atomic.Pointer[material]
	// operator, when set, is served on the API to clients that do not ask
	// for a node by name (browsers, the CLI): an operator's certificate.
	operator atomic.Pointer[tls.Certificate]
}

type material struct {
	cert   tls.Certificate
	leaf   *x509.Certificate
	pool   *x509.CertPool
	bundle []byte
	issuer string // fingerprint of the trusted CA that signed leaf
}

func newMaterial(cert tls.Certificate, leaf *x509.Certificate, pool *x509.CertPool, bundle []byte) *material {
	m := &material{cert: cert, leaf: leaf, pool: pool, bundle: bundle}
	if cas, err := ParseCerts(bundle); err == nil {
		for _, ca := range cas {
			if leaf.CheckSignatureFrom(ca) == nil {
				m.issuer = Fingerprint(ca)
				break
			}
		}
	}
	return m
}

// Files of a node's TLS material in DIR/tls.
const (
	CAFile   = "ca.pem"
	CertFile = "node.pem"
	KeyFile  = "node-key.pem"
)

// ErrNoCertificate: the node holds no certificate yet.
var ErrNoCertificate = errors.New("this node has no certificate yet")

// Set replaces the node's certificate, key and trusted CAs (PEM).
func (id *Identity) Set(certPEM, keyPEM, bundle []byte) error {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("node certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return err
	}
	pool, err := Pool(bundle)
	if err != nil {
		return fmt.Errorf("CA bundle: %w", err)
	}
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	// Checked as of its issue: an expired certificate is still loaded, so
	// that a node back after it expired can say who it is and renew it.
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: leaf.NotBefore.Add(clockSkew),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("node certificate not signed by a trusted CA: %w", err)
	}
	cert.Leaf = leaf
	id.cur.Store(newMaterial(cert, leaf, pool, bundle))
	return nil
}

// SetTrust replaces the trusted CAs, keeping the certificate.
func (id *Identity) SetTrust(bundle []byte) error {
	m := id.cur.Load()
	if m == nil {
		return ErrNoCertificate
	}
	pool, err := Pool(bundle)
	if err != nil {
		return err
	}
	id.cur.Store(newMaterial(m.cert, m.leaf, pool, bundle))
	return nil
}

// SetOperator serves an operator's certificate on the API (see operator).
func (id *Identity) SetOperator(c *tls.Certificate) { id.operator.Store(c) }

// Leaf is the node's current certificate (nil: none yet).
func (id *Identity) Leaf() *x509.Certificate {
	if m := id.cur.Load(); m != nil {
		return m.leaf
	}
	return nil
}

// Issuer is the fingerprint of the trusted CA that signed the node's
// certificate ("" when none, or no certificate).
func (id *Identity) Issuer() string {
	if m := id.cur.Load(); m != nil {
		return m.issuer
	}
	return ""
}

// Bundle is the PEM of the trusted CAs.
func (id *Identity) Bundle() []byte {
	if m := id.cur.Load(); m != nil {
		return m.bundle
	}
	return nil
}

// Load reads DIR/tls; ErrNoCertificate when it holds none.
func (id *Identity) Load(dataDir string) error {
	dir := filepath.Join(dataDir, "tls")
	read := func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, name)) }
	certPEM, err := read(CertFile)
	if errors.Is(err, os.ErrNotExist) {
		return ErrNoCertificate
	}
	if err != nil {
		return err
	}
	keyPEM, err := read(KeyFile)
	if err != nil {
		return err
	}
	bundle, err := read(CAFile)
	if err != nil {
		return err
	}
	return id.Set(certPEM, keyPEM, bundle)
}

// Save writes the material to DIR/tls (the key 0600), each file replaced
// atomically so a crash never leaves half a key.
func Save(dataDir string, certPEM, keyPEM, bundle []byte) error {
	dir := filepath.Join(dataDir, "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for name, b := range map[string][]byte{KeyFile: keyPEM, CertFile: certPEM, CAFile: bundle} {
		if b == nil {
			continue
		}
		if err := writeAtomic(filepath.Join(dir, name), b); err != nil {
			return err
		}
	}
	return nil
}

func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// PeerCheck decides whether a verified peer node may talk to us.
type PeerCheck func(nodeID string) error

// verifyChain checks a peer's certificate chain against the current
// trusted CAs and returns the node it names.
func (id *Identity) verifyChain(raw [][]byte, usage x509.ExtKeyUsage, dnsName string) (*x509.Certificate, error) {
	return id.verifyChainAt(raw, usage, dnsName, false)
}

// verifyChainAt is verifyChain; anyTime checks the chain as of the
// certificate's issue, so an expired one still passes.
func (id *Identity) verifyChainAt(raw [][]byte, usage x509.ExtKeyUsage, dnsName string, anyTime bool) (*x509.Certificate, error) {
	m := id.cur.Load()
	if m == nil {
		return nil, ErrNoCertificate
	}
	if len(raw) == 0 {
		return nil, errors.New("no certificate presented")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return nil, err
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	opts := x509.VerifyOptions{Roots: m.pool, Intermediates: inter, DNSName: dnsName, KeyUsages: []x509.ExtKeyUsage{usage}}
	if anyTime {
		opts.CurrentTime = certs[0].NotBefore.Add(clockSkew)
	}
	if _, err := certs[0].Verify(opts); err != nil {
		return nil, err
	}
	return certs[0], nil
}

// ServerTLS accepts TLS with the node's certificate. With mutual set, a
// client must present a node certificate from a trusted CA that check
// accepts (Raft); otherwise a client certificate is verified if given and
// its node is then available through PeerNode (the API).
func (id *Identity) ServerTLS(mutual bool, check PeerCheck) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			m := id.cur.Load()
			if m == nil {
				return nil, ErrNoCertificate
			}
			cert := &m.cert
			if op := id.operator.Load(); op != nil && !mutual && !strings.HasSuffix(hello.ServerName, ".node.marina") {
				cert = op
			}
			auth := tls.RequestClientCert
			if mutual {
				auth = tls.RequireAnyClientCert
			}
			return &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{*cert},
				// Verified here rather than with ClientCAs, so a rotated
				// CA bundle applies to the next handshake.
				ClientAuth: auth,
				VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
					if len(raw) == 0 {
						return nil // only possible when not mutual
					}
					leaf, err := id.verifyChain(raw, x509.ExtKeyUsageClientAuth, "")
					if err != nil {
						return fmt.Errorf("peer certificate: %w", err)
					}
					node, err := NodeID(leaf)
					if err != nil {
						return err
					}
					if check != nil {
						return check(node)
					}
					return nil
				},
			}, nil
		},
	}
}

// ClientTLS dials with the node's certificate and verifies the server
// against the trusted CAs: as node wantID when given (Raft, node-to-node
// HTTP), else by the host's address.
func (id *Identity) ClientTLS(wantID string) *tls.Config {
	serverName := ""
	if wantID != "" {
		serverName = NodeDNSName(wantID)
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: serverName,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			m := id.cur.Load()
			if m == nil || time.Now().After(m.leaf.NotAfter) {
				// None (or only an expired one, which every peer refuses):
				// the server decides; the API takes the token alone, so a
				// node back after its certificate expired can renew it.
				return &tls.Certificate{}, nil
			}
			return &m.cert, nil
		},
		// The standard verification with a pool fixed at creation would
		// miss a CA rotation; VerifyConnection does the same checks
		// against the current pool.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			name := serverName
			if name == "" {
				name = cs.ServerName
			}
			if name == "" {
				return errors.New("server name unknown: refusing to skip verification")
			}
			_, err := id.verifyChain(rawCerts(cs), x509.ExtKeyUsageServerAuth, name)
			return err
		},
	}
}

// LocalTLS is DialerTLS for this node's own redis-servers, whose
// certificate is the node's and may have expired while its agent was
// away: it is checked (CA and address) as of its issue, so the agent can
// reach the server and have it load the renewed files.
func (id *Identity) LocalTLS(addr string) *tls.Config {
	c := id.DialerTLS(addr)
	host := c.ServerName
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		_, err := id.verifyChainAt(rawCerts(cs), x509.ExtKeyUsageServerAuth, host, true)
		return err
	}
	return c
}

// DialerTLS is ClientTLS for a dial to addr (host:port) when the peer's
// node id is unknown: verified by the address in its certificate.
func (id *Identity) DialerTLS(addr string) *tls.Config {
	c := id.ClientTLS("")
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	c.ServerName = host
	inner := c.VerifyConnection
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		cs.ServerName = host
		return inner(cs)
	}
	return c
}

// Expiring says whether a certificate should be renewed now: a third of
// its life left, or not issued by active (a rotation).
func Expiring(c *x509.Certificate, active *x509.Certificate, now time.Time) bool {
	if c == nil {
		return true
	}
	if active != nil && (!bytes.Equal(c.RawIssuer, active.RawSubject) || c.CheckSignatureFrom(active) != nil) {
		return true
	}
	return !now.Before(RenewAt(c))
}

// rawCerts is the DER of the certificates a peer presented.
func rawCerts(cs tls.ConnectionState) [][]byte {
	raw := make([][]byte, len(cs.PeerCertificates))
	for i, c := range cs.PeerCertificates {
		raw[i] = c.Raw
	}
	return raw
}

// DialTLS dials addr and completes a handshake as ClientTLS(wantID), or
// DialerTLS(addr) when the peer's id is unknown.
func (id *Identity) DialTLS(ctx context.Context, d *net.Dialer, addr, wantID string) (net.Conn, error) {
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	cfg := id.DialerTLS(addr)
	if wantID != "" {
		cfg = id.ClientTLS(wantID)
	}
	c := tls.Client(raw, cfg)
	if err := c.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	return c, nil
}

// PeerNode is the node a request's verified client certificate names
// ("" when the client presented none).
func PeerNode(cs *tls.ConnectionState) string {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return ""
	}
	id, err := NodeID(cs.PeerCertificates[0])
	if err != nil {
		return ""
	}
	return id
}

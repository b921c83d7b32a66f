package pki

import (
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"
)

func mustCA(t *testing.T, now time.Time) *CA {
	t.Helper()
	ca, err := NewCA("marina", now)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func nodeCert(t *testing.T, ca *CA, id string, now time.Time, life time.Duration) ([]byte, []byte) {
	t.Helper()
	key, keyPEM, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := NewCSR(key, "whatever-the-request-says")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.SignNode(csr, id, []net.IP{net.ParseIP("10.0.0.1")}, now, life)
	if err != nil {
		t.Fatal(err)
	}
	return cert, keyPEM
}

// The name comes from the cluster, never from the request; the node's
// address and id are in the certificate.
func TestSignNode(t *testing.T) {
	now := time.Now()
	ca := mustCA(t, now)
	certPEM, _ := nodeCert(t, ca, "n1", now, time.Hour)
	c, err := ParseCert(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := NodeID(c); err != nil || id != "n1" {
		t.Fatalf("node id %q %v", id, err)
	}
	pool, _ := Pool(ca.CertPEM)
	for _, name := range []string{"10.0.0.1", NodeDNSName("n1")} {
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
			t.Errorf("verify as %s: %v", name, err)
		}
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, DNSName: NodeDNSName("n2")}); err == nil {
		t.Error("n1's certificate verified as n2")
	}
	other := mustCA(t, now)
	opool, _ := Pool(other.CertPEM)
	if _, err := c.Verify(x509.VerifyOptions{Roots: opool}); err == nil {
		t.Error("verified by another CA")
	}
}

func TestSignNodeRefusesBadRequests(t *testing.T) {
	now := time.Now()
	ca := mustCA(t, now)
	key, _, _ := NewKey()
	csr, _ := NewCSR(key, "n1")
	tampered := []byte(strings.Replace(string(csr), string(csr[60:64]), "AAAA", 1))
	for name, in := range map[string][]byte{
		"empty":       nil,
		"not PEM":     []byte("hello"),
		"certificate": ca.CertPEM,
		"tampered":    tampered,
	} {
		if _, err := ca.SignNode(in, "n1", []net.IP{net.ParseIP("10.0.0.1")}, now, time.Hour); err == nil {
			t.Errorf("%s: signed", name)
		}
	}
}

// During a rotation a node that trusts only the old CA verifies a
// certificate of the new one presented with the cross certificate; a
// node that trusts the new CA needs no cross certificate.
func TestCrossSignedRotation(t *testing.T) {
	now := time.Now()
	old, next := mustCA(t, now), mustCA(t, now)
	cross, err := old.CrossSign(next.Cert, now)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM := nodeCert(t, next, "n2", now, time.Hour)

	var oldOnly, newOnly Identity
	oc, ok := nodeCert(t, old, "n1", now, time.Hour)
	if err := oldOnly.Set(oc, ok, old.CertPEM); err != nil {
		t.Fatal(err)
	}
	if err := newOnly.Set(certPEM, keyPEM, next.CertPEM); err != nil {
		t.Fatal(err)
	}
	chain := func(p []byte) [][]byte {
		cs, err := ParseCerts(p)
		if err != nil {
			t.Fatal(err)
		}
		var raw [][]byte
		for _, c := range cs {
			raw = append(raw, c.Raw)
		}
		return raw
	}
	if _, err := oldOnly.verifyChain(chain(certPEM), x509.ExtKeyUsageServerAuth, ""); err == nil {
		t.Error("old-only trust verified a new certificate without the cross certificate")
	}
	if _, err := oldOnly.verifyChain(chain(append(append([]byte{}, certPEM...), cross...)), x509.ExtKeyUsageServerAuth, NodeDNSName("n2")); err != nil {
		t.Errorf("old-only trust with the cross certificate: %v", err)
	}
	if _, err := newOnly.verifyChain(chain(append(append([]byte{}, certPEM...), cross...)), x509.ExtKeyUsageServerAuth, ""); err != nil {
		t.Errorf("new trust with the cross certificate along: %v", err)
	}
}

func TestExpiring(t *testing.T) {
	now := time.Now()
	ca, other := mustCA(t, now), mustCA(t, now)
	p, _ := nodeCert(t, ca, "n1", now, 30*time.Hour)
	c, _ := ParseCert(p)
	for _, tc := range []struct {
		name   string
		active *x509.Certificate
		at     time.Time
		want   bool
	}{
		{"fresh", ca.Cert, now, false},
		{"two thirds gone", ca.Cert, now.Add(21 * time.Hour), true},
		{"just before", ca.Cert, now.Add(19 * time.Hour), false},
		{"expired", ca.Cert, now.Add(31 * time.Hour), true},
		{"another CA signs now", other.Cert, now, true},
		{"no active CA known", nil, now, false},
	} {
		if got := Expiring(c, tc.active, tc.at); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	if !Expiring(nil, ca.Cert, now) {
		t.Error("no certificate: not expiring")
	}
}

func TestParseCARefusesMismatchedKey(t *testing.T) {
	now := time.Now()
	a, b := mustCA(t, now), mustCA(t, now)
	if _, err := ParseCA(a.CertPEM, b.KeyPEM); err == nil {
		t.Fatal("a CA with another CA's key")
	}
	p, _ := nodeCert(t, a, "n1", now, time.Hour)
	_, keyPEM, _ := NewKey()
	if _, err := ParseCA(p, keyPEM); err == nil {
		t.Fatal("a node certificate as CA")
	}
}

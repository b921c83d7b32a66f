package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/marina-redis/marina/internal/testutil"
)

// selfSigned returns a server certificate for ip and a pool trusting it.
func selfSigned(t *testing.T, ip string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "marina test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP(ip)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

func TestTLSEndpoint(t *testing.T) {
	host := testutil.LoopbackHosts(t, 1)[0]
	cert, pool := selfSigned(t, host)
	b0, b1 := backend(t, host), backend(t, host)
	d, err := Listen(Route{Name: "tls", Addr: host + ":0", Password: testPW, Secret: proxySecret,
		TLS:    &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		Shards: []ShardRoute{{Index: 0, SlotStart: 0, SlotEnd: 8191, Master: b0}, {Index: 1, SlotStart: 8192, SlotEnd: 16383, Master: b1}}}, testutil.Logger())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: d.Addr(), Password: testPW, Protocol: 2, DisableIdentity: true,
		TLSConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}})
	defer c.Close()
	if err := c.MSet(ctx, "a", 1, "b", 2, "c", 3).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := c.MGet(ctx, "a", "b", "c").Result(); err != nil || len(v) != 3 || v[2] != "3" {
		t.Fatalf("MGET over TLS: %v %v", v, err)
	}
	// A client without TLS gets no answer.
	plain := redis.NewClient(&redis.Options{Addr: d.Addr(), Password: testPW, Protocol: 2, DisableIdentity: true,
		ReadTimeout: 500 * time.Millisecond, DialTimeout: 500 * time.Millisecond, MaxRetries: -1})
	defer plain.Close()
	if err := plain.Ping(ctx).Err(); err == nil {
		t.Fatal("a plain client was served by a TLS endpoint")
	}
}

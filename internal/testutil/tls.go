package testutil

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
)

// TLSWith is a client TLS configuration for the server at addr that trusts
// the CAs in caFile (a node's DATA/tls/ca.pem); nil when caFile is empty
// (plaintext). An unreadable file trusts nothing, so the failure shows.
func TLSWith(caFile, addr string) *tls.Config {
	if caFile == "" {
		return nil
	}
	pool := x509.NewCertPool()
	if b, err := os.ReadFile(caFile); err == nil {
		pool.AppendCertsFromPEM(b)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	return &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}
}

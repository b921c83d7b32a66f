// Package client is the Go client of Marina's HTTP API, used by the CLI and
// by nodes talking to each other.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/marina-redis/marina/internal/api"
	"github.com/marina-redis/marina/internal/controller"
	"github.com/marina-redis/marina/internal/state"
)

// Client talks to one node's API.
type Client struct {
	base  string
	token string
	http  *http.Client
	// RetryFor keeps sending a request the API refused with nothing applied
	// (no leader right now) for this long; 0 never retries. OnRetry hears
	// each such refusal before the retry.
	RetryFor time.Duration
	OnRetry  func(msg string)
	// OnLocal hears a read that no leader answered: the node's own copy of
	// the state, last in touch with a leader stale ago (-1: unknown).
	OnLocal func(msg string, stale time.Duration)
}

// New returns a client for addr ("host:port", HTTPS, or a URL). tc
// verifies the server (nil: the system's CAs); see CAFile.
func New(addr, token string, tc *tls.Config) *Client {
	if !strings.Contains(addr, "://") {
		addr = "https://" + addr
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if tc != nil && tc.VerifyConnection != nil && tc.ServerName == "" {
		// A TLS client does not send an IP address as the server name, so
		// the verification is told which address it checks.
		if u, err := url.Parse(addr); err == nil {
			host, inner := u.Hostname(), tc.VerifyConnection
			tc = tc.Clone()
			tc.VerifyConnection = func(cs tls.ConnectionState) error {
				if cs.ServerName == "" {
					cs.ServerName = host
				}
				return inner(cs)
			}
		}
	}
	tr.TLSClientConfig = tc
	return &Client{base: strings.TrimRight(addr, "/"), token: token, http: &http.Client{Timeout: 30 * time.Second, Transport: tr}}
}

// CAFile is a TLS configuration that trusts the CAs in a PEM file (the
// cluster CA bundle a node keeps in DATA/tls/ca.pem; MARINA_CACERT). The
// file is read at each handshake, so a client outlives a CA rotation (the
// node rewrites the bundle) and may be made before the file exists.
func CAFile(path string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verified below, against the file as it is now.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			pool, err := LoadCAFile(path)
			if err != nil {
				return err
			}
			if len(cs.PeerCertificates) == 0 || cs.ServerName == "" {
				return errors.New("server certificate or name missing")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err = cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, DNSName: cs.ServerName})
			return err
		},
	}
}

// LoadCAFile reads a PEM bundle of CA certificates.
func LoadCAFile(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA file %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// Error is an error answer of the API.
type Error struct {
	Code int
	Msg  string
	// retrySafe: the API applied nothing (no leader) and said so.
	retrySafe bool
}

// RetrySafe says whether the API applied nothing and the request may be
// sent again as it is.
func (e *Error) RetrySafe() bool { return e.retrySafe }

func (e *Error) Error() string { return e.Msg }

// Headers the API answers with (internal/api/forward.go).
const (
	headerRetry   = "X-Marina-Retry"
	headerLocal   = "X-Marina-Local-Read"
	headerStaleMs = "X-Marina-Stale-Ms"
)

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var payload []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		payload = b
	}
	until := time.Now().Add(c.RetryFor)
	for {
		err := c.once(ctx, method, path, payload, out)
		var ae *Error
		if !errors.As(err, &ae) || !ae.retrySafe || time.Now().After(until) {
			return err
		}
		if c.OnRetry != nil {
			c.OnRetry(ae.Msg)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (c *Client) once(ctx context.Context, method, path string, payload []byte, out any) error {
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if ok := asURLError(err, &ue); ok {
			return fmt.Errorf("cannot reach %s: %v", c.base, ue.Err)
		}
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		safe := resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get(headerRetry) == "safe"
		var eb api.ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error != "" {
			return &Error{Code: resp.StatusCode, Msg: eb.Error, retrySafe: safe}
		}
		return &Error{Code: resp.StatusCode, Msg: fmt.Sprintf("%s %s: %s", method, path, resp.Status), retrySafe: safe}
	}
	if msg := resp.Header.Get(headerLocal); msg != "" && c.OnLocal != nil {
		ms, err := strconv.ParseInt(resp.Header.Get(headerStaleMs), 10, 64)
		if err != nil {
			ms = -1
		}
		stale := time.Duration(-1)
		if ms >= 0 {
			stale = time.Duration(ms) * time.Millisecond
		}
		c.OnLocal(msg, stale)
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode %s %s: %w", method, path, err)
		}
	}
	return nil
}

func asURLError(err error, target **url.Error) bool {
	ue, ok := err.(*url.Error)
	if ok {
		*target = ue
	}
	return ok
}

// CreateDB creates a database.
func (c *Client) CreateDB(ctx context.Context, req api.CreateDBRequest) (*api.DB, error) {
	var db api.DB
	return &db, c.do(ctx, http.MethodPost, "/v1/dbs", req, &db)
}

// UpdateDB changes a database.
func (c *Client) UpdateDB(ctx context.Context, name string, req api.UpdateDBRequest) (*api.DB, error) {
	var db api.DB
	return &db, c.do(ctx, http.MethodPatch, "/v1/dbs/"+url.PathEscape(name), req, &db)
}

// DeleteDB deletes a database.
func (c *Client) DeleteDB(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/dbs/"+url.PathEscape(name), nil, nil)
}

// GetDB returns one database.
func (c *Client) GetDB(ctx context.Context, name string) (*api.DB, error) {
	var db api.DB
	return &db, c.do(ctx, http.MethodGet, "/v1/dbs/"+url.PathEscape(name), nil, &db)
}

// ListDBs returns every database.
func (c *Client) ListDBs(ctx context.Context) ([]api.DB, error) {
	var dbs []api.DB
	return dbs, c.do(ctx, http.MethodGet, "/v1/dbs", nil, &dbs)
}

// Nodes returns every node.
func (c *Client) Nodes(ctx context.Context) ([]api.Node, error) {
	var ns []api.Node
	return ns, c.do(ctx, http.MethodGet, "/v1/nodes", nil, &ns)
}

// Status returns the cluster overview.
func (c *Client) Status(ctx context.Context) (*api.Status, error) {
	var s api.Status
	return &s, c.do(ctx, http.MethodGet, "/v1/status", nil, &s)
}

// Join asks the cluster to admit a node.
func (c *Client) Join(ctx context.Context, n state.Node) error {
	return c.do(ctx, http.MethodPost, "/v1/internal/join", n, nil)
}

// Cert asks the cluster CA for a node certificate (join and renewal).
func (c *Client) Cert(ctx context.Context, req api.CertRequest) (api.CertResponse, error) {
	var out api.CertResponse
	err := c.do(ctx, http.MethodPost, "/v1/internal/cert", req, &out)
	return out, err
}

// CA returns the cluster CA and each node's certificate.
func (c *Client) CA(ctx context.Context) (api.CAStatus, error) {
	var out api.CAStatus
	err := c.do(ctx, http.MethodGet, "/v1/ca", nil, &out)
	return out, err
}

// RotateCA starts a CA rotation and returns the new CA's fingerprint.
func (c *Client) RotateCA(ctx context.Context) (string, error) {
	var out map[string]string
	err := c.do(ctx, http.MethodPost, "/v1/ca/rotate", nil, &out)
	return out["active"], err
}

// FinishCARotation stops trusting the retired CAs.
func (c *Client) FinishCARotation(ctx context.Context, force bool) error {
	return c.do(ctx, http.MethodPost, "/v1/ca/finish?force="+strconv.FormatBool(force), nil, nil)
}

// Heartbeat sends a node's report to the leader and returns its ack.
func (c *Client) Heartbeat(ctx context.Context, r controller.Report) (controller.Ack, error) {
	var ack controller.Ack
	err := c.do(ctx, http.MethodPost, "/v1/internal/heartbeat", r, &ack)
	return ack, err
}

// Events returns recent events, optionally of one database.
func (c *Client) Events(ctx context.Context, db string) ([]state.Event, error) {
	var ev []state.Event
	path := "/v1/events"
	if db != "" {
		path += "?db=" + url.QueryEscape(db)
	}
	return ev, c.do(ctx, http.MethodGet, path, nil, &ev)
}

// Switchover moves the master role of a database's shards (shard < 0: all).
func (c *Client) Switchover(ctx context.Context, db string, shard int, force ...bool) ([]controller.SwitchoverResult, error) {
	req := api.SwitchoverRequest{Force: len(force) > 0 && force[0]}
	if shard >= 0 {
		req.Shard = &shard
	}
	var out []controller.SwitchoverResult
	return out, c.do(ctx, http.MethodPost, "/v1/dbs/"+url.PathEscape(db)+"/failover", req, &out)
}

// Drain starts (or with on=false ends) draining a node.
func (c *Client) Drain(ctx context.Context, node string, on bool) error {
	verb := "drain"
	if !on {
		verb = "undrain"
	}
	return c.do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(node)+"/"+verb, nil, nil)
}

// SetZonePriority sets a zone's replica priority.
func (c *Client) SetZonePriority(ctx context.Context, zone string, prio int) error {
	return c.do(ctx, http.MethodPut, "/v1/zones/"+url.PathEscape(zone), api.ZoneRequest{ReplicaPriority: prio}, nil)
}

// Lead hands the Raft leadership to a node.
func (c *Client) Lead(ctx context.Context, node string) error {
	return c.do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(node)+"/lead", nil, nil)
}

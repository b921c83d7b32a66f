package server

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/marina-redis/marina/internal/api"
	"github.com/marina-redis/marina/internal/client"
	"github.com/marina-redis/marina/internal/controller"
	"github.com/marina-redis/marina/internal/pki"
)

// enter bootstraps a new cluster, joins an existing one, or (with Raft
// state on disk) simply rejoins with the state it has.
func (n *Node) enter(ctx context.Context) error {
	tokenFile := filepath.Join(n.cfg.DataDir, "token")
	if n.Raft.HasState() {
		n.log.Info("restarting with existing state")
		if n.id.Leaf() == nil {
			return fmt.Errorf("no node certificate in %s: this node cannot talk to its cluster; move %s aside and join again (--join, --token, --cacert)",
				n.tlsDir(), n.cfg.DataDir)
		}
		if n.cfg.Token == "" {
			// Heartbeats to the leader need the token: a restart must not
			// depend on the operator passing it again.
			b, err := os.ReadFile(tokenFile)
			if err != nil {
				return fmt.Errorf("no --token given and none saved in %s: %v", tokenFile, err)
			}
			n.cfg.Token = string(b)
		}
		// A bootstrap cut off before its CA was committed finishes it.
		n.goRun(func() { n.commitPendingCA(ctx) })
		return nil
	}
	if n.cfg.Join == "" {
		instDir := filepath.Join(n.cfg.DataDir, "instances")
		if es, _ := os.ReadDir(instDir); len(es) > 0 {
			return fmt.Errorf("%s holds %d instances but there is no Raft state: refusing to bootstrap a new cluster over them (restore %s, or --join the existing cluster)",
				instDir, len(es), filepath.Join(n.cfg.DataDir, "raft"))
		}
		if err := n.bootstrapIdentity(); err != nil {
			return fmt.Errorf("bootstrap: cluster CA: %w", err)
		}
		if err := n.Raft.Bootstrap(); err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		for !n.Raft.IsLeader() {
			select {
			case <-wctx.Done():
				return fmt.Errorf("bootstrap: not leader after 30s")
			case <-time.After(10 * time.Millisecond):
			}
		}
		// Registering the node before returning lets the caller use the API at once.
		if err := n.Ctl.Register(wctx, controller.Report{Node: n.self()}); err != nil {
			return fmt.Errorf("register node: %w", err)
		}
		if err := n.commitCA(wctx); err != nil {
			return err
		}
		token := n.cfg.Token
		if token == "" {
			token = controller.RandomSecret(24)
			fmt.Fprintf(n.cfg.Out, "MARINA_TOKEN=%s\n", token)
		}
		fmt.Fprintf(n.cfg.Out, "MARINA_CACERT=%s\n", filepath.Join(n.tlsDir(), pki.CAFile))
		n.cfg.Token = token
		if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
			return err
		}
		return n.Ctl.SetToken(wctx, api.HashToken(token))
	}
	if n.cfg.Token == "" {
		return errors.New("--join needs the cluster's API token: pass --token or set MARINA_TOKEN")
	}
	if n.cfg.CACert == "" {
		return errors.New("--join needs the cluster's CA certificate to check the member it talks to: pass --cacert FILE (a member's DATA/tls/ca.pem) or set MARINA_CACERT")
	}
	if _, err := client.LoadCAFile(n.cfg.CACert); err != nil {
		return fmt.Errorf("--cacert: %v", err)
	}
	cl := client.New(n.cfg.Join, n.cfg.Token, client.CAFile(n.cfg.CACert))
	// First a certificate (the leader must reach this node over mutual TLS
	// as soon as it is a member), then membership.
	if err := n.retryJoin(ctx, "certificate", func() error {
		if n.id.Leaf() != nil {
			return nil // from an earlier attempt that did not finish joining
		}
		return n.requestCert(ctx, cl)
	}); err != nil {
		return err
	}
	if err := n.retryJoin(ctx, "join", func() error { return cl.Join(ctx, n.self()) }); err != nil {
		return err
	}
	n.log.Info("joined cluster", "via", n.cfg.Join)
	return os.WriteFile(tokenFile, []byte(n.cfg.Token), 0o600)
}

// retryJoin runs a step of joining until it succeeds, or fails for good
// (a wrong token, a refused request).
func (n *Node) retryJoin(ctx context.Context, what string, f func() error) error {
	delay := 100 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return nil
		}
		var ae *client.Error
		if errors.As(err, &ae) && (ae.Code == http.StatusUnauthorized || ae.Code == http.StatusBadRequest || ae.Code == http.StatusConflict) {
			return fmt.Errorf("join %s: %s: %v", n.cfg.Join, what, err)
		}
		var ue x509.UnknownAuthorityError
		var he x509.HostnameError
		if errors.As(err, &ue) || errors.As(err, &he) {
			return fmt.Errorf("join %s: the member's certificate is not from --cacert %s: %v", n.cfg.Join, n.cfg.CACert, err)
		}
		n.log.Warn(what+" failed, retrying", "via", n.cfg.Join, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("join %s: %s: %w (last error: %v)", n.cfg.Join, what, ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 2*time.Second)
	}
}

// commitPendingCA commits a CA left by an interrupted bootstrap once this
// node leads (no-op without one).
func (n *Node) commitPendingCA(ctx context.Context) {
	for {
		if _, err := os.Stat(filepath.Join(n.tlsDir(), caKeyFile)); err != nil {
			return
		}
		if n.Raft.IsLeader() {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := n.commitCA(cctx)
			cancel()
			if err == nil {
				return
			}
			n.log.Warn("committing the cluster CA", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

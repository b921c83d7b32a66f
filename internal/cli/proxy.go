package cli

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/marina-redis/marina/internal/client"
	"github.com/marina-redis/marina/internal/proxy"
)

// proxyCmd runs one database proxy from a route file, outside a cluster:
// for benchmarks and for debugging a route.
func (a *app) proxyCmd() *cobra.Command {
	var certFile, keyFile, backendCA string
	cmd := &cobra.Command{
		Use:    "proxy ROUTE.json",
		Short:  "Run one database proxy from a route file (benchmarks, debugging)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			var r proxy.Route
			if err := json.Unmarshal(b, &r); err != nil {
				return fmt.Errorf("%s: %v", args[0], err)
			}
			if certFile != "" {
				cert, err := tls.LoadX509KeyPair(certFile, keyFile)
				if err != nil {
					return fmt.Errorf("--tls-cert/--tls-key: %v", err)
				}
				r.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			}
			if backendCA != "" {
				pool, err := client.LoadCAFile(backendCA)
				if err != nil {
					return fmt.Errorf("--backend-ca: %v", err)
				}
				r.BackendTLS = func(addr string) *tls.Config {
					host, _, _ := net.SplitHostPort(addr)
					return &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}
				}
			}
			d, err := proxy.Listen(r, slog.New(slog.NewTextHandler(a.errOut, nil)))
			if err != nil {
				return err
			}
			fmt.Fprintf(a.out, "proxy %s listening on %s\n", r.Name, d.Addr())
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			<-ctx.Done()
			d.Close()
			return nil
		},
	}
	cmd.Flags().StringVar(&certFile, "tls-cert", "", "PEM certificate: the endpoint speaks TLS (with --tls-key)")
	cmd.Flags().StringVar(&keyFile, "tls-key", "", "PEM key of --tls-cert")
	cmd.Flags().StringVar(&backendCA, "backend-ca", "", "PEM CA: reach the redis-servers over TLS, checking them with it")
	return cmd
}

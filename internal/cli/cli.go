// Package cli is the marina command line: the server, the local cluster
// launcher and the API client commands.
package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/marina-redis/marina/internal/client"
	"github.com/marina-redis/marina/internal/config"
)

// app carries the streams and global flags of one invocation.
type app struct {
	out, errOut io.Writer
	addr        string
	token       string
	cacert      string
	output      string
	retryFor    time.Duration
}

// Main runs the CLI and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	a := &app{out: stdout, errOut: stderr}
	root := a.root()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if cmd, err := root.ExecuteC(); err != nil {
		if code, done := a.exitCode(cmd, err); done {
			return code // check and doctor have their own exit codes
		}
		fmt.Fprintf(stderr, "marina: %s\n", oneLine(err.Error()))
		return 1
	}
	return 0
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:           "marina",
		Short:         "Redis as a Service on your own machines",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			file := ""
			if f := cmd.Flags().Lookup("config"); f != nil {
				file = f.Value.String()
			}
			if err := config.Apply(cmd.Flags(), file, os.Getenv); err != nil {
				return err
			}
			if a.output != "table" && a.output != "json" {
				return fmt.Errorf("-o %q: use table or json", a.output)
			}
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.addr, "addr", "https://127.0.0.1:7070", "API address of any node (MARINA_ADDR)")
	pf.StringVar(&a.cacert, "cacert", "", "PEM file of the CA that signed the API's certificate: the cluster CA, a node's DATA/tls/ca.pem (MARINA_CACERT; default: the system's CAs)")
	pf.StringVar(&a.token, "token", "", "API token (MARINA_TOKEN)")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: table or json")
	pf.DurationVar(&a.retryFor, "retry-for", 30*time.Second, "while the cluster has no leader, keep retrying a change this long (MARINA_RETRY_FOR)")
	root.AddCommand(a.serverCmd(), a.upCmd(), a.dbCmd(), a.nodeCmd(), a.statusCmd(), a.eventsCmd(), a.zoneCmd(), a.proxyCmd())
	root.AddCommand(a.checkCmd(), a.doctorCmd(), a.caCmd())
	root.CompletionOptions.DisableDefaultCmd = true
	return root
}

func (a *app) client() (*client.Client, error) {
	if a.token == "" {
		return nil, errors.New("no API token: pass --token or set MARINA_TOKEN (marina up prints it and writes it to DIR/env)")
	}
	var tc *tls.Config
	if a.cacert != "" {
		if _, err := client.LoadCAFile(a.cacert); err != nil {
			return nil, fmt.Errorf("--cacert: %v", err)
		}
		tc = client.CAFile(a.cacert)
	}
	c := client.New(a.addr, a.token, tc)
	// During an election or a partition: say so once, keep trying for a
	// while, and mark reads answered from a node's own copy of the state.
	c.RetryFor = a.retryFor
	said := false
	c.OnRetry = func(msg string) {
		if !said {
			fmt.Fprintf(a.errOut, "marina: no leader, retrying for up to %s (%s)\n", c.RetryFor, oneLine(msg))
			said = true
		}
	}
	c.OnLocal = func(msg string, stale time.Duration) {
		when := "not since it started"
		if stale >= 0 {
			when = stale.Round(100*time.Millisecond).String() + " ago"
		}
		fmt.Fprintf(a.errOut, "marina: warning: %s; it last heard from a leader %s\n", oneLine(msg), when)
	}
	return c, nil
}

func ctx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), 60*time.Second)
}

func (a *app) json(v any) error {
	enc := json.NewEncoder(a.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

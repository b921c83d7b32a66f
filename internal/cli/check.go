package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/marina-redis/marina/internal/api"
	"github.com/marina-redis/marina/internal/health"
)

// exitError ends the process with code once the command has printed what
// it had to say (check's status line, doctor's table).
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// nagiosCommand marks a command whose every failure, usage errors
// included, is a Nagios UNKNOWN: exit 3 and one status line on stdout.
const nagiosCommand = "nagios"

// exitCode maps a failed command to the process exit code; false leaves
// the default (one line on stderr, exit 1).
func (a *app) exitCode(cmd *cobra.Command, err error) (int, bool) {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code, true
	}
	if cmd != nil && cmd.Annotations[nagiosCommand] != "" {
		fmt.Fprintln(a.out, health.UnknownResult(err.Error()).Line())
		return health.Unknown, true
	}
	return 0, false
}

func (a *app) checkCmd() *cobra.Command {
	lim := health.DefaultLimits()
	var (
		db      string
		timeout time.Duration
		lag     string
		memPct  float64
	)
	cmd := &cobra.Command{
		Use:   "check [--db NAME]",
		Short: "Nagios check of the cluster (or one database): exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN",
		Long: `Prints one Nagios status line with performance data and exits 0 (OK), 1 (WARNING),
2 (CRITICAL) or 3 (UNKNOWN: the API unreachable, a wrong token, an unknown --db, a usage error).

CRITICAL: no Raft leader or too few voters up; a shard without a master for longer than
--failover-critical, or whose master is down or not answering (unless flap damping holds its
failover for no longer than --failover-critical); a database with most instances down.
WARNING: a node down or draining; a failover in progress; a down master whose failover flap
damping delays (with the time left); a shard with --flap-max or more failovers within
--flap-window (its next one is spaced); a replica missing, down, not answering, unlinked or
lagging more than --lag; memory above --memory-percent of maxmemory (databases that do not
evict).

See docs/operations.md for a Nagios command definition.`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{nagiosCommand: "true"},
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := api.ParseSize(lag)
			if err != nil {
				return fmt.Errorf("--lag: %v", err)
			}
			if memPct < 0 || memPct > 100 {
				return fmt.Errorf("--memory-percent %g: must be 0..100 (0: no check)", memPct)
			}
			if timeout <= 0 {
				return fmt.Errorf("--timeout %s: must be positive", timeout)
			}
			lim.LagBytes, lim.MemoryRatio = n, memPct/100
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			var res health.Result
			in, err := health.Gather(ctx, c, db)
			if err != nil {
				if ctx.Err() != nil {
					err = fmt.Errorf("no answer from %s within %s", a.addr, timeout)
				}
				res = health.UnknownResult(err.Error())
			} else {
				res = health.Evaluate(in, lim)
			}
			fmt.Fprintln(a.out, res.Line())
			if res.Code != health.OK {
				return &exitError{res.Code}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&db, "db", "", "check only this database")
	f.DurationVar(&timeout, "timeout", 10*time.Second, "UNKNOWN when the API has not answered within this")
	f.DurationVar(&lim.FailoverCritical, "failover-critical", lim.FailoverCritical, "a shard without a master is WARNING (failover in progress) this long, CRITICAL after")
	f.StringVar(&lag, "lag", "16MiB", "WARNING when a replica is further behind its master (0: no check)")
	f.Float64Var(&memPct, "memory-percent", lim.MemoryRatio*100, "WARNING when an instance uses more of maxmemory (databases that do not evict; 0: no check)")
	f.IntVar(&lim.Damping.Free, "flap-max", lim.Damping.Free, "the servers' --flap-max, to tell when flap damping holds a shard's failover")
	f.DurationVar(&lim.Damping.Window, "flap-window", lim.Damping.Window, "the servers' --flap-window")
	f.DurationVar(&lim.Damping.Delay, "flap-delay", lim.Damping.Delay, "the servers' --flap-delay")
	f.DurationVar(&lim.Damping.MaxDelay, "flap-delay-max", lim.Damping.MaxDelay, "the servers' --flap-delay-max")
	return cmd
}

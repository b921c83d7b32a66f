package cli

import (
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) dbFailover() *cobra.Command {
	var shard int
	var force bool
	cmd := &cobra.Command{
		Use:   "failover NAME [--shard N] [--force]",
		Short: "Planned switchover with zero lost writes: a replica becomes master",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := ctx(cmd)
			defer cancel()
			res, err := c.Switchover(ctx, args[0], shard, force)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.json(res)
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SHARD\tFROM\tTO\tWRITE PAUSE")
			for _, r := range res {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", r.Shard, r.From, r.To, r.Pause.Round(time.Millisecond))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().IntVar(&shard, "shard", -1, "only this shard (default: every shard)")
	cmd.Flags().BoolVar(&force, "force", false, "finish a blocked failover with the best reachable replica, even one whose link was down long")
	return cmd
}

func (a *app) nodeDrain(on bool) *cobra.Command {
	use, short := "drain ID", "Move every master and replica off a node, for maintenance"
	if !on {
		use, short = "undrain ID", "Let a drained node take instances again"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := ctx(cmd)
			defer cancel()
			if err := c.Drain(ctx, args[0], on); err != nil {
				return err
			}
			if a.output == "json" {
				return a.json(map[string]any{"node": args[0], "draining": on})
			}
			if on {
				fmt.Fprintf(a.out, "draining %s: masters switch over and replicas move away; follow with `marina node list` and `marina events`\n", args[0])
			} else {
				fmt.Fprintf(a.out, "%s takes new instances again\n", args[0])
			}
			return nil
		},
	}
}

func (a *app) eventsCmd() *cobra.Command {
	var db string
	cmd := &cobra.Command{
		Use:   "events [--db NAME]",
		Short: "Failovers, switchovers, heals, moves and fences, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := ctx(cmd)
			defer cancel()
			evs, err := c.Events(ctx, db)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.json(evs)
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tTYPE\tDB\tSHARD\tNODE\tINSTANCE\tREASON")
			for _, e := range evs {
				shard := "-"
				if e.DB != "" {
					shard = strconv.Itoa(e.Shard)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Format("2006-01-02T15:04:05.000Z07:00"), e.Type, dash(e.DB), shard,
					dash(e.Node), dash(e.Instance), e.Reason)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&db, "db", "", "only this database's events")
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (a *app) zoneCmd() *cobra.Command {
	z := &cobra.Command{Use: "zone", Short: "Zone settings"}
	z.AddCommand(&cobra.Command{
		Use:   "priority ZONE N",
		Short: "Set the replica priority of a zone's instances (0: never promoted, e.g. a secondary site)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			prio, err := strconv.Atoi(args[1])
			if err != nil {
				return fmt.Errorf("priority %q: must be a number 0..1000", args[1])
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := ctx(cmd)
			defer cancel()
			if err := c.SetZonePriority(ctx, args[0], prio); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "zone %s: replica priority %d\n", args[0], prio)
			return nil
		},
	})
	return z
}

// nodeLead moves the Raft leadership to a node: before maintenance of the
// leader's host, so the cluster re-elects on purpose rather than after a
// timeout.
func (a *app) nodeLead() *cobra.Command {
	return &cobra.Command{
		Use:   "lead ID",
		Short: "Hand the Raft leadership to a voting node",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := ctx(cmd)
			defer cancel()
			if err := c.Lead(ctx, args[0]); err != nil {
				return err
			}
			if a.output == "json" {
				return a.json(map[string]any{"leader": args[0]})
			}
			fmt.Fprintf(a.out, "%s leads\n", args[0])
			return nil
		},
	}
}

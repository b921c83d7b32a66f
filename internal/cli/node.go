package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/marina-redis/marina/internal/api"
)

func (a *app) nodeCmd() *cobra.Command {
	n := &cobra.Command{Use: "node", Short: "Cluster nodes"}
	n.AddCommand(a.nodeDrain(true), a.nodeDrain(false), a.nodeLead())
	n.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List nodes with capacity, allocated and used memory, instances",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := ctx(cmd)
			defer cancel()
			nodes, err := c.Nodes(ctx)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.json(nodes)
			}
			a.nodeTable(nodes)
			return nil
		},
	})
	return n
}

func raftRole(n api.Node) string {
	switch {
	case n.Leader:
		return "leader"
	case n.Voter:
		return "voter"
	default:
		return "nonvoter"
	}
}

func (a *app) nodeTable(nodes []api.Node) {
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tADDR\tZONE\tSTATUS\tRAFT\tMEMORY\tALLOCATED\tUSED\tINSTANCES\tMASTERS\tRUNNING\tSENTINEL")
	for _, n := range nodes {
		zone := n.Zone
		if zone == "" {
			zone = "-"
		}
		status := n.Status
		if n.Draining {
			status += ",draining"
		}
		sentinel := n.SentinelAddr
		if sentinel == "" {
			sentinel = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", n.ID, n.HTTPAddr, zone, status, raftRole(n),
			humanize.IBytes(uint64(n.Memory)), humanize.IBytes(uint64(n.Allocated)), humanize.IBytes(uint64(n.Used)),
			n.Instances, n.Masters, n.Running, sentinel)
	}
	tw.Flush()
}

func (a *app) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Cluster overview",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := ctx(cmd)
			defer cancel()
			st, err := c.Status(ctx)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.json(st)
			}
			leader := st.Leader
			if leader == "" {
				leader = "none (no quorum)"
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "leader:\t%s %s\n", leader, st.LeaderAddr)
			fmt.Fprintf(tw, "nodes:\t%d up of %d\n", st.NodesUp, len(st.Nodes))
			fmt.Fprintf(tw, "databases:\t%d ready of %d\n", st.DBsReady, st.DBs)
			fmt.Fprintf(tw, "instances:\t%d running of %d\n", st.InstancesRunning, st.Instances)
			fmt.Fprintf(tw, "memory:\t%s allocated of %s\n", humanize.IBytes(uint64(st.Allocated)), humanize.IBytes(uint64(st.Memory)))
			tw.Flush()
			fmt.Fprintln(a.out)
			a.nodeTable(st.Nodes)
			return nil
		},
	}
}

package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/marina-redis/marina/internal/doctor"
)

func (a *app) doctorCmd() *cobra.Command {
	var (
		node, root, redisServer string
		needs                   doctor.Needs
	)
	cmd := &cobra.Command{
		Use:   "doctor [--node ID]",
		Short: "Check this host's settings for redis-server (overcommit, huge pages, open files, backlog, version); exit 1 on warnings",
		Long: `Checks what redis-server needs from the host: vm.overcommit_memory, transparent huge pages,
the open-files limit (and fs.file-max), net.core.somaxconn against redis's tcp-backlog, and the
installed redis-server's version. Each check is OK or WARN with the command that fixes it.
Exit 0 when every check passes, 1 otherwise.

Run on a host, it reads that host and the limits of the shell it runs in. With --node it asks
the cluster (MARINA_ADDR, MARINA_TOKEN) for what that node's running server sees instead.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := ctx(cmd)
			defer cancel()
			var rep doctor.Report
			if node != "" {
				c, err := a.client()
				if err != nil {
					return err
				}
				r, err := c.NodeDoctor(ctx, node)
				if err != nil {
					return err
				}
				rep = *r
			} else {
				rep = doctor.Run(ctx, root, redisServer, needs)
			}
			if a.output == "json" {
				if err := a.json(rep); err != nil {
					return err
				}
			} else {
				a.doctorTable(rep)
			}
			if !rep.OK() {
				return &exitError{1}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&node, "node", "", "report what this cluster node sees (asked through the API) instead of this host")
	f.StringVar(&redisServer, "redis-server", "redis-server", "the redis-server binary marina server uses")
	f.IntVar(&needs.Instances, "instances", 1, "redis-servers this host runs (for fs.file-max)")
	f.IntVar(&needs.ProxyEndpoints, "proxy-endpoints", 0, "database endpoints this host serves (for the open-files limit)")
	f.IntVar(&needs.ProxyMaxClients, "proxy-max-clients", 10000, "the server's --proxy-max-clients")
	f.StringVar(&root, "root", "/", "root of the filesystem to read /proc and /sys under")
	_ = f.MarkHidden("root") // for tests
	return cmd
}

func (a *app) doctorTable(rep doctor.Report) {
	if rep.Node != "" {
		fmt.Fprintf(a.out, "node %s\n", rep.Node)
	}
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tSTATUS\tVALUE\tWANT\tFIX")
	for _, c := range rep.Checks {
		fix := c.Fix
		if fix == "" {
			fix = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Name, strings.ToUpper(c.Status), c.Value, c.Want, fix)
	}
	tw.Flush()
}

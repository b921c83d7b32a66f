package cli

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/marina-redis/marina/internal/api"
	"github.com/marina-redis/marina/internal/up"
)

func (a *app) upCmd() *cobra.Command {
	var o up.Options
	var memory string
	cmd := &cobra.Command{
		Use:   "up [--nodes 3] [--dir DIR]",
		Short: "Start a local cluster on loopback; Ctrl-C stops it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if memory != "" {
				m, err := api.ParseSize(memory)
				if err != nil {
					return err
				}
				o.Memory = m
			}
			o.Out, o.Log = a.out, a.errOut
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return up.Run(ctx, o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Nodes, "nodes", 3, "number of nodes (on 127.0.0.1, 127.0.0.2, ...)")
	f.StringVar(&o.Dir, "dir", ".marina", "directory for the nodes' data, logs and the env file")
	f.IntVar(&o.BasePort, "base-port", 7070, "HTTP port of every node; Raft uses the next, the Sentinel protocol +2, database endpoints +10..+199, redis-servers +200..+999")
	f.StringVar(&o.ProxyPorts, "proxy-ports", "", "database endpoints' port range FROM-TO, one port per database (default: base port +10..+199)")
	f.StringVar(&memory, "memory", "", "memory per node (default: 60% of RAM split across nodes)")
	f.StringVar(&o.RedisServer, "redis-server", "redis-server", "redis-server binary")
	return cmd
}

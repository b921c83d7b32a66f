package cli

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/marina-redis/marina/internal/api"
)

func (a *app) dbCmd() *cobra.Command {
	db := &cobra.Command{Use: "db", Short: "Create, show, change and delete databases"}
	db.AddCommand(a.dbCreate(), a.dbList(), a.dbShow(), a.dbUpdate(), a.dbDelete(), a.dbFailover())
	return db
}

type specFlags struct {
	memory, persistence, eviction, password, owner, durability, readFrom string
	shards, replicas                                                     int
	labels                                                               []string
}

func (f *specFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.memory, "memory", "", "maxmemory per shard, e.g. 64MiB, 1GiB")
	fl.IntVar(&f.shards, "shards", 1, "number of shards (1..256)")
	fl.IntVar(&f.replicas, "replicas", 0, "replicas per shard (0..5)")
	fl.StringVar(&f.persistence, "persistence", "none", "none, rdb or aof")
	fl.StringVar(&f.eviction, "eviction", "noeviction", "maxmemory-policy")
	fl.StringVar(&f.password, "password", "", "client password (generated when not given)")
	fl.StringVar(&f.owner, "owner", "", "owner")
	fl.StringArrayVar(&f.labels, "label", nil, "label KEY=VALUE (repeatable)")
	fl.StringVar(&f.readFrom, "read-from", "master", "where the endpoint sends reads: master, replica (in sync, else master) or any")
	fl.StringVar(&f.durability, "durability", "async", "async, or replicated: the endpoint acknowledges a write once a replica has it")
}

func parseLabels(in []string) (map[string]string, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, l := range in {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--label %q: use KEY=VALUE", l)
		}
		out[k] = v
	}
	return out, nil
}

func (a *app) dbCreate() *cobra.Command {
	var f specFlags
	cmd := &cobra.Command{
		Use:   "create NAME --memory SIZE [--shards N] [--replicas N] [--persistence none|rdb|aof] [--eviction POLICY] [--password PW]",
		Short: "Create a database",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.memory == "" {
				return fmt.Errorf("--memory is required, e.g. --memory 64MiB")
			}
			// 0 would reach the API as "not given" and become 1 shard.
			if f.shards < 1 || f.shards > 256 {
				return fmt.Errorf("--shards %d: must be 1..256", f.shards)
			}
			if f.replicas < 0 {
				return fmt.Errorf("--replicas %d: must be 0 or more", f.replicas)
			}
			mem, err := api.ParseSize(f.memory)
			if err != nil {
				return fmt.Errorf("--memory: %v", err)
			}
			labels, err := parseLabels(f.labels)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := ctx(cmd)
			defer cancel()
			db, err := c.CreateDB(ctx, api.CreateDBRequest{Name: args[0], Memory: api.Size(mem), Shards: f.shards, Replicas: f.replicas,
				Persistence: f.persistence, Eviction: f.eviction, Password: f.password, Owner: f.owner, Labels: labels, Durability: f.durability, ReadFrom: f.readFrom})
			if err != nil {
				return err
			}
			return a.showDB(db)
		},
	}
	f.register(cmd)
	return cmd
}

func (a *app) dbUpdate() *cobra.Command {
	var f specFlags
	cmd := &cobra.Command{
		Use:   "update NAME [--memory SIZE] [--replicas N] [--persistence P] [--eviction POLICY] [--password PW]",
		Short: "Change a database; applied live where Redis allows it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var req api.UpdateDBRequest
			fl := cmd.Flags()
			changed := false
			if fl.Changed("memory") {
				mem, err := api.ParseSize(f.memory)
				if err != nil {
					return fmt.Errorf("--memory: %v", err)
				}
				s := api.Size(mem)
				req.Memory, changed = &s, true
			}
			if fl.Changed("shards") {
				req.Shards, changed = &f.shards, true
			}
			if fl.Changed("replicas") {
				req.Replicas, changed = &f.replicas, true
			}
			if fl.Changed("persistence") {
				req.Persistence, changed = &f.persistence, true
			}
			if fl.Changed("eviction") {
				req.Eviction, changed = &f.eviction, true
			}
			if fl.Changed("password") {
				req.Password, changed = &f.password, true
			}
			if fl.Changed("read-from") {
				req.ReadFrom, changed = &f.readFrom, true
			}
			if fl.Changed("durability") {
				req.Durability, changed = &f.durability, true
			}
			if fl.Changed("owner") {
				req.Owner, changed = &f.owner, true
			}
			if fl.Changed("label") {
				labels, err := parseLabels(f.labels)
				if err != nil {
					return err
				}
				req.Labels, changed = labels, true
			}
			if !changed {
				return fmt.Errorf("nothing to change: pass at least one of --memory, --replicas, --persistence, --eviction, --password, --owner, --label")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := ctx(cmd)
			defer cancel()
			db, err := c.UpdateDB(ctx, args[0], req)
			if err != nil {
				return err
			}
			return a.showDB(db)
		},
	}
	f.register(cmd)
	return cmd
}

func (a *app) dbDelete() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a database and its data",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := ctx(cmd)
			defer cancel()
			if err := c.DeleteDB(ctx, args[0]); err != nil {
				return err
			}
			if a.output == "json" {
				return a.json(map[string]string{"deleted": args[0]})
			}
			fmt.Fprintf(a.out, "deleted %s\n", args[0])
			return nil
		},
	}
}

func (a *app) dbList() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List databases",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := ctx(cmd)
			defer cancel()
			dbs, err := c.ListDBs(ctx)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.json(dbs)
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSHARDS\tREPLICAS\tMEMORY\tPERSISTENCE\tEVICTION\tSTATUS\tOWNER")
			for _, d := range dbs {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", d.Name, d.ShardCount, d.Replicas, humanize.IBytes(uint64(d.Memory)),
					d.Persistence, d.Eviction, d.Status, d.Owner)
			}
			return tw.Flush()
		},
	}
}

func (a *app) dbShow() *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Show a database: spec, password, shards and instances",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := ctx(cmd)
			defer cancel()
			db, err := c.GetDB(ctx, args[0])
			if err != nil {
				return err
			}
			return a.showDB(db)
		},
	}
}

func (a *app) showDB(d *api.DB) error {
	if a.output == "json" {
		return a.json(d)
	}
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "name:\t%s\n", d.Name)
	fmt.Fprintf(tw, "status:\t%s\n", d.Status)
	fmt.Fprintf(tw, "memory:\t%s per shard\n", humanize.IBytes(uint64(d.Memory)))
	fmt.Fprintf(tw, "shards:\t%d x (1 master + %d replicas)\n", d.ShardCount, d.Replicas)
	fmt.Fprintf(tw, "persistence:\t%s\n", d.Persistence)
	fmt.Fprintf(tw, "eviction:\t%s\n", d.Eviction)
	fmt.Fprintf(tw, "durability:\t%s\n", d.Durability)
	fmt.Fprintf(tw, "read-from:\t%s\n", d.ReadFrom)
	fmt.Fprintf(tw, "password:\t%s\n", d.Password)
	fmt.Fprintf(tw, "endpoints:\t%s\n", strings.Join(d.Endpoints, " "))
	if d.Owner != "" {
		fmt.Fprintf(tw, "owner:\t%s\n", d.Owner)
	}
	if len(d.Labels) > 0 {
		keys := make([]string, 0, len(d.Labels))
		for k := range d.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, k+"="+d.Labels[k])
		}
		fmt.Fprintf(tw, "labels:\t%s\n", strings.Join(parts, ", "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(a.out)
	tw = tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SHARD\tSLOTS\tROLE\tNODE\tADDR\tSTATE\tLINK\tOFFSET\tUSED")
	for _, sh := range d.Shards {
		for _, in := range append([]api.Instance{sh.Master}, sh.Replicas...) {
			link := "-"
			if in.Role == "replica" {
				link = map[bool]string{true: "up", false: "down"}[in.LinkUp]
			}
			fmt.Fprintf(tw, "%d\t%d-%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", sh.Index, sh.SlotStart, sh.SlotEnd, in.Role, in.Node, in.Addr,
				in.State, link, in.Offset, humanize.IBytes(uint64(in.UsedMemory)))
		}
	}
	return tw.Flush()
}

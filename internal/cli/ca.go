package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) caCmd() *cobra.Command {
	c := &cobra.Command{Use: "ca", Short: "The cluster's certificate authority (docs/security.md)"}
	c.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "Show the CA, a rotation in progress, and each node's certificate",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := ctx(cmd)
			defer cancel()
			st, err := cl.CA(ctx)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.json(st)
			}
			fmt.Fprintf(a.out, "active CA %s (expires %s)\n", st.Active.Fingerprint[:16], st.Active.NotAfter.Format(time.DateOnly))
			for _, r := range st.Retired {
				fmt.Fprintf(a.out, "retired CA %s, still trusted until the rotation finishes\n", r.Fingerprint[:16])
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NODE\tCERTIFICATE\tEXPIRES")
			for _, n := range st.Nodes {
				what := "from the active CA"
				switch {
				case n.Issuer == "":
					what = "unknown (no report)"
				case !n.Current:
					what = "from a retired CA (renewing)"
				}
				exp := "-"
				if !n.NotAfter.IsZero() {
					exp = n.NotAfter.Format(time.DateTime)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", n.Node, what, exp)
			}
			return tw.Flush()
		},
	})
	c.AddCommand(&cobra.Command{
		Use:   "rotate",
		Short: "Start a CA rotation: a new CA signs, every node renews, the old CA stays trusted until `ca finish`",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := ctx(cmd)
			defer cancel()
			fp, err := cl.RotateCA(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.out, "new CA %s signs from now on; nodes renew their certificates now. When `marina ca status` shows every node on it, run `marina ca finish`.\n", fp[:16])
			return nil
		},
	})
	var force bool
	finish := &cobra.Command{
		Use:   "finish",
		Short: "Finish a CA rotation: stop trusting the old CA (refused while a node still holds one of its certificates)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := ctx(cmd)
			defer cancel()
			if err := cl.FinishCARotation(ctx, force); err != nil {
				return err
			}
			fmt.Fprintln(a.out, "rotation finished: only the new CA is trusted")
			return nil
		},
	}
	finish.Flags().BoolVar(&force, "force", false, "finish even if some nodes have not renewed (they must join again)")
	c.AddCommand(finish)
	return c
}

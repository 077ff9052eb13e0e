package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/migrahosting/cloudpods/provisioner"
)

// newTemplateCopyCommand is `template copy`: per-node copies of the golden
// template, so that clones on every node run at once.
func newTemplateCopyCommand(g *globalOptions) *cobra.Command {
	var req provisioner.TemplateCopyRequest
	var all bool
	cmd := &cobra.Command{
		Use:   "copy [TEMPLATE] --node NODE | --all-nodes",
		Short: "Copy the golden template to other nodes, so that pods there clone from a template of their own",
		Long: `Copy the golden template (CT 9000 unless given) to another node of the cluster, as a template of its
own there. PVE locks a template for the whole of a clone, so clones of one template go one at a time,
whatever node they are for; with a copy on each node, create --node auto clones every node's pods from
that node's copy, at the same time. The copy is a full clone: with target straight onto the node when it
lands on shared storage (the template's own storage if it is shared, or --storage), else on the
template's node and then migrated there. Its description names what it copies. A copy is as old as its
making: after rebuilding the golden template, destroy the copies and copy again.`,
		Example: `  cloudpod template copy --all-nodes
  cloudpod template copy 9000 --node pve2 --vmid 9001 --storage clients-main`,
		Args: cobra.RangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Template = provisioner.DefaultSpec().Template
			if len(args) == 1 {
				vmid, err := vmidArg(args[0])
				if err != nil {
					return err
				}
				req.Template = vmid
			}
			if (req.Node == "") == !all {
				return fmt.Errorf("%w: give --node NODE or --all-nodes", errUsage)
			}
			if all && req.VMID != 0 {
				return fmt.Errorf("%w: --vmid names one copy: give it with --node, not --all-nodes", errUsage)
			}
			prov, err := g.connect(cmd)
			if err != nil {
				return err
			}
			prog := newProgress(g)
			defer prog.Close()
			req.Reporter, req.Requester = prog, g.requester
			var results []provisioner.TemplateCopyResult
			if all {
				results, err = prov.CopyTemplateToAll(cmd.Context(), req)
			} else {
				var res provisioner.TemplateCopyResult
				res, err = prov.CopyTemplate(cmd.Context(), req)
				results = append(results, res)
			}
			prog.Close()
			for _, res := range results {
				if g.output == "json" {
					writeJSON(g.stdout, res)
					continue
				}
				if res.VMID == 0 {
					continue
				}
				what := "made"
				if !res.Changed {
					what = "there already"
				}
				fmt.Fprintf(g.stdout, "CT %d is CT %d's copy on node %s (storage %s): %s\n", res.VMID, res.Template, res.Node, res.Storage, what)
			}
			if all && len(results) == 0 && err == nil && g.output != "json" {
				fmt.Fprintln(g.stdout, "no other node is online: nothing to copy")
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Node, "node", "", "node to copy the template to")
	f.BoolVar(&all, "all-nodes", false, "copy it to every online node that has no copy yet")
	f.IntVar(&req.VMID, "vmid", 0, "VMID of the copy (default: the first free one above the template's)")
	f.StringVar(&req.Storage, "storage", "", "storage of the copy on its node (default: the template's, when shared; else the same storage on the node)")
	return cmd
}

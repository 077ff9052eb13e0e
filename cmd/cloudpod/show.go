package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/migrahosting/cloudpods/provisioner"
)

func newShowCommand(g *globalOptions) *cobra.Command {
	var node string
	cmd := &cobra.Command{
		Use:   "show VMID",
		Short: "Show a CloudPod's PVE config, backups and snapshots",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			vmid, err := vmidArg(args[0])
			if err != nil {
				return err
			}
			prov, err := g.connect(cmd)
			if err != nil {
				return err
			}
			info, err := prov.Inspect(cmd.Context(), node, vmid)
			if provisioner.KindOf(err) == provisioner.KindNotFound {
				return fmt.Errorf("CT %d does not exist %s.%w", vmid, whereText(info.Node), quiet{err})
			}
			if err != nil {
				return err
			}
			cfg := info.Config
			marker, ours := provisioner.ParseMarker(cfg.Get("description"))
			if g.output == "json" {
				writeJSON(g.stdout, map[string]interface{}{"vmid": vmid, "kind": info.Kind, "node": info.Node, "config": cfg.Values, "marker": marker,
					"ours": ours, "backups": info.Backups, "snapshots": info.Snapshots})
				return nil
			}
			keys := make([]string, 0, len(cfg.Values))
			for k := range cfg.Values {
				if k != "description" {
					keys = append(keys, k)
				}
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(g.stdout, "%-13s %s\n", k+":", cfg.Values[k])
			}
			if ours {
				fmt.Fprintf(g.stdout, "%-13s cloudpods, tenant %s, state %s, created %s\n", "owner:", orNone(strings.Fields(marker.Tenant)), marker.State, marker.Created.Format("2006-01-02 15:04:05Z"))
			} else {
				fmt.Fprintf(g.stdout, "%-13s not created by cloudpods\n", "owner:")
			}
			fmt.Fprintf(g.stdout, "%-13s %s\n", "backups:", orNone(info.Backups))
			fmt.Fprintf(g.stdout, "%-13s %s\n", "snapshots:", orNone(info.Snapshots))
			return nil
		},
	}
	cmd.Flags().StringVar(&node, "node", "", nodeFlagHelp)
	return cmd
}

// nodeFlagHelp is --node of the commands that find a guest themselves.
const nodeFlagHelp = "PVE node the guest is on (default: wherever the cluster has it)"

// whereText is "on node pve", or "in the cluster" without a node.
func whereText(node string) string {
	if node == "" {
		return "in the cluster"
	}
	return "on node " + node
}

func orNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

// quiet keeps an error in the chain, where its kind decides the exit code,
// without its text in the message (PVE's own words about a missing
// config file, when one sentence of ours says it).
type quiet struct{ err error }

func (q quiet) Error() string { return "" }
func (q quiet) Unwrap() error { return q.err }

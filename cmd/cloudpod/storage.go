package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/migrahosting/cloudpods/provisioner"
)

func newStorageCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "storage",
		Short: "The node's storages: content types and how full they are",
	}
	var node, content string
	list := &cobra.Command{
		Use:   "list",
		Short: "Every storage with its content types, used/total and a bar; the fullest is marked",
		Long: `List the node's storages as --storage auto sees them: type, content types, used of total with a
bar, and the fill level. auto picks, among the active storages that hold the content type, the one with
the most room; it warns at 85 % used and never picks one at 98 % or more (marked FULL).`,
		Example: `  cloudpod storage list
  cloudpod storage list --content rootdir`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			prov, err := g.connect(cmd)
			if err != nil {
				return err
			}
			rows, err := prov.StorageList(cmd.Context(), node)
			if err != nil {
				return err
			}
			if content != "" {
				kept := rows[:0]
				for _, r := range rows {
					if containsString(r.Content, content) {
						kept = append(kept, r)
					}
				}
				rows = kept
			}
			if g.output == "json" {
				for _, r := range rows {
					writeJSON(g.stdout, struct {
						Type string `json:"type"`
						provisioner.StorageRow
					}{"storage", r})
				}
				return nil
			}
			printStorageRows(g.stdout, rows)
			return nil
		},
	}
	list.Flags().StringVar(&node, "node", provisioner.DefaultSpec().Node, "PVE node")
	list.Flags().StringVar(&content, "content", "", "only storages holding this content type (rootdir, images, vztmpl, iso, import, backup)")
	cmd.AddCommand(list)
	return cmd
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// storageBar is a fill bar of width cells.
func storageBar(fraction float64, width int) string {
	n := int(fraction*float64(width) + 0.5)
	n = min(max(n, 0), width)
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}

func printStorageRows(w io.Writer, rows []provisioner.StorageRow) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STORAGE\tTYPE\tCONTENT\tUSED\tTOTAL\t\tUSE\t")
	for _, r := range rows {
		used, total, bar, pct := humanSize(r.Used), humanSize(r.Total), storageBar(r.UsedFraction, 20), fmt.Sprintf("%.0f%%", 100*r.UsedFraction)
		note := ""
		switch {
		case !r.Enabled:
			used, total, bar, pct, note = "-", "-", "", "", "disabled"
		case !r.Active:
			used, total, bar, pct, note = "-", "-", "", "", "inactive"
		case r.Level == "full":
			note = "FULL (not chosen)"
		case r.Level == "warn":
			note = "nearly full"
		}
		if r.Fullest {
			note = strings.TrimPrefix(note+", fullest", ", ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Type, strings.Join(r.Content, ","), used, total, bar, pct, note)
	}
	tw.Flush()
}

package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/migrahosting/cloudpods/provisioner"
)

func newTemplateCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "template",
		Short: "Container templates: PVE's catalogue, downloads with checksums, and the golden template CT 9000",
	}
	cmd.AddCommand(newTemplateListCommand(g), newTemplateDownloadCommand(g))
	for _, sub := range templateGoldenCommands(g) {
		cmd.AddCommand(sub)
	}
	return cmd
}

func newTemplateListCommand(g *globalOptions) *cobra.Command {
	var node string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "What PVE's appliance catalogue offers and what each template storage already holds",
		Example: `  cloudpod template list
  cloudpod template list -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			prov, err := g.connect(cmd)
			if err != nil {
				return err
			}
			list, err := prov.Templates(cmd.Context(), node)
			if err != nil {
				return err
			}
			if g.output == "json" {
				for _, t := range list {
					writeJSON(g.stdout, struct {
						Type string `json:"type"`
						provisioner.TemplateEntry
					}{"template", t})
				}
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "TEMPLATE\tOS\tCATALOGUE\tON STORAGE")
			for _, t := range list {
				held := make([]string, len(t.Held))
				for i, h := range t.Held {
					held[i] = h.VolID
				}
				cat := "-"
				if t.InCatalogue {
					cat = "yes"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Template, orDash(t.OS), cat, orDash(strings.Join(held, ", ")))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&node, "node", provisioner.DefaultSpec().Node, "PVE node")
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newTemplateDownloadCommand(g *globalOptions) *cobra.Command {
	f := &contentFlags{}
	cmd := &cobra.Command{
		Use:   "download NAME|URL",
		Short: "Put a container template on a storage: from PVE's catalogue, or from a URL with its checksum",
		Long: `Download a container template onto a template storage (vztmpl).

NAME is an entry of PVE's appliance catalogue (cloudpod template list): PVE downloads it and verifies it
against the catalogue's sha512 (POST /nodes/{node}/aplinfo). A URL is fetched by PVE itself
(download-url) and verified against --checksum ALGO:HEX; without a checksum it is refused unless
--no-verify is given. download-url needs the Sys.AccessNetwork privilege (PVEAdmin lacks it).

A copy already on the storage is reused only when PVE confirms its checksum ("OK, got correct file
already"); nothing is fetched then. A checksum that does not match fails naming both sums, and
nothing is stored.`,
		Example: `  cloudpod template download debian-12-standard_12.7-1_amd64.tar.zst --storage local
  cloudpod template download https://mirror.example/t/custom_1.0_amd64.tar.zst --checksum sha256:9f86d0… --storage local`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			prov, err := g.connect(cmd)
			if err != nil {
				return err
			}
			req, err := f.request(g, "vztmpl", args[0])
			if err != nil {
				return err
			}
			return runContent(cmd.Context(), g, prov, req, "template", f.dryRun)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.node, "node", provisioner.DefaultSpec().Node, "PVE node")
	fl.StringVar(&f.storage, "storage", provisioner.StorageAuto, "template storage, or auto: the active vztmpl storage with the most room")
	fl.StringVar(&f.checksum, "checksum", "", "ALGO:HEX the file must have (md5, sha1, sha224, sha256, sha384, sha512)")
	fl.StringVar(&f.filename, "filename", "", "file name on the storage (default: the URL's)")
	fl.BoolVar(&f.noVerify, "no-verify", false, "take a URL's file without a checksum")
	fl.BoolVar(&f.dryRun, "dry-run", false, "check everything and print the calls it would make; change nothing")
	return cmd
}

// templateGoldenCommands are build and verify of the golden template.
func templateGoldenCommands(*globalOptions) []*cobra.Command { return nil }

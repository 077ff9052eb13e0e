package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/migrahosting/cloudpods/provisioner"
)

func newTemplateCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "template",
		Short: "Container templates: PVE's catalogue, downloads with checksums, and the golden template CT 9000",
	}
	cmd.AddCommand(newTemplateListCommand(g), newTemplateDownloadCommand(g), newTemplateCopyCommand(g))
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

// templateFlags are template build's and verify's: the golden template's
// spec, each part overridable.
type templateFlags struct {
	ct          ctFlags
	packages    []string
	services    []string
	timezone    string
	scratchVMID int
}

func (f *templateFlags) bind(fs *pflag.FlagSet) {
	def := provisioner.DefaultTemplateSpec()
	f.ct.bindCommon(fs, def.CT)
	fs.StringVar(&f.ct.spec.OSTemplate, "ostemplate", def.CT.OSTemplate, "the Ubuntu 24.04 archive; downloaded from PVE's catalogue when missing")
	fs.StringArrayVar(&f.ct.nets, "net", nil, "the template's NIC (default "+def.CT.NICs[0].String()+")")
	fs.StringSliceVar(&f.packages, "packages", def.Packages, "packages to install")
	fs.StringSliceVar(&f.services, "services", def.Services, "services to enable")
	fs.StringVar(&f.timezone, "timezone", "", "IANA timezone to set, e.g. Europe/Berlin (installs tzdata)")
	fs.IntVar(&f.scratchVMID, "scratch-vmid", 0, "VMID of the throwaway linked clone verify inspects (default: the first free from 99900)")
}

func (f *templateFlags) request(g *globalOptions) (provisioner.TemplateRequest, error) {
	ct, err := f.ct.request(g)
	if err != nil {
		return provisioner.TemplateRequest{}, err
	}
	spec := provisioner.DefaultTemplateSpec()
	spec.CT, spec.Packages, spec.Services, spec.Timezone = ct.Spec, f.packages, f.services, f.timezone
	return provisioner.TemplateRequest{Spec: spec, ScratchVMID: f.scratchVMID, KeepOnFailure: f.ct.keepOnFailure, Requester: g.requester}, nil
}

// templateGoldenCommands are build and verify of the golden template.
func templateGoldenCommands(g *globalOptions) []*cobra.Command {
	build := &templateFlags{}
	buildCmd := &cobra.Command{
		Use:   "build",
		Short: "Build the golden template CT 9000 through the API and verify it",
		Long: `Build the golden template as the CloudPods spec describes it: create CT 9000 cloudpod-template from
ubuntu-24.04-standard_24.04-2_amd64.tar.zst (downloaded from PVE's catalogue first if missing) on
clients-main (8 GB, unprivileged, nesting, 2 cores, 2048 MB, 512 MB swap), start it, install the packages
and enable the services through the console (apt with retries), set the timezone if asked, leave
/etc/netplan/50-cloud-init.yaml minimal, shut it down, convert it to a template (PVE answers null: the
config's template flag says when it is done) and verify it as "template verify" does.

Root's password comes from --password-file, never the command line. A failure rolls back the CT this run
made; the same command again converges (on a finished template it only verifies).`,
		Example: `  cloudpod template build
  cloudpod template build --timezone Europe/Berlin --password-file /root/template.pw`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			prov, err := g.connect(cmd)
			if err != nil {
				return err
			}
			req, err := build.request(g)
			if err != nil {
				return err
			}
			ctx, cancel, err := withTimeout(cmd.Context(), build.ct.timeout)
			if err != nil {
				return err
			}
			defer cancel()
			req.Reporter, req.Stop = newProgress(g), g.stop
			if build.ct.dryRun {
				return showPlan(g, "template build")(prov.PlanTemplate(ctx, req))
			}
			res, err := prov.BuildTemplate(ctx, req)
			printTemplateResult(g, res, err, "built")
			return err
		},
	}
	build.bind(buildCmd.Flags())

	verify := &templateFlags{}
	verifyCmd := &cobra.Command{
		Use:   "verify [VMID]",
		Short: "Check an existing golden template against the spec and say what differs",
		Long: `Check the golden template against the spec: its config (a template; cores, memory, swap; rootfs storage
and size; unprivileged; features; the NIC) and its inside (packages installed, services enabled, the
netplan file minimal, the timezone when --timezone is given). A template cannot run, so the inside is read
from a throwaway linked clone without a NIC, removed again whatever happens. Exit 0 when it matches, 1 with
every difference named when it does not.`,
		Example: `  cloudpod template verify 9000`,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				vmid, err := vmidArg(args[0])
				if err != nil {
					return err
				}
				verify.ct.spec.VMID = vmid
			}
			prov, err := g.connect(cmd)
			if err != nil {
				return err
			}
			req, err := verify.request(g)
			if err != nil {
				return err
			}
			req.Reporter, req.Stop = newProgress(g), g.stop
			res, err := prov.VerifyTemplate(cmd.Context(), req)
			printTemplateResult(g, res, err, "verified")
			return err
		},
	}
	verify.bind(verifyCmd.Flags())
	return []*cobra.Command{buildCmd, verifyCmd}
}

func printTemplateResult(g *globalOptions, res provisioner.TemplateResult, err error, what string) {
	if jsonResult(g, res, err) {
		return
	}
	for _, c := range res.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "DIFF"
		}
		fmt.Fprintf(g.stdout, "  %s %-26s %s\n", mark, c.Name, c.Detail)
	}
	if err != nil {
		return
	}
	if !res.Changed && what == "built" {
		what = "already built and as the spec says, nothing to do"
	}
	fmt.Fprintf(g.stdout, "CT %d %s %s: a template on %s, %d checks passed\n", res.VMID, res.Hostname, what, res.Storage, len(res.Checks))
	for _, w := range res.Warnings {
		fmt.Fprintf(g.stdout, "warning: %s\n", w)
	}
}

package main

import (
	"fmt"
	"os"
	"path"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

func newImageCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "ISO and cloud images on a storage: list, download with a checksum, verify, delete",
	}
	cmd.AddCommand(newImageListCommand(g), newImageDownloadCommand(g), newImageVerifyCommand(g), newImageDeleteCommand(g))
	return cmd
}

func newImageListCommand(g *globalOptions) *cobra.Command {
	var node, storage string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "The ISO (iso) and cloud images (import) on the node's storages",
		Example: `  cloudpod image list
  cloudpod image list --storage local -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			prov, err := g.connect(cmd)
			if err != nil {
				return err
			}
			rows, err := prov.ImageList(cmd.Context(), node, storage)
			if err != nil {
				return err
			}
			if g.output == "json" {
				for _, r := range rows {
					writeJSON(g.stdout, struct {
						Type string `json:"type"`
						provisioner.ImageRow
					}{"image", r})
				}
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "VOLUME\tCONTENT\tFORMAT\tSIZE")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.VolID, r.Content, orDash(r.Format), humanSize(r.Size))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&node, "node", provisioner.DefaultSpec().Node, "PVE node")
	cmd.Flags().StringVar(&storage, "storage", "", "only this storage")
	return cmd
}

func newImageDownloadCommand(g *globalOptions) *cobra.Command {
	f := &contentFlags{}
	var content string
	var insecure bool
	cmd := &cobra.Command{
		Use:   "download URL|FILE [--checksum ALGO:HEX] [--storage auto|NAME] [--content iso|import]",
		Short: "Put an ISO or a cloud image on a storage, verified by its checksum",
		Long: `Have PVE fetch an image from a URL onto a storage (download-url, which needs Sys.AccessNetwork), or
upload a local file; PVE verifies the checksum (--checksum, required for a URL unless --no-verify; a
local file's sha256 is computed here). An image already on the storage is reused only when PVE confirms
its checksum; a mismatch names both sums and stores nothing.

The content type comes from the name: .iso is an ISO (content iso); .qcow2, .raw, .vmdk and .ova are disk
images (content import, which PVE 8.4 or later takes for qcow2, raw and vmdk). A cloud image named .img
(usually qcow2) needs --content import and --filename NAME.qcow2: PVE takes the format from the
extension, and ISO volumes cannot be a disk's import source.`,
		Example: `  cloudpod image download https://cloud-images.example/noble-server-cloudimg-amd64.img --content import \
    --filename noble-server-cloudimg-amd64.qcow2 --checksum sha256:…
  cloudpod image download ./debian-12-genericcloud-amd64.qcow2 --storage local`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			source := args[0]
			name := f.filename
			if name == "" {
				name = path.Base(source)
			}
			if content == "" {
				c, err := provisioner.ImageContentFor(name)
				if err != nil {
					return fmt.Errorf("%w: %v", errUsage, err)
				}
				content = c
			}
			if content != "iso" && content != "import" {
				return fmt.Errorf("%w: --content %q: use iso or import", errUsage, content)
			}
			prov, err := g.connect(cmd)
			if err != nil {
				return err
			}
			req, err := f.request(g, content, source)
			if err != nil {
				return err
			}
			req.InsecureTLS = insecure
			if !strings.Contains(source, "://") {
				// A local file: uploaded, its sha256 computed here.
				if _, err := os.Stat(source); err != nil {
					return fmt.Errorf("%w: %s is neither a URL nor a readable file", errUsage, source)
				}
				req.Appliance, req.File = "", source
			}
			return runContent(cmd.Context(), g, prov, req, "image", f.dryRun)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.node, "node", provisioner.DefaultSpec().Node, "PVE node")
	fl.StringVar(&f.storage, "storage", provisioner.StorageAuto, "storage, or auto: the active one holding the content type with the most room")
	fl.StringVar(&f.checksum, "checksum", "", "the checksum PVE verifies, ALGO:HEX (md5, sha1, sha224, sha256, sha384, sha512)")
	fl.StringVar(&f.filename, "filename", "", "name on the storage (default: the source's base name); its extension says the format")
	fl.StringVar(&content, "content", "", "iso or import (default: from the file name)")
	fl.BoolVar(&f.noVerify, "no-verify", false, "take a URL's file without a checksum")
	fl.BoolVar(&insecure, "insecure-tls", false, "let PVE fetch from a host whose certificate it cannot verify")
	fl.BoolVar(&f.dryRun, "dry-run", false, "check everything, print the calls; fetch and change nothing")
	return cmd
}

func newImageVerifyCommand(g *globalOptions) *cobra.Command {
	req := provisioner.ImageVerifyRequest{}
	var checksum string
	cmd := &cobra.Command{
		Use:   "verify STORAGE:import/FILE|STORAGE:iso/FILE --checksum ALGO:HEX --url URL",
		Short: "Have PVE check a stored image against its checksum (fetching nothing)",
		Long: `Have PVE compute the checksum of an image on a storage and compare it with --checksum: through
download-url with the image's source URL, which fetches nothing when the copy there matches. A mismatch
names both sums and leaves the file as it is; an image that is not there is refused, not fetched.`,
		Example: `  cloudpod image verify local:import/noble.qcow2 --checksum sha256:… --url https://cloud-images.example/noble.qcow2`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.VolID = args[0]
			if checksum != "" {
				sum, err := pve.ParseChecksum(checksum)
				if err != nil {
					return fmt.Errorf("%w: --checksum: %v", errUsage, err)
				}
				req.Checksum = sum
			}
			prov, err := g.connect(cmd)
			if err != nil {
				return err
			}
			req.Requester, req.Reporter, req.Stop = g.requester, subjectProgress(g, "image"), g.stop
			res, err := prov.VerifyImage(cmd.Context(), req)
			if jsonResult(g, res, err) || err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s matches %s (%s): PVE confirmed it\n", res.VolID, res.Checksum, humanSize(res.Size))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Node, "node", provisioner.DefaultSpec().Node, "PVE node")
	f.StringVar(&checksum, "checksum", "", "the checksum the image must have, ALGO:HEX")
	f.StringVar(&req.URL, "url", "", "where the image came from (PVE's check goes through download-url, which takes one)")
	return cmd
}

func newImageDeleteCommand(g *globalOptions) *cobra.Command {
	req := provisioner.ImageDeleteRequest{}
	cmd := &cobra.Command{
		Use:   "delete STORAGE:import/FILE|STORAGE:iso/FILE",
		Short: "Remove an image from its storage (refused while a VM's drive holds an ISO, unless --force)",
		Example: `  cloudpod image delete local:import/noble.qcow2
  cloudpod image delete local:iso/debian-12.iso --force`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			prov, err := g.connect(cmd)
			if err != nil {
				return err
			}
			req.VolID, req.Requester, req.Reporter, req.Stop = args[0], g.requester, subjectProgress(g, "image"), g.stop
			res, err := prov.DeleteImage(cmd.Context(), req)
			if jsonResult(g, res, err) || err != nil {
				return err
			}
			if !res.Deleted {
				fmt.Fprintf(g.stdout, "%s is not there: nothing to delete\n", res.VolID)
				return nil
			}
			fmt.Fprintf(g.stdout, "%s deleted\n", res.VolID)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Node, "node", provisioner.DefaultSpec().Node, "PVE node")
	f.BoolVar(&req.Force, "force", false, "delete an ISO even while VMs have it in a drive")
	return cmd
}

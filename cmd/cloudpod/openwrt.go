package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/migrahosting/cloudpods/provisioner"
)

func newOpenWrtCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "openwrt",
		Short: "OpenWrt routers: as containers (the template from the official rootfs, and the router), and as VMs",
	}
	cmd.AddCommand(newOpenWrtTemplateCommand(g), newOpenWrtCreateCommand(g))
	cmd.AddCommand(newOpenWrtVMCommand(g))
	return cmd
}

func newOpenWrtTemplateCommand(g *globalOptions) *cobra.Command {
	req := provisioner.OpenWrtTemplateRequest{}
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "template --version V|latest [--mirror URL] [--storage S]",
		Short: "Make a container template from OpenWrt's official x86-64 rootfs, checked by its sha256",
		Long: `Fetch openwrt-<version>-x86-64-rootfs.tar.gz from the mirror (latest: the newest 24.x release its
.versions.json lists), check it against the release's sha256sums, its size, that it is gzip and tar and
holds that OpenWrt release for x86/64, then upload it to a template storage as vztmpl with its sha256, which
PVE checks again. A tarball that does not match its sha256 is refused, naming both sums, and nothing is
stored. A copy already on the storage is verified by PVE through download-url (nothing is fetched when it
matches) when the token may use download-url (Sys.AccessNetwork), else uploaded again.`,
		Example: `  cloudpod openwrt template --version latest
  cloudpod openwrt template --version 24.10.0 --mirror https://mirror.example/openwrt --storage local`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			prov, err := g.connect(cmd)
			if err != nil {
				return err
			}
			req.Requester, req.Reporter, req.Stop = g.requester, subjectProgress(g, "openwrt"), g.stop
			if dryRun {
				return showPlan(g, "openwrt template")(prov.PlanOpenWrtTemplate(cmd.Context(), req))
			}
			res, err := prov.OpenWrtTemplate(cmd.Context(), req)
			if jsonResult(g, res, err) || err != nil {
				return err
			}
			what := "stored"
			if res.Cached {
				what = "already there, reused"
			}
			fmt.Fprintf(g.stdout, "OpenWrt %s: %s %s (%s), sha256 %s verified %s\n", res.Version, res.VolID, what, humanSize(res.Size), res.SHA256, res.Verified)
			for _, w := range res.Warnings {
				fmt.Fprintf(g.stdout, "warning: %s\n", w)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Version, "version", "latest", "OpenWrt release, e.g. 24.10.0, or latest (the newest 24.x)")
	f.StringVar(&req.Mirror, "mirror", provisioner.DefaultOpenWrtMirror, "OpenWrt download server")
	f.StringVar(&req.Storage, "storage", provisioner.StorageAuto, "template storage, or auto")
	f.StringVar(&req.Node, "node", provisioner.DefaultSpec().Node, "PVE node")
	f.BoolVar(&dryRun, "dry-run", false, "read the mirror and PVE, print the calls; fetch and change nothing")
	return cmd
}

func newOpenWrtCreateCommand(g *globalOptions) *cobra.Command {
	spec := provisioner.DefaultOpenWrtSpec()
	var dryRun, keep bool
	var wanWait time.Duration
	var timeout string
	cmd := &cobra.Command{
		Use:   "create --vmid N --hostname H --wan BRIDGE --lan BRIDGE [--lan-ip CIDR]",
		Short: "Create an OpenWrt router container: LAN and WAN NICs, UCI through the console, WAN address",
		Long: `Create an OpenWrt router from an OpenWrt rootfs template (cloudpod openwrt template): ostype unmanaged
and privileged (unprivileged=0; PVE 9 asks the token for Sys.Modify on /), LAN on eth0 (--lan), WAN on
eth1 (--wan, DHCP), console mode shell. Then, through the console: UCI network lan (static, --lan-ip,
default 192.168.1.1/24) and wan (DHCP on eth1), firewall zones lan and wan with forwarding lan → wan,
dropbear on the LAN only, the hostname; network, firewall and dropbear restarted. The WAN address is
waited for with retries; without a lease the router is kept with a message saying what to check.`,
		Example: `  cloudpod openwrt create --vmid 400 --hostname router1 --wan vmbr0 --lan vmbr1
  cloudpod openwrt create --vmid 401 --hostname router2 --wan vmbr0 --lan vmbr1 --lan-ip 10.20.0.1/16`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			prov, err := g.connect(cmd)
			if err != nil {
				return err
			}
			req := provisioner.OpenWrtRequest{Spec: spec, WANWait: wanWait, KeepOnFailure: keep, Reporter: newProgress(g), Stop: g.stop, Requester: g.requester}
			return runFlow(cmd.Context(), g, timeout, dryRun, "openwrt create",
				func(ctx context.Context) ([]provisioner.PlannedCall, []string, error) {
					return prov.PlanOpenWrt(ctx, req)
				},
				func(ctx context.Context) (provisioner.OpenWrtResult, error) { return prov.CreateOpenWrt(ctx, req) },
				func(res provisioner.OpenWrtResult) {
					fmt.Fprintf(g.stdout, "router CT %d %s %s: %s on node %s from %s; LAN %s on %s, WAN %s on %s\n", res.VMID, res.Hostname,
						doneOr(res.Changed, "created"), res.Status, res.Node, res.OSTemplate, res.LAN, spec.LAN, orDash(res.WAN), spec.WAN)
					printWarnings(g, res.Warnings)
				})
		},
	}
	f := cmd.Flags()
	f.IntVar(&spec.VMID, "vmid", 0, "VMID of the router")
	f.StringVar(&spec.Hostname, "hostname", "", "the router's hostname")
	f.StringVar(&spec.WAN, "wan", "", "bridge of the WAN side (eth1, DHCP)")
	f.StringVar(&spec.LAN, "lan", "", "bridge of the LAN side (eth0, br-lan)")
	f.IntVar(&spec.WANVLAN, "wan-tag", 0, "VLAN tag on the WAN bridge")
	f.IntVar(&spec.LANVLAN, "lan-tag", 0, "VLAN tag on the LAN bridge")
	f.StringVar(&spec.LANAddress, "lan-ip", spec.LANAddress, "the router's LAN address with its prefix")
	f.StringVar(&spec.OSTemplate, "ostemplate", "", "OpenWrt rootfs template volume (default: the newest openwrt-*-x86-64-rootfs.tar.gz on the node)")
	f.StringVar(&spec.Node, "node", spec.Node, "PVE node")
	f.StringVar(&spec.Storage, "storage", spec.Storage, "rootfs storage, or auto")
	f.IntVar(&spec.DiskGB, "disk", spec.DiskGB, "rootfs size in GB")
	f.IntVar(&spec.Cores, "cores", spec.Cores, "CPU cores")
	f.IntVar(&spec.MemoryMB, "memory", spec.MemoryMB, "memory in MB")
	f.IntVar(&spec.SwapMB, "swap", spec.SwapMB, "swap in MB")
	f.BoolVar(&spec.OnBoot, "onboot", spec.OnBoot, "start the router when the node boots")
	f.StringSliceVar(&spec.Tags, "tags", nil, "extra PVE tags")
	f.StringVar(&spec.Tenant, "tenant", "", "tenant id, recorded in the marker and audit log")
	f.DurationVar(&wanWait, "wan-timeout", 30*time.Second, "how long to wait for the WAN's DHCP lease (none by then is a warning)")
	f.BoolVar(&dryRun, "dry-run", false, "check everything, print the API calls and why; change nothing")
	f.BoolVar(&keep, "keep-on-failure", false, "on failure keep the router instead of rolling back")
	f.StringVar(&timeout, "timeout", "", "overall deadline, e.g. 10m")
	return cmd
}

// doneOr is what a flow's result line says it did: what, or that nothing
// was to do.
func doneOr(changed bool, what string) string {
	if !changed {
		return "already as asked, nothing to do"
	}
	return what
}

// printWarnings prints a result's warnings, one a line.
func printWarnings(g *globalOptions, warnings []string) {
	for _, w := range warnings {
		fmt.Fprintf(g.stdout, "warning: %s\n", strings.TrimSpace(w))
	}
}

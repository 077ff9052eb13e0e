package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/migrahosting/cloudpods/provisioner"
)

func newOpenWrtVMCommand(g *globalOptions) *cobra.Command {
	spec := provisioner.DefaultOpenWrtVMSpec()
	var dryRun, keep bool
	var wanWait time.Duration
	var timeout string
	cmd := &cobra.Command{
		Use:   "vm --vmid N --wan BRIDGE --lan BRIDGE [--version V|latest] [--mirror URL] [--bios ovmf|seabios]",
		Short: "Create an OpenWrt router VM: the official image checked and imported, LAN/WAN through the serial console",
		Long: `Create an OpenWrt router as a VM. The x86-64 ext4 combined image (combined-efi for --bios ovmf, the
legacy image for seabios) is fetched here from the mirror (latest: the newest 24.x its .versions.json
lists) and checked against the release's sha256sums — a tampered image is refused, naming both sums, and
nothing is stored — then decompressed here (its .img.gz carries metadata after the gzip stream, on which
zcat, and so PVE's download, fails) and uploaded as a raw import volume with its sha256 (PVE 8.4+).

The VM: the disk imported as scsi0, the firmware (OVMF with an EFI vars disk, Secure Boot keys not
enrolled), LAN on net0 (eth0, --lan) and WAN on net1 (eth1, --wan, DHCP), a serial console, 1 core and
256 MB. Once started, its UCI is set through the serial console (termproxy; Enter first, as OpenWrt
asks), with retries: LAN static (--lan-ip, default 192.168.1.1/24), WAN by DHCP, firewall zones, dropbear
on the LAN, the hostname. The WAN address is read from netifd through the console (or from the guest
agent, --agent, for images with qemu-ga); without a lease the router is kept with a warning.`,
		Example: `  cloudpod openwrt vm --version latest --vmid 600 --wan vmbr0 --lan vmbr1
  cloudpod openwrt vm --version 24.10.0 --vmid 601 --wan vmbr0 --lan vmbr1 --bios seabios --lan-ip 10.20.0.1/16`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			prov, err := g.connect(cmd)
			if err != nil {
				return err
			}
			req := provisioner.OpenWrtVMRequest{Spec: spec, WANWait: wanWait, KeepOnFailure: keep, Reporter: newProgress(g), Stop: g.stop, Requester: g.requester}
			return runFlow(cmd.Context(), g, timeout, dryRun, "openwrt vm",
				func(ctx context.Context) ([]provisioner.PlannedCall, []string, error) {
					return prov.PlanOpenWrtVM(ctx, req)
				},
				func(ctx context.Context) (provisioner.OpenWrtVMResult, error) { return prov.CreateOpenWrtVM(ctx, req) },
				func(res provisioner.OpenWrtVMResult) {
					fmt.Fprintf(g.stdout, "router VM %d %s %s: %s on node %s, OpenWrt %s from %s; LAN %s on %s, WAN %s on %s\n", res.VMID, res.Name,
						doneOr(res.Changed, "created"), res.Status, res.Node, res.Version, res.Image, res.LAN, spec.LAN, orDash(res.WAN), spec.WAN)
					printWarnings(g, res.Warnings)
				})
		},
	}
	f := cmd.Flags()
	f.IntVar(&spec.VMID, "vmid", 0, "VMID of the router")
	f.StringVar(&spec.Name, "name", "", "the VM's name and the router's hostname (default openwrt-VMID)")
	f.StringVar(&spec.Version, "version", spec.Version, "OpenWrt release, e.g. 24.10.0, or latest (the newest 24.x)")
	f.StringVar(&spec.Mirror, "mirror", spec.Mirror, "OpenWrt download server")
	f.StringVar(&spec.WAN, "wan", "", "bridge of the WAN side (net1, eth1, DHCP)")
	f.StringVar(&spec.LAN, "lan", "", "bridge of the LAN side (net0, eth0, br-lan)")
	f.IntVar(&spec.WANVLAN, "wan-tag", 0, "VLAN tag on the WAN bridge")
	f.IntVar(&spec.LANVLAN, "lan-tag", 0, "VLAN tag on the LAN bridge")
	f.StringVar(&spec.LANAddress, "lan-ip", spec.LANAddress, "the router's LAN address with its prefix")
	f.StringVar(&spec.BIOS, "bios", spec.BIOS, "ovmf (the UEFI image) or seabios (the legacy-BIOS image)")
	f.StringVar(&spec.Node, "node", spec.Node, "PVE node")
	f.StringVar(&spec.Storage, "storage", spec.Storage, "storage of the VM's disks, or auto")
	f.StringVar(&spec.ImageStorage, "image-storage", spec.ImageStorage, "import storage for the raw image, or auto")
	f.IntVar(&spec.Cores, "cores", spec.Cores, "CPU cores")
	f.IntVar(&spec.MemoryMB, "memory", spec.MemoryMB, "memory in MB")
	f.BoolVar(&spec.Agent, "agent", false, "enable the guest agent (for images with qemu-ga) and read the WAN address through it")
	f.BoolVar(&spec.OnBoot, "onboot", spec.OnBoot, "start the router when the node boots")
	f.StringSliceVar(&spec.Tags, "tags", nil, "extra PVE tags")
	f.StringVar(&spec.Tenant, "tenant", "", "tenant id, recorded in the marker and audit log")
	f.DurationVar(&wanWait, "wan-timeout", 30*time.Second, "how long to wait for the WAN's DHCP lease (none by then is a warning)")
	f.BoolVar(&dryRun, "dry-run", false, "read the mirror and PVE, print the calls and why; fetch and change nothing")
	f.BoolVar(&keep, "keep-on-failure", false, "on failure keep the router instead of rolling back")
	f.StringVar(&timeout, "timeout", "", "overall deadline, e.g. 15m")
	return cmd
}

package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

func newVMCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vm",
		Short: "Cloud-init VMs from cloud images, VM templates and their clones",
	}
	cmd.AddCommand(newVMCreateCommand(g), newVMCloneCommand(g), newVMTemplateCommand(g), newVMListCommand(g))
	return cmd
}

// maxIPConfigFlags is how many --ipconfigN flags there are (PVE has 32).
const maxIPConfigFlags = 10

// vmFlags are the flags of the commands that make a VM.
type vmFlags struct {
	req         provisioner.VMRequest
	nets        []string
	ipconfigs   [maxIPConfigFlags]string
	sshKeysFile string
	dryRun      bool
	timeout     string
}

// bindCloudInit binds what a VM and a clone take alike: identity,
// cloud-init, the agent, start and the run's own flags.
func (f *vmFlags) bindCloudInit(fs *pflag.FlagSet, def provisioner.VMSpec) {
	f.req.Spec = def
	s := &f.req.Spec
	fs.IntVar(&s.VMID, "vmid", 0, "VMID of the new VM")
	fs.StringVar(&s.Name, "name", "", "the VM's name (a DNS name; cloud-init's hostname)")
	fs.StringVar(&s.Node, "node", def.Node, "PVE node")
	for i := range f.ipconfigs {
		fs.StringVar(&f.ipconfigs[i], "ipconfig"+strconv.Itoa(i), "", fmt.Sprintf("cloud-init address of net%d: ip=CIDR,gw=IP | ip=dhcp [,ip6=…,gw6=…]", i))
	}
	fs.StringVar(&s.CIUser, "ciuser", "", "cloud-init user (default: the image's)")
	fs.StringVar(&f.sshKeysFile, "sshkeys", "", "file of OpenSSH public keys for the cloud-init user (sent percent-encoded, as PVE stores them)")
	fs.StringVar(&s.Nameserver, "nameserver", "", "DNS servers, space-separated (default: the node's)")
	fs.StringVar(&s.Searchdomain, "searchdomain", "", "DNS search domain (default: the node's)")
	fs.BoolVar(&s.Agent, "agent", false, "enable the QEMU guest agent; after --start, wait for it and verify the addresses through it")
	fs.BoolVar(&s.Start, "start", false, "start the VM (PVE writes the cloud-init drive), then check it")
	fs.StringArrayVar(&f.req.Checks, "check", nil, "a shell command run in the guest through the agent after start, which must exit 0 (repeat; needs --agent)")
	fs.DurationVar(&f.req.AgentWait, "agent-timeout", 3*time.Minute, "how long to wait for the guest agent after start (none answering is a warning: stock cloud images lack it)")
	fs.StringSliceVar(&s.Tags, "tags", nil, "extra PVE tags")
	fs.StringVar(&s.Tenant, "tenant", "", "tenant id, recorded in the marker and audit log")
	fs.BoolVar(&f.dryRun, "dry-run", false, "check everything, print the API calls and why each default was taken; change nothing")
	fs.BoolVar(&f.req.KeepOnFailure, "keep-on-failure", false, "on failure keep the VM instead of rolling back")
	fs.StringVar(&f.timeout, "timeout", "", "overall deadline, e.g. 15m")
}

// request turns the flags into a VM request: cards parsed, ipconfigN
// checked, keys read from their file.
func (f *vmFlags) request(g *globalOptions) (provisioner.VMRequest, error) {
	req := f.req
	s := &req.Spec
	for _, n := range f.nets {
		nic, err := netcfg.ParseVMNIC(n)
		if err != nil {
			return req, fmt.Errorf("%w: %s", errUsage, strings.ReplaceAll(err.Error(), "\n", "; "))
		}
		s.NICs = append(s.NICs, nic)
	}
	netcfg.SortVMNICs(s.NICs)
	for i, v := range f.ipconfigs {
		if v == "" {
			continue
		}
		flag := "--ipconfig" + strconv.Itoa(i)
		n, err := netcfg.ParseIPConfig(flag, v)
		if err != nil {
			return req, fmt.Errorf("%w: %s", errUsage, strings.ReplaceAll(err.Error(), "\n", "; "))
		}
		if s.IPConfigs == nil {
			s.IPConfigs = map[int]string{}
		}
		s.IPConfigs[i] = n.IPConfig()
	}
	var err error
	if s.SSHKeys, err = readFlagFile("--sshkeys", f.sshKeysFile, false); err != nil {
		return req, err
	}
	req.Requester = g.requester
	return req, nil
}

func newVMCreateCommand(g *globalOptions) *cobra.Command {
	f := &vmFlags{}
	def := provisioner.DefaultVMSpec()
	cmd := &cobra.Command{
		Use:   "create --vmid N --name NAME --image STORAGE:import/FILE|URL --net name=net0,bridge=vmbr0 [flags]",
		Short: "Create a cloud-init VM from a cloud image, start it, verify it through its guest agent",
		Long: `Create a cloud-init VM (POST /nodes/{node}/qemu) with the cloud image imported as its disk scsi0
(import-from an import volume; a URL is first downloaded by PVE to an import storage, verified by
--checksum), grow the disk to --disk, start it (--start), wait for its guest agent (--agent), verify each
card's cloud-init address through the agent, run --check commands in the guest, and verify PVE's config.
A failure rolls back what the run made; the same command again converges.

--bios ovmf adds an EFI vars disk (efidisk0, efitype=4m) without pre-enrolled Secure Boot keys. --net
takes name=net0,bridge=vmbr0[,tag=VLAN][,macaddr=MAC][,mtu=N][,model=virtio][,firewall=1]; the address
is cloud-init's: --ipconfig0 ip=CIDR,gw=IP or ip=dhcp. --sshkeys is sent percent-encoded (%20 for
spaces), as PVE stores it. --hostpci and --usb take mapping=NAME only: PVE lets only root pass a raw
host device, and cloudpods talks to PVE with an API token; such a request is refused before any call.

Content type import for qcow2, raw and vmdk images needs PVE 8.4 or later. The guest agent needs
VM.Monitor on PVE 8.4 and VM.GuestAgent.Audit (exec: VM.GuestAgent.Unrestricted) on PVE 9; stock cloud
images ship without qemu-guest-agent, so its wait is bounded and ends in a warning that says so.`,
		Example: `  cloudpod vm create --vmid 500 --name ci1 --image https://images.example/noble.qcow2 --checksum sha256:… \
    --storage auto --disk 16 --bios ovmf --net name=net0,bridge=vmbr0,tag=30 --ciuser ops --sshkeys keys.pub \
    --ipconfig0 ip=10.1.10.150/24,gw=10.1.10.1 --agent --start
  cloudpod vm create --vmid 510 --name gpu1 --image local:import/noble.qcow2 --net name=net0,bridge=vmbr0 \
    --ipconfig0 ip=dhcp --hostpci mapping=gpu0,pcie=1 --machine q35 --bios ovmf`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := f.request(g)
			if err != nil {
				return err
			}
			return f.run(cmd, g, req, "vm create", (*provisioner.Provisioner).PlanVM, (*provisioner.Provisioner).CreateVM, "created")
		},
	}
	fs := cmd.Flags()
	f.bindCloudInit(fs, def)
	s := &f.req.Spec
	fs.StringVar(&s.Image, "image", "", "the cloud image: STORAGE:import/FILE.qcow2 (.raw, .vmdk), or an http(s) URL PVE downloads first")
	fs.StringVar(&s.ImageChecksum, "checksum", "", "the image URL's checksum, ALGO:HEX (required for a URL unless --no-verify)")
	fs.StringVar(&s.ImageFilename, "image-filename", "", "name of the downloaded image on the storage (its extension is its format: .qcow2, .raw, .vmdk)")
	fs.BoolVar(&f.req.NoVerify, "no-verify", false, "take the image URL without a checksum")
	fs.StringVar(&s.Storage, "storage", def.Storage, "storage of the VM's disks (content images), or auto: the one with the most room")
	fs.IntVar(&s.DiskGB, "disk", 0, "grow the imported disk to this many GB (0: the image's size)")
	fs.IntVar(&s.Cores, "cores", def.Cores, "CPU cores")
	fs.IntVar(&s.MemoryMB, "memory", def.MemoryMB, "memory in MB")
	fs.StringVar(&s.CPU, "cpu", def.CPU, "CPU model")
	fs.StringVar(&s.BIOS, "bios", def.BIOS, "firmware: seabios or ovmf (UEFI, with efidisk0)")
	fs.StringVar(&s.Machine, "machine", "", "machine type: q35 or i440fx (default: PVE's, i440fx)")
	fs.StringArrayVar(&f.nets, "net", nil, "a card: name=net0,bridge=vmbr0[,tag=][,macaddr=][,mtu=][,model=virtio][,firewall=1] (repeat per card)")
	fs.StringArrayVar(&s.HostPCI, "hostpci", nil, "a PCI device through a resource mapping: mapping=NAME[,pcie=1][,x-vga=1] (repeat)")
	fs.StringArrayVar(&s.USB, "usb", nil, "a USB device through a resource mapping: mapping=NAME[,usb3=1] (repeat)")
	fs.BoolVar(&s.OnBoot, "onboot", false, "start the VM when the node boots")
	return cmd
}

func newVMCloneCommand(g *globalOptions) *cobra.Command {
	f := &vmFlags{}
	var full bool
	def := provisioner.DefaultVMSpec()
	cmd := &cobra.Command{
		Use:   "clone TEMPLATE --vmid N [--linked|--full] [--ipconfig0 …] [flags]",
		Short: "Clone a VM template, with cloud-init settings of its own, start it and verify it",
		Long: `Clone a VM template (cloudpod vm template) to a new VM: linked (the default: the template's base volumes
shared, on a storage with the clone feature) or --full (a copy, on --storage). The clone gets its own
cloud-init settings (--name, --ipconfigN, --ciuser, --sshkeys, --nameserver, --searchdomain), then is
started (--start, the default) and checked as vm create does; PVE regenerates its MACs and writes its
cloud-init drive at start. The same command again converges.`,
		Example: `  cloudpod vm clone 500 --vmid 501 --linked --ipconfig0 ip=10.1.10.151/24,gw=10.1.10.1
  cloudpod vm clone 500 --vmid 502 --full --storage clients-backup --name ci3 --ipconfig0 ip=dhcp`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tmpl, err := vmidArg(args[0])
			if err != nil {
				return err
			}
			if full && cmd.Flags().Changed("linked") {
				return fmt.Errorf("%w: --linked and --full contradict each other: give one", errUsage)
			}
			req, err := f.request(g)
			if err != nil {
				return err
			}
			req.Spec.Template, req.Spec.Linked = tmpl, !full
			return f.run(cmd, g, req, "vm clone", (*provisioner.Provisioner).PlanCloneVM, (*provisioner.Provisioner).CloneVM, "cloned from VM "+args[0])
		},
	}
	fs := cmd.Flags()
	f.bindCloudInit(fs, def)
	fs.Lookup("start").DefValue = "true"
	f.req.Spec.Start = true
	fs.Bool("linked", true, "a linked clone (the default)")
	fs.BoolVar(&full, "full", false, "a full copy instead of a linked clone")
	fs.StringVar(&f.req.Spec.Storage, "storage", "", "storage of a full clone's disks, or auto (a linked clone stays on the template's)")
	return cmd
}

// run connects and runs a VM flow (plan for --dry-run), printing its
// result as done says ("created").
func (f *vmFlags) run(cmd *cobra.Command, g *globalOptions, req provisioner.VMRequest, what string,
	plan func(*provisioner.Provisioner, context.Context, provisioner.VMRequest) ([]provisioner.PlannedCall, []string, error),
	run func(*provisioner.Provisioner, context.Context, provisioner.VMRequest) (provisioner.VMResult, error), done string) error {
	prov, err := g.connect(cmd)
	if err != nil {
		return err
	}
	req.Reporter, req.Stop = newProgress(g), g.stop
	return runFlow(cmd.Context(), g, f.timeout, f.dryRun, what,
		func(ctx context.Context) ([]provisioner.PlannedCall, []string, error) { return plan(prov, ctx, req) },
		func(ctx context.Context) (provisioner.VMResult, error) { return run(prov, ctx, req) },
		func(res provisioner.VMResult) { printVMResult(g, res, done) })
}

func printVMResult(g *globalOptions, res provisioner.VMResult, what string) {
	line := fmt.Sprintf("VM %d %s %s: %s on node %s, disks on %s", res.VMID, res.Name, doneOr(res.Changed, what), res.Status, res.Node, res.Storage)
	var nics []string
	for _, n := range res.NICs {
		if n.Address != "" {
			nics = append(nics, n.Key+" "+n.Address)
		}
	}
	if len(nics) > 0 {
		line += "; agent shows " + strings.Join(nics, ", ")
	}
	fmt.Fprintln(g.stdout, line)
	for _, c := range res.Checks {
		if strings.HasPrefix(c.Name, "check ") {
			fmt.Fprintf(g.stdout, "%s: ok (%s)\n", c.Name, c.Detail)
		}
	}
	printWarnings(g, res.Warnings)
}

func newVMTemplateCommand(g *globalOptions) *cobra.Command {
	req := provisioner.VMTemplateRequest{}
	cmd := &cobra.Command{
		Use:   "template VMID",
		Short: "Turn a VM cloudpods made into a template to clone (shut down first)",
		Long: `Convert a VM into a template (POST …/template, a qmtemplate task: its disks become base volumes):
shut down cleanly first (stopped hard after --shutdown-timeout). PVE refuses a VM with snapshots. A VM
that is a template already is nothing to do; a conversion that fails starts the VM again.`,
		Example: `  cloudpod vm template 500`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			vmid, err := vmidArg(args[0])
			if err != nil {
				return err
			}
			prov, err := g.connect(cmd)
			if err != nil {
				return err
			}
			req.VMID, req.Requester, req.Reporter, req.Stop = vmid, g.requester, newProgress(g), g.stop
			res, err := prov.TemplateVM(cmd.Context(), req)
			if jsonResult(g, res, err) || err != nil {
				return err
			}
			what := "is a template now"
			if !res.Changed {
				what = "is a template already, nothing to do"
			}
			fmt.Fprintf(g.stdout, "VM %d %s %s: clone it with cloudpod vm clone %d --vmid N\n", res.VMID, res.Name, what, res.VMID)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Node, "node", provisioner.DefaultSpec().Node, "PVE node")
	f.BoolVar(&req.IgnoreOwnership, "ignore-ownership", false, "convert even a VM cloudpods did not create")
	f.DurationVar(&req.ShutdownTimeout, "shutdown-timeout", 2*time.Minute, "clean shutdown time before PVE stops the VM hard")
	return cmd
}

func newVMListCommand(g *globalOptions) *cobra.Command {
	var tenant, status string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the VMs cloudpods made (templates left out)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			prov, err := g.connect(cmd)
			if err != nil {
				return err
			}
			vms, err := prov.ListVMs(cmd.Context(), tenant, status)
			if err != nil {
				return err
			}
			if g.output == "json" {
				for _, v := range vms {
					writeJSON(g.stdout, struct {
						Type string        `json:"type"`
						Kind pve.GuestKind `json:"kind"`
						provisioner.Pod
					}{"vm", pve.QEMU, v})
				}
				return nil
			}
			return printPods(g, vms, "NAME")
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "only this tenant's VMs")
	cmd.Flags().StringVar(&status, "status", "", "only VMs in this PVE status (running, stopped)")
	return cmd
}

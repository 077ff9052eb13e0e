package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner"
)

func newCTCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ct",
		Short: "Containers from OS templates (not clones of the golden template)",
	}
	cmd.AddCommand(newCTCreateCommand(g))
	return cmd
}

// ctFlags are the flags of commands that create a container from an
// archive.
type ctFlags struct {
	spec          provisioner.CTSpec
	nets          []string
	features      []string
	privileged    bool
	unprivileged  bool
	sshKeysFile   string
	passwordFile  string
	dryRun        bool
	keepOnFailure bool
	dhcpWait      time.Duration
	timeout       string
}

// bindCommon binds what every archive-made CT takes: placement, sizes,
// secrets from files, and the run's own flags.
func (f *ctFlags) bindCommon(fs *pflag.FlagSet, def provisioner.CTSpec) {
	f.spec = def
	fs.IntVar(&f.spec.VMID, "vmid", def.VMID, "VMID of the new CT")
	fs.StringVar(&f.spec.Hostname, "hostname", def.Hostname, "hostname (RFC 1123)")
	fs.StringVar(&f.spec.Node, "node", def.Node, "PVE node")
	fs.StringVar(&f.spec.Storage, "storage", def.Storage, "rootfs storage, or auto: the active rootdir storage with the most room (refused at 98 % used, warned at 85 %)")
	fs.IntVar(&f.spec.DiskGB, "disk", def.DiskGB, "rootfs size in GB")
	fs.IntVar(&f.spec.Cores, "cores", def.Cores, "CPU cores")
	fs.IntVar(&f.spec.MemoryMB, "memory", def.MemoryMB, "memory in MB")
	fs.IntVar(&f.spec.SwapMB, "swap", def.SwapMB, "swap in MB")
	fs.BoolVar(&f.spec.OnBoot, "onboot", false, "start the CT when the node boots")
	fs.StringVar(&f.passwordFile, "password-file", "", "file holding root's password (never on the command line)")
	fs.StringSliceVar(&f.spec.Tags, "tags", nil, "extra PVE tags")
	fs.StringVar(&f.spec.Tenant, "tenant", "", "tenant id, recorded in the marker and audit log")
	fs.BoolVar(&f.dryRun, "dry-run", false, "check everything, print the API calls and why each default was taken; change nothing")
	fs.BoolVar(&f.keepOnFailure, "keep-on-failure", false, "on failure keep the CT instead of rolling back")
	fs.DurationVar(&f.dhcpWait, "dhcp-timeout", 30*time.Second, "how long to wait for DHCP leases after start (a NIC without one is a warning)")
	fs.StringVar(&f.timeout, "timeout", "", "overall deadline, e.g. 10m")
}

func newCTCreateCommand(g *globalOptions) *cobra.Command {
	f := &ctFlags{}
	def := provisioner.DefaultCTSpec()
	cmd := &cobra.Command{
		Use:   "create --vmid N --hostname H --ostemplate STORAGE:vztmpl/FILE --net name=eth0,bridge=vmbr0,… [flags]",
		Short: "Create a container from an OS template, start it, check its network, verify it",
		Long: `Create a container from an OS template archive (POST /nodes/{node}/lxc), then start it (--start), wait
for its addresses, and verify PVE's config against the request; a failure rolls back what the run made,
and the same command again converges.

--net takes name=eth0,bridge=vmbr0[,tag=VLAN][,hwaddr=MAC][,mtu=N][,ip=CIDR|dhcp|manual][,gw=IP]
[,ip6=CIDR|auto|dhcp|manual][,gw6=IP][,firewall=1], one per NIC (net0, net1, … in order).

The privilege level is always sent: PVE 8.4 creates privileged containers by default, 9.x unprivileged
ones. --features is refused before any call for what an API token may not set: every feature of a
privileged CT, and everything but nesting on an unprivileged one (PVE reserves them to root@pam).`,
		Example: `  cloudpod ct create --vmid 300 --hostname web1 --ostemplate local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst \
    --storage auto --net name=eth0,bridge=vmbr0,tag=20,mtu=9000,ip=dhcp --net name=eth1,bridge=vmbr0,ip=10.1.10.120/24 \
    --unprivileged --features nesting=1 --start`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			prov, err := g.connect(cmd)
			if err != nil {
				return err
			}
			req, err := f.request(g)
			if err != nil {
				return err
			}
			return runCTCreate(cmd.Context(), g, prov, req, f)
		},
	}
	fs := cmd.Flags()
	f.bindCommon(fs, def)
	fs.StringVar(&f.spec.OSTemplate, "ostemplate", "", "the template archive, STORAGE:vztmpl/FILE (cloudpod template list)")
	fs.StringArrayVar(&f.nets, "net", nil, "a NIC: name=eth0,bridge=vmbr0[,tag=][,hwaddr=][,mtu=][,ip=CIDR|dhcp|manual][,gw=][,ip6=][,gw6=][,firewall=1] (repeat per NIC)")
	fs.BoolVar(&f.unprivileged, "unprivileged", false, "an unprivileged CT (the default; always sent to PVE)")
	fs.BoolVar(&f.privileged, "privileged", false, "a privileged CT (PVE 9 asks the token for Sys.Modify on /)")
	fs.StringArrayVar(&f.features, "features", nil, "PVE features, e.g. nesting=1 (a token may set nesting on an unprivileged CT only)")
	fs.StringVar(&f.spec.OSType, "ostype", "", "PVE's ostype (debian, ubuntu, alpine, …, unmanaged); default: detected from the archive")
	fs.StringVar(&f.sshKeysFile, "ssh-public-keys", "", "file of OpenSSH public keys for root")
	fs.StringVar(&f.spec.Nameserver, "nameserver", "", "DNS servers, space-separated (default: the node's)")
	fs.StringVar(&f.spec.Searchdomain, "searchdomain", "", "DNS search domain (default: the node's)")
	fs.BoolVar(&f.spec.Start, "start", false, "start the CT, wait for its addresses and check it runs")
	return cmd
}

// request turns the flags into a CT request: NICs parsed, secrets read
// from their files, the privilege level settled.
func (f *ctFlags) request(g *globalOptions) (provisioner.CTRequest, error) {
	s := f.spec
	if f.privileged && f.unprivileged {
		return provisioner.CTRequest{}, fmt.Errorf("%w: --privileged and --unprivileged contradict each other: give one", errUsage)
	}
	s.Unprivileged = !f.privileged
	nics, err := parseNICs(f.nets)
	if err != nil {
		return provisioner.CTRequest{}, err
	}
	if nics != nil {
		s.NICs = nics
	}
	if f.features != nil {
		s.Features = f.features
	}
	if s.SSHKeys, err = readFlagFile("--ssh-public-keys", f.sshKeysFile, false); err != nil {
		return provisioner.CTRequest{}, err
	}
	if s.Password, err = readFlagFile("--password-file", f.passwordFile, true); err != nil {
		return provisioner.CTRequest{}, err
	}
	return provisioner.CTRequest{Spec: s, DHCPWait: f.dhcpWait, KeepOnFailure: f.keepOnFailure, Requester: g.requester}, nil
}

// parseNICs reads the --net flags; nil when none was given.
func parseNICs(nets []string) ([]netcfg.NIC, error) {
	var out []netcfg.NIC
	for _, n := range nets {
		nic, err := netcfg.ParseNIC(n)
		if err != nil {
			return nil, fmt.Errorf("%w: %s", errUsage, strings.ReplaceAll(err.Error(), "\n", "; "))
		}
		out = append(out, nic)
	}
	return out, nil
}

// readFlagFile reads a file named by a flag; oneLine keeps its first line
// (a password, which must be a secret file: readSecretFile's mode rule),
// else its whole text (public keys).
func readFlagFile(flag, path string, oneLine bool) (string, error) {
	if path == "" {
		return "", nil
	}
	if oneLine {
		if err := checkSecretMode(flag, path); err != nil {
			return "", err
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", errUsage, flag, err)
	}
	s := string(b)
	if oneLine {
		s, _, _ = strings.Cut(s, "\n")
		s = strings.TrimRight(s, "\r")
		if s == "" {
			return "", fmt.Errorf("%w: %s %s is empty: put the password on its first line", errUsage, flag, path)
		}
		return s, nil
	}
	return strings.TrimSpace(s) + "\n", nil
}

// withTimeout applies --timeout to ctx.
func withTimeout(ctx context.Context, timeout string) (context.Context, context.CancelFunc, error) {
	if timeout == "" {
		return ctx, func() {}, nil
	}
	d, err := parseDuration(timeout)
	if err != nil {
		return ctx, nil, fmt.Errorf("%w: --timeout %q: %v", errUsage, timeout, err)
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	return ctx, cancel, nil
}

func runCTCreate(ctx context.Context, g *globalOptions, prov *provisioner.Provisioner, req provisioner.CTRequest, f *ctFlags) error {
	ctx, cancel, err := withTimeout(ctx, f.timeout)
	if err != nil {
		return err
	}
	defer cancel()
	req.Reporter, req.Stop = newProgress(g), g.stop
	if f.dryRun {
		return showPlan(g, "ct create")(prov.PlanCT(ctx, req))
	}
	res, err := prov.CreateCT(ctx, req)
	if !jsonResult(g, res, err) && err == nil {
		printCTResult(g, res)
	}
	return err
}

func printCTResult(g *globalOptions, res provisioner.CTResult) {
	what := "created"
	if !res.Changed {
		what = "already as asked, nothing to do"
	}
	line := fmt.Sprintf("CT %d %s %s: %s on node %s, rootfs on %s", res.VMID, res.Hostname, what, res.Status, res.Node, res.Storage)
	var nics []string
	for _, n := range res.NICs {
		nics = append(nics, n.Name+" "+orDash(n.Address))
	}
	if len(nics) > 0 {
		line += "; " + strings.Join(nics, ", ")
	}
	fmt.Fprintln(g.stdout, line)
	for _, w := range res.Warnings {
		fmt.Fprintf(g.stdout, "warning: %s\n", w)
	}
}

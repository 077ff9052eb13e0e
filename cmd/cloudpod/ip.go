package main

import (
	"fmt"
	"net/netip"
	"os"
	"text/tabwriter"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/migrahosting/cloudpods/ipam"
	"github.com/migrahosting/cloudpods/provisioner"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// ipamOptions say where addresses and VMIDs are allocated.
type ipamOptions struct {
	backend   string
	file      string
	addrRange string
	vmidRange string
	sdnZone   string
	sdnVnet   string
}

func (o *ipamOptions) bind(fs *pflag.FlagSet) {
	fs.StringVar(&o.backend, "ipam", "file", "IPAM backend: file (local registry), pve-sdn (file registry plus PVE's SDN IPAM, for several controller hosts) or none")
	fs.StringVar(&o.file, "ipam-file", "", "IPAM registry (env CLOUDPODS_IPAM_FILE; default /var/lib/cloudpods/ipam.json as root, else the user's state dir)")
	fs.StringVar(&o.addrRange, "ip-range", "10.1.10.91-250", "addresses IPAM hands out")
	fs.StringVar(&o.vmidRange, "vmid-range", "9101-9999", "VMIDs IPAM hands out")
	fs.StringVar(&o.sdnZone, "sdn-zone", "", "SDN zone for --ipam pve-sdn")
	fs.StringVar(&o.sdnVnet, "sdn-vnet", "", "SDN vnet for --ipam pve-sdn")
}

// allocator builds the IPAM allocator for the pool of spec (its subnet,
// gateway, bridge and template address); nil for --ipam none.
func (o *ipamOptions) allocator(g *globalOptions, api pve.API, spec provisioner.Spec, log logrus.FieldLogger) (*ipam.Allocator, error) {
	if o.backend == "none" {
		return nil, nil
	}
	if o.backend != "file" && o.backend != "pve-sdn" {
		return nil, fmt.Errorf("%w: --ipam %q: use file, pve-sdn or none", errUsage, o.backend)
	}
	path, err := ipam.ResolvePath(o.file, g.getenv, os.Geteuid())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	first, last, err := ipam.ParseAddrRange(o.addrRange)
	if err != nil {
		return nil, fmt.Errorf("%w: --ip-range: %v", errUsage, err)
	}
	vmids, err := ipam.ParseVMIDRange(o.vmidRange)
	if err != nil {
		return nil, fmt.Errorf("%w: --vmid-range: %v", errUsage, err)
	}
	pool := ipam.Pool{Name: "default", Subnet: spec.Subnet, Bridge: spec.Bridge, Gateway: spec.Gateway,
		Reserved: []netip.Addr{spec.TemplateIP}, First: first, Last: last}
	opts := []ipam.Option{ipam.WithLogger(log)}
	if o.backend == "pve-sdn" {
		sdn, ok := api.SDN()
		if !ok {
			return nil, fmt.Errorf("%w: --ipam pve-sdn: this PVE connection has no SDN IPAM", errUsage)
		}
		if o.sdnZone == "" || o.sdnVnet == "" {
			return nil, fmt.Errorf("%w: --ipam pve-sdn needs --sdn-zone and --sdn-vnet", errUsage)
		}
		opts = append(opts, ipam.WithClaimer(ipam.NewSDNClaimer(sdn, o.sdnZone, o.sdnVnet)))
	}
	a, err := ipam.New(ipam.NewFileStore(path), pool, vmids, provisioner.Inventory{API: api}, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	return a, nil
}

func newIPCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "ip", Short: "IP and VMID allocation (IPAM)"}
	withAllocator := func(run func(cmd *cobra.Command, args []string, a *ipam.Allocator) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			if err := g.resolve(cmd.Flags()); err != nil {
				return err
			}
			log := g.logger()
			api, err := g.client(log)
			if err != nil {
				return err
			}
			a, err := g.ipam.allocator(g, api, provisioner.DefaultSpec(), log)
			if err != nil {
				return err
			}
			if a == nil {
				return fmt.Errorf("%w: --ipam none: there is no registry to ask", errUsage)
			}
			return run(cmd, args, a)
		}
	}
	next := &cobra.Command{Use: "next", Short: "Print the next free IP and VMID without reserving them", Args: cobra.NoArgs,
		RunE: withAllocator(func(cmd *cobra.Command, _ []string, a *ipam.Allocator) error {
			ip, vmid, err := a.Next(cmd.Context())
			if err != nil {
				return err
			}
			if g.output == "json" {
				writeJSON(g.stdout, map[string]interface{}{"ip": ip.String(), "vmid": vmid})
			} else {
				fmt.Fprintf(g.stdout, "IP %s  VMID %d\n", ip, vmid)
			}
			return nil
		})}
	list := &cobra.Command{Use: "list", Short: "List the registry's leases", Args: cobra.NoArgs,
		RunE: withAllocator(func(cmd *cobra.Command, _ []string, a *ipam.Allocator) error {
			leases, err := a.List(cmd.Context())
			if err != nil {
				return err
			}
			if g.output == "json" {
				for _, l := range leases {
					writeJSON(g.stdout, l)
				}
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "IP\tVMID\tHOSTNAME\tTENANT\tSTATE\tSOURCE\tUPDATED")
			now := time.Now()
			for _, l := range leases {
				state := string(l.State)
				if l.Expired(now) {
					state += " (expired)"
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", l.IP, l.VMID, l.Hostname, l.Tenant, state, l.Source, l.UpdatedAt.Format(time.RFC3339))
			}
			return tw.Flush()
		})}
	var req ipam.Request
	var ipText string
	reserve := &cobra.Command{Use: "reserve HOSTNAME", Short: "Reserve an IP and VMID for a hostname", Args: cobra.ExactArgs(1),
		RunE: withAllocator(func(cmd *cobra.Command, args []string, a *ipam.Allocator) error {
			req.Hostname = args[0]
			if ipText != "" {
				ip, err := netip.ParseAddr(ipText)
				if err != nil {
					return fmt.Errorf("%w: --ip %q is not an IPv4 address", errUsage, ipText)
				}
				req.IP = ip
			}
			if req.Owner == "" {
				req.Owner = provisioner.LeaseOwner(req.Tenant, req.Hostname)
			}
			l, err := a.Reserve(cmd.Context(), req)
			if err != nil {
				// IPAM's refusals are conflicts (provisioner.KindOf); a token
				// PVE refused or a damaged registry keep their own codes.
				return err
			}
			if g.output == "json" {
				writeJSON(g.stdout, l)
			} else {
				fmt.Fprintf(g.stdout, "reserved %s and VMID %d for %s until %s\n", l.IP, l.VMID, l.Hostname, l.ExpiresAt.Format(time.RFC3339))
			}
			return nil
		})}
	reserve.Flags().StringVar(&ipText, "ip", "", "a specific address (default: the next free one)")
	reserve.Flags().IntVar(&req.VMID, "vmid", 0, "a specific VMID (default: the next free one)")
	reserve.Flags().StringVar(&req.Tenant, "tenant", "", "tenant")
	reserve.Flags().StringVar(&req.Owner, "owner", "", "owner key (default cloudpods/TENANT/HOSTNAME, as create uses)")
	release := &cobra.Command{Use: "release IP|VMID", Short: "Release a lease", Args: cobra.ExactArgs(1),
		RunE: withAllocator(func(cmd *cobra.Command, args []string, a *ipam.Allocator) error {
			ref, err := ipam.ParseRef(args[0])
			if err != nil {
				return fmt.Errorf("%w: %v", errUsage, err)
			}
			leases, err := a.Release(cmd.Context(), ref)
			if err != nil {
				return err
			}
			for _, l := range leases {
				fmt.Fprintf(g.stdout, "released %s (VMID %d, %s)\n", l.IP, l.VMID, l.Hostname)
			}
			return nil
		})}
	var repair bool
	sync := &cobra.Command{Use: "sync", Short: "Report drift between the registry and every guest in PVE, both ways; --repair brings the registry to PVE's state", Args: cobra.NoArgs,
		RunE: withAllocator(func(cmd *cobra.Command, _ []string, a *ipam.Allocator) error {
			rep, err := a.Sync(cmd.Context(), repair)
			if err != nil {
				return err
			}
			if g.output == "json" {
				writeJSON(g.stdout, rep)
				return nil
			}
			printSync(g, rep)
			return nil
		})}
	sync.Flags().BoolVar(&repair, "repair", false, "fix the drift: record what PVE's guests use, release leases PVE contradicts or no longer has, take owners from the pods' markers")
	cmd.AddCommand(next, list, reserve, release, sync)
	return cmd
}

// printSync says what sync found, each drift once, and what repair did or
// would do about it.
func printSync(g *globalOptions, rep ipam.SyncReport) {
	did := map[bool]string{true: "", false: " (--repair fixes it)"}[rep.Repaired]
	verb := map[bool]string{true: "repaired", false: "found"}[rep.Repaired]
	if rep.InSync() {
		fmt.Fprintf(g.stdout, "%d guests checked: the registry matches PVE\n", rep.Guests)
		return
	}
	fmt.Fprintf(g.stdout, "%d guests checked, drift %s: %d in PVE only, %d leases without a guest, %d expired, %d conflicts, %d claimed in SDN only\n",
		rep.Guests, verb, len(rep.Added), len(rep.Missing), len(rep.Expired), len(rep.Conflicts), len(rep.Unregistered))
	for _, l := range rep.Added {
		fmt.Fprintf(g.stdout, "  PVE: %s (VMID %d, %s) is used in PVE, not in the registry%s\n", addrOrNone(l.IP), l.VMID, l.Hostname, did)
	}
	for _, l := range rep.Missing {
		fmt.Fprintf(g.stdout, "  registry: %s (VMID %d, %s) is assigned but no guest has VMID %d%s\n", l.IP, l.VMID, l.Hostname, l.VMID, did)
	}
	for _, l := range rep.Expired {
		fmt.Fprintf(g.stdout, "  registry: the reservation of %s (VMID %d, %s) expired%s\n", l.IP, l.VMID, l.Hostname, did)
	}
	for _, c := range rep.Conflicts {
		fix := did
		if !c.Fixed && rep.Repaired {
			fix = " (fix it in PVE)"
		}
		fmt.Fprintf(g.stdout, "  conflict on %s: %s%s\n", addrOrNone(c.IP), c.Reason, fix)
	}
	for _, ip := range rep.Unregistered {
		fmt.Fprintf(g.stdout, "  SDN: %s is claimed in PVE's SDN IPAM with no lease or guest (another controller's create in flight, or left over)\n", ip)
	}
}

func addrOrNone(ip netip.Addr) string {
	if !ip.IsValid() {
		return "(no address)"
	}
	return ip.String()
}

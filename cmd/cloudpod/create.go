package main

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner"
)

type createOptions struct {
	vmid          string
	hostname      string
	ip            string
	template      int
	node          string
	cores         int
	memory        int
	swap          int
	storage       string
	bridge        string
	gateway       string
	subnet        string
	dns           []string
	searchdomain  string
	tenant        string
	tags          []string
	linked        bool
	dryRun        bool
	keepOnFailure bool
	allowDupHost  bool
	timeout       string
	count         int
	batchFile     string
	concurrency   int
}

func newCreateCommand(g *globalOptions) *cobra.Command {
	o := &createOptions{}
	def := provisioner.DefaultSpec()
	cmd := &cobra.Command{
		Use:   "create [VMID HOSTNAME LAST-OCTET]",
		Short: "Clone the golden template into a running, verified CloudPod",
		Example: `  cloudpod create 9101 migra-client-01 91
  cloudpod create --vmid 9201 --host migra-highmem-01 --ip 10.1.10.101 --cores 4 --mem 8192 --swap 2048 --storage clients-main --bridge vmbr0`,
		Args: cobra.RangeArgs(0, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.resolve(cmd.Flags()); err != nil {
				return err
			}
			if o.batchFile != "" || o.count > 1 {
				return runCreateMany(cmd.Context(), g, o, args)
			}
			spec, err := o.spec(args)
			if err != nil {
				return err
			}
			return runCreate(cmd.Context(), g, o, spec)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.vmid, "vmid", "", "VMID of the new pod, or auto (next free in --vmid-range)")
	f.StringVar(&o.hostname, "host", "", "hostname of the new pod (RFC 1123)")
	f.StringVar(&o.ip, "ip", "", "IPv4 address of the pod inside --prefix, e.g. 10.1.10.91, or auto (next free in --ip-range)")
	f.IntVar(&o.template, "template", def.Template, "VMID of the golden template")
	f.StringVar(&o.node, "node", def.Node, "PVE node, or auto: among the online nodes the template reaches, the one with the most memory free after the pod (CPU, then storage room, break ties)")
	f.IntVar(&o.cores, "cores", def.Cores, "CPU cores")
	f.IntVar(&o.memory, "mem", def.MemoryMB, "memory in MB")
	f.IntVar(&o.swap, "swap", def.SwapMB, "swap in MB")
	f.StringVar(&o.storage, "storage", def.Storage, "storage for the rootfs")
	f.StringVar(&o.bridge, "bridge", def.Bridge, "bridge for eth0")
	f.StringVar(&o.gateway, "gateway", def.Gateway.String(), "default gateway")
	f.StringVar(&o.subnet, "prefix", def.Subnet.String(), "the LAN the pod joins, as a CIDR")
	f.StringSliceVar(&o.dns, "dns", []string{def.DNS[0].String()}, "DNS servers (repeat or comma-separate)")
	f.StringVar(&o.searchdomain, "searchdomain", "", "DNS search domain")
	f.StringVar(&o.tenant, "tenant", "", "tenant id (letters, digits and _ . -, up to 64), recorded in the marker, tags and audit log")
	f.StringSliceVar(&o.tags, "tags", nil, "extra PVE tags")
	f.BoolVar(&o.linked, "linked", false, "linked clone instead of a full copy (stays on the template's storage)")
	f.BoolVar(&o.dryRun, "dry-run", false, "check everything and print the API calls it would make; change nothing")
	f.BoolVar(&o.keepOnFailure, "keep-on-failure", false, "on failure keep the pod, marked failed, instead of rolling back")
	f.BoolVar(&o.allowDupHost, "allow-duplicate-hostname", false, "allow a hostname another guest in the cluster has (compared in any case); refused otherwise")
	f.StringVar(&o.timeout, "timeout", "", "overall deadline for the whole create, e.g. 10m")
	f.IntVar(&o.count, "count", 1, "provision N pods: --host is a prefix (HOST-01…), VMIDs and IPs count up from --vmid/--ip or are auto")
	f.StringVar(&o.batchFile, "batch", "", "provision the pods of a file, one JSON object per line with the API's fields ({\"tenantId\":…,\"vmid\":…|\"auto\",\"hostname\":…,\"ip\":…|\"auto\",\"cores\":…,\"memoryMb\":…,\"swapMb\":…})")
	f.IntVar(&o.concurrency, "concurrency", 8, "pods in flight at once in a batch (clones of one template still go one at a time)")
	return cmd
}

// applyCommon sets what every pod of the command shares: network, sizes,
// placement, tenant.
func (o *createOptions) applyCommon(s *provisioner.Spec) error {
	var err error
	if s.Subnet, err = netip.ParsePrefix(o.subnet); err != nil {
		return fmt.Errorf("%w: --prefix %q is not a CIDR such as 10.1.10.0/24", errUsage, o.subnet)
	}
	s.Subnet = s.Subnet.Masked()
	if s.Gateway, err = netip.ParseAddr(o.gateway); err != nil {
		return fmt.Errorf("%w: --gateway %q is not an IPv4 address", errUsage, o.gateway)
	}
	s.DNS = nil
	for _, d := range o.dns {
		a, err := netip.ParseAddr(strings.TrimSpace(d))
		if err != nil {
			return fmt.Errorf("%w: --dns %q is not an IP address", errUsage, d)
		}
		s.DNS = append(s.DNS, a)
	}
	s.Template, s.Node, s.Cores, s.MemoryMB, s.SwapMB = o.template, o.node, o.cores, o.memory, o.swap
	s.Storage, s.Bridge, s.SearchDomain, s.Tenant, s.Linked = o.storage, o.bridge, o.searchdomain, o.tenant, o.linked
	s.Tags = o.tags
	return nil
}

// spec turns the seed form (VMID HOSTNAME LAST-OCTET) or the flags form into
// a provisioner.Spec.
func (o *createOptions) spec(args []string) (provisioner.Spec, error) {
	s := provisioner.DefaultSpec()
	if err := o.applyCommon(&s); err != nil {
		return s, err
	}
	var err error
	s.Hostname = o.hostname
	ipText, vmidText := o.ip, o.vmid
	switch len(args) {
	case 0:
	case 3:
		if o.vmid != "" || o.hostname != "" || o.ip != "" {
			return s, fmt.Errorf("%w: give either VMID HOSTNAME LAST-OCTET or --vmid/--host/--ip, not both", errUsage)
		}
		vmidText, s.Hostname = args[0], args[1]
		octet, err := strconv.Atoi(args[2])
		if err != nil {
			return s, fmt.Errorf("%w: last octet %q is not a number, e.g. 91 for %s", errUsage, args[2], "10.1.10.91")
		}
		addr, err := netcfg.HostInSubnet(s.Subnet, octet)
		if err != nil {
			return s, fmt.Errorf("%w: %v", errUsage, err)
		}
		ipText = addr.String()
	default:
		return s, fmt.Errorf("%w: give VMID HOSTNAME LAST-OCTET (e.g. 9101 migra-client-01 91), or --vmid, --host and --ip", errUsage)
	}
	if vmidText == "" || s.Hostname == "" || ipText == "" {
		return s, fmt.Errorf("%w: missing --vmid, --host or --ip: e.g. cloudpod create 9101 migra-client-01 91", errUsage)
	}
	if vmidText != "auto" {
		if s.VMID, err = strconv.Atoi(vmidText); err != nil {
			return s, fmt.Errorf("%w: VMID %q is not a number (e.g. 9101) or auto", errUsage, vmidText)
		}
	}
	if ipText != "auto" {
		if s.IP, err = netip.ParseAddr(ipText); err != nil || !s.IP.Is4() {
			return s, fmt.Errorf("%w: --ip %q is not an IPv4 address such as 10.1.10.91, or auto", errUsage, ipText)
		}
	}
	return s, nil
}

func runCreate(ctx context.Context, g *globalOptions, o *createOptions, spec provisioner.Spec) error {
	if o.timeout != "" {
		d, err := parseDuration(o.timeout)
		if err != nil {
			return fmt.Errorf("%w: --timeout %q: %v", errUsage, o.timeout, err)
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	log := g.logger()
	api, err := g.client(log)
	if err != nil {
		return err
	}
	prov, err := g.provisioner(api, spec, log)
	if err != nil {
		return err
	}
	prog := newProgress(g)
	defer prog.Close()
	if o.dryRun {
		plan, err := prov.Plan(ctx, provisioner.CreateRequest{Spec: spec, Reporter: prog, AllowDuplicateHostname: o.allowDupHost})
		if err != nil {
			return err
		}
		printPlan(g, plan)
		return nil
	}
	res, err := prov.Create(ctx, provisioner.CreateRequest{Spec: spec, KeepOnFailure: o.keepOnFailure, Reporter: prog, Stop: g.stop,
		AllowDuplicateHostname: o.allowDupHost})
	printCreateResult(g, res, err)
	return err
}

func printCreateResult(g *globalOptions, res provisioner.CreateResult, err error) {
	if g.output == "json" {
		out := struct {
			Type string `json:"type"`
			provisioner.CreateResult
			Error string `json:"error,omitempty"`
		}{Type: "result", CreateResult: res}
		if err != nil {
			out.Error = err.Error()
			out.Status = "failed"
		}
		writeJSON(g.stdout, out)
		return
	}
	if err != nil {
		return
	}
	what := "created"
	if !res.Changed {
		what = "already provisioned, nothing to do"
	}
	fmt.Fprintf(g.stdout, "CT %d %s (%s) %s: %s on node %s, %s\n", res.VMID, res.Hostname, res.IP, what, res.Status, res.Node, stepsSummary(res.Steps))
	for _, w := range res.Warnings {
		fmt.Fprintf(g.stdout, "warning: %s\n", w)
	}
}

func stepsSummary(steps map[string]float64) string {
	total := 0.0
	for _, v := range steps {
		total += v
	}
	return fmt.Sprintf("%.1fs", total)
}

func printPlan(g *globalOptions, plan []provisioner.PlannedCall) { printDryRun(g, "create", plan, nil) }

func runCreateMany(ctx context.Context, g *globalOptions, o *createOptions, args []string) error {
	if o.dryRun {
		return fmt.Errorf("%w: --dry-run takes one pod, not --count or --batch", errUsage)
	}
	base := provisioner.DefaultSpec()
	if o.batchFile == "" {
		var err error
		if base, err = o.spec(args); err != nil {
			return err
		}
	} else if err := o.applyCommon(&base); err != nil {
		return err
	}
	specs, err := o.batchSpecs(base)
	if err != nil {
		return err
	}
	log := g.logger()
	api, err := g.client(log)
	if err != nil {
		return err
	}
	prov, err := g.provisioner(api, base, log)
	if err != nil {
		return err
	}
	return runBatch(ctx, g, prov, specs, o)
}

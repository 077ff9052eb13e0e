package provisioner

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner/flow"
	"github.com/migrahosting/cloudpods/provisioner/pve"
)

// An OpenWrt router as a container: the OpenWrt rootfs with the unmanaged
// ostype (PVE sets nothing up inside an OS it does not know), privileged,
// LAN on eth0 and WAN on eth1 as OpenWrt's x86 defaults have them; then
// its UCI configuration through the console (network lan and wan,
// firewall zones, dropbear on the LAN, the hostname), the services
// restarted, and the WAN address waited for with retries, with a fallback
// message when no DHCP server answers. It is ct create's flow with steps
// of its own.

// Steps of openwrt create.
const (
	StepUCI = "uci"
	StepWAN = "wan"
)

// DefaultOpenWrtLAN is OpenWrt's own LAN address.
const DefaultOpenWrtLAN = "192.168.1.1/24"

// OpenWrtSpec is one router.
type OpenWrtSpec struct {
	Node     string
	VMID     int
	Hostname string
	// WAN and LAN are host bridges; VLAN tags on them are optional.
	WAN, LAN         string
	WANVLAN, LANVLAN int
	// LANAddress is the router's LAN address with its prefix.
	LANAddress string
	// OSTemplate is the rootfs volume; "" picks the newest OpenWrt rootfs
	// on the node's template storages.
	OSTemplate string
	Storage    string
	DiskGB     int
	Cores      int
	MemoryMB   int
	SwapMB     int
	OnBoot     bool
	Tags       []string
	Tenant     string
}

// DefaultOpenWrtSpec: 1 GB, 1 core, 256 MB, no swap, LAN 192.168.1.1/24,
// started at boot (a router).
func DefaultOpenWrtSpec() OpenWrtSpec {
	return OpenWrtSpec{Node: "pve", Storage: StorageAuto, DiskGB: 1, Cores: 1, MemoryMB: 256, SwapMB: 0, LANAddress: DefaultOpenWrtLAN, OnBoot: true}
}

// ctSpec is the container the router is.
func (o OpenWrtSpec) ctSpec() CTSpec {
	lan := netcfg.NIC{Name: "eth0", Bridge: o.LAN, VLAN: o.LANVLAN, IP: "manual"}
	wan := netcfg.NIC{Name: "eth1", Bridge: o.WAN, VLAN: o.WANVLAN, IP: "dhcp"}
	return CTSpec{Node: o.Node, VMID: o.VMID, Hostname: o.Hostname, OSTemplate: o.OSTemplate, Storage: o.Storage, DiskGB: o.DiskGB,
		Cores: o.Cores, MemoryMB: o.MemoryMB, SwapMB: o.SwapMB, NICs: []netcfg.NIC{lan, wan}, Unprivileged: false, OSType: "unmanaged",
		OnBoot: o.OnBoot, Tags: o.Tags, Tenant: o.Tenant, Start: true, CMode: "shell", Label: "OpenWrt router",
		Extra: []string{"lan-ip=" + o.LANAddress}}
}

// OpenWrtRequest is one openwrt create.
type OpenWrtRequest struct {
	Spec OpenWrtSpec
	// WANWait bounds waiting for the WAN's DHCP lease; without one by then
	// the router is kept, with a warning saying what to check.
	WANWait       time.Duration
	KeepOnFailure bool
	Reporter      Reporter
	Stop          <-chan struct{}
	Requester     string
}

// OpenWrtResult is what openwrt create reports.
type OpenWrtResult struct {
	CTResult
	LAN        string `json:"lan"`
	WAN        string `json:"wan,omitempty"`
	OSTemplate string `json:"ostemplate"`
}

type openwrtRun struct {
	*ctRun
	ospec OpenWrtSpec
	lan   netip.Prefix
	wan   string
}

func (p *Provisioner) newOpenWrtRun(req OpenWrtRequest) *openwrtRun {
	r := p.newCTRun(CTRequest{Spec: req.Spec.ctSpec(), DHCPWait: req.WANWait, KeepOnFailure: req.KeepOnFailure, Reporter: req.Reporter,
		Stop: req.Stop, Requester: req.Requester}, "openwrt create")
	r.pickTemplate = true
	r.leases.ask = routerLeases(r.leases.ask, req.Spec.LANAddress)
	return &openwrtRun{ctRun: r, ospec: req.Spec}
}

// routerLeases is a router's ask of IPAM: what its cards have (nothing
// static: the WAN asks DHCP from inside), and its LAN, its own network,
// left alone.
func routerLeases(ask func() guestAsk, lan string) func() guestAsk {
	return func() guestAsk {
		a := ask()
		a.aside = []string{"the WAN asks DHCP and the LAN address " + lan + " is the router's own network, both set inside the router"}
		return a
	}
}

func (o *openwrtRun) steps() []flow.Step {
	return []flow.Step{
		{Name: StepValidate, ReadOnly: true, Run: o.validate},
		{Name: StepPreflight, ReadOnly: true, Run: o.preflight},
		o.leases.step(),
		o.createStep(),
		o.startStep(),
		{Name: StepUCI, Run: o.configure, Plan: o.planConfigure},
		{Name: StepWAN, Run: o.waitWAN, Plan: o.planWAN},
		{Name: StepVerify, Run: o.verify, Plan: o.planVerify},
		o.finalizeStep(),
	}
}

// CreateOpenWrt makes an OpenWrt router container, or converges one an
// earlier run of the same spec made.
func (p *Provisioner) CreateOpenWrt(ctx context.Context, req OpenWrtRequest) (OpenWrtResult, error) {
	o := p.newOpenWrtRun(req)
	err := o.run.Execute(ctx, o.steps())
	return OpenWrtResult{CTResult: o.result(ctx, err), LAN: o.ospec.LANAddress, WAN: o.wan, OSTemplate: o.spec.OSTemplate}, err
}

// PlanOpenWrt is openwrt create's dry run.
func (p *Provisioner) PlanOpenWrt(ctx context.Context, req OpenWrtRequest) ([]PlannedCall, []string, error) {
	o := p.newOpenWrtRun(req)
	calls, err := o.run.DryRun(ctx, o.steps())
	return calls, o.reasons, err
}

func (o *openwrtRun) validate(ctx context.Context) error {
	s := o.ospec
	var probs []string
	o.lan, probs = validateRouter(s.WAN, s.LAN, s.WANVLAN, s.LANVLAN, s.LANAddress)
	if o.spec.OSTemplate != "" && !strings.Contains(o.spec.OSTemplate, "openwrt") {
		o.run.Warn(fmt.Sprintf("%s does not look like an OpenWrt rootfs: the router's UCI configuration needs one", o.spec.OSTemplate))
	}
	if err := o.ctRun.validate(ctx); err != nil {
		probs = append(probs, err.Error())
	}
	if len(probs) > 0 {
		return problemf(ErrInvalidSpec, "%s", strings.Join(probs, "; "))
	}
	return nil
}

// validateRouter checks a router's sides and LAN address, container or
// VM: two networks, and an IPv4 host address with a prefix of 8 to 30.
func validateRouter(wan, lan string, wanVLAN, lanVLAN int, lanAddress string) (netip.Prefix, []string) {
	var probs []string
	if wan == "" || lan == "" {
		probs = append(probs, "give both --wan and --lan bridges, e.g. --wan vmbr0 --lan vmbr1")
	} else if wan == lan && wanVLAN == lanVLAN {
		probs = append(probs, fmt.Sprintf("--wan and --lan are both %s: a router joins two networks; give the LAN its own bridge (or VLAN)", wan))
	}
	p, err := netip.ParsePrefix(lanAddress)
	switch {
	case err != nil || !p.Addr().Is4() || p.Bits() < 8 || p.Bits() > 30:
		probs = append(probs, fmt.Sprintf("--lan-ip %q is not an IPv4 address with a prefix of 8 to 30, e.g. %s", lanAddress, DefaultOpenWrtLAN))
	case p.Addr() == p.Masked().Addr() || p.Addr() == broadcastOf(p):
		probs = append(probs, fmt.Sprintf("--lan-ip %s is its subnet's network or broadcast address: give the router's own address, e.g. %s", lanAddress, p.Masked().Addr().Next()))
	default:
		return p, probs
	}
	return netip.Prefix{}, probs
}

// broadcastOf is an IPv4 prefix's broadcast address.
func broadcastOf(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | ^uint32(0)>>p.Bits()
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// openwrtRootfsRE is an OpenWrt x86-64 rootfs template's file name.
var openwrtRootfsRE = regexp.MustCompile(`^openwrt-(\d+)\.(\d+)\.(\d+)-x86-64-rootfs\.tar\.gz$`)

// preflight picks the rootfs when none was named (the newest OpenWrt
// release on the node's template storages), then checks as ct create does.
func (o *openwrtRun) preflight(ctx context.Context) error {
	if o.spec.OSTemplate == "" {
		vol, err := o.newestRootfs(ctx)
		if err != nil {
			return err
		}
		o.spec.OSTemplate = vol
		o.reasons = append(o.reasons, "ostemplate "+vol+": the newest OpenWrt rootfs on the node's template storages")
	}
	o.reasons = append(o.reasons, "ostype unmanaged and privileged (unprivileged=0): OpenWrt is no OS PVE sets up, and its netifd and firewall need a privileged container; no features (a token may set none on a privileged CT)",
		fmt.Sprintf("LAN on eth0 (%s), WAN on eth1 (%s, DHCP), as OpenWrt's x86 defaults have them; LAN address %s", o.ospec.LAN, o.ospec.WAN, o.ospec.LANAddress))
	return o.ctRun.preflight(ctx)
}

func (o *openwrtRun) newestRootfs(ctx context.Context) (string, error) {
	storages, err := o.p.api.Storages(ctx, o.spec.Node)
	if err != nil {
		return "", apiProblem("list storages on "+o.spec.Node, err)
	}
	best, bestKey := "", ""
	for _, s := range storages {
		if !s.Active || !contains(s.Content, "vztmpl") {
			continue
		}
		vols, err := o.p.api.StorageContent(ctx, o.spec.Node, s.ID, "vztmpl")
		if err != nil {
			return "", apiProblem("list the templates on storage "+s.ID, err)
		}
		for _, v := range vols {
			_, name, _ := strings.Cut(v.VolID, "/")
			m := openwrtRootfsRE.FindStringSubmatch(name)
			if m == nil {
				continue
			}
			key := ""
			for _, part := range m[1:] {
				n, _ := strconv.Atoi(part)
				key += fmt.Sprintf("%06d", n)
			}
			if key > bestKey {
				best, bestKey = v.VolID, key
			}
		}
	}
	if best == "" {
		return "", problemf(ErrPreflight, "no OpenWrt rootfs is on node %s's template storages: make one with: cloudpod openwrt template --version latest", o.spec.Node)
	}
	return best, nil
}

// openwrtUCI is a router's UCI configuration, as a container or a VM:
// LAN static on br-lan (eth0), WAN by DHCP on eth1, firewall zones lan and
// wan with forwarding lan → wan, dropbear on the LAN only, the hostname.
type openwrtUCI struct {
	lan      netip.Prefix
	hostname string
}

func (o *openwrtRun) uci() openwrtUCI { return openwrtUCI{lan: o.lan, hostname: o.spec.Hostname} }

// want are the UCI options the router must have, as package.section.option → value.
func (u openwrtUCI) want() map[string]string {
	bits := uint32(0xffffffff) << (32 - u.lan.Bits())
	mask := [4]byte{byte(bits >> 24), byte(bits >> 16), byte(bits >> 8), byte(bits)}
	return map[string]string{
		"network.lan.proto":               "static",
		"network.lan.device":              "br-lan",
		"network.lan.ipaddr":              u.lan.Addr().String(),
		"network.lan.netmask":             netip.AddrFrom4(mask).String(),
		"network.wan.device":              "eth1",
		"network.wan.proto":               "dhcp",
		"dropbear.@dropbear[0].Interface": "lan",
		"system.@system[0].hostname":      u.hostname,
	}
}

// planNote is what the configuration does, for a dry run.
func (u openwrtUCI) planNote() string {
	want := u.want()
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k+"="+want[k])
	}
	sort.Strings(keys)
	return "uci set " + strings.Join(keys, " ") +
		"; firewall zones lan (input ACCEPT) and wan (input REJECT, masq), forwarding lan→wan; uci commit; /etc/init.d/network restart, firewall restart, dropbear restart, system reload"
}

func (o *openwrtRun) planConfigure(context.Context) ([]flow.Call, error) {
	s := o.spec
	return []flow.Call{
		{Method: "POST", Path: ctPathOf(s.Node, s.VMID, "/termproxy"), Note: "console (cmode=shell: a root shell, no login)"},
		{Method: "GET", Path: ctPathOf(s.Node, s.VMID, "/vncwebsocket"), Note: o.uci().planNote()},
	}, nil
}

// uciQuoted is a value in single quotes for ash.
func uciQuoted(v string) string { return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'" }

// configure sets the router's UCI configuration through the console and
// restarts its services; a router already configured so is left alone.
func (o *openwrtRun) configure(ctx context.Context) error {
	return o.uci().configure(ctx, o.ct(), o.spec.OSTemplate, func(ctx context.Context, what string, fn func(context.Context, *shell) error) error {
		return o.p.inGuest(ctx, o.run, o.ct(), what, fn)
	}, &o.res.Changed)
}

// configure applies u through a console in attaches to g (made from
// from); nothing differing is the step's skip, a change is noted in
// changed.
func (u openwrtUCI) configure(ctx context.Context, g pve.GuestRef, from string, in func(ctx context.Context, what string, fn func(context.Context, *shell) error) error, changed *bool) error {
	did := false
	err := in(ctx, "configuring OpenWrt", func(ctx context.Context, sh *shell) error {
		var err error
		did, err = u.apply(ctx, sh, g, from)
		return err
	})
	if err != nil {
		return err
	}
	if !did {
		return flow.Skip("UCI already as wanted")
	}
	*changed = true
	return nil
}

// apply sets what differs from want in the router's shell, commits and
// restarts the services; changed is false when nothing differed. g and
// from name the guest and what it was made from, for a refusal.
func (u openwrtUCI) apply(ctx context.Context, sh *shell, g pve.GuestRef, from string) (changed bool, err error) {
	if _, code, err := sh.run(ctx, "test -f /etc/openwrt_release"); err != nil {
		return false, err
	} else if code != 0 {
		return false, problemf(ErrPreflight, "%s has no /etc/openwrt_release: %s is not OpenWrt", g, from)
	}
	want := u.want()
	var cmds []string
	for _, k := range sortedKeysOf(want) {
		out, _, err := sh.run(ctx, "uci -q get "+k)
		if err != nil {
			return false, err
		}
		if strings.TrimSpace(out) != want[k] {
			cmds = append(cmds, "uci set "+k+"="+uciQuoted(want[k]))
		}
	}
	zoneCmds, err := firewallCommands(ctx, sh)
	if err != nil {
		return false, err
	}
	cmds = append(cmds, zoneCmds...)
	if len(cmds) == 0 {
		return false, nil
	}
	for _, c := range append(cmds, "uci commit", "/etc/init.d/network restart", "/etc/init.d/firewall restart", "/etc/init.d/dropbear restart", "/etc/init.d/system reload") {
		if _, err := sh.mustRun(ctx, c); err != nil {
			return true, err
		}
	}
	return true, nil
}

// checks reads want back through the shell.
func (u openwrtUCI) checks(ctx context.Context, sh *shell) ([]Check, error) {
	want := u.want()
	var checks []Check
	for _, k := range sortedKeysOf(want) {
		out, _, err := sh.run(ctx, "uci -q get "+k)
		if err != nil {
			return nil, err
		}
		have := strings.TrimSpace(out)
		c := Check{Name: "uci " + k, OK: have == want[k], Detail: have}
		if !c.OK {
			c.Detail = fmt.Sprintf("%q, want %q", have, want[k])
		}
		checks = append(checks, c)
	}
	return checks, nil
}

// wanStatus asks netifd for the WAN's IPv4 address ("" without one).
func wanStatus(ctx context.Context, sh *shell) (string, error) {
	out, _, err := sh.run(ctx, "ubus call network.interface.wan status")
	if err != nil {
		return "", err
	}
	if m := regexp.MustCompile(`"address": "([0-9.]+)",\s*"mask": (\d+)`).FindStringSubmatch(out); m != nil {
		return m[1] + "/" + m[2], nil
	}
	return "", nil
}

// firewallCommands bring the firewall zones to OpenWrt's router layout:
// lan (input, output, forward ACCEPT) and wan (input and forward REJECT,
// masquerading) and forwarding lan → wan, adding what is missing.
func firewallCommands(ctx context.Context, sh *shell) ([]string, error) {
	out, _, err := sh.run(ctx, "uci -q show firewall")
	if err != nil {
		return nil, err
	}
	sections := parseUCIShow(out)
	zones := map[string]string{} // zone name → section ref
	forwarding := false
	for ref, opts := range sections {
		switch opts[""] {
		case "zone":
			zones[opts["name"]] = ref
		case "forwarding":
			if opts["src"] == "lan" && opts["dest"] == "wan" {
				forwarding = true
			}
		}
	}
	var cmds []string
	want := []struct {
		name, networks string
		opts           map[string]string
	}{
		{"lan", "lan", map[string]string{"input": "ACCEPT", "output": "ACCEPT", "forward": "ACCEPT"}},
		{"wan", "wan wan6", map[string]string{"input": "REJECT", "output": "ACCEPT", "forward": "REJECT", "masq": "1", "mtu_fix": "1"}},
	}
	for _, z := range want {
		ref, ok := zones[z.name]
		if !ok {
			ref = "@zone[-1]"
			cmds = append(cmds, "uci add firewall zone", "uci set firewall."+ref+".name="+z.name)
		}
		opts := sections[ref]
		for _, k := range sortedKeysOf(z.opts) {
			if opts[k] != z.opts[k] {
				cmds = append(cmds, "uci set firewall."+ref+"."+k+"="+z.opts[k])
			}
		}
		if opts["network"] != z.networks {
			cmds = append(cmds, "uci -q delete firewall."+ref+".network; true")
			for _, n := range strings.Fields(z.networks) {
				cmds = append(cmds, "uci add_list firewall."+ref+".network="+n)
			}
		}
	}
	if !forwarding {
		cmds = append(cmds, "uci add firewall forwarding", "uci set firewall.@forwarding[-1].src=lan", "uci set firewall.@forwarding[-1].dest=wan")
	}
	return cmds, nil
}

// uciShowRE is one line of `uci show`: pkg.section[.option]=value.
var uciShowRE = regexp.MustCompile(`^[a-z0-9_]+\.(@[a-z0-9_]+\[\d+\]|[A-Za-z0-9_]+)(?:\.([A-Za-z0-9_]+))?=(.*)$`)

// parseUCIShow reads `uci show PACKAGE`: section ref → option → value,
// the section's type under "", lists joined by spaces.
func parseUCIShow(out string) map[string]map[string]string {
	sections := map[string]map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		m := uciShowRE.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		if sections[m[1]] == nil {
			sections[m[1]] = map[string]string{}
		}
		var vals []string
		for _, v := range regexp.MustCompile(`'((?:[^']|'\\'')*)'|(\S+)`).FindAllStringSubmatch(m[3], -1) {
			vals = append(vals, strings.ReplaceAll(v[1]+v[2], `'\''`, "'"))
		}
		sections[m[1]][m[2]] = strings.Join(vals, " ")
	}
	return sections
}

func sortedKeysOf(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (o *openwrtRun) planWAN(context.Context) ([]flow.Call, error) {
	return []flow.Call{{Method: "GET", Path: ctPathOf(o.spec.Node, o.spec.VMID, "/interfaces"),
		Note: "until eth1 (WAN) has a DHCP lease, for up to " + o.req.DHCPWait.String() + "; else ubus call network.interface.wan status in the console"}}, nil
}

// waitWAN waits for the WAN's address: PVE's view of eth1 first (polled
// with backoff), then, if none came, netifd's own answer through the
// console; a router without a WAN lease is kept, with what to check.
func (o *openwrtRun) waitWAN(ctx context.Context) error {
	var last string
	err := pollUntil(ctx, o.req.DHCPWait, func(ctx context.Context) (bool, error) {
		ifs, err := o.p.api.GuestInterfaces(ctx, o.ct())
		if errors.Is(err, pve.ErrTransient) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		for _, i := range ifs {
			if i.Name == "eth1" {
				last = i.Inet
			}
		}
		return last != "", nil
	})
	if err != nil && !(errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil) {
		return err
	}
	if last == "" {
		// PVE's view may lag; netifd knows.
		if ierr := o.p.inGuest(ctx, o.run, o.ct(), "reading the WAN's status", func(ctx context.Context, sh *shell) error {
			var err error
			last, err = wanStatus(ctx, sh)
			return err
		}); ierr != nil {
			return ierr
		}
	}
	o.wan = last
	if last == "" {
		o.run.Warn(fmt.Sprintf("the WAN (eth1 on %s) has no address after %s: is there a DHCP server on %s? The router runs; check in its console with: ubus call network.interface.wan status", o.ospec.WAN, o.req.DHCPWait, o.ospec.WAN))
		return nil
	}
	o.run.Note("WAN eth1 " + last)
	return nil
}

// verify is ct create's config check, plus the router's inside: UCI as
// wanted and br-lan carrying the LAN address in PVE's view.
func (o *openwrtRun) verify(ctx context.Context) error {
	cfg, err := o.p.api.GuestConfig(ctx, o.ct())
	if err != nil {
		return err
	}
	checks := o.configChecks(cfg)
	checks = append(checks, Check{Name: "ostype", OK: cfg.Get("ostype") == "unmanaged", Detail: cfg.Get("ostype")})
	err = o.p.inGuest(ctx, o.run, o.ct(), "checking UCI", func(ctx context.Context, sh *shell) error {
		uc, err := o.uci().checks(ctx, sh)
		checks = append(checks, uc...)
		return err
	})
	if err != nil {
		return err
	}
	lanShown := ""
	err = pollUntil(ctx, o.p.opts.VerifyTimeout, func(ctx context.Context) (bool, error) {
		ifs, err := o.p.api.GuestInterfaces(ctx, o.ct())
		if err != nil {
			return false, nil
		}
		for _, i := range ifs {
			if i.Name == "br-lan" {
				lanShown = i.Inet
			}
		}
		return lanShown == o.lan.String(), nil
	})
	if err != nil && !(errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil) {
		return err
	}
	checks = append(checks, Check{Name: "br-lan address", OK: lanShown == o.lan.String(), Detail: orDefault(lanShown, "(none)") + map[bool]string{true: "", false: ", want " + o.lan.String()}[lanShown == o.lan.String()]})
	st, err := o.p.api.GuestStatus(ctx, o.ct())
	if err != nil {
		return err
	}
	checks = append(checks, Check{Name: "status", OK: st.Status == "running", Detail: st.Status})
	o.res.Checks = append(o.res.Checks, checks...)
	o.res.NICs = []NICState{{Key: "net0", Name: "eth0 (LAN, br-lan)", Config: cfg.Get("net0"), Address: lanShown}, {Key: "net1", Name: "eth1 (WAN)", Config: cfg.Get("net1"), Address: o.wan}}
	return failedChecks(fmt.Sprintf("router CT %d is not as asked", o.spec.VMID), checks)
}

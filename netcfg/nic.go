package netcfg

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// NIC is one network interface of a new guest as an operator describes it
// (--net name=eth0,bridge=vmbr0[,tag=VLAN][,hwaddr=MAC][,mtu=N]
// [,ip=CIDR|dhcp|manual][,gw=IP][,ip6=CIDR|auto|dhcp|manual][,gw6=IP]
// [,firewall=1]). It renders into a container's netN, a VM's netN and its
// cloud-init ipconfigN.
type NIC struct {
	Name     string // the interface inside the guest, e.g. eth0
	Bridge   string
	VLAN     int    // 0: untagged
	HWAddr   string // "": PVE generates one
	MTU      int    // 0: the bridge's
	IP       string // IPv4/CIDR, dhcp, manual, or "" (none)
	GW       string
	IP6      string // IPv6/CIDR, auto, dhcp, manual, or ""
	GW6      string
	Firewall bool
}

// nicKeys are the keys --net takes, in the order help text lists them.
var nicKeys = []string{"name", "bridge", "tag", "hwaddr", "mtu", "ip", "gw", "ip6", "gw6", "firewall"}

// ParseNIC reads one --net value. Every problem is one sentence naming the
// key and the fix; several are joined.
func ParseNIC(s string) (NIC, error) {
	var n Net0
	seen, errs := eachProperty(s, "--net", func(k, v string) error {
		if !contains(nicKeys, k) {
			return fmt.Errorf("--net key %s is not one --net takes: use %s", k, strings.Join(nicKeys, ", "))
		}
		if err := n.set(k, v); err != nil {
			return errors.New("--net " + strings.TrimPrefix(err.Error(), "net0 "))
		}
		return nil
	})
	if !seen["name"] {
		errs = append(errs, errors.New("--net has no name: give the interface inside the guest, e.g. name=eth0"))
	}
	if !seen["bridge"] {
		errs = append(errs, errors.New("--net has no bridge: give the host bridge, e.g. bridge=vmbr0"))
	}
	if len(errs) > 0 {
		return NIC{}, errors.Join(errs...)
	}
	nic := NIC{Name: n.Name, Bridge: n.Bridge, VLAN: n.Tag, HWAddr: n.HWAddr, MTU: n.MTU, IP: n.IP, GW: n.GW, IP6: n.IP6, GW6: n.GW6, Firewall: n.Firewall}
	if err := nic.Validate(); err != nil {
		return NIC{}, err
	}
	return nic, nil
}

// Validate checks what the keys say together: a name Linux takes, an MTU
// that carries IPv4, a static address that is a host of its subnet, and a
// gateway only beside a static address, on its subnet.
func (n NIC) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if err := checkIfName("interface", n.Name, "eth0"); err != nil {
		errs = append(errs, fmt.Errorf("--net name: %w", err))
	}
	if err := checkIfName("bridge", n.Bridge, "vmbr0"); err != nil {
		errs = append(errs, fmt.Errorf("--net bridge: %w", err))
	}
	if n.MTU != 0 && n.MTU < minMTU {
		add("--net mtu=%d is below %d, the least IPv4 runs on: use %d to %d", n.MTU, minMTU, minMTU, maxMTU)
	}
	errs = append(errs, n.addressErrors("--net")...)
	return errors.Join(errs...)
}

// addressErrors checks the address keys together: a static address that
// is a host of its subnet, and a gateway only beside a static address, on
// its subnet. label names the flag in the sentences (--net, --ipconfig0).
func (n NIC) addressErrors(label string) []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if p, err := netip.ParsePrefix(n.IP); err == nil {
		if p.Bits() <= maxPrefixBits && (p.Addr() == p.Masked().Addr() || p.Addr() == broadcast(p.Masked())) {
			add(label+" ip=%s is its subnet's network or broadcast address: give a host address such as %s", n.IP, p.Masked().Addr().Next())
		}
		if gw, err := netip.ParseAddr(n.GW); err == nil {
			switch {
			case !p.Masked().Contains(gw):
				add(label+" gw=%s is outside ip=%s's subnet %s: give a gateway on that subnet", n.GW, n.IP, p.Masked())
			case gw == p.Addr():
				add(label+" gw=%s is the NIC's own address: give the router's address", n.GW)
			}
		}
	} else if n.GW != "" {
		add(label+" gw=%s needs a static ip=CIDR beside it (with ip=%s the gateway comes from %s): drop gw or give ip=ADDRESS/PREFIX", n.GW, orNone(n.IP), orNone(n.IP))
	}
	if p, err := netip.ParsePrefix(n.IP6); err == nil {
		if gw, err := netip.ParseAddr(n.GW6); err == nil && !p.Masked().Contains(gw) && !gw.IsLinkLocalUnicast() {
			add(label+" gw6=%s is neither on ip6=%s's subnet nor link-local: give a gateway on that subnet or fe80::…", n.GW6, n.IP6)
		}
	} else if n.GW6 != "" {
		add(label+" gw6=%s needs a static ip6=CIDR beside it: drop gw6 or give ip6=ADDRESS/PREFIX", n.GW6)
	}
	return errs
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// ValidateNICs checks a guest's NICs together: at least one, distinct
// names and MACs, and one default gateway per family at most (two would
// fight over the default route).
func ValidateNICs(nics []NIC) error {
	var errs []error
	if len(nics) == 0 {
		return errors.New("no --net given: give at least one, e.g. --net name=eth0,bridge=vmbr0,ip=dhcp")
	}
	if len(nics) > maxNICs {
		errs = append(errs, fmt.Errorf("%d NICs are more than PVE's %d (net0 to net%d): drop some", len(nics), maxNICs, maxNICs-1))
	}
	names, macs := map[string]bool{}, map[string]bool{}
	var gw, gw6 []string
	for _, n := range nics {
		if names[n.Name] {
			errs = append(errs, fmt.Errorf("two --net name %s: give each NIC its own name (eth0, eth1, …)", n.Name))
		}
		names[n.Name] = true
		if m := strings.ToUpper(n.HWAddr); m != "" {
			if macs[m] {
				errs = append(errs, fmt.Errorf("two --net hwaddr %s: a MAC must be unique, or leave hwaddr out and PVE generates one", n.HWAddr))
			}
			macs[m] = true
		}
		if n.GW != "" {
			gw = append(gw, n.Name)
		}
		if n.GW6 != "" {
			gw6 = append(gw6, n.Name)
		}
	}
	if len(gw) > 1 {
		errs = append(errs, fmt.Errorf("%s all have gw=: only one NIC may carry the default gateway", strings.Join(gw, ", ")))
	}
	if len(gw6) > 1 {
		errs = append(errs, fmt.Errorf("%s all have gw6=: only one NIC may carry the IPv6 default gateway", strings.Join(gw6, ", ")))
	}
	return errors.Join(errs...)
}

// maxNICs is PVE's netN count (net0 … net31 for containers; VMs allow the same).
const maxNICs = 32

// ContainerNet is the NIC as a container's netN, in PVE's stored order
// (without a MAC PVE adds one when it stores it).
func (n NIC) ContainerNet() string {
	return Net0{Name: n.Name, Bridge: n.Bridge, Tag: n.VLAN, HWAddr: n.HWAddr, MTU: n.MTU, IP: n.IP, GW: n.GW,
		IP6: n.IP6, GW6: n.GW6, Firewall: n.Firewall, Type: "veth"}.String()
}

// VMNet is the NIC as a VM's netN with the given model (virtio, e1000…):
// the address lives in IPConfig, the name inside the guest is the guest's.
func (n NIC) VMNet(model string) string {
	parts := []string{model}
	if n.HWAddr != "" {
		parts[0] = model + "=" + n.HWAddr
	}
	parts = append(parts, "bridge="+n.Bridge)
	if n.Firewall {
		parts = append(parts, "firewall=1")
	}
	if n.MTU != 0 {
		parts = append(parts, "mtu="+strconv.Itoa(n.MTU))
	}
	if n.VLAN != 0 {
		parts = append(parts, "tag="+strconv.Itoa(n.VLAN))
	}
	return strings.Join(parts, ",")
}

// IPConfig is the NIC's cloud-init ipconfigN ("" when it configures no
// address): ip and gw, ip6 and gw6; manual has no cloud-init form and is
// left out.
func (n NIC) IPConfig() string {
	var parts []string
	for _, kv := range [][2]string{{"ip", n.IP}, {"gw", n.GW}, {"ip6", n.IP6}, {"gw6", n.GW6}} {
		if kv[1] != "" && kv[1] != "manual" {
			parts = append(parts, kv[0]+"="+kv[1])
		}
	}
	return strings.Join(parts, ",")
}

// String is the NIC in --net form.
func (n NIC) String() string {
	return strings.TrimSuffix(n.ContainerNet(), ",type=veth")
}

// ContainerNets are the NICs as a container's net0…netN config keys.
func ContainerNets(nics []NIC) map[string]string {
	out := make(map[string]string, len(nics))
	for i, n := range nics {
		out["net"+strconv.Itoa(i)] = n.ContainerNet()
	}
	return out
}

// SameNIC reports whether a stored netN value holds the NIC as asked:
// every key the NIC sets, and no address or VLAN it did not ask for. A MAC
// PVE generated counts as asked when the NIC named none.
func SameNIC(stored string, n NIC) bool {
	have, err := ParseNet0(stored)
	if err != nil {
		return false
	}
	if n.HWAddr == "" {
		have.HWAddr = ""
	}
	have.Type, have.Rate, have.Trunks, have.LinkDown, have.HostManaged = "veth", "", "", false, false
	return have.String() == n.ContainerNet()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

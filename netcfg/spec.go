// Package netcfg turns one network description of a container into the two
// forms the provisioner writes: PVE's net0 property string and the netplan
// file pushed into the guest. It also checks operator input, returning one
// sentence per problem that names the problem and the fix.
//
// The package is pure: no I/O, no clock, no logging, no mutable state.
package netcfg

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// Spec is the network of one container's single NIC.
type Spec struct {
	Interface     string       // name inside the container, e.g. "eth0"
	Bridge        string       // host bridge, e.g. "vmbr0"
	Address       netip.Prefix // the container's IPv4 address with the subnet's length, e.g. 10.1.10.91/24
	Gateway       netip.Addr   // zero: no default route
	Nameservers   []netip.Addr // IPv4 or IPv6
	SearchDomains []string
	HWAddr        string // "": PVE generates one; set it to keep the MAC PVE generated at clone time
	MTU           int    // 0: unset (the bridge's MTU)
	VLAN          int    // 0: untagged
	Firewall      bool
}

// Limits the container's network is checked against.
const (
	// maxIfName is Linux's IFNAMSIZ (16) minus the terminating NUL.
	maxIfName = 15
	// minMTU is the smallest MTU Linux keeps IPv4 on; PVE itself accepts 64.
	minMTU  = 68
	maxMTU  = 65535
	maxVLAN = 4094
	// maxDomain is the longest DNS name in text form (RFC 1035's 255
	// octets on the wire).
	maxDomain = 253
	// PVE's CIDRv4 format requires a prefix length of 8 to 32; /31 and /32
	// leave no room for a gateway on the subnet, so 30 is the useful limit.
	minPrefixBits = 8
	maxPrefixBits = 30
)

// ifNameRE is PVE's pattern for net0 name= and bridge= ('[-_.\w\d]+'),
// restricted to ASCII.
var ifNameRE = regexp.MustCompile(`^[-_.A-Za-z0-9]+$`)

// macRE is PVE's mac-addr format: a unicast address (I/G bit clear).
var macRE = regexp.MustCompile(`^[0-9A-Fa-f][02468aceACE](?::[0-9A-Fa-f]{2}){5}$`)

// Validate reports every problem with the spec, one sentence each, joined
// with errors.Join; nil when the spec can be applied.
func (s Spec) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(checkIfName("interface", s.Interface, "eth0"))
	add(checkIfName("bridge", s.Bridge, "vmbr0"))
	add(s.checkAddress())
	for _, ns := range s.Nameservers {
		switch {
		case !ns.IsValid():
			add(errors.New("a nameserver is empty: pass --dns with an address such as 10.1.10.1"))
		case ns.Zone() != "":
			add(fmt.Errorf("nameserver %s has a zone: pass --dns without the %%%s suffix", ns, ns.Zone()))
		case ns.IsUnspecified() || ns.IsMulticast():
			add(fmt.Errorf("nameserver %s is not a host address: pass --dns with a DNS server's address such as 10.1.10.1", ns))
		}
	}
	for _, d := range s.SearchDomains {
		switch fix := dnsNameFix(d, maxDomain); {
		case d == "":
			add(errors.New("a search domain is empty: pass --searchdomain with a DNS name such as example.com"))
		case fix != "":
			add(fmt.Errorf("search domain %q is not valid: %s, e.g. %s", d, fix, suggestDNSName(d, maxDomain, "example.com")))
		}
	}
	if s.HWAddr != "" && !macRE.MatchString(s.HWAddr) {
		add(fmt.Errorf("MAC address %q is not a unicast MAC: use the form BC:24:11:2A:3B:4C, or leave it empty so PVE generates one", s.HWAddr))
	}
	if s.MTU != 0 && (s.MTU < minMTU || s.MTU > maxMTU) {
		add(fmt.Errorf("MTU %d is out of range: use %d to %d (1500 on most LANs), or 0 for the bridge's MTU", s.MTU, minMTU, maxMTU))
	}
	if s.VLAN < 0 || s.VLAN > maxVLAN {
		add(fmt.Errorf("VLAN tag %d is out of range: use 1 to %d, or 0 for untagged", s.VLAN, maxVLAN))
	}
	return errors.Join(errs...)
}

// checkAddress checks the address, its prefix length and the gateway, and
// returns the first problem: later checks depend on the earlier ones.
func (s Spec) checkAddress() error {
	a := s.Address
	switch {
	case !a.IsValid():
		return errors.New("no address: pass --ip with an IPv4 address such as 10.1.10.91")
	case !a.Addr().Is4():
		return fmt.Errorf("address %s is not IPv4: pass --ip with an IPv4 address such as 10.1.10.91", a)
	case a.Bits() < minPrefixBits || a.Bits() > maxPrefixBits:
		return fmt.Errorf("prefix length /%d of %s is out of range: pass --prefix with a subnet from /%d to /%d, e.g. 10.1.10.0/24",
			a.Bits(), a, minPrefixBits, maxPrefixBits)
	}
	subnet := a.Masked()
	if err := CheckHostAddress(subnet, a.Addr(), s.Gateway); err != nil {
		return err
	}
	if !s.Gateway.IsValid() {
		return nil
	}
	gw := s.Gateway
	switch {
	case !gw.Is4():
		return fmt.Errorf("gateway %s is not IPv4: pass --gateway with an IPv4 address inside %s", gw, subnet)
	case !subnet.Contains(gw):
		return fmt.Errorf("gateway %s is not inside %s: pass --gateway inside the subnet", gw, subnet)
	case gw == subnet.Addr():
		return fmt.Errorf("gateway %s is the network address of %s: pass --gateway with the router's address", gw, subnet)
	case gw == broadcast(subnet):
		return fmt.Errorf("gateway %s is the broadcast address of %s: pass --gateway with the router's address", gw, subnet)
	}
	return nil
}

func checkIfName(what, name, example string) error {
	switch {
	case name == "":
		return fmt.Errorf("%s name is empty: use a name such as %s", what, example)
	case !ifNameRE.MatchString(name):
		return fmt.Errorf("%s name %q is not valid: use letters, digits, '-', '_' and '.', e.g. %s", what, name, example)
	case len(name) > maxIfName:
		return fmt.Errorf("%s name %q is %d characters long: Linux allows at most %d", what, name, len(name), maxIfName)
	case name == "." || name == "..":
		return fmt.Errorf("%s name %q is not valid: use a name such as %s", what, name, example)
	}
	return nil
}

// HostInSubnet turns the seed CLI's last-octet form into an address: 91 in
// 10.1.10.0/24 is 10.1.10.91. The subnet must be an IPv4 /24 or narrower,
// since with a wider one the last octet alone does not name a host.
func HostInSubnet(subnet netip.Prefix, lastOctet int) (netip.Addr, error) {
	switch {
	case !subnet.IsValid():
		return netip.Addr{}, errors.New("no subnet: pass --prefix such as 10.1.10.0/24")
	case !subnet.Addr().Is4():
		return netip.Addr{}, fmt.Errorf("subnet %s is not IPv4: the last-octet form needs an IPv4 subnet such as 10.1.10.0/24", subnet)
	case subnet.Bits() < 24:
		return netip.Addr{}, fmt.Errorf("subnet %s is wider than a /24, so a last octet does not name one host: pass the full address with --ip", subnet)
	case lastOctet < 0 || lastOctet > 255:
		return netip.Addr{}, fmt.Errorf("last octet %d is out of range: use 1 to 254, e.g. 91 for %s", lastOctet, withLastOctet(subnet.Masked(), 91))
	}
	subnet = subnet.Masked()
	addr := withLastOctet(subnet, lastOctet)
	if err := CheckHostAddress(subnet, addr, netip.Addr{}); err != nil {
		return netip.Addr{}, err
	}
	return addr, nil
}

func withLastOctet(subnet netip.Prefix, octet int) netip.Addr {
	b := subnet.Addr().As4()
	b[3] = byte(octet)
	return netip.AddrFrom4(b)
}

// CheckHostAddress reports the first reason ip cannot be a container's
// address on subnet: outside it, its network or broadcast address, the
// gateway, or one of the reserved addresses (such as the template's own).
// A zero gateway is not checked.
func CheckHostAddress(subnet netip.Prefix, ip, gateway netip.Addr, reserved ...netip.Addr) error {
	switch {
	case !subnet.IsValid():
		return errors.New("no subnet: pass --prefix such as 10.1.10.0/24")
	case !subnet.Addr().Is4():
		return fmt.Errorf("subnet %s is not IPv4: pass --prefix with an IPv4 subnet such as 10.1.10.0/24", subnet)
	case !ip.IsValid():
		return errors.New("no address: pass --ip with an IPv4 address such as 10.1.10.91")
	case !ip.Is4():
		return fmt.Errorf("address %s is not IPv4: pass --ip with an IPv4 address such as 10.1.10.91", ip)
	}
	subnet = subnet.Masked()
	switch {
	case !subnet.Contains(ip):
		return fmt.Errorf("address %s is not inside %s: pass --ip inside the subnet, or --prefix for the subnet it is on", ip, subnet)
	case subnet.Bits() <= 30 && ip == subnet.Addr():
		return fmt.Errorf("address %s is the network address of %s: pick a host address such as %s", ip, subnet, subnet.Addr().Next())
	case subnet.Bits() <= 30 && ip == broadcast(subnet):
		return fmt.Errorf("address %s is the broadcast address of %s: pick a host address such as %s", ip, subnet, broadcast(subnet).Prev())
	case gateway.IsValid() && ip == gateway:
		return fmt.Errorf("address %s is the gateway: pick another address for the container", ip)
	}
	for _, r := range reserved {
		if ip == r {
			return fmt.Errorf("address %s is reserved (the template's address): pick another address for the container", ip)
		}
	}
	return nil
}

// broadcast is the last address of an IPv4 prefix.
func broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := ^uint32(0) >> p.Bits()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// dnsLabelRE is one label of PVE's dns-name format.
var dnsLabelRE = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$`)

// maxLabel is RFC 1123's label length, which PVE leaves to the resolver.
const maxLabel = 63

// dnsNameFix checks a non-empty name against PVE's dns-name format (labels
// of letters, digits and inner hyphens, joined by dots) and RFC 1123's
// lengths. It returns "" when the name is valid, else how to fix it, as a
// clause for the caller's sentence.
func dnsNameFix(name string, maxLen int) string {
	if len(name) > maxLen {
		return fmt.Sprintf("shorten it from %d to at most %d characters", len(name), maxLen)
	}
	for _, label := range strings.Split(name, ".") {
		switch {
		case label == "":
			return "remove the empty label (a leading, trailing or doubled dot)"
		case !dnsLabelRE.MatchString(strings.Trim(label, "-")):
			return "use letters, digits and hyphens (RFC 1123)"
		case strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-"):
			return "start and end each label with a letter or digit (RFC 1123)"
		case len(label) > maxLabel:
			return fmt.Sprintf("shorten the label %q to at most %d characters (RFC 1123)", label, maxLabel)
		}
	}
	return ""
}

// maxHostname is the maxLength of PVE's hostname option.
const maxHostname = 255

// ValidHostname checks a container hostname against PVE's dns-name format
// and RFC 1123's label rules.
func ValidHostname(h string) error {
	if h == "" {
		return errors.New("hostname is empty: pass --host with a name such as migra-client-01")
	}
	if fix := dnsNameFix(h, maxHostname); fix != "" {
		return fmt.Errorf("hostname %q is not valid: %s, e.g. %s", h, fix, suggestDNSName(h, maxHostname, "migra-client-01"))
	}
	return nil
}

// suggestDNSName repairs the common mistakes (underscores, spaces, stray
// punctuation, hyphens at label ends, overlong labels) so an error can show
// a name that would pass; it falls back to the given example.
func suggestDNSName(name string, maxLen int, fallback string) string {
	mapped := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-':
			return r
		}
		return '-'
	}, name)
	var labels []string
	for _, l := range strings.Split(mapped, ".") {
		if len(l) > maxLabel {
			l = l[:maxLabel]
		}
		if l = strings.Trim(l, "-"); l != "" {
			labels = append(labels, l)
		}
	}
	s := strings.Join(labels, ".")
	if s == "" || dnsNameFix(s, maxLen) != "" {
		return fallback
	}
	return s
}

package netcfg

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// Net0 is a parsed LXC netN property string (pve-container LXC/Config.pm
// $netconf_desc). Zero values mean the key is absent; PVE treats an absent
// boolean as 0, so firewall=0 and no firewall key parse alike.
type Net0 struct {
	Name        string // required
	Bridge      string
	HWAddr      string
	IP          string // IPv4/CIDR, dhcp or manual
	GW          string
	IP6         string // IPv6/CIDR, auto, dhcp or manual
	GW6         string
	Type        string // only veth
	Firewall    bool
	Tag         int // VLAN 1-4094
	MTU         int
	Rate        string // Mbps, kept as written
	LinkDown    bool
	Trunks      string // vlanid[;vlanid...]
	HostManaged bool   // PVE 9 "host-managed"
}

// net0Keys are the keys of $netconf_desc; sorted, the order PVE stores the
// optional keys in (print_property_string puts required "name" first).
var net0Keys = []string{"bridge", "firewall", "gw", "gw6", "host-managed", "hwaddr", "ip", "ip6", "link_down", "mtu", "name", "rate", "tag", "trunks", "type"}

// String is the property string in PVE's stored order: name first, then the
// other set keys alphabetically.
func (n Net0) String() string {
	parts := []string{"name=" + n.Name}
	for _, k := range net0Keys {
		if k == "name" {
			continue
		}
		if v := n.get(k); v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	return strings.Join(parts, ",")
}

// get is key k's value as stored, "" when absent.
func (n Net0) get(k string) string {
	flag := func(b bool) string {
		if b {
			return "1"
		}
		return ""
	}
	num := func(i int) string {
		if i == 0 {
			return ""
		}
		return strconv.Itoa(i)
	}
	switch k {
	case "bridge":
		return n.Bridge
	case "firewall":
		return flag(n.Firewall)
	case "gw":
		return n.GW
	case "gw6":
		return n.GW6
	case "host-managed":
		return flag(n.HostManaged)
	case "hwaddr":
		return n.HWAddr
	case "ip":
		return n.IP
	case "ip6":
		return n.IP6
	case "link_down":
		return flag(n.LinkDown)
	case "mtu":
		return num(n.MTU)
	case "name":
		return n.Name
	case "rate":
		return n.Rate
	case "tag":
		return num(n.Tag)
	case "trunks":
		return n.Trunks
	case "type":
		return n.Type
	}
	return ""
}

// BuildNet0 is the net0 value for s, in PVE's stored order, so that it
// compares equal to what GET …/config returns after PVE stores it. It does
// not validate; call s.Validate first.
func BuildNet0(s Spec) string {
	n := Net0{Name: s.Interface, Bridge: s.Bridge, HWAddr: s.HWAddr, Type: "veth",
		Firewall: s.Firewall, Tag: s.VLAN, MTU: s.MTU}
	if s.Address.IsValid() {
		n.IP = s.Address.String()
	}
	if s.Gateway.IsValid() {
		n.GW = s.Gateway.String()
	}
	return n.String()
}

var (
	trunksRE = regexp.MustCompile(`^\d+(?:;\d+)*$`)
	// numberRE is PVE's is_number (JSONSchema.pm).
	numberRE = regexp.MustCompile(`^[+-]?(?:\d+\.\d+|\d+\.|\.\d+|\d+)(?:[eE][+-]?\d+)?$`)
	// integerRE is PVE's is_integer; strconv.Atoi alone would also take "1_0".
	integerRE = regexp.MustCompile(`^[+-]?\d+$`)
)

// ParseNet0 parses a netN property string the way PVE's
// parse_property_string does: keys in any order, empty parts skipped,
// booleans as 1/0/on/off/yes/no/true/false, unknown and repeated keys
// rejected. Each problem is one sentence naming the key; all are joined.
func ParseNet0(s string) (Net0, error) {
	var n Net0
	if strings.TrimSpace(s) == "" {
		return n, errors.New("net0 is empty: it needs at least name=, e.g. name=eth0,bridge=vmbr0,ip=dhcp")
	}
	seen, errs := eachProperty(s, "net0", n.set)
	if !seen["name"] {
		errs = append(errs, errors.New("net0 has no name key: PVE requires the interface name, e.g. name=eth0"))
	}
	if len(errs) > 0 {
		return Net0{}, errors.Join(errs...)
	}
	return n, nil
}

// eachProperty walks a property string as PVE's parse_property_string
// does — keys in any order, empty parts skipped, a part without a key, an
// empty value or a repeated key refused — handing each key and value to
// set. label names the string in messages ("net0", "--net").
func eachProperty(s, label string, set func(k, v string) error) (seen map[string]bool, errs []error) {
	seen = map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		switch {
		case !ok || k == "":
			errs = append(errs, fmt.Errorf("%s part %q has no key: write key=value, e.g. bridge=vmbr0", label, part))
			continue
		case v == "":
			errs = append(errs, fmt.Errorf("%s key %s has an empty value: give a value or leave the key out", label, k))
			continue
		case seen[k]:
			errs = append(errs, fmt.Errorf("%s key %s appears twice: keep one", label, k))
			continue
		}
		seen[k] = true
		if err := set(k, v); err != nil {
			errs = append(errs, err)
		}
	}
	return seen, errs
}

// set stores key k's value v, checked against the key's PVE format.
func (n *Net0) set(k, v string) error {
	bad := func(rule string) error { return fmt.Errorf("net0 %s=%s is not valid: %s", k, v, rule) }
	flag := func(dst *bool) error {
		switch strings.ToLower(v) {
		case "1", "on", "yes", "true":
			*dst = true
		case "0", "off", "no", "false":
			*dst = false
		default:
			return bad("use 1 or 0")
		}
		return nil
	}
	integer := func(dst *int, min, max int) error {
		i, err := strconv.Atoi(v)
		if !integerRE.MatchString(v) || err != nil {
			return bad(fmt.Sprintf("use a whole number from %d to %d", min, max))
		}
		if i < min || i > max {
			return fmt.Errorf("net0 %s=%s is out of range: use %d to %d", k, v, min, max)
		}
		*dst = i
		return nil
	}
	switch k {
	case "name":
		if !ifNameRE.MatchString(v) {
			return bad("use letters, digits, '-', '_' and '.', e.g. eth0")
		}
		n.Name = v
	case "bridge":
		if !ifNameRE.MatchString(v) {
			return bad("use letters, digits, '-', '_' and '.', e.g. vmbr0")
		}
		n.Bridge = v
	case "hwaddr":
		if !macRE.MatchString(v) {
			return bad("use a unicast MAC such as BC:24:11:2A:3B:4C")
		}
		n.HWAddr = v
	case "ip":
		if v != "dhcp" && v != "manual" && !isCIDR(v, false) {
			return bad("use IPv4/CIDR with a prefix length of 8 to 32 (e.g. 10.1.10.91/24), dhcp or manual")
		}
		n.IP = v
	case "gw":
		if a, err := netip.ParseAddr(v); err != nil || !a.Is4() {
			return bad("use an IPv4 address such as 10.1.10.1")
		}
		n.GW = v
	case "ip6":
		if v != "auto" && v != "dhcp" && v != "manual" && !isCIDR(v, true) {
			return bad("use IPv6/CIDR with a prefix length of 8 to 128 (e.g. fd00::91/64), auto, dhcp or manual")
		}
		n.IP6 = v
	case "gw6":
		if a, err := netip.ParseAddr(v); err != nil || !a.Is6() || a.Zone() != "" {
			return bad("use an IPv6 address such as fd00::1")
		}
		n.GW6 = v
	case "type":
		if v != "veth" {
			return bad("the only type is veth")
		}
		n.Type = v
	case "firewall":
		return flag(&n.Firewall)
	case "link_down":
		return flag(&n.LinkDown)
	case "host-managed":
		return flag(&n.HostManaged)
	case "tag":
		return integer(&n.Tag, 1, maxVLAN)
	case "mtu":
		// PVE's own minimum: the smallest Ethernet frame.
		return integer(&n.MTU, 64, maxMTU)
	case "rate":
		if !numberRE.MatchString(v) {
			return bad("use a number of Mbps such as 100 or 12.5")
		}
		n.Rate = v
	case "trunks":
		if !trunksRE.MatchString(v) {
			return bad("use VLAN ids separated by ';', e.g. 10;20")
		}
		n.Trunks = v
	default:
		return fmt.Errorf("net0 key %s is not a PVE container network option: use %s", k, strings.Join(net0Keys, ", "))
	}
	return nil
}

// isCIDR is PVE's CIDRv4/CIDRv6 format: an address (host bits allowed) and a
// prefix length of at least 8.
func isCIDR(v string, six bool) bool {
	p, err := netip.ParsePrefix(v)
	if err != nil || p.Addr().Is6() != six || p.Bits() < 8 {
		return false
	}
	return true
}

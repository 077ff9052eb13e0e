package ipam

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Pool is one IPv4 network pods get addresses from.
type Pool struct {
	Name    string
	Subnet  netip.Prefix
	Bridge  string
	Gateway netip.Addr
	// Reserved addresses are never handed out (the golden template's address).
	Reserved []netip.Addr
	// First and Last bound the allocatable range, both inclusive.
	First, Last netip.Addr
}

// VMIDRange bounds the VMIDs handed to pods, both inclusive.
type VMIDRange struct {
	Min, Max int
}

// PVE's own limits for a guest ID (pve-vmid: 100 ‥ 999999999).
const (
	minPVEVMID = 100
	maxPVEVMID = 999999999
)

// DefaultPool is the CloudPods production network: 10.1.10.0/24 on vmbr0,
// gateway .1, template at .90, pods on .91–.250.
func DefaultPool() Pool {
	return Pool{
		Name:     "default",
		Subnet:   netip.MustParsePrefix("10.1.10.0/24"),
		Bridge:   "vmbr0",
		Gateway:  netip.MustParseAddr("10.1.10.1"),
		Reserved: []netip.Addr{netip.MustParseAddr("10.1.10.90")},
		First:    netip.MustParseAddr("10.1.10.91"),
		Last:     netip.MustParseAddr("10.1.10.250"),
	}
}

// DefaultVMIDs is the VMID range pods are given: 9101–9999.
func DefaultVMIDs() VMIDRange { return VMIDRange{Min: 9101, Max: 9999} }

// Validate reports the first thing wrong with the pool.
func (p Pool) Validate() error {
	if p.Name == "" {
		return fmt.Errorf("pool: name is empty")
	}
	if !p.Subnet.IsValid() || !p.Subnet.Addr().Is4() {
		return fmt.Errorf("pool %s: subnet %q is not an IPv4 prefix", p.Name, p.Subnet)
	}
	if p.Subnet.Masked() != p.Subnet {
		return fmt.Errorf("pool %s: subnet %s has host bits set (network is %s)", p.Name, p.Subnet, p.Subnet.Masked())
	}
	if p.Subnet.Bits() > 30 {
		return fmt.Errorf("pool %s: subnet %s is too small for a gateway and hosts", p.Name, p.Subnet)
	}
	if p.Bridge == "" {
		return fmt.Errorf("pool %s: bridge is empty", p.Name)
	}
	if err := p.checkHost("gateway", p.Gateway); err != nil {
		return err
	}
	if err := p.checkHost("range start", p.First); err != nil {
		return err
	}
	if err := p.checkHost("range end", p.Last); err != nil {
		return err
	}
	if p.Last.Less(p.First) {
		return fmt.Errorf("pool %s: range %s-%s ends before it starts", p.Name, p.First, p.Last)
	}
	for _, r := range p.Reserved {
		if err := p.checkHost("reserved address", r); err != nil {
			return err
		}
	}
	if p.Size() == 0 {
		return fmt.Errorf("pool %s: range %s-%s holds no allocatable address", p.Name, p.First, p.Last)
	}
	return nil
}

// checkHost rejects addresses outside the subnet and its network and
// broadcast addresses.
func (p Pool) checkHost(what string, a netip.Addr) error {
	if !a.IsValid() || !a.Is4() {
		return fmt.Errorf("pool %s: %s %q is not an IPv4 address", p.Name, what, a)
	}
	if !p.Subnet.Contains(a) {
		return fmt.Errorf("pool %s: %s %s is outside %s", p.Name, what, a, p.Subnet)
	}
	if a == p.Subnet.Addr() || a == broadcast(p.Subnet) {
		return fmt.Errorf("pool %s: %s %s is the network or broadcast address of %s", p.Name, what, a, p.Subnet)
	}
	return nil
}

// Allocatable reports whether a can be handed out: inside the range, not
// the gateway, not reserved.
func (p Pool) Allocatable(a netip.Addr) bool {
	if !a.Is4() || a.Less(p.First) || p.Last.Less(a) || a == p.Gateway {
		return false
	}
	for _, r := range p.Reserved {
		if a == r {
			return false
		}
	}
	return true
}

// Size is the number of allocatable addresses.
func (p Pool) Size() int {
	if !p.First.Is4() || !p.Last.Is4() || p.Last.Less(p.First) {
		return 0
	}
	n := int(u32(p.Last)-u32(p.First)) + 1
	excluded := map[netip.Addr]bool{p.Gateway: true}
	for _, r := range p.Reserved {
		excluded[r] = true
	}
	for a := range excluded {
		if !a.Less(p.First) && !p.Last.Less(a) {
			n--
		}
	}
	return n
}

// addrs yields the allocatable addresses in ascending order.
func (p Pool) addrs(yield func(netip.Addr) bool) {
	if !p.First.Is4() || !p.Last.Is4() {
		return
	}
	for a := p.First; !p.Last.Less(a); a = a.Next() {
		if p.Allocatable(a) && !yield(a) {
			return
		}
		if a == p.Last { // a.Next() past 255.255.255.255 is invalid
			return
		}
	}
}

// CIDR is a in the pool's prefix length, as net0's ip= wants it.
func (p Pool) CIDR(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, p.Subnet.Bits()) }

func broadcast(p netip.Prefix) netip.Addr {
	v := u32(p.Addr()) | (1<<(32-p.Bits()) - 1)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// Validate reports whether the range is non-empty and inside PVE's limits.
func (r VMIDRange) Validate() error {
	if r.Min < minPVEVMID || r.Max > maxPVEVMID {
		return fmt.Errorf("vmid range %d-%d: PVE allows %d-%d", r.Min, r.Max, minPVEVMID, maxPVEVMID)
	}
	if r.Max < r.Min {
		return fmt.Errorf("vmid range %d-%d ends before it starts", r.Min, r.Max)
	}
	return nil
}

// Contains reports whether id is inside the range.
func (r VMIDRange) Contains(id int) bool { return id >= r.Min && id <= r.Max }

func (r VMIDRange) String() string { return fmt.Sprintf("%d-%d", r.Min, r.Max) }

// ParseAddrRange parses "10.1.10.91-10.1.10.250"; the end may be shortened
// to its last octet ("10.1.10.91-250").
func ParseAddrRange(s string) (first, last netip.Addr, err error) {
	lo, hi, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return first, last, fmt.Errorf("address range %q: want FIRST-LAST", s)
	}
	if first, err = netip.ParseAddr(strings.TrimSpace(lo)); err != nil || !first.Is4() {
		return first, last, fmt.Errorf("address range %q: start is not an IPv4 address", s)
	}
	hi = strings.TrimSpace(hi)
	if !strings.ContainsAny(hi, ".:") {
		n, convErr := strconv.ParseUint(hi, 10, 8)
		if convErr != nil {
			return first, last, fmt.Errorf("address range %q: end %q is neither an address nor an octet", s, hi)
		}
		b := first.As4()
		b[3] = byte(n)
		last = netip.AddrFrom4(b)
	} else if last, err = netip.ParseAddr(hi); err != nil || !last.Is4() {
		return first, last, fmt.Errorf("address range %q: end is not an IPv4 address", s)
	}
	if last.Less(first) {
		return first, last, fmt.Errorf("address range %q ends before it starts", s)
	}
	return first, last, nil
}

// ParseVMIDRange parses "9101-9999" and validates it.
func ParseVMIDRange(s string) (VMIDRange, error) {
	lo, hi, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return VMIDRange{}, fmt.Errorf("vmid range %q: want MIN-MAX", s)
	}
	var r VMIDRange
	var err error
	if r.Min, err = strconv.Atoi(strings.TrimSpace(lo)); err != nil {
		return VMIDRange{}, fmt.Errorf("vmid range %q: %w", s, err)
	}
	if r.Max, err = strconv.Atoi(strings.TrimSpace(hi)); err != nil {
		return VMIDRange{}, fmt.Errorf("vmid range %q: %w", s, err)
	}
	return r, r.Validate()
}

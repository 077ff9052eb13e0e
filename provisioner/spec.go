// Package provisioner holds CloudPods' flows — create, destroy, backup on
// the flow engine (provisioner/flow); health, list and inspect as read-only
// functions — over the narrow pve.API, and the error taxonomy (KindOf). The
// CLI and the service call the same functions; there is one implementation
// of each flow.
package provisioner

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"github.com/migrahosting/cloudpods/netcfg"
)

// Spec is one CloudPod as the operator or the panel asks for it.
type Spec struct {
	VMID         int          `json:"vmid"`
	Hostname     string       `json:"hostname"`
	IP           netip.Addr   `json:"ip"`
	Subnet       netip.Prefix `json:"subnet"` // the LAN, e.g. 10.1.10.0/24; the pod's prefix length comes from it
	Gateway      netip.Addr   `json:"gateway"`
	DNS          []netip.Addr `json:"dns"`
	SearchDomain string       `json:"searchdomain,omitempty"`
	Cores        int          `json:"cores"`
	MemoryMB     int          `json:"memory"`
	SwapMB       int          `json:"swap"`
	Storage      string       `json:"storage"`
	Bridge       string       `json:"bridge"`
	Node         string       `json:"node"`
	Template     int          `json:"template"`
	TemplateIP   netip.Addr   `json:"-"` // the golden template's own address, never handed out
	Tenant       string       `json:"tenant,omitempty"`
	Tags         []string     `json:"tags,omitempty"`
	Linked       bool         `json:"linked,omitempty"`
}

// DefaultSpec is the CloudPods environment: node pve, CT 9000, clients-main,
// vmbr0 on 10.1.10.0/24 with gateway .1, and the template's 2 cores,
// 2048 MB, 512 MB swap.
func DefaultSpec() Spec {
	return Spec{
		Subnet:     netip.MustParsePrefix("10.1.10.0/24"),
		Gateway:    netip.MustParseAddr("10.1.10.1"),
		DNS:        []netip.Addr{netip.MustParseAddr("10.1.10.1")},
		Cores:      2,
		MemoryMB:   2048,
		SwapMB:     512,
		Storage:    "clients-main",
		Bridge:     "vmbr0",
		Node:       "pve",
		Template:   9000,
		TemplateIP: netip.MustParseAddr("10.1.10.90"),
	}
}

// Address is the pod's address with the subnet's prefix length.
func (s Spec) Address() netip.Prefix { return netip.PrefixFrom(s.IP, s.Subnet.Bits()) }

// Hash identifies the spec's effective content: two runs with the same hash
// want the same pod, so the second converges instead of refusing.
func (s Spec) Hash() string {
	b, _ := json.Marshal(s.essentials())
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

type essentials struct {
	VMID     int      `json:"vmid"`
	Hostname string   `json:"hostname"`
	Address  string   `json:"ip"`
	Gateway  string   `json:"gw"`
	DNS      []string `json:"dns,omitempty"`
	Search   string   `json:"search,omitempty"`
	Cores    int      `json:"cores"`
	MemoryMB int      `json:"memory"`
	SwapMB   int      `json:"swap"`
	Storage  string   `json:"storage"`
	Bridge   string   `json:"bridge"`
	Node     string   `json:"node"`
	Template int      `json:"template"`
	Tenant   string   `json:"tenant,omitempty"`
}

func (s Spec) essentials() essentials {
	e := essentials{VMID: s.VMID, Hostname: s.Hostname, Address: s.Address().String(), Gateway: s.Gateway.String(),
		Search: s.SearchDomain, Cores: s.Cores, MemoryMB: s.MemoryMB, SwapMB: s.SwapMB, Storage: s.Storage,
		Bridge: s.Bridge, Node: s.Node, Template: s.Template, Tenant: s.Tenant}
	for _, d := range s.DNS {
		e.DNS = append(e.DNS, d.String())
	}
	return e
}

// diffEssentials lists the fields where two specs differ (diff.go).
func diffEssentials(old, new essentials) []string { return diffFields(old, new) }

func show(v interface{}) string {
	if v == nil {
		return "(unset)"
	}
	if l, ok := v.([]interface{}); ok {
		parts := make([]string, len(l))
		for i, x := range l {
			parts[i] = fmt.Sprint(x)
		}
		return strings.Join(parts, " ")
	}
	return fmt.Sprint(v)
}

// MaxVMID is PVE's largest guest id (pve-vmid).
const MaxVMID = 999999999

// FieldProblems checks the spec's fields one by one, the same for the CLI
// and the service: field name → one sentence naming the problem and the
// fix. A zero VMID or IP counts as "allocate one" when auto is set.
func (s Spec) FieldProblems(auto bool) map[string]string {
	p := map[string]string{}
	switch {
	case s.VMID == 0 && auto:
	case s.VMID < 100 || s.VMID > MaxVMID:
		p["vmid"] = fmt.Sprintf("VMID %d is out of range: PVE guest ids run from 100 to %d", s.VMID, MaxVMID)
	case s.VMID == s.Template:
		p["vmid"] = fmt.Sprintf("VMID %d is the template itself: pick a free VMID such as 9101", s.VMID)
	}
	if err := netcfg.ValidHostname(s.Hostname); err != nil {
		p["hostname"] = err.Error()
	}
	switch {
	case !s.IP.IsValid() && !auto:
		p["ip"] = fmt.Sprintf("no IP address: give one inside %s, such as %s", s.Subnet, s.Subnet.Addr().Next().Next())
	case s.IP.IsValid():
		if err := netcfg.CheckHostAddress(s.Subnet, s.IP, s.Gateway, s.TemplateIP); err != nil {
			p["ip"] = err.Error()
		}
	}
	if s.Cores < 1 || s.Cores > 8192 {
		p["cores"] = fmt.Sprintf("%d cores is out of range: use 1 to 8192", s.Cores)
	}
	if s.MemoryMB < 16 {
		p["memory"] = fmt.Sprintf("%d MB of memory is too little: PVE needs at least 16", s.MemoryMB)
	}
	if s.SwapMB < 0 {
		p["swap"] = fmt.Sprintf("%d MB of swap is negative: use 0 for no swap", s.SwapMB)
	}
	for _, t := range s.Tags {
		if _, err := netcfg.NormalizeTags(t); err != nil {
			p["tags"] = err.Error()
		}
	}
	if s.Tenant != "" && !ValidTenant(s.Tenant) {
		p["tenant"] = fmt.Sprintf("tenant %q is not a tenant id: %s", s.Tenant, TenantRule)
	}
	return p
}

// tenantRE is what a tenant id may be: it becomes a PVE tag (tenant-ID), a
// lease owner and an audit field.
var tenantRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// TenantRule says in words what ValidTenant accepts.
const TenantRule = "use letters, digits and _ . - (up to 64, starting with a letter or digit)"

// ValidTenant reports whether t is a tenant id, the same rule for the CLI's
// --tenant and the service's tenantId.
func ValidTenant(t string) bool { return tenantRE.MatchString(t) }

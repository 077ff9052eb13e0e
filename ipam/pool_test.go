package ipam

import (
	"net/netip"
	"strings"
	"testing"
)

func TestPoolValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Pool)
		wantErr string
	}{
		{"default", func(*Pool) {}, ""},
		{"no name", func(p *Pool) { p.Name = "" }, "name is empty"},
		{"ipv6 subnet", func(p *Pool) { p.Subnet = netip.MustParsePrefix("fd00::/64") }, "not an IPv4 prefix"},
		{"host bits", func(p *Pool) { p.Subnet = netip.MustParsePrefix("10.1.10.5/24") }, "host bits set"},
		{"too small", func(p *Pool) { p.Subnet = netip.MustParsePrefix("10.1.10.0/31") }, "too small"},
		{"no bridge", func(p *Pool) { p.Bridge = "" }, "bridge is empty"},
		{"gateway outside", func(p *Pool) { p.Gateway = addr("10.1.11.1") }, "gateway 10.1.11.1 is outside"},
		{"gateway is network", func(p *Pool) { p.Gateway = addr("10.1.10.0") }, "network or broadcast"},
		{"range end broadcast", func(p *Pool) { p.Last = addr("10.1.10.255") }, "range end 10.1.10.255 is the network or broadcast"},
		{"range reversed", func(p *Pool) { p.First, p.Last = p.Last, p.First }, "ends before it starts"},
		{"reserved outside", func(p *Pool) { p.Reserved = append(p.Reserved, addr("192.168.1.1")) }, "reserved address 192.168.1.1 is outside"},
		{"range only gateway", func(p *Pool) { p.First, p.Last = p.Gateway, p.Gateway }, "no allocatable address"},
		{"missing range", func(p *Pool) { p.First = netip.Addr{} }, "range start"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := DefaultPool()
			tt.mutate(&p)
			err := p.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestPoolAllocatableAndSize(t *testing.T) {
	def := DefaultPool()
	small := smallPool()
	wide := Pool{Name: "wide", Subnet: netip.MustParsePrefix("10.1.8.0/22"), Bridge: "vmbr0",
		Gateway: addr("10.1.8.1"), First: addr("10.1.8.1"), Last: addr("10.1.11.254")}
	tests := []struct {
		pool Pool
		ip   string
		want bool
	}{
		{def, "10.1.10.91", true},
		{def, "10.1.10.250", true},
		{def, "10.1.10.90", false},  // template, reserved and below range
		{def, "10.1.10.251", false}, // above range
		{def, "10.1.10.1", false},   // gateway
		{def, "10.1.11.91", false},  // other subnet
		{small, "10.1.10.93", false},
		{small, "10.1.10.94", true},
		{wide, "10.1.8.1", false}, // gateway inside the range
		{wide, "10.1.9.255", true},
		{wide, "10.1.11.254", true},
	}
	for _, tt := range tests {
		if got := tt.pool.Allocatable(addr(tt.ip)); got != tt.want {
			t.Errorf("%s.Allocatable(%s) = %v, want %v", tt.pool.Name, tt.ip, got, tt.want)
		}
	}
	for _, tt := range []struct {
		pool Pool
		want int
	}{{def, 160}, {small, 4}, {wide, 1021}} {
		if got := tt.pool.Size(); got != tt.want {
			t.Errorf("%s.Size() = %d, want %d", tt.pool.Name, got, tt.want)
		}
		n := 0
		for a := range tt.pool.addrs {
			if !tt.pool.Allocatable(a) {
				t.Errorf("%s.addrs yielded %s, which is not allocatable", tt.pool.Name, a)
			}
			n++
		}
		if n != tt.want {
			t.Errorf("%s.addrs yielded %d addresses, want %d", tt.pool.Name, n, tt.want)
		}
	}
}

func TestPoolCIDR(t *testing.T) {
	if got := DefaultPool().CIDR(addr("10.1.10.95")).String(); got != "10.1.10.95/24" {
		t.Fatalf("CIDR = %s", got)
	}
}

func TestBroadcast(t *testing.T) {
	for prefix, want := range map[string]string{
		"10.1.10.0/24": "10.1.10.255", "10.1.8.0/22": "10.1.11.255", "10.0.0.0/8": "10.255.255.255", "10.1.10.4/30": "10.1.10.7",
	} {
		if got := broadcast(netip.MustParsePrefix(prefix)).String(); got != want {
			t.Errorf("broadcast(%s) = %s, want %s", prefix, got, want)
		}
	}
}

func TestParseAddrRange(t *testing.T) {
	tests := []struct {
		in, first, last, wantErr string
	}{
		{"10.1.10.91-10.1.10.250", "10.1.10.91", "10.1.10.250", ""},
		{" 10.1.10.91 - 250 ", "10.1.10.91", "10.1.10.250", ""},
		{"10.1.8.10-10.1.11.250", "10.1.8.10", "10.1.11.250", ""},
		{"10.1.10.91", "", "", "want FIRST-LAST"},
		{"10.1.10.91-256", "", "", "neither an address nor an octet"},
		{"10.1.10.91-10.1.10.50", "", "", "ends before it starts"},
		{"fd00::1-fd00::9", "", "", "not an IPv4 address"},
		{"10.1.10.91-fd00::9", "", "", "end is not an IPv4"},
	}
	for _, tt := range tests {
		first, last, err := ParseAddrRange(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseAddrRange(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || first.String() != tt.first || last.String() != tt.last {
			t.Errorf("ParseAddrRange(%q) = %s, %s, %v; want %s, %s", tt.in, first, last, err, tt.first, tt.last)
		}
	}
}

func TestParseVMIDRange(t *testing.T) {
	tests := []struct {
		in      string
		want    VMIDRange
		wantErr string
	}{
		{"9101-9999", VMIDRange{9101, 9999}, ""},
		{" 100 - 100 ", VMIDRange{100, 100}, ""},
		{"9101", VMIDRange{}, "want MIN-MAX"},
		{"99-200", VMIDRange{}, "PVE allows 100-999999999"},
		{"200-1000000000", VMIDRange{}, "PVE allows"},
		{"9999-9101", VMIDRange{}, "ends before it starts"},
		{"a-9", VMIDRange{}, "invalid syntax"},
	}
	for _, tt := range tests {
		got, err := ParseVMIDRange(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseVMIDRange(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseVMIDRange(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	if !DefaultVMIDs().Contains(9101) || DefaultVMIDs().Contains(9100) || DefaultVMIDs().Contains(10000) {
		t.Error("DefaultVMIDs bounds are wrong")
	}
}

func TestParseRef(t *testing.T) {
	tests := []struct {
		in      string
		want    Ref
		wantErr bool
	}{
		{"10.1.10.95", Ref{IP: addr("10.1.10.95")}, false},
		{" 9105 ", Ref{VMID: 9105}, false},
		{"0", Ref{}, true},
		{"web1", Ref{}, true},
	}
	for _, tt := range tests {
		got, err := ParseRef(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseRef(%q) = %v, %v; want %v, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

package netcfg

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func validSpec() Spec {
	return Spec{
		Interface:   "eth0",
		Bridge:      "vmbr0",
		Address:     netip.MustParsePrefix("10.1.10.91/24"),
		Gateway:     netip.MustParseAddr("10.1.10.1"),
		Nameservers: []netip.Addr{netip.MustParseAddr("10.1.10.1")},
	}
}

// wantErr checks err against want: "" means no error, otherwise every
// "|"-separated fragment must appear in the message.
func wantErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("no error, want one containing %q", want)
	case want != "":
		for _, frag := range strings.Split(want, "|") {
			if !strings.Contains(err.Error(), frag) {
				t.Fatalf("error %q does not contain %q", err, frag)
			}
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Spec)
		want   string
	}{
		{"valid", func(*Spec) {}, ""},
		{"valid without gateway or DNS", func(s *Spec) { s.Gateway = netip.Addr{}; s.Nameservers = nil }, ""},
		{"valid everything set", func(s *Spec) {
			s.HWAddr, s.MTU, s.VLAN, s.Firewall = "BC:24:11:2A:3B:4C", 9000, 20, true
			s.SearchDomains = []string{"example.com", "corp.example.com"}
			s.Nameservers = append(s.Nameservers, netip.MustParseAddr("2001:db8::53"))
		}, ""},
		{"gateway outside subnet", func(s *Spec) { s.Address = netip.MustParsePrefix("10.2.0.91/24") },
			"gateway 10.1.10.1 is not inside 10.2.0.0/24: pass --gateway inside the subnet"},
		{"gateway is broadcast", func(s *Spec) { s.Gateway = netip.MustParseAddr("10.1.10.255") }, "gateway 10.1.10.255 is the broadcast address of 10.1.10.0/24"},
		{"gateway is network", func(s *Spec) { s.Gateway = netip.MustParseAddr("10.1.10.0") }, "gateway 10.1.10.0 is the network address"},
		{"gateway IPv6", func(s *Spec) { s.Gateway = netip.MustParseAddr("fd00::1") }, "gateway fd00::1 is not IPv4"},
		{"address is gateway", func(s *Spec) { s.Address = netip.MustParsePrefix("10.1.10.1/24") }, "address 10.1.10.1 is the gateway"},
		{"address is network", func(s *Spec) { s.Address = netip.MustParsePrefix("10.1.10.0/24") }, "network address of 10.1.10.0/24|10.1.10.1"},
		{"no address", func(s *Spec) { s.Address = netip.Prefix{} }, "no address: pass --ip"},
		{"IPv6 address", func(s *Spec) { s.Address = netip.MustParsePrefix("fd00::91/64") }, "address fd00::91/64 is not IPv4"},
		{"prefix too narrow", func(s *Spec) { s.Address = netip.MustParsePrefix("10.1.10.91/32") }, "prefix length /32 of 10.1.10.91/32 is out of range|/8 to /30"},
		{"prefix too wide", func(s *Spec) { s.Address = netip.MustParsePrefix("10.1.10.91/7") }, "prefix length /7"},
		{"empty interface", func(s *Spec) { s.Interface = "" }, "interface name is empty: use a name such as eth0"},
		{"bad interface", func(s *Spec) { s.Interface = "eth 0" }, `interface name "eth 0" is not valid`},
		{"long bridge", func(s *Spec) { s.Bridge = "vmbr0123456789abc" }, `bridge name "vmbr0123456789abc" is 17 characters long: Linux allows at most 15`},
		{"nameserver zero", func(s *Spec) { s.Nameservers = []netip.Addr{{}} }, "a nameserver is empty"},
		{"nameserver zone", func(s *Spec) { s.Nameservers = []netip.Addr{netip.MustParseAddr("fe80::1%eth0")} }, "nameserver fe80::1%eth0 has a zone"},
		{"nameserver unspecified", func(s *Spec) { s.Nameservers = []netip.Addr{netip.MustParseAddr("0.0.0.0")} }, "nameserver 0.0.0.0 is not a host address"},
		{"search domain underscore", func(s *Spec) { s.SearchDomains = []string{"corp_lan.example"} },
			`search domain "corp_lan.example" is not valid: use letters, digits and hyphens (RFC 1123), e.g. corp-lan.example`},
		{"search domain empty", func(s *Spec) { s.SearchDomains = []string{""} }, "a search domain is empty"},
		{"multicast MAC", func(s *Spec) { s.HWAddr = "01:00:5E:00:00:01" }, `MAC address "01:00:5E:00:00:01" is not a unicast MAC`},
		{"short MAC", func(s *Spec) { s.HWAddr = "BC:24:11" }, "is not a unicast MAC"},
		{"MTU low", func(s *Spec) { s.MTU = 64 }, "MTU 64 is out of range: use 68 to 65535"},
		{"MTU high", func(s *Spec) { s.MTU = 65536 }, "MTU 65536 is out of range"},
		{"VLAN high", func(s *Spec) { s.VLAN = 4095 }, "VLAN tag 4095 is out of range: use 1 to 4094, or 0 for untagged"},
		{"VLAN negative", func(s *Spec) { s.VLAN = -1 }, "VLAN tag -1 is out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validSpec()
			tt.modify(&s)
			wantErr(t, s.Validate(), tt.want)
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	s := validSpec()
	s.Bridge, s.MTU, s.VLAN = "", 10, 5000
	err := s.Validate()
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		t.Fatalf("Validate() = %v, want a joined error", err)
	}
	if got := len(joined.Unwrap()); got != 3 {
		t.Fatalf("Validate() reported %d problems, want 3: %v", got, err)
	}
}

func TestHostInSubnet(t *testing.T) {
	tests := []struct {
		subnet string
		octet  int
		want   string // the address, or an error fragment
		ok     bool
	}{
		{"10.1.10.0/24", 91, "10.1.10.91", true},
		{"10.1.10.0/24", 1, "10.1.10.1", true},
		{"10.1.10.0/24", 254, "10.1.10.254", true},
		{"10.1.10.77/24", 91, "10.1.10.91", true}, // host bits in the subnet are ignored
		{"10.1.10.128/25", 200, "10.1.10.200", true},
		{"10.1.10.0/24", 0, "10.1.10.0 is the network address of 10.1.10.0/24", false},
		{"10.1.10.0/24", 255, "10.1.10.255 is the broadcast address of 10.1.10.0/24", false},
		{"10.1.10.0/24", 256, "last octet 256 is out of range: use 1 to 254, e.g. 91 for 10.1.10.91", false},
		{"10.1.10.0/24", -1, "last octet -1 is out of range", false},
		{"10.1.10.128/25", 91, "address 10.1.10.91 is not inside 10.1.10.128/25", false},
		{"10.1.0.0/16", 91, "subnet 10.1.0.0/16 is wider than a /24|pass the full address with --ip", false},
		{"fd00::/64", 91, "subnet fd00::/64 is not IPv4", false},
		{"", 91, "no subnet", false},
	}
	for _, tt := range tests {
		t.Run(tt.subnet+"/"+tt.want, func(t *testing.T) {
			var subnet netip.Prefix
			if tt.subnet != "" {
				subnet = netip.MustParsePrefix(tt.subnet)
			}
			got, err := HostInSubnet(subnet, tt.octet)
			if !tt.ok {
				wantErr(t, err, tt.want)
				return
			}
			wantErr(t, err, "")
			if got.String() != tt.want {
				t.Fatalf("HostInSubnet(%s, %d) = %s, want %s", tt.subnet, tt.octet, got, tt.want)
			}
		})
	}
}

func TestCheckHostAddress(t *testing.T) {
	subnet := netip.MustParsePrefix("10.1.10.0/24")
	gw := netip.MustParseAddr("10.1.10.1")
	tmpl := netip.MustParseAddr("10.1.10.90")
	tests := []struct {
		name   string
		subnet netip.Prefix
		ip     string
		gw     netip.Addr
		want   string
	}{
		{"ok", subnet, "10.1.10.91", gw, ""},
		{"ok without gateway", subnet, "10.1.10.1", netip.Addr{}, ""},
		{"gateway", subnet, "10.1.10.1", gw, "address 10.1.10.1 is the gateway: pick another address for the container"},
		{"reserved", subnet, "10.1.10.90", gw, "address 10.1.10.90 is reserved (the template's address)"},
		{"network", subnet, "10.1.10.0", gw, "address 10.1.10.0 is the network address of 10.1.10.0/24: pick a host address such as 10.1.10.1"},
		{"broadcast", subnet, "10.1.10.255", gw, "address 10.1.10.255 is the broadcast address of 10.1.10.0/24: pick a host address such as 10.1.10.254"},
		{"broadcast /22", netip.MustParsePrefix("10.1.8.0/22"), "10.1.11.255", gw, "broadcast address of 10.1.8.0/22"},
		{"inside /22", netip.MustParsePrefix("10.1.8.0/22"), "10.1.10.255", gw, ""},
		{"outside", subnet, "10.1.11.5", gw, "address 10.1.11.5 is not inside 10.1.10.0/24: pass --ip inside the subnet"},
		{"IPv6", subnet, "fd00::5", gw, "address fd00::5 is not IPv4"},
		{"no ip", subnet, "", gw, "no address"},
		{"no subnet", netip.Prefix{}, "10.1.10.91", gw, "no subnet"},
		{"unmasked subnet", netip.MustParsePrefix("10.1.10.50/24"), "10.1.10.0", gw, "network address of 10.1.10.0/24"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ip netip.Addr
			if tt.ip != "" {
				ip = netip.MustParseAddr(tt.ip)
			}
			wantErr(t, CheckHostAddress(tt.subnet, ip, tt.gw, tmpl), tt.want)
		})
	}
}

func TestValidHostname(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"migra-client-01", ""},
		{"a", ""},
		{"9101", ""},
		{"web01.example.com", ""},
		{"Web-01", ""},
		{strings.Repeat("a", 63), ""},
		{"migra_client", `hostname "migra_client" is not valid: use letters, digits and hyphens (RFC 1123), e.g. migra-client`},
		{"", "hostname is empty: pass --host"},
		{"-web", `hostname "-web" is not valid: start and end each label with a letter or digit (RFC 1123), e.g. web`},
		{"web-", "start and end each label"},
		{"web..example", "remove the empty label|e.g. web.example"},
		{"web.", "remove the empty label"},
		{"my host", "use letters, digits and hyphens|e.g. my-host"},
		{"ünïcode", "use letters, digits and hyphens"},
		{strings.Repeat("a", 64), "shorten the label|at most 63 characters|e.g. " + strings.Repeat("a", 63)},
		{strings.Repeat("abcdefgh.", 28) + "x", ""}, // 253 characters
		{strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 64),
			"shorten it from 256 to at most 255 characters, e.g. aaa"},
		{"___", "e.g. migra-client-01"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			err := ValidHostname(tt.in)
			wantErr(t, err, tt.want)
		})
	}
}

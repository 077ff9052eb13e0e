package netcfg

import (
	"net/netip"
	"testing"
)

func TestBuildNet0(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Spec)
		want   string
	}{
		{"PVE's stored order", func(s *Spec) { s.HWAddr, s.Firewall = "BC:24:11:2A:3B:4C", true },
			"name=eth0,bridge=vmbr0,firewall=1,gw=10.1.10.1,hwaddr=BC:24:11:2A:3B:4C,ip=10.1.10.91/24,type=veth"},
		{"no MAC lets PVE generate one", func(*Spec) {},
			"name=eth0,bridge=vmbr0,gw=10.1.10.1,ip=10.1.10.91/24,type=veth"},
		{"no gateway", func(s *Spec) { s.Gateway = netip.Addr{} },
			"name=eth0,bridge=vmbr0,ip=10.1.10.91/24,type=veth"},
		{"VLAN and MTU", func(s *Spec) { s.VLAN, s.MTU = 20, 9000 },
			"name=eth0,bridge=vmbr0,gw=10.1.10.1,ip=10.1.10.91/24,mtu=9000,tag=20,type=veth"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validSpec()
			tt.modify(&s)
			if got := BuildNet0(s); got != tt.want {
				t.Fatalf("BuildNet0() =\n %s\nwant\n %s", got, tt.want)
			}
		})
	}
}

func TestParseNet0(t *testing.T) {
	tests := []struct {
		in   string
		want Net0
		err  string
	}{
		{in: "name=eth0,bridge=vmbr0,firewall=1,gw=10.1.10.1,hwaddr=BC:24:11:2A:3B:4C,ip=10.1.10.91/24,type=veth",
			want: Net0{Name: "eth0", Bridge: "vmbr0", Firewall: true, GW: "10.1.10.1", HWAddr: "BC:24:11:2A:3B:4C", IP: "10.1.10.91/24", Type: "veth"}},
		{in: "type=veth,ip=dhcp,bridge=vmbr1,name=eth1", // any order
			want: Net0{Name: "eth1", Bridge: "vmbr1", IP: "dhcp", Type: "veth"}},
		{in: "name=eth0,,bridge=vmbr0, ,", // empty parts are skipped, as PVE does
			want: Net0{Name: "eth0", Bridge: "vmbr0"}},
		{in: "name=eth0,firewall=on,link_down=yes,host-managed=TRUE",
			want: Net0{Name: "eth0", Firewall: true, LinkDown: true, HostManaged: true}},
		{in: "name=eth0,firewall=0,link_down=off",
			want: Net0{Name: "eth0"}},
		{in: "name=eth0,ip6=fd00::91/64,gw6=fd00::1,tag=4094,mtu=64,rate=12.5,trunks=10;20;30",
			want: Net0{Name: "eth0", IP6: "fd00::91/64", GW6: "fd00::1", Tag: 4094, MTU: 64, Rate: "12.5", Trunks: "10;20;30"}},
		{in: "name=eth0,ip=manual,ip6=auto", want: Net0{Name: "eth0", IP: "manual", IP6: "auto"}},
		{in: "", err: "net0 is empty"},
		{in: "bridge=vmbr0", err: "net0 has no name key: PVE requires the interface name, e.g. name=eth0"},
		{in: "name=eth0,foo=bar", err: "net0 key foo is not a PVE container network option: use bridge, firewall"},
		{in: "name=eth0,ip=10.1.10.91/24,ip=10.1.10.92/24", err: "net0 key ip appears twice: keep one"},
		{in: "name=eth0,vmbr0", err: `net0 part "vmbr0" has no key: write key=value`},
		{in: "name=eth0,=vmbr0", err: `net0 part "=vmbr0" has no key`},
		{in: "name=eth0,ip=", err: "net0 key ip has an empty value"},
		{in: "name=eth0,ip=10.1.10.91", err: "net0 ip=10.1.10.91 is not valid: use IPv4/CIDR"},
		{in: "name=eth0,ip=10.1.10.91/7", err: "net0 ip=10.1.10.91/7 is not valid"},
		{in: "name=eth0,ip=fd00::1/64", err: "net0 ip=fd00::1/64 is not valid"},
		{in: "name=eth0,ip=010.1.10.91/24", err: "net0 ip=010.1.10.91/24 is not valid"},
		{in: "name=eth0,gw=fd00::1", err: "net0 gw=fd00::1 is not valid: use an IPv4 address"},
		{in: "name=eth0,gw6=10.1.10.1", err: "net0 gw6=10.1.10.1 is not valid"},
		{in: "name=eth0,gw6=fe80::1%eth0", err: "net0 gw6=fe80::1%eth0 is not valid"},
		{in: "name=eth0,ip6=fd00::1/7", err: "net0 ip6=fd00::1/7 is not valid"},
		{in: "name=eth0,hwaddr=01:00:5E:00:00:01", err: "net0 hwaddr=01:00:5E:00:00:01 is not valid: use a unicast MAC"},
		{in: "name=eth0,tag=0", err: "net0 tag=0 is out of range: use 1 to 4094"},
		{in: "name=eth0,tag=4095", err: "net0 tag=4095 is out of range"},
		{in: "name=eth0,tag=1_0", err: "net0 tag=1_0 is not valid: use a whole number"},
		{in: "name=eth0,mtu=63", err: "net0 mtu=63 is out of range: use 64 to 65535"},
		{in: "name=eth0,firewall=maybe", err: "net0 firewall=maybe is not valid: use 1 or 0"},
		{in: "name=eth0,type=phys", err: "net0 type=phys is not valid: the only type is veth"},
		{in: "name=eth0,trunks=10,20", err: `net0 part "20" has no key`},
		{in: "name=eth0,trunks=10;x", err: "net0 trunks=10;x is not valid"},
		{in: "name=eth0,rate=fast", err: "net0 rate=fast is not valid"},
		{in: "name=eth 0", err: "net0 name=eth 0 is not valid"},
		{in: "name=eth0,bridge=vmbr/0", err: "net0 bridge=vmbr/0 is not valid"},
		{in: "name=eth0,tag=9999,mtu=1", err: "net0 tag=9999 is out of range|net0 mtu=1 is out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseNet0(tt.in)
			wantErr(t, err, tt.err)
			if got != tt.want {
				t.Fatalf("ParseNet0(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestNet0StringStoredOrder(t *testing.T) {
	n := Net0{Name: "eth0", Bridge: "vmbr0", HWAddr: "BC:24:11:2A:3B:4C", IP: "10.1.10.91/24", GW: "10.1.10.1",
		IP6: "fd00::91/64", GW6: "fd00::1", Type: "veth", Firewall: true, Tag: 20, MTU: 1400, Rate: "100",
		LinkDown: true, Trunks: "10;20", HostManaged: true}
	const want = "name=eth0,bridge=vmbr0,firewall=1,gw=10.1.10.1,gw6=fd00::1,host-managed=1,hwaddr=BC:24:11:2A:3B:4C," +
		"ip=10.1.10.91/24,ip6=fd00::91/64,link_down=1,mtu=1400,rate=100,tag=20,trunks=10;20,type=veth"
	if got := n.String(); got != want {
		t.Fatalf("String() =\n %s\nwant\n %s", got, want)
	}
	back, err := ParseNet0(want)
	if err != nil || back != n {
		t.Fatalf("ParseNet0(String()) = %+v, %v; want %+v", back, err, n)
	}
}

// FuzzNet0RoundTrip checks that whatever ParseNet0 accepts, String gives
// back in a form that parses to the same value, and that BuildNet0's output
// always parses.
func FuzzNet0RoundTrip(f *testing.F) {
	for _, seed := range []string{
		"name=eth0,bridge=vmbr0,firewall=1,gw=10.1.10.1,hwaddr=BC:24:11:2A:3B:4C,ip=10.1.10.91/24,type=veth",
		"type=veth,ip=dhcp,name=eth1,bridge=vmbr1,tag=20,mtu=9000",
		"name=eth0,ip6=fd00::91/64,gw6=fd00::1,rate=1.5e2,trunks=1;2,link_down=yes,host-managed=off",
		"name=eth0,,tag=+7",
		"name=eth0,ip=manual,ip6=auto,firewall=False",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		n, err := ParseNet0(in)
		if err != nil {
			return
		}
		out := n.String()
		back, err := ParseNet0(out)
		if err != nil {
			t.Fatalf("ParseNet0(%q) failed on String() of %q: %v", out, in, err)
		}
		if back != n {
			t.Fatalf("round trip of %q: %+v became %+v via %q", in, n, back, out)
		}
		if again := back.String(); again != out {
			t.Fatalf("String() is not stable: %q then %q", out, again)
		}
		if _, err := ParseNet0(BuildNet0(Spec{Interface: n.Name, Bridge: n.Bridge, HWAddr: n.HWAddr, MTU: n.MTU, VLAN: n.Tag, Firewall: n.Firewall})); err != nil {
			t.Fatalf("BuildNet0 from %+v does not parse: %v", n, err)
		}
	})
}

func TestBuildNet0ParsesBack(t *testing.T) {
	s := validSpec()
	s.HWAddr, s.MTU, s.VLAN, s.Firewall = "bc:24:11:2a:3b:4c", 1400, 7, true
	n, err := ParseNet0(BuildNet0(s))
	if err != nil {
		t.Fatal(err)
	}
	want := Net0{Name: "eth0", Bridge: "vmbr0", HWAddr: "bc:24:11:2a:3b:4c", IP: "10.1.10.91/24", GW: "10.1.10.1",
		Type: "veth", Firewall: true, Tag: 7, MTU: 1400}
	if n != want {
		t.Fatalf("ParseNet0(BuildNet0()) = %+v, want %+v", n, want)
	}
}

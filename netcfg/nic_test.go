package netcfg

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseNICRefusals(t *testing.T) {
	tests := []struct {
		in   string
		want []string // one sentence each
	}{
		{"bridge=vmbr0", []string{"--net has no name: give the interface inside the guest, e.g. name=eth0"}},
		{"name=eth0", []string{"--net has no bridge: give the host bridge, e.g. bridge=vmbr0"}},
		{"name=eth0,bridge=vmbr0,tag=4095", []string{"--net tag=4095 is out of range: use 1 to 4094"}},
		{"name=eth0,bridge=vmbr0,tag=x", []string{"--net tag=x is not valid: use a whole number from 1 to 4094"}},
		{"name=eth0,bridge=vmbr0,mtu=40", []string{"--net mtu=40 is out of range: use 64 to 65535"}},
		{"name=eth0,bridge=vmbr0,mtu=64", []string{"--net mtu=64 is below 68, the least IPv4 runs on: use 68 to 65535"}},
		{"name=eth0,bridge=vmbr0,hwaddr=01:00:5E:00:00:01", []string{"--net hwaddr=01:00:5E:00:00:01 is not valid: use a unicast MAC such as BC:24:11:2A:3B:4C"}},
		{"name=eth0,bridge=vmbr0,ip=10.1.10.300/24", []string{"--net ip=10.1.10.300/24 is not valid: use IPv4/CIDR with a prefix length of 8 to 32 (e.g. 10.1.10.91/24), dhcp or manual"}},
		{"name=eth0,bridge=vmbr0,ip=10.1.10.0/24", []string{"--net ip=10.1.10.0/24 is its subnet's network or broadcast address: give a host address such as 10.1.10.1"}},
		{"name=eth0,bridge=vmbr0,ip=10.1.10.255/24", []string{"--net ip=10.1.10.255/24 is its subnet's network or broadcast address"}},
		{"name=eth0,bridge=vmbr0,ip=dhcp,gw=10.1.10.1", []string{"--net gw=10.1.10.1 needs a static ip=CIDR beside it (with ip=dhcp the gateway comes from dhcp): drop gw or give ip=ADDRESS/PREFIX"}},
		{"name=eth0,bridge=vmbr0,ip=10.1.10.91/24,gw=10.1.20.1", []string{"--net gw=10.1.20.1 is outside ip=10.1.10.91/24's subnet 10.1.10.0/24: give a gateway on that subnet"}},
		{"name=eth0,bridge=vmbr0,ip=10.1.10.91/24,gw=10.1.10.91", []string{"--net gw=10.1.10.91 is the NIC's own address: give the router's address"}},
		{"name=eth0,bridge=vmbr0,ip6=auto,gw6=fd00::1", []string{"--net gw6=fd00::1 needs a static ip6=CIDR beside it: drop gw6 or give ip6=ADDRESS/PREFIX"}},
		{"name=eth0,bridge=vmbr0,ip6=fd00::91/64,gw6=fd01::1", []string{"--net gw6=fd01::1 is neither on ip6=fd00::91/64's subnet nor link-local"}},
		{"name=eth0,bridge=vmbr0,rate=10", []string{"--net key rate is not one --net takes: use name, bridge, tag, hwaddr, mtu, ip, gw, ip6, gw6, firewall"}},
		{"name=eth0,bridge=vmbr0,ip=dhcp,ip=manual", []string{"--net key ip appears twice: keep one"}},
		{"name=eth0,bridge=vmbr0,tag", []string{`--net part "tag" has no key: write key=value, e.g. bridge=vmbr0`}},
		{"name=eth0,bridge=vmbr0,tag=", []string{"--net key tag has an empty value: give a value or leave the key out"}},
		{"name=averyveryverylongname0,bridge=vmbr0", []string{`--net name: interface name "averyveryverylongname0" is 22 characters long: Linux allows at most 15`}},
		{"name=eth0,bridge=vmbr 0", []string{"--net bridge=vmbr 0 is not valid: use letters, digits, '-', '_' and '.', e.g. vmbr0"}},
		{"bridge=vmbr0,tag=0,mtu=9", []string{"--net tag=0 is out of range", "--net mtu=9 is out of range", "--net has no name"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseNIC(tt.in)
			if err == nil {
				t.Fatal("accepted")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Errorf("%d problems, want %d: %q", len(lines), len(tt.want), lines)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestValidateNICs(t *testing.T) {
	parse := func(specs ...string) []NIC {
		var out []NIC
		for _, s := range specs {
			n, err := ParseNIC(s)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, n)
		}
		return out
	}
	if err := ValidateNICs(nil); err == nil || !strings.Contains(err.Error(), "no --net given") {
		t.Errorf("no NICs: %v", err)
	}
	err := ValidateNICs(parse("name=eth0,bridge=vmbr0,ip=10.1.10.91/24,gw=10.1.10.1,hwaddr=BC:24:11:00:00:01",
		"name=eth0,bridge=vmbr1,ip=192.168.1.1/24,gw=192.168.1.254,hwaddr=bc:24:11:00:00:01"))
	for _, want := range []string{"two --net name eth0", "two --net hwaddr bc:24:11:00:00:01", "eth0, eth0 all have gw=: only one NIC may carry the default gateway"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err %v lacks %q", err, want)
		}
	}
	if err := ValidateNICs(parse("name=eth0,bridge=vmbr0,ip=dhcp", "name=eth1,bridge=vmbr1,ip=10.1.10.120/24,gw=10.1.10.1")); err != nil {
		t.Errorf("a valid pair: %v", err)
	}
}

// nicCases render into testdata/nics.golden: each --net set as a
// container's netN, a VM's netN and cloud-init's ipconfigN.
var nicCases = [][]string{
	{"name=eth0,bridge=vmbr0,tag=20,mtu=9000,ip=dhcp", "name=eth1,bridge=vmbr0,ip=10.1.10.120/24"},
	{"name=eth0,bridge=vmbr0,ip=10.1.10.91/24,gw=10.1.10.1,ip6=fd00::91/64,gw6=fd00::1,firewall=1,hwaddr=BC:24:11:2A:3B:4C"},
	{"name=eth0,bridge=vmbr1,ip=manual", "name=eth1,bridge=vmbr0,ip=dhcp,ip6=auto"},
	{"name=wan,bridge=vmbr0,ip=dhcp,ip6=dhcp,mtu=1500"},
	{"bridge=vmbr0,name=eth0"},
}

func TestNICRenderingGolden(t *testing.T) {
	var b strings.Builder
	for i, specs := range nicCases {
		fmt.Fprintf(&b, "# case %d\n", i+1)
		var nics []NIC
		for _, s := range specs {
			n, err := ParseNIC(s)
			if err != nil {
				t.Fatalf("%s: %v", s, err)
			}
			nics = append(nics, n)
			fmt.Fprintf(&b, "--net %s\n", s)
		}
		if err := ValidateNICs(nics); err != nil {
			t.Fatalf("case %d: %v", i+1, err)
		}
		for j, n := range nics {
			fmt.Fprintf(&b, "lxc net%d: %s\n", j, n.ContainerNet())
			fmt.Fprintf(&b, "vm  net%d: %s\n", j, n.VMNet("virtio"))
			fmt.Fprintf(&b, "vm  ipconfig%d: %s\n", j, n.IPConfig())
			if back, err := ParseNIC(n.String()); err != nil || back != n {
				t.Errorf("%s does not parse back: %+v %v", n, back, err)
			}
			// What PVE stores (with the MAC it generates) still counts as
			// this NIC; another VLAN does not.
			stored := n.ContainerNet()
			if n.HWAddr == "" {
				stored += ",hwaddr=BC:24:11:00:00:99"
			}
			if !SameNIC(stored, n) {
				t.Errorf("SameNIC(%s, %s) = false", stored, n)
			}
			if SameNIC(stored+",tag=99", n) && n.VLAN == 0 {
				t.Errorf("SameNIC ignores an added VLAN: %s", stored)
			}
		}
	}
	path := filepath.Join("testdata", "nics.golden")
	if *update {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./netcfg -run TestNICRenderingGolden -update to create it)", err)
	}
	if got := b.String(); got != string(want) {
		t.Errorf("rendering differs from %s (-want +got; rerun with -update if the change is intended):\n%s", path, lineDiff(string(want), got))
	}
}

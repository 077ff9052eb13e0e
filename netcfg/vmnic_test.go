package netcfg

import (
	"strings"
	"testing"
)

func TestParseVMNIC(t *testing.T) {
	tests := []struct {
		in, value, err string
	}{
		{in: "name=net0,bridge=vmbr0,tag=30", value: "virtio,bridge=vmbr0,tag=30"},
		{in: "name=net1,bridge=vmbr1,macaddr=BC:24:11:2A:3B:4C,mtu=1,model=virtio,firewall=1", value: "virtio=BC:24:11:2A:3B:4C,bridge=vmbr1,firewall=1,mtu=1"},
		{in: "name=net2,bridge=vmbr0,model=e1000", value: "e1000,bridge=vmbr0"},
		{in: "name=eth0,bridge=vmbr0", err: "--net name=eth0 is not a VM NIC: use net0 to net31"},
		{in: "name=net0,bridge=vmbr0,model=e1000,mtu=9000", err: "--net mtu= is for virtio cards only"},
		{in: "name=net0,bridge=vmbr0,mtu=40", err: "--net mtu=40 is below 68"},
		{in: "name=net0,bridge=vmbr0,macaddr=01:00:5E:00:00:01", err: "--net macaddr=01:00:5E:00:00:01 is not valid: use a unicast MAC"},
		{in: "name=net0,bridge=vmbr0,ip=dhcp", err: "--net key ip is not one a VM's --net takes"},
		{in: "name=net0,bridge=vmbr0,model=ne2000", err: "--net model=ne2000 is not one PVE emulates"},
		{in: "name=net0", err: "--net has no bridge"},
	}
	for _, tt := range tests {
		n, err := ParseVMNIC(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: err %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || n.Value() != tt.value {
			t.Errorf("%s: %q %v, want %q", tt.in, n.Value(), err, tt.value)
			continue
		}
		if back, err := ParseVMNIC(n.String()); err != nil || back.Value() != n.Value() {
			t.Errorf("%s: String %q does not parse back (%v)", tt.in, n.String(), err)
		}
	}
}

func TestSameVMNIC(t *testing.T) {
	n, _ := ParseVMNIC("name=net0,bridge=vmbr0,tag=30")
	for stored, want := range map[string]bool{
		"virtio=BC:24:11:00:00:01,bridge=vmbr0,tag=30":            true,
		"virtio=BC:24:11:00:00:01,bridge=vmbr0,firewall=0,tag=30": true,
		"virtio=BC:24:11:00:00:01,bridge=vmbr0":                   false,
		"e1000=BC:24:11:00:00:01,bridge=vmbr0,tag=30":             false,
		"virtio=BC:24:11:00:00:01,bridge=vmbr1,tag=30":            false,
	} {
		if got := SameVMNIC(stored, n); got != want {
			t.Errorf("%s: %v, want %v", stored, got, want)
		}
	}
	m, _ := ParseVMNIC("name=net0,bridge=vmbr0,macaddr=BC:24:11:00:00:02")
	if SameVMNIC("virtio=BC:24:11:00:00:01,bridge=vmbr0", m) || !SameVMNIC("virtio=bc:24:11:00:00:02,bridge=vmbr0", m) {
		t.Error("a MAC asked for is compared")
	}
}

func TestParseIPConfig(t *testing.T) {
	for in, want := range map[string]string{
		"ip=10.1.10.150/24,gw=10.1.10.1":      "ip=10.1.10.150/24,gw=10.1.10.1",
		"gw=10.1.10.1,ip=10.1.10.150/24":      "ip=10.1.10.150/24,gw=10.1.10.1",
		"ip=dhcp,ip6=auto":                    "ip=dhcp,ip6=auto",
		"ip=10.1.10.150/24,gw=10.1.11.1":      "--ipconfig0 gw=10.1.11.1 is outside ip=10.1.10.150/24's subnet",
		"ip=dhcp,gw=10.1.10.1":                "--ipconfig0 gw=10.1.10.1 needs a static ip=CIDR beside it",
		"ip=manual":                           "--ipconfig0 ip=manual has no cloud-init form",
		"ip=10.1.10.0/24":                     "--ipconfig0 ip=10.1.10.0/24 is its subnet's network or broadcast address",
		"bridge=vmbr0":                        "--ipconfig0 key bridge is not one cloud-init takes",
		"ip=10.1.10.150/24,ip=10.1.10.151/24": "--ipconfig0 key ip appears twice",
	} {
		n, err := ParseIPConfig("--ipconfig0", in)
		got := n.IPConfig()
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, want) {
			t.Errorf("%s: %q, want %q", in, got, want)
		}
	}
}

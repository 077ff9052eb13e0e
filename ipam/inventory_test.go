package ipam

import (
	"fmt"
	"testing"
)

func TestConfigAddrs(t *testing.T) {
	tests := []struct {
		name   string
		values map[string]string
		want   string
	}{
		{"lxc net0", map[string]string{
			"net0":     "name=eth0,bridge=vmbr0,firewall=1,gw=10.1.10.1,hwaddr=BC:24:11:00:00:01,ip=10.1.10.95/24,type=veth",
			"hostname": "web1",
		}, "[10.1.10.95]"},
		{"lxc several nics, dhcp and v6 skipped", map[string]string{
			"net0": "name=eth0,bridge=vmbr0,ip=10.1.10.96/24,ip6=fd00::5/64",
			"net1": "name=eth1,bridge=vmbr1,ip=dhcp",
			"net2": "name=eth2,bridge=vmbr2,ip=manual",
			"net3": "name=eth3,bridge=vmbr0,ip=10.1.10.20/24",
		}, "[10.1.10.20 10.1.10.96]"},
		{"qemu ipconfig, netN has no ip", map[string]string{
			"net0":      "virtio=BC:24:11:00:00:02,bridge=vmbr0",
			"ipconfig0": "ip=10.1.10.97/24,gw=10.1.10.1",
			"ipconfig1": "ip6=auto",
		}, "[10.1.10.97]"},
		{"bare address and duplicates", map[string]string{
			"ipconfig0": "ip=10.1.10.98",
			"net0":      "name=eth0,ip=10.1.10.98/24",
		}, "[10.1.10.98]"},
		{"not a nic key", map[string]string{"description": "ip=10.1.10.99/24", "netx": "ip=10.1.10.99/24"}, "[]"},
		{"malformed", map[string]string{"net0": "name=eth0,ip=10.1.10.300/24"}, "[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fmt.Sprint(ConfigAddrs(tt.values)); got != tt.want {
				t.Fatalf("ConfigAddrs = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestGuestString(t *testing.T) {
	g := Guest{VMID: 9105, Node: "pve1", Name: "web1", Type: "lxc"}
	if got := g.String(); got != "lxc 9105 (web1) on pve1" {
		t.Fatalf("String = %q", got)
	}
	if got := (Guest{VMID: 100}).String(); got != "guest 100" {
		t.Fatalf("String = %q", got)
	}
}

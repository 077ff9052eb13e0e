package provisioner

import (
	"net/netip"
	"reflect"
	"testing"
)

func TestParseIPv4Addrs(t *testing.T) {
	tests := []struct {
		name, out string
		want      []netip.Prefix
		wantErr   bool
	}{
		{"one address", `[{"ifindex":2,"ifname":"eth0","addr_info":[{"family":"inet","local":"10.1.10.91","prefixlen":24}]}]`,
			[]netip.Prefix{netip.MustParsePrefix("10.1.10.91/24")}, false},
		{"two, and inet6 ignored", `[{"ifname":"eth0","addr_info":[{"family":"inet","local":"10.1.10.90","prefixlen":24},{"family":"inet","local":"10.1.10.91","prefixlen":24},{"family":"inet6","local":"fe80::1","prefixlen":64}]}]`,
			[]netip.Prefix{netip.MustParsePrefix("10.1.10.90/24"), netip.MustParsePrefix("10.1.10.91/24")}, false},
		{"iproute2's {} for a link without IPv4", `[{}]`, nil, false},
		{"nothing", `[]`, nil, false},
		{"not JSON", `Device "eth0" does not exist.`, nil, true},
		{"bad address", `[{"addr_info":[{"family":"inet","local":"x","prefixlen":24}]}]`, nil, true},
	}
	for _, tt := range tests {
		got, err := parseIPv4Addrs(tt.out)
		if (err != nil) != tt.wantErr || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: parseIPv4Addrs = %v, %v; want %v (error %v)", tt.name, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestHasUnitType(t *testing.T) {
	for name, want := range map[string]bool{"ssh": false, "php8.3-fpm": false, "ssh.service": true, "ssh.socket": true, "backup.timer": true} {
		if got := hasUnitType(name); got != want {
			t.Errorf("hasUnitType(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestParseDefaultGateway(t *testing.T) {
	tests := []struct {
		name, out string
		want      string // "" = none
		wantErr   bool
	}{
		{"iproute2's default route", `[{"dst":"default","gateway":"10.1.10.1","dev":"eth0","protocol":"static","flags":[]}]`, "10.1.10.1", false},
		{"on another link", `[{"dst":"default","gateway":"192.168.1.1","dev":"eth1","flags":[]}]`, "", false},
		{"none yet", `[]`, "", false},
		{"not JSON", `Error: any valid prefix is expected rather than "x".`, "", true},
		{"bad gateway", `[{"dst":"default","gateway":"x","dev":"eth0"}]`, "", true},
	}
	for _, tt := range tests {
		got, err := parseDefaultGateway(tt.out)
		want := netip.Addr{}
		if tt.want != "" {
			want = netip.MustParseAddr(tt.want)
		}
		if (err != nil) != tt.wantErr || got != want {
			t.Errorf("%s: parseDefaultGateway = %v, %v; want %v (error %v)", tt.name, got, err, want, tt.wantErr)
		}
	}
}

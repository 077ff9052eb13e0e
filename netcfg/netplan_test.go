package netcfg

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// netplanCases are the specs with golden files testdata/netplan-<name>.yaml.
var netplanCases = []struct {
	name string
	spec Spec
}{
	{"minimal", Spec{Interface: "eth0", Bridge: "vmbr0",
		Address: netip.MustParsePrefix("10.1.10.91/24"), Gateway: netip.MustParseAddr("10.1.10.1")}},
	{"dns-search", Spec{Interface: "eth0", Bridge: "vmbr0",
		Address: netip.MustParsePrefix("10.1.10.92/24"), Gateway: netip.MustParseAddr("10.1.10.1"),
		Nameservers:   []netip.Addr{netip.MustParseAddr("10.1.10.1"), netip.MustParseAddr("1.1.1.1"), netip.MustParseAddr("2001:db8::53")},
		SearchDomains: []string{"migrahosting.com", "corp.migrahosting.com"}}},
	{"mtu-vlan", Spec{Interface: "eth0", Bridge: "vmbr1",
		Address: netip.MustParsePrefix("172.16.20.15/22"), Gateway: netip.MustParseAddr("172.16.20.1"),
		Nameservers: []netip.Addr{netip.MustParseAddr("172.16.20.1")},
		HWAddr:      "BC:24:11:2A:3B:4C", MTU: 9000, VLAN: 20, Firewall: true}},
	{"no-gateway", Spec{Interface: "eth0", Bridge: "vmbr0",
		Address:       netip.MustParsePrefix("192.168.50.10/24"),
		Nameservers:   []netip.Addr{netip.MustParseAddr("192.168.50.2")},
		SearchDomains: []string{"lab.internal"}}},
}

func goldenPath(name string) string { return filepath.Join("testdata", "netplan-"+name+".yaml") }

func TestRenderNetplanGolden(t *testing.T) {
	for _, tc := range netplanCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := RenderNetplan(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			again, _ := RenderNetplan(tc.spec)
			if string(again) != string(got) {
				t.Fatal("RenderNetplan is not deterministic")
			}
			path := goldenPath(tc.name)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./netcfg -run TestRenderNetplanGolden -update to create it)", err)
			}
			if string(got) != string(want) {
				t.Errorf("RenderNetplan differs from %s (-want +got; rerun with -update if the change is intended):\n%s",
					path, lineDiff(string(want), string(got)))
			}
		})
	}
}

func TestRenderNetplanRejectsInvalidSpec(t *testing.T) {
	s := validSpec()
	s.Gateway = netip.MustParseAddr("10.2.0.1")
	_, err := RenderNetplan(s)
	wantErr(t, err, "render netplan for eth0: gateway 10.2.0.1 is not inside 10.1.10.0/24")
}

func TestRenderNetplanQuotesAwkwardNames(t *testing.T) {
	s := validSpec()
	s.Interface = "on"
	s.SearchDomains = []string{"no"}
	got, err := RenderNetplan(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\n    \"on\":\n", "\n          - \"no\"\n"} {
		if !strings.Contains(string(got), want) {
			t.Errorf("netplan lacks %q:\n%s", want, got)
		}
	}
}

// TestNetplanGenerate feeds each golden file to the real netplan and checks
// the systemd-networkd unit it writes carries the spec.
func TestNetplanGenerate(t *testing.T) {
	netplan, err := exec.LookPath("netplan")
	if err != nil {
		t.Skip("netplan not installed (Debian/Ubuntu package netplan.io)")
	}
	for _, tc := range netplanCases {
		t.Run(tc.name, func(t *testing.T) {
			yaml, err := os.ReadFile(goldenPath(tc.name))
			if err != nil {
				t.Fatal(err)
			}
			root := t.TempDir()
			dir := filepath.Join(root, filepath.Dir(NetplanPath))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, NetplanPath), yaml, NetplanMode); err != nil {
				t.Fatal(err)
			}
			cmd := exec.CommandContext(t.Context(), netplan, "generate", "--root-dir", root)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("netplan generate: %v\n%s", err, stderr.String())
			}
			if w := regexp.MustCompile(`(?i)warn|deprecat`).FindString(stderr.String()); w != "" {
				t.Errorf("netplan generate warned:\n%s", stderr.String())
			}
			unit := filepath.Join(root, "run", "systemd", "network", "10-netplan-"+tc.spec.Interface+".network")
			raw, err := os.ReadFile(unit)
			if err != nil {
				t.Fatal(err)
			}
			lines := map[string]bool{}
			for _, l := range strings.Split(string(raw), "\n") {
				lines[strings.TrimSpace(l)] = true
			}
			s := tc.spec
			want := []string{"Name=" + s.Interface, "Address=" + s.Address.String(), "IPv6AcceptRA=no"}
			if s.Gateway.IsValid() {
				want = append(want, "Destination=0.0.0.0/0", "Gateway="+s.Gateway.String())
			}
			for _, ns := range s.Nameservers {
				want = append(want, "DNS="+ns.String())
			}
			if len(s.SearchDomains) > 0 {
				want = append(want, "Domains="+strings.Join(s.SearchDomains, " "))
			}
			if s.MTU != 0 {
				want = append(want, "MTUBytes="+strconv.Itoa(s.MTU))
			}
			for _, w := range want {
				if !lines[w] {
					t.Errorf("%s lacks %q:\n%s", filepath.Base(unit), w, raw)
				}
			}
			if !s.Gateway.IsValid() && strings.Contains(string(raw), "Gateway=") {
				t.Errorf("%s has a gateway though the spec has none:\n%s", filepath.Base(unit), raw)
			}
		})
	}
}

// lineDiff is a minimal line diff (longest common subsequence) for golden
// failures: "-" lines only in want, "+" lines only in got.
func lineDiff(want, got string) string {
	a, b := strings.Split(want, "\n"), strings.Split(got, "\n")
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out strings.Builder
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			fmt.Fprintf(&out, "  %s\n", a[i])
			i, j = i+1, j+1
		case j < len(b) && (i == len(a) || lcs[i][j+1] > lcs[i+1][j]):
			fmt.Fprintf(&out, "+ %s\n", b[j])
			j++
		default:
			fmt.Fprintf(&out, "- %s\n", a[i])
			i++
		}
	}
	return out.String()
}

func TestLineDiff(t *testing.T) {
	got := lineDiff("a\nb\nc", "a\nx\nc")
	want := "  a\n- b\n+ x\n  c\n"
	if got != want {
		t.Fatalf("lineDiff =\n%s\nwant\n%s", got, want)
	}
}

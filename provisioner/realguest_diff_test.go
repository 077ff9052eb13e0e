//go:build realguests

package provisioner

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/migrahosting/cloudpods/fixtures/pvesim"
	"github.com/migrahosting/cloudpods/fixtures/pvesim/lxcguest"
	"github.com/migrahosting/cloudpods/netcfg"
	"github.com/migrahosting/cloudpods/provisioner/pve"
	"github.com/migrahosting/cloudpods/provisioner/pve/goproxmox"
)

// TestGuestDifferential runs every command the create flow and health
// --deep run inside a pod, in order, on a real LXC container and on the
// emulated one (ctshell), and compares each step's exit status and what the
// flow reads from its output; on both netplan lines of the template (1.1,
// then 1.0), or on the one CLOUDPODS_NETPLAN names. A difference must be
// listed, with its reason, in testdata/realguests/known-differences.txt (or
// known-differences-<line>.txt for one line's stand-in); a listed
// difference that no longer shows fails too, so the lists stay true.
//
// Needs root and LXC (make e2e).
func TestGuestDifferential(t *testing.T) {
	if err := lxcguest.Check(); err != nil {
		t.Skipf("real guests unavailable: %v", err)
	}
	lines := []string{"1.1", "1.0"}
	if l := os.Getenv("CLOUDPODS_NETPLAN"); l != "" {
		lines = []string{l}
	}
	for _, line := range lines {
		t.Run("netplan "+line, func(t *testing.T) { differential(t, line) })
	}
}

func differential(t *testing.T, netplan string) {
	known := loadKnownDifferences(t, filepath.Join("testdata", "realguests", "known-differences.txt"))
	// The template's stand-ins differ by line (1.0 is Debian bookworm's
	// systemd 252): their own differences are listed beside.
	if extra := filepath.Join("testdata", "realguests", "known-differences-"+netplan+".txt"); fileExists(extra) {
		for k, v := range loadKnownDifferences(t, extra) {
			known[k] = v
		}
	}
	real := runScript(t, "lxc", netplan)
	emulated := runScript(t, "emulated", netplan)

	differs := map[string]bool{}
	for _, st := range diffScript {
		r, e := real[st.name], emulated[st.name]
		if r == e {
			continue
		}
		differs[st.name] = true
		if reason, ok := known[st.name]; ok {
			t.Logf("%s: known difference (%s): real %s, emulated %s", st.name, reason, r, e)
			continue
		}
		t.Errorf("%s (%s): real container %s; ctshell %s", st.name, st.cmd, r, e)
	}
	for name := range known {
		if !differs[name] {
			t.Errorf("%s is listed as a known difference but both sides agree: remove it from the list", name)
		}
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// outcome is what a step produced: its exit status and what the flow reads
// from the output.
type outcome struct {
	Code   int
	Parsed string
}

func (o outcome) String() string { return fmt.Sprintf("exit %d, %q", o.Code, o.Parsed) }

// diffStep is one command; parse extracts what the flow reads from it.
type diffStep struct {
	name  string
	cmd   string
	parse func(out string) string
	// poll repeats the command until parse gives want (networkd applies
	// a reload in the background), up to verifyLimit; wantOn is want by
	// the template's netplan line, where the lines differ.
	want   string
	wantOn map[string]string
}

const verifyLimit = 30 * time.Second

var (
	diffPod = Spec{VMID: 9101, Hostname: "migra-client-01", IP: netip.MustParseAddr("10.1.10.91"), Subnet: netip.MustParsePrefix("10.1.10.0/24"),
		Gateway: netip.MustParseAddr("10.1.10.1"), DNS: []netip.Addr{netip.MustParseAddr("10.1.10.1"), netip.MustParseAddr("1.1.1.1")}, Bridge: "vmbr0"}
	diffNet  = netcfg.Spec{Interface: "eth0", Bridge: "vmbr0", Address: diffPod.Address(), Gateway: diffPod.Gateway, Nameservers: diffPod.DNS}
	nothing  = func(string) string { return "" }
	firstCol = func(out string) string {
		if f := strings.Fields(out); len(f) > 0 {
			return f[0]
		}
		return ""
	}
	ipv4 = func(out string) string {
		a, err := parseIPv4Addrs(out)
		if err != nil {
			return "unreadable: " + err.Error()
		}
		return prefixList(a)
	}
	states = func(out string) string { return strings.Join(strings.Fields(out), " ") }
)

// diffScript is the pod's side of create (network, verify) and health
// --deep, in the order they run, plus the commands the issue found to
// differ between real guests and the emulation.
var diffScript = []diffStep{
	{name: "probe", cmd: "true", parse: nothing},
	{name: "booted", cmd: "systemctl is-system-running", parse: func(out string) string { return strings.TrimSpace(lastLine(out)) }},
	{name: "template-netplan-sha", cmd: "sha256sum " + netcfg.NetplanPath, parse: firstCol},
	{name: "template-address", cmd: "ip -j -4 addr show dev eth0", parse: ipv4},
	{name: "write-netplan", cmd: "write " + netcfg.NetplanPath},
	{name: "netplan-apply", cmd: "netplan apply", parse: func(out string) string {
		return fmt.Sprintf("udevadm failure: %v", strings.Contains(out, "udevadm"))
	}},
	// On 1.0 apply works, and networkd applies in the background; on 1.1
	// it fails before networkd reloads and the template's address stays.
	{name: "address-after-apply", cmd: "ip -j -4 addr show dev eth0", parse: ipv4, wantOn: map[string]string{"1.0": "10.1.10.91/24", "1.1": "10.1.10.90/24"}},
	{name: "netplan-generate", cmd: "netplan generate", parse: nothing},
	{name: "networkctl-reload", cmd: "networkctl reload", parse: nothing},
	{name: "networkctl-reconfigure", cmd: "networkctl reconfigure eth0", parse: nothing},
	{name: "address-applied", cmd: "ip -j -4 addr show dev eth0", parse: ipv4, want: "10.1.10.91/24"},
	// create waits for the route too: networkd sets it after the address.
	{name: "default-route-applied", cmd: "ip -j -4 route show default", parse: func(out string) string {
		gw, err := parseDefaultGateway(out)
		if err != nil {
			return "unreadable: " + err.Error()
		}
		return gw.String()
	}, want: "10.1.10.1"},
	{name: "ip-json-addr", cmd: "ip -j addr", parse: func(out string) string {
		var links []struct {
			IfName   string `json:"ifname"`
			AddrInfo []struct {
				Family, Local string
				PrefixLen     int
			} `json:"addr_info"`
		}
		if err := json.Unmarshal([]byte(out), &links); err != nil {
			return "unreadable"
		}
		var s []string
		for _, l := range links {
			for _, a := range l.AddrInfo {
				if a.Family == "inet" {
					s = append(s, fmt.Sprintf("%s %s/%d", l.IfName, a.Local, a.PrefixLen))
				}
			}
		}
		sort.Strings(s)
		return strings.Join(s, ", ")
	}},
	{name: "ip-json-route", cmd: "ip -j route", parse: func(out string) string {
		var routes []struct{ Dst, Gateway, Dev string }
		if err := json.Unmarshal([]byte(out), &routes); err != nil {
			return "unreadable"
		}
		var s []string
		for _, r := range routes {
			s = append(s, r.Dst+" "+r.Gateway+" "+r.Dev)
		}
		return strings.Join(s, ", ")
	}},
	{name: "default-route", cmd: "ip -4 route show default", parse: func(out string) string {
		return fmt.Sprintf("via gateway: %v", strings.Contains(out, "via 10.1.10.1"))
	}},
	{name: "ping-gateway", cmd: "ping -c 1 -W 2 10.1.10.1", parse: nothing},
	{name: "ping-unused", cmd: "ping -c 1 -W 1 10.1.10.77", parse: func(out string) string {
		return fmt.Sprintf("unreachable reported: %v", strings.Contains(out, "Destination Host Unreachable"))
	}},
	{name: "resolv-conf", cmd: "cat /etc/resolv.conf", parse: func(out string) string { return strings.Join(grepLines(out, "nameserver"), ", ") }},
	{name: "is-active-ssh", cmd: "systemctl is-active ssh", parse: states},
	{name: "is-active-ssh.socket", cmd: "systemctl is-active ssh.socket", parse: states},
	{name: "is-active-nginx", cmd: "systemctl is-active nginx", parse: states},
	{name: "is-active-php8.3-fpm", cmd: "systemctl is-active php8.3-fpm", parse: states},
	{name: "is-active-mariadb", cmd: "systemctl is-active mariadb", parse: states},
	{name: "is-active-not-installed", cmd: "systemctl is-active apache2", parse: states},
	{name: "is-active-any-of-two", cmd: "systemctl is-active ssh nginx", parse: states},
	{name: "is-active-none-of-two", cmd: "systemctl is-active ssh apache2", parse: states},
	{name: "dns", cmd: "getent hosts " + dnsProbeName, parse: firstCol},
	{name: "dns-unknown", cmd: "getent hosts nx.invalid", parse: nothing},
	{name: "service-checks", cmd: "serviceCheck " + strings.Join(DefaultServices, " ")},
	{name: "in-pod-checks", cmd: "inPodChecks"},
}

// runScript starts a simulator with the given guests, clones and starts CT
// 9101 with .91 as create would, and runs diffScript in its console.
func runScript(t *testing.T, guests, netplan string) map[string]outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tmp := t.TempDir()
	// The unprivileged container's root (uid 100000) must reach its volume.
	if err := os.Chmod(filepath.Dir(tmp), 0o755); err != nil {
		t.Fatal(err)
	}
	sim, err := pvesim.Start(ctx, pvesim.Config{
		Listen: "127.0.0.1:0", Guests: guests, Netplan: netplan, Scale: 0.01, AuthFailDelay: -1,
		DataDir: filepath.Join(tmp, guests),
		Tokens:  []pvesim.Token{{ID: "cloudpods@pve!diff", Secret: "0a8e3b62-8a34-4a43-9bb3-1f0b3c4d5e6f"}},
	})
	if err != nil {
		t.Fatalf("%s guests: %v", guests, err)
	}
	defer sim.Close()
	api, err := goproxmox.New(goproxmox.Options{URL: sim.URL(), TokenID: "cloudpods@pve!diff", TokenSecret: "0a8e3b62-8a34-4a43-9bb3-1f0b3c4d5e6f",
		HTTP: goproxmox.HTTPOptions{TLS: goproxmox.TLSOptions{Fingerprint: sim.Fingerprint()}, Timeout: 30 * time.Second, Retries: 2}})
	if err != nil {
		t.Fatal(err)
	}
	pod := pve.CT("pve", 9101)
	wait := func(upid string, err error) {
		t.Helper()
		if err == nil {
			var st pve.TaskStatus
			st, err = pve.WaitTask(ctx, api, "pve", upid, pve.WaitOptions{})
			if err == nil && st.ExitStatus != "OK" {
				err = fmt.Errorf("task %s", st.ExitStatus)
			}
		}
		if err != nil {
			t.Fatalf("%s guests: %v", guests, err)
		}
	}
	wait(api.CloneGuest(ctx, pve.CT("pve", 9000), pve.CloneOptions{NewID: 9101, Hostname: diffPod.Hostname, Full: true, Storage: "clients-main"}))
	cfg, err := api.GuestConfig(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	n0, err := netcfg.ParseNet0(cfg.Get("net0"))
	if err != nil {
		t.Fatal(err)
	}
	n0.IP, n0.GW = "10.1.10.91/24", "10.1.10.1"
	if err := api.UpdateGuestConfig(ctx, pod, pve.ConfigUpdate{Set: map[string]string{"net0": n0.String(), "cmode": "shell", "nameserver": "10.1.10.1 1.1.1.1"}}); err != nil {
		t.Fatal(err)
	}
	wait(api.StartGuest(ctx, pod))

	p := New(api, Options{Retry: pve.RetryPolicy{Attempts: 3, Base: 10 * time.Millisecond, Max: 50 * time.Millisecond}, ExecTimeout: time.Minute})
	sh, done, err := p.openShell(ctx, pod)
	if err != nil {
		t.Fatalf("%s guests: console: %v", guests, err)
	}
	defer done()
	if err := waitBooted(ctx, sh, 2*time.Minute); err != nil {
		t.Fatalf("%s guests: %v", guests, err)
	}
	content, err := netcfg.RenderNetplan(diffNet)
	if err != nil {
		t.Fatal(err)
	}
	res := map[string]outcome{}
	for _, st := range diffScript {
		var o outcome
		switch st.name {
		case "write-netplan":
			if err := sh.writeFile(ctx, netcfg.NetplanPath, content, "600"); err != nil {
				o = outcome{Code: 1, Parsed: err.Error()}
			}
		case "service-checks":
			var parts []string
			for _, svc := range DefaultServices {
				c, err := serviceCheck(ctx, sh, svc)
				if err != nil {
					t.Fatalf("%s guests: %v", guests, err)
				}
				parts = append(parts, fmt.Sprintf("%s %v", c.Name, c.OK))
			}
			o.Parsed = strings.Join(parts, ", ")
		case "in-pod-checks":
			checks, err := inPodChecks(ctx, sh, diffPod, DefaultServices)
			if err != nil {
				t.Fatalf("%s guests: %v", guests, err)
			}
			var parts []string
			for _, c := range checks {
				parts = append(parts, fmt.Sprintf("%s %v", c.Name, c.OK))
			}
			o.Parsed = strings.Join(parts, ", ")
		default:
			want := st.want
			if w, ok := st.wantOn[netplan]; ok {
				want = w
			}
			deadline := time.Now().Add(verifyLimit)
			for {
				out, code, err := sh.run(ctx, st.cmd)
				if err != nil {
					t.Fatalf("%s guests: %s: %v", guests, st.cmd, err)
				}
				o = outcome{Code: code, Parsed: st.parse(out)}
				if want == "" || o.Parsed == want || time.Now().After(deadline) {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
		t.Logf("%s guests: %s: %s", guests, st.name, o)
		res[st.name] = o
	}
	return res
}

// loadKnownDifferences reads "step: reason" lines; # starts a comment.
func loadKnownDifferences(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	known := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, reason, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(reason) == "" {
			t.Fatalf("%s: %q: want \"step: reason\"", path, line)
		}
		known[strings.TrimSpace(name)] = strings.TrimSpace(reason)
	}
	return known
}

package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/migrahosting/cloudpods/fixtures/pvesim"
	"github.com/migrahosting/cloudpods/netcfg"
)

var ctCreateArgs = []string{"ct", "create", "--vmid", "300", "--hostname", "web1", "--ostemplate", "local:vztmpl/" + debian12,
	"--storage", "auto", "--net", "name=eth0,bridge=vmbr0,tag=20,mtu=9000,ip=dhcp", "--net", "name=eth1,bridge=vmbr0,ip=10.1.10.120/24",
	"--unprivileged", "--features", "nesting=1", "--start", "--dhcp-timeout", "300ms"}

// withFlag is args with flag's value replaced.
func withFlag(args []string, flag, value string) []string {
	out := append([]string(nil), args...)
	for i := range out[:len(out)-1] {
		if out[i] == flag {
			out[i+1] = value
		}
	}
	return out
}

// TestCTCreateFromATemplate is issue 16's ct create: PVE's config holds
// both NICs as given, unprivileged: 1 and features: nesting=1, and the CT
// runs; the DHCP NIC on VLAN 20 (no DHCP server there) is a warning. The
// same command again has nothing to do; keyctl is refused before any call.
func TestCTCreateFromATemplate(t *testing.T) {
	c := startCLIWith(t, withNetworkToken)
	c.mustRun(t, 0, "template", "download", debian12, "--storage", "local")

	before := c.sim.Requests()
	_, errs := c.mustRun(t, exitUsage, withFlag(ctCreateArgs, "--features", "nesting=1,keyctl=1")...)
	wantIn(t, "keyctl", errs, "--features keyctl=1: PVE lets only root@pam set keyctl", "nesting is the one feature a token may set")
	if after := c.sim.Requests(); !reflect.DeepEqual(before, after) {
		t.Errorf("the refusal called PVE: %v → %v", before, after)
	}
	_, errs = c.mustRun(t, exitUsage, "ct", "create", "--vmid", "301", "--hostname", "web2", "--ostemplate", "local:vztmpl/"+debian12,
		"--net", "name=eth0,bridge=vmbr0,ip=dhcp", "--privileged", "--features", "nesting=1")
	wantIn(t, "features on a privileged CT", errs, "only root@pam set features on a privileged container")

	out, _ := c.mustRun(t, 0, append(ctCreateArgs, "--dry-run")...)
	wantIn(t, "dry run", out, "POST   /nodes/pve/lxc", "features=nesting=1", "net0=name=eth0,bridge=vmbr0,ip=dhcp,mtu=9000,tag=20,type=veth",
		"net1=name=eth1,bridge=vmbr0,ip=10.1.10.120/24,type=veth", "rootfs=clients-backup:8", "unprivileged=1", "why:",
		"unprivileged, sent as unprivileged=1: PVE 9.1 would otherwise default to unprivileged (9.x)",
		"storage clients-backup: the active rootdir storage with the most room")
	if _, ok := c.sim.Guest(300); ok {
		t.Fatal("the dry run created CT 300")
	}

	out, _ = c.mustRun(t, 0, ctCreateArgs...)
	wantIn(t, "create", out, "CT 300 web1 created: running on node pve, rootfs on clients-backup", "eth1 10.1.10.120/24",
		"warning: eth0 asked for DHCP but had no IPv4 lease after 300ms: is there a DHCP server on vmbr0 VLAN 20?")
	g, ok := c.sim.Guest(300)
	if !ok || g.Status != "running" || g.Config["unprivileged"] != "1" || g.Config["features"] != "nesting=1" {
		t.Fatalf("CT 300: %s %v", g.Status, g.Config)
	}
	for key, want := range map[string]string{"net0": "name=eth0,bridge=vmbr0,tag=20,mtu=9000,ip=dhcp", "net1": "name=eth1,bridge=vmbr0,ip=10.1.10.120/24"} {
		nic, _ := netcfg.ParseNIC(want)
		if !netcfg.SameNIC(g.Config[key], nic) || !strings.Contains(g.Config[key], "hwaddr=BC:24:11:") {
			t.Errorf("%s = %q, want %s with PVE's MAC", key, g.Config[key], want)
		}
	}

	out, _ = c.mustRun(t, 0, ctCreateArgs...)
	wantIn(t, "re-run", out, "create     skip: CT 300 exists with this spec", "start      skip: already running",
		"finalize   skip: marked ready", "CT 300 web1 already as asked, nothing to do")

	_, errs = c.mustRun(t, exitConflict, withFlag(ctCreateArgs, "--hostname", "web9")...)
	wantIn(t, "another spec", errs, "CT 300 already exists with a different spec (hostname: web1 → web9)")

	audit, _ := os.ReadFile(c.audit)
	wantIn(t, "audit", string(audit), `"command":"ct create","vmid":300,"hostname":"web1","ip":"10.1.10.120"`)
	c.mustRun(t, 0, "destroy", "300", "--force", "--yes")
}

// TestCTCreateRefusalsAndSecrets: another guest holds
// the address in its config → refused in preflight (nothing created); a
// password comes from a file and is never in argv or the audit log.
func TestCTCreateRefusalsAndSecrets(t *testing.T) {
	c := startCLIWith(t, withNetworkToken)
	c.mustRun(t, 0, "template", "download", debian12, "--storage", "local")
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"ct", "create", "--vmid", "302", "--hostname", "db1", "--ostemplate", "local:vztmpl/" + debian12, "--password-file", pw}
	_, errs := c.mustRun(t, exitConflict, append(base, "--net", "name=eth0,bridge=vmbr0,ip=10.1.10.90/24,gw=10.1.10.1")...)
	wantIn(t, "address in use", errs, "IP 10.1.10.90 is already used by CT 9000 (cloudpod-template): pick another ip= in --net")
	_, errs = c.mustRun(t, exitPreflight, append(base, "--net", "name=eth0,bridge=vmbr7,ip=dhcp")...)
	wantIn(t, "missing bridge", errs, "bridge vmbr7 of NIC eth0 does not exist on node pve: use one of vmbr0, vmbr1")
	_, errs = c.mustRun(t, exitPreflight, "ct", "create", "--vmid", "302", "--hostname", "db1", "--ostemplate", "local:vztmpl/debian-13-standard_13.1-2_amd64.tar.zst", "--net", "name=eth0,bridge=vmbr0,ip=dhcp")
	wantIn(t, "missing template", errs, "template debian-13-standard_13.1-2_amd64.tar.zst is not on storage local: fetch it first with: cloudpod template download debian-13-standard_13.1-2_amd64.tar.zst --storage local")
	_, errs = c.mustRun(t, exitUsage, append(base, "--net", "name=eth0,bridge=vmbr0,ip=dhcp,gw=10.1.10.1")...)
	wantIn(t, "gw with dhcp", errs, "--net gw=10.1.10.1 needs a static ip=CIDR beside it")
	if _, ok := c.sim.Guest(302); ok {
		t.Fatal("a refused create made CT 302")
	}
	c.mustRun(t, 0, append(base, "--net", "name=eth0,bridge=vmbr0,ip=10.1.10.121/24,gw=10.1.10.1", "--start")...)
	shadow, err := os.ReadFile(filepath.Join(c.sim.RootDir(302), "etc/shadow"))
	if err != nil || !strings.HasPrefix(string(shadow), "root:$") {
		t.Errorf("root's password was not set from the file: %q %v", shadow, err)
	}
	audit, _ := os.ReadFile(c.audit)
	if strings.Contains(string(audit), "s3cret-pw") {
		t.Error("the password reached the audit log")
	}
}

// TestCTCreateRollsBack: a start that fails removes the CT this run made
// (exit 1, "rolled back"); the create POST's answer lost after PVE acted
// is settled by the marker, not repeated.
func TestCTCreateRollsBack(t *testing.T) {
	c := startCLIWith(t, withNetworkToken)
	c.mustRun(t, 0, "template", "download", debian12, "--storage", "local")
	must(t, c.sim.AddFault(mustFault(t, "POST /nodes/pve/lxc/*/status/start taskfail msg=startup for container '303' failed")))
	args := []string{"ct", "create", "--vmid", "303", "--hostname", "app1", "--ostemplate", "local:vztmpl/" + debian12,
		"--net", "name=eth0,bridge=vmbr0,ip=10.1.10.123/24,gw=10.1.10.1", "--start"}
	_, errs := c.mustRun(t, exitFailed, args...)
	wantIn(t, "failed start", errs, "CT 303: step start failed", "startup for container '303' failed", "rolled back: CT 303 destroyed")
	if _, ok := c.sim.Guest(303); ok {
		t.Fatal("CT 303 is still there after the rollback")
	}
	c.sim.ClearFaults()
	must(t, c.sim.AddFault(mustFault(t, "POST /nodes/pve/lxc #1 596 after")))
	c.mustRun(t, 0, args...)
	if n := c.sim.Requests()["POST /nodes/{node}/lxc"]; n != 2 {
		t.Errorf("%d create POSTs, want 2 (the rolled-back run's, then the one whose answer was lost, settled by the marker)", n)
	}
	if g, ok := c.sim.Guest(303); !ok || g.Status != "running" {
		t.Errorf("CT 303 after the lost answer: %+v", g)
	}
}

func mustFault(t *testing.T, rule string) pvesim.Fault {
	t.Helper()
	f, err := pvesim.ParseFault(rule)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestCTCreateOnPVE84: 8.4 creates privileged containers unless told
// otherwise, so the level is sent and the dry run says why; JSON output
// is event lines, then the result.
func TestCTCreateOnPVE84(t *testing.T) {
	c := startCLIWith(t, func(cfg *pvesim.Config) { cfg.Version = "8.4"; withNetworkToken(cfg) })
	c.mustRun(t, 0, "template", "download", debian12, "--storage", "local")
	args := []string{"ct", "create", "--vmid", "310", "--hostname", "old1", "--ostemplate", "local:vztmpl/" + debian12,
		"--net", "name=eth0,bridge=vmbr0,ip=10.1.10.130/24,gw=10.1.10.1", "--features", "nesting=1", "--start"}
	out, _ := c.mustRun(t, 0, append(args, "--dry-run")...)
	wantIn(t, "dry run on 8.4", out, "unprivileged, sent as unprivileged=1: PVE 8.4 would otherwise default to privileged (8.x)")
	out, _ = c.mustRun(t, 0, append(args, "-o", "json")...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines[:len(lines)-1] {
		if !strings.HasPrefix(l, `{"type":"event"`) {
			t.Errorf("not an event line: %s", l)
		}
	}
	wantIn(t, "JSON result", lines[len(lines)-1], `"type":"result"`, `"vmid":310`, `"status":"running"`, `"changed":true`)
	if g, _ := c.sim.Guest(310); g.Config["unprivileged"] != "1" || g.Config["features"] != "nesting=1" {
		t.Errorf("CT 310 on 8.4: %v", g.Config)
	}
}
